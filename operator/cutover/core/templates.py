"""Gate templates: what a Migration's gate naming a GateTemplate or ClusterGateTemplate resolves to.

A template holds a gate without its name and declares its args; a gate using it gives ``args``.
Resolution checks the args (none unknown, none missing), passes them to the template's provider
block as the block's own ``args``, so the one query-variable mechanism (``{{args.NAME}}``,
rendered by ``core.promql`` at every check) places them, and validates the result as any gate.

The reconciler resolves at a run's preflight and records the result in status; during the run
``apply`` puts the recorded gates in place of the templated ones, so a template edited later does
not change a run already past its preflight. Pure: the templates come in as data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from cutover.api import (
    PROVIDER_BLOCKS,
    Gate,
    GateTemplateKind,
    GateTemplateRef,
    GateTemplateSpec,
    MigrationSpec,
    ResolvedGate,
    SpecInvalid,
    describe_errors,
    parse_template_spec,
)
from cutover.core.promql import TemplateError, variables_in

_ARG_PREFIX = "args."


@dataclass(frozen=True)
class TemplateObject:
    """A template as the operator's watch (or a file given to the CLI) holds it."""

    uid: str
    generation: int
    spec: Mapping[str, Any]

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> TemplateObject:
        metadata = body.get("metadata") or {}
        return cls(
            uid=str(metadata.get("uid") or ""),
            generation=int(metadata.get("generation") or 0),
            spec=dict(body.get("spec") or {}),
        )


class Unresolved(ValueError):
    """Gates that cannot be resolved; each problem names the gate, the template and the arg."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def refs(spec: MigrationSpec) -> list[GateTemplateRef]:
    """The templates ``spec``'s gates name, each once, in spec order."""
    seen: dict[GateTemplateRef, None] = {}
    for gate in spec.gates:
        if gate.template_ref is not None:
            seen.setdefault(gate.template_ref)
    return list(seen)


def where(index: int, gate: Gate) -> str:
    return f"spec.gates[{index}] ({gate.name})"


def not_found(ref: GateTemplateRef, namespace: str) -> str:
    if ref.kind is GateTemplateKind.gate_template:
        return f"{ref.describe()} not found in namespace {namespace!r}"
    return f"{ref.describe()} not found"


def _strings(node: Any) -> Iterable[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _undeclared(spec: GateTemplateSpec, body: Mapping[str, Any]) -> list[str]:
    """``{{args.NAME}}`` the template's gate uses that neither its spec.args nor the provider
    block's own args give."""
    given = {a.name for a in spec.args}
    for block in PROVIDER_BLOCKS:
        given.update((body.get(block) or {}).get("args") or {})
    used: set[str] = set()
    for text in _strings(body):
        try:
            used.update(variables_in(text))
        except TemplateError:
            continue  # a malformed placeholder: the rendering at preflight names it
    return sorted(
        name.removeprefix(_ARG_PREFIX)
        for name in used
        if name.startswith(_ARG_PREFIX) and name.removeprefix(_ARG_PREFIX) not in given
    )


def resolve(gate: Gate, found: TemplateObject | None, namespace: str, index: int) -> ResolvedGate:
    """The gate ``gate`` (with templateRef) resolves to; raises Unresolved with every problem."""
    ref = gate.template_ref
    if ref is None:
        raise ValueError(f"gate {gate.name!r} names no template")
    at = where(index, gate)
    if found is None:
        raise Unresolved([f"{at}: {not_found(ref, namespace)}"])
    try:
        spec = parse_template_spec(found.spec)
    except SpecInvalid as error:
        invalid = [f"{at}: {ref.describe()} is invalid: {p}" for p in error.problems]
        raise Unresolved(invalid) from None
    body = spec.gate.to_dict()
    problems = [
        f"{at}: {ref.describe()} uses {{{{args.{name}}}}} but does not declare it in spec.args"
        for name in _undeclared(spec, body)
    ]
    declared = {a.name: a.value for a in spec.args}
    for name in sorted(set(gate.args) - set(declared)):
        known = ", ".join(sorted(declared)) or "none"
        problems.append(f"{at}: {ref.describe()} has no arg {name!r} (its args: {known})")
    for name in sorted(n for n, default in declared.items() if default is None):
        if name not in gate.args:
            problems.append(f"{at}: {ref.describe()} needs arg {name!r}: give it in args")
    if problems:
        raise Unresolved(problems)
    values = {n: v for n, v in declared.items() if v is not None} | dict(gate.args)
    for block in PROVIDER_BLOCKS:
        if block in body and values:
            # The Migration's values win over what the block says for the same name.
            body[block] = {**body[block], "args": {**(body[block].get("args") or {}), **values}}
    body["name"] = gate.name
    body["dryRun"] = gate.dry_run or bool(body.get("dryRun"))
    try:
        resolved = Gate.model_validate(body)
    except ValidationError as error:
        raise Unresolved(
            [
                f"{at}: {ref.describe()} resolves to an invalid gate: {p}"
                for p in describe_errors(error, root="gate")
            ]
        ) from None
    return ResolvedGate(template_ref=ref, uid=found.uid, generation=found.generation, gate=resolved)


def resolve_all(
    spec: MigrationSpec, found: Mapping[GateTemplateRef, TemplateObject | None], namespace: str
) -> tuple[list[ResolvedGate], list[str]]:
    """(the gates that resolved, every problem of those that did not)."""
    resolved: list[ResolvedGate] = []
    problems: list[str] = []
    for index, gate in enumerate(spec.gates):
        if gate.template_ref is None:
            continue
        try:
            resolved.append(resolve(gate, found.get(gate.template_ref), namespace, index))
        except Unresolved as error:
            problems.extend(error.problems)
    return resolved, problems


def apply(spec: MigrationSpec, records: Iterable[ResolvedGate]) -> tuple[MigrationSpec, list[str]]:
    """``spec`` with each templated gate replaced by the gate recorded for it, and the templated
    gates that have no record (left out of the spec returned)."""
    if all(g.template_ref is None for g in spec.gates):
        return spec, []
    recorded = {r.gate.name: r for r in records}
    gates: list[Gate] = []
    missing: list[str] = []
    for index, gate in enumerate(spec.gates):
        if gate.template_ref is None:
            gates.append(gate)
            continue
        record = recorded.get(gate.name)
        if record is None or record.template_ref != gate.template_ref:
            missing.append(
                f"{where(index, gate)}: {gate.template_ref.describe()} was not resolved for this"
                " run"
            )
            continue
        gates.append(record.gate)
    return spec.model_copy(update={"gates": gates}), missing
