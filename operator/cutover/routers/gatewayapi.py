"""The gatewayapi router: weights of two backendRefs in one rule of an existing ``HTTPRoute``.

``spec.traffic.gatewayAPI.httpRoute`` names the route; its rule ``rule`` (or the only rule, or
the only rule naming both Services) has one backendRef to ``spec.blue.service`` and one to
``spec.green.service``. The router writes their ``weight`` (always summing to 100) with JSON
patches whose ``test`` ops guard the rules they touch, so other rules, filters, timeouts,
matches and annotations are never overwritten.

A ``setMirror`` step adds a ``RequestMirror`` filter to the weighted rule, sending ``percent``
of its requests to ``spec.green.service`` (green's backendRef, port included); the next step, a
rollback or a deletion removes it. Other mirror filters of the rule are left alone.

Header matches and stickiness add one rule named ``cutover-match`` just before the weighted one,
sending to green only. Gateway API orders rules by how specific their matches are, not by
position, so that rule repeats every match of the weighted rule and adds one header (or
``Cookie`` regex) to each: it is then strictly more specific and wins. Stickiness adds a
``ResponseHeaderModifier`` to green's backendRef that sets the cookie (Flagger's session
affinity model); the match rule sends requests carrying it to green.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from cutover.routers.base import (
    MANAGED_RULE,
    RouteTableRouter,
    Target,
    cookie_regex,
    header_value_regex,
    is_sticky_set_cookie,
    sticky_value,
)


def _refers_to(ref: Mapping[str, Any], service: str | None, namespace: str) -> bool:
    return (
        service is not None
        and ref.get("name") == service
        and ref.get("kind", "Service") == "Service"
        and ref.get("group", "") in ("", "core")
        and ref.get("namespace", namespace) == namespace
    )


def _header_matches(target: Target) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []
    for match in target.spec.traffic.match:
        value = header_value_regex(match.exact, match.regex)
        if match.cookie:
            found.append(
                {
                    "type": "RegularExpression",
                    "name": "Cookie",
                    "value": cookie_regex(match.name, value),
                }
            )
        elif match.exact is not None:
            found.append({"type": "Exact", "name": match.name, "value": match.exact})
        else:
            found.append({"type": "RegularExpression", "name": match.name, "value": value})
    sticky = target.spec.traffic.stickiness
    if sticky is not None:
        pattern = cookie_regex(sticky.cookie.name, header_value_regex(sticky_value(target), None))
        found.append({"type": "RegularExpression", "name": "Cookie", "value": pattern})
    return found


class GatewayAPIRouter(RouteTableRouter):
    resource = ("gateway.networking.k8s.io", "v1", "httproutes")
    kind = "HTTPRoute"
    router = "gatewayapi"
    rules_key = "rules"
    entries_key = "backendRefs"
    rule_word = "rule"
    owned_entry_keys = ("weight", "filters")

    def object_name(self, target: Target) -> str:
        settings = target.spec.traffic.gateway_api
        assert settings is not None  # the spec validation requires the block for this router
        return settings.http_route

    def wanted_rule(self, target: Target) -> str | None:
        settings = target.spec.traffic.gateway_api
        return settings.rule if settings is not None else None

    def role_of(self, entry: Mapping[str, Any], target: Target) -> str | None:
        for role, ref in (("blue", target.spec.blue), ("green", target.spec.green)):
            if _refers_to(entry, ref.service, target.namespace):
                return role
        return None

    def describe_entry(self, role: str, target: Target) -> str:
        ref = target.spec.blue if role == "blue" else target.spec.green
        return f"{role} (backendRef to Service {ref.service})"

    @staticmethod
    def _weight(entry: Mapping[str, Any]) -> int:
        # Gateway API defaults an unset weight to 1.
        value = entry.get("weight")
        return 1 if value is None else int(value)

    def with_sticky(self, entry: dict[str, Any], set_cookie: str) -> dict[str, Any]:
        result = copy.deepcopy(entry)
        filters: list[Any] = list(result.get("filters") or [])
        header = {"name": "Set-Cookie", "value": set_cookie}
        for item in filters:
            if isinstance(item, dict) and item.get("type") == "ResponseHeaderModifier":
                # A filter type may appear once per list: join the user's modifier.
                modifier = item.setdefault("responseHeaderModifier", {})
                prefix = set_cookie.split("=", 1)[0] + "="
                # Our header replaces an older one of ours (e.g. another maxAge), nothing else.
                added = [
                    h
                    for h in modifier.get("add") or []
                    if not (
                        h.get("name") == "Set-Cookie" and str(h.get("value", "")).startswith(prefix)
                    )
                ]
                if header not in added:
                    added.append(header)
                modifier["add"] = added
                break
        else:
            filters.append(
                {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [header]}}
            )
        result["filters"] = filters
        return result

    def without_sticky(self, entry: dict[str, Any], target: Target) -> dict[str, Any]:
        result = copy.deepcopy(entry)
        kept: list[Any] = []
        for item in result.get("filters") or []:
            if isinstance(item, dict) and item.get("type") == "ResponseHeaderModifier":
                modifier = item.get("responseHeaderModifier") or {}
                add = [
                    h
                    for h in modifier.get("add") or []
                    if not (
                        h.get("name") == "Set-Cookie"
                        and is_sticky_set_cookie(h.get("value"), target)
                    )
                ]
                if add:
                    modifier["add"] = add
                else:
                    modifier.pop("add", None)
                if not modifier:
                    continue
            kept.append(item)
        if kept:
            result["filters"] = kept
        else:
            result.pop("filters", None)
        return result

    def match_conditions(self, rule: Mapping[str, Any], target: Target) -> list[dict[str, Any]]:
        headers = _header_matches(target)
        if not headers:
            return []
        # No matches means "every request" (path prefix /): one empty base condition.
        bases = [m for m in rule.get("matches") or [] if isinstance(m, dict)] or [{}]
        return [
            {**copy.deepcopy(base), "headers": [*copy.deepcopy(base.get("headers") or []), header]}
            for base in bases
            for header in headers
        ]

    def _is_green_mirror(self, item: Any, target: Target) -> bool:
        if not isinstance(item, dict) or item.get("type") != "RequestMirror":
            return False
        ref = (item.get("requestMirror") or {}).get("backendRef") or {}
        return _refers_to(ref, target.spec.green.service, target.namespace)

    def mirror_of(self, rule: Mapping[str, Any], target: Target) -> int:
        for item in rule.get("filters") or []:
            if self._is_green_mirror(item, target):
                mirror = item.get("requestMirror") or {}
                if "percent" in mirror:
                    return int(mirror["percent"])
                fraction = mirror.get("fraction")
                if isinstance(fraction, dict) and fraction.get("denominator", 100):
                    return round(
                        100
                        * int(fraction.get("numerator", 0))
                        / int(fraction.get("denominator", 100))
                    )
                return 100  # neither percent nor fraction: every request is mirrored
        return 0

    def with_mirror(
        self, rule: Mapping[str, Any], green: Mapping[str, Any], percent: int
    ) -> dict[str, Any]:
        # The CRD's defaults written out, so the stored filter equals the planned one and a
        # repeated write plans nothing.
        ref = {"group": "", "kind": "Service"}
        ref.update(
            {k: copy.deepcopy(v) for k, v in green.items() if k not in ("weight", "filters")}
        )
        result = copy.deepcopy(dict(rule))
        mirror = {"type": "RequestMirror", "requestMirror": {"backendRef": ref, "percent": percent}}
        result["filters"] = [*(result.get("filters") or []), mirror]
        return result

    def without_mirror(self, rule: Mapping[str, Any], target: Target) -> dict[str, Any]:
        result = copy.deepcopy(dict(rule))
        filters = result.get("filters")
        if not isinstance(filters, list):
            return result
        kept = [f for f in filters if not self._is_green_mirror(f, target)]
        if len(kept) != len(filters):
            if kept:
                result["filters"] = kept
            else:
                result.pop("filters")
        return result

    def match_rule(
        self, rule: Mapping[str, Any], green: Mapping[str, Any], conditions: list[dict[str, Any]]
    ) -> dict[str, Any]:
        # The weighted rule's own filters and timeouts apply to the matched requests too.
        extra = {
            k: copy.deepcopy(v)
            for k, v in rule.items()
            if k not in ("name", "matches", "backendRefs")
        }
        ref = {k: copy.deepcopy(v) for k, v in green.items() if k not in ("weight", "filters")}
        # Green's weight may be 0, which would send this rule's requests nowhere; 1 of 1 sends
        # them all. Written out because the CRD defaults it to 1: a rule planned without it
        # never equals the stored one, and every set_weight would rewrite the route.
        ref["weight"] = 1
        return {"name": MANAGED_RULE, "matches": conditions, **extra, "backendRefs": [ref]}
