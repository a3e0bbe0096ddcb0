"""Label and field selector parsing/matching, as the kube-apiserver understands them."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from cutover.sandbox.errors import bad_request

Predicate = Callable[[Mapping[str, Any]], bool]

# Keys and values are restricted in Kubernetes, so a permissive token regex is enough: we do not
# validate label syntax, we only need to split the expression unambiguously.
_SET_EXPR = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_.\-/]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_EQ_EXPR = re.compile(r"^\s*([A-Za-z0-9_.\-/]+)\s*(==|!=|=)\s*([A-Za-z0-9_.\-]*)\s*$")


def _split_top_level(expr: str) -> list[str]:
    """Split on commas that are not inside a parenthesised `in (...)` value set."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in expr:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part for part in parts if part.strip()]


def _label_requirement(term: str) -> Callable[[Mapping[str, str]], bool]:
    eq = _EQ_EXPR.match(term)
    if eq:
        key, op, value = eq.group(1), eq.group(2), eq.group(3)
        if op == "!=":
            # Like the apiserver: `k!=v` also matches objects that lack the label entirely.
            return lambda labels: labels.get(key) != value
        return lambda labels: key in labels and labels[key] == value
    match = _SET_EXPR.match(term)
    if not match:
        raise bad_request(f"unable to parse requirement: {term!r}")
    negated, key, op, raw_values = match.groups()
    if op is None:
        if negated:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    if negated:
        raise bad_request(f"unable to parse requirement: {term!r}")
    values = {value.strip() for value in raw_values.split(",") if value.strip()}
    if op == "in":
        return lambda labels: key in labels and labels[key] in values
    return lambda labels: labels.get(key) not in values


def parse_label_selector(expr: str | None) -> Predicate:
    """Compile a label selector string into a predicate over whole objects."""
    if not expr or not expr.strip():
        return lambda obj: True
    requirements = [_label_requirement(term) for term in _split_top_level(expr)]

    def predicate(obj: Mapping[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(requirement(labels) for requirement in requirements)

    return predicate


def _field_value(obj: Mapping[str, Any], path: str) -> str | None:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    if node is None:
        return None
    return str(node)


def parse_field_selector(expr: str | None) -> Predicate:
    """Compile a field selector; any dotted path is accepted, not only metadata.name/namespace.

    The real apiserver supports only a per-kind allow-list of fields; being more permissive is
    harmless for a sandbox and lets tests select on e.g. `status.phase` like on Pods.
    """
    if not expr or not expr.strip():
        return lambda obj: True
    checks: list[tuple[str, bool, str]] = []
    for term in _split_top_level(expr):
        match = _EQ_EXPR.match(term)
        if not match:
            raise bad_request(f"invalid field selector: {term!r}")
        checks.append((match.group(1), match.group(2) == "!=", match.group(3)))

    def predicate(obj: Mapping[str, Any]) -> bool:
        for path, negated, value in checks:
            actual = _field_value(obj, path) or ""
            if (actual == value) == negated:
                return False
        return True

    return predicate
