"""Offline checks of Migration manifests: ``cutover lint`` problems and the ``cutover plan``.

Pure: a parsed manifest in, data out; ``cli.render`` draws it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cutover import api, providers
from cutover.cli.compat import Located
from cutover.cli.phases import PlanPhase, RiskAssessment, assess, build_phases, point_of_no_return
from cutover.cli.report import threshold_text
from cutover.core import preview as preview_rules
from cutover.core import promql, speccheck
from cutover.core import templates as gate_templates
from cutover.core.plan import StepKind, schedule
from cutover.core.templates import TemplateObject
from cutover.durations import format_duration, parse_duration


def query_variables(manifest: Mapping[str, Any], spec: api.MigrationSpec) -> dict[str, str]:
    """The variables the operator substitutes in every gate query, minus the gate's own args."""
    metadata = manifest.get("metadata") or {}
    values = {
        "namespace": str(metadata.get("namespace") or "default"),
        "migration": str(metadata.get("name") or ""),
        "blue": spec.blue.deployment,
        "green": spec.green.deployment,
        "service": spec.traffic.service or "",
    }
    if spec.preview is not None:
        values["preview.service"] = preview_rules.service_name(spec, values["migration"])
    return values


Templates = Mapping[api.GateTemplateRef, TemplateObject]


@dataclass(frozen=True)
class Checked:
    """A gate as the offline checks see it: inline, resolved from its template, or unresolved
    (``gate`` is then the templated gate itself and ``unresolved`` says why)."""

    gate: api.Gate
    template: str | None = None  # "GateTemplate 'x'" for a gate taken from a template
    unresolved: str | None = None
    offline: bool = False  # unresolved only because the template was not given


def offline_notes(checked: Sequence[Checked]) -> list[str]:
    """Gates whose template was not given: not an error unless resolution was asked for."""
    return [c.unresolved for c in checked if c.offline and c.unresolved]


def resolve_gates(
    manifest: Mapping[str, Any], spec: api.MigrationSpec, templates: Templates
) -> tuple[list[Checked], list[str]]:
    """Each gate with its template resolved the way the operator does at preflight, when the
    template is among ``templates``; and the problems of those that do not resolve."""
    namespace = str((manifest.get("metadata") or {}).get("namespace") or "default")
    checked: list[Checked] = []
    problems: list[str] = []
    for index, gate in enumerate(spec.gates):
        ref = gate.template_ref
        if ref is None:
            checked.append(Checked(gate))
            continue
        found = templates.get(ref)
        if found is None:
            why = (
                f"{gate_templates.where(index, gate)}: the gate comes from {ref.describe()},"
                " which cannot be resolved offline (give it with --template-file, or plan --live)"
            )
            checked.append(Checked(gate, ref.describe(), why, offline=True))
            continue
        try:
            record = gate_templates.resolve(gate, found, namespace, index)
        except gate_templates.Unresolved as error:
            problems.extend(error.problems)
            checked.append(Checked(gate, ref.describe(), "; ".join(error.problems)))
            continue
        checked.append(Checked(record.gate, ref.describe()))
    return checked, problems


def template_objects(
    documents: Sequence[Mapping[str, Any]],
) -> dict[api.GateTemplateRef, TemplateObject]:
    """The GateTemplates and ClusterGateTemplates among manifests; raises SpecInvalid."""
    found: dict[api.GateTemplateRef, TemplateObject] = {}
    kinds = {k.value for k in api.GateTemplateKind}
    for body in documents:
        if body.get("kind") not in kinds:
            continue
        try:
            manifest = api.GateTemplateManifest.from_manifest(body)
        except api.SpecInvalid as error:
            name = (body.get("metadata") or {}).get("name", "<unnamed>")
            raise api.SpecInvalid([f"{body['kind']} {name}: {p}" for p in error.problems]) from None
        ref = api.GateTemplateRef(name=str(manifest.metadata.get("name") or ""), kind=manifest.kind)
        found[ref] = TemplateObject.from_body(body)
    return found


def rendered_queries(
    manifest: Mapping[str, Any], spec: api.MigrationSpec
) -> dict[str, dict[str, str]]:
    """gate name -> {"query": ..., "baseline": ...} after substitution (``query`` is what the
    gate's provider describes a check as); raises TemplateError."""
    base = query_variables(manifest, spec)
    result: dict[str, dict[str, str]] = {}
    for gate in spec.gates:
        if gate.template_ref is not None:
            continue  # not resolved: nothing to render
        source = providers.source_for(gate)
        values = providers.variables(base, gate)
        rendered = {
            field: promql.render_query(text, values) for field, text in source.templates(gate)
        }
        request = source.request(gate, rendered)
        queries = {"query": source.describe(gate, request)}
        if request.baseline is not None:
            queries["baseline"] = request.baseline
        result[gate.name] = queries
    return result


def lint_problems(
    manifest: Mapping[str, Any], templates: Templates | None = None, require_templates: bool = False
) -> list[str]:
    """Every problem with a field path: schema problems first, then gate templates (a template
    not among ``templates`` only with ``require_templates``), then query templates."""
    try:
        migration = api.Migration.from_manifest(manifest)
    except api.SpecInvalid as error:
        return list(error.problems)
    base = query_variables(manifest, migration.spec)
    checked, problems = resolve_gates(manifest, migration.spec, templates or {})
    if base["migration"]:  # a manifest without a name (generateName) is named later
        problems += preview_rules.name_problems(migration.spec, base["migration"])
    if require_templates:
        problems += offline_notes(checked)
    for index, gate in enumerate(c.gate for c in checked):
        if gate.template_ref is not None:
            continue
        source = providers.source_for(gate)
        values = providers.variables(base, gate)
        for field, template in source.templates(gate):
            try:
                rendered = promql.render_query(template, values)
            except promql.TemplateError as error:
                problems.append(f"spec.gates[{index}].{field}: {error}")
                continue
            syntax = source.syntax_problem(field, rendered)
            if syntax is not None:
                problems.append(f"spec.gates[{index}].{field}: {syntax}")
    return problems


@dataclass(frozen=True)
class PlanGate:
    name: str
    threshold: str
    query: str
    baseline: str | None
    template: str | None = None  # the template the gate comes from


@dataclass(frozen=True)
class PlanRow:
    step: int  # 1-based
    kind: str
    weight: int
    hold: str
    gates: tuple[str, ...]
    rollback: str
    mirror: int = 0  # percent of live requests copied to green during the step


@dataclass(frozen=True)
class Plan:
    name: str
    namespace: str
    router: str
    blue: str
    green: str
    rows: tuple[PlanRow, ...]
    gates: tuple[PlanGate, ...]
    minimum: str
    bake: str
    waits_for_promotion: bool
    after_success: str
    rollback_note: str
    # With `plan --live`: what applying this manifest does to the Migration in the cluster.
    change: str | None = None
    change_effect: str | None = None
    # The migration plan for CI (`plan -o json`): phases, the point of no return and the risks.
    phases: tuple[PlanPhase, ...] = ()
    point_of_no_return: str = ""
    risk: RiskAssessment | None = None
    preview: str | None = None  # spec.preview: what happens before any user traffic


def _plan_gate(checked: Checked, queries: Mapping[str, Mapping[str, str]]) -> PlanGate:
    gate = checked.gate
    if checked.unresolved is not None:
        query = (
            "not resolved offline: give the template with --template-file, or plan --live"
            if checked.offline
            else f"cannot be resolved: {checked.unresolved}"
        )
        return PlanGate(
            name=gate.name,
            threshold=f"as {checked.template} says",
            query=query,
            baseline=None,
            template=checked.template,
        )
    return PlanGate(
        name=gate.name,
        threshold=threshold_text(gate),
        query=queries[gate.name]["query"],
        baseline=queries[gate.name].get("baseline"),
        template=checked.template,
    )


def _rollback_text(weight: int, mirror: int = 0) -> str:
    if weight == 0:
        if mirror:
            return f"mirror of {mirror} % removed; all traffic is on blue"
        return "nothing to undo: all traffic is on blue"
    unmirror = f", mirror of {mirror} % removed" if mirror else ""
    return f"green {weight} % → 0 %{unmirror}, blue back to its original size"


def _preview_text(spec: api.MigrationSpec, name: str) -> str | None:
    if spec.preview is None:
        return None
    service = preview_rules.service_name(spec, name or "<migration>")
    checks = (
        f"gates {', '.join(spec.preview.gates)} checked through it at weight 0"
        if spec.preview.gates
        else "no gates: it only waits for green"
    )
    return (
        f"before any user traffic, {spec.green.deployment} at full size and ready behind the"
        f" preview Service {service} (only green's pods); {checks}; a failure rolls back with"
        " no user traffic moved"
    )


def _after_success(spec: api.MigrationSpec) -> str:
    blue = spec.blue.deployment
    window = parse_duration(spec.rollback.window)
    if window == 0:
        return f"{blue} is retired: no rollback after success"
    if any(h.irreversible for stage in api.HookStage for h in spec.hooks.of(stage)):
        return (
            f"{blue} is retired: no rollback window opens past the point of no return"
            " (an irreversible hook)"
        )
    return (
        f"{blue} is kept at full size for {format_duration(window)} (the rollback window):"
        f" `cutover undo` or a failed gate puts all traffic back on it at once; then it is retired"
    )


def build_plan(
    manifest: Mapping[str, Any],
    sql: Sequence[Located] = (),
    notes: Sequence[str] = (),
    templates: Templates | None = None,
) -> Plan:
    """The schedule of a valid manifest; raises SpecInvalid or promql.TemplateError.

    ``sql`` holds what ``cutover compat`` found in the hooks' SQL and ``notes`` what it could
    not check: both feed the risk assessment. Gates from ``templates`` are shown resolved.
    """
    migration = api.Migration.from_manifest(manifest)
    checked, _ = resolve_gates(manifest, migration.spec, templates or {})
    spec = migration.spec.model_copy(update={"gates": [c.gate for c in checked]})
    queries = rendered_queries(manifest, spec)
    planned = schedule(spec)
    rows = []
    if planned.preview_seconds is not None:
        # Before the first step: green checked through the preview Service at weight 0.
        wait = format_duration(planned.preview_seconds)
        rows.append(
            PlanRow(
                step=0,
                kind="preview",
                weight=0,
                hold=f"green ready, then {wait} (gate interval)"
                if planned.preview_gates
                else "green ready",
                gates=planned.preview_gates,
                rollback="nothing to undo: no user traffic has moved",
            )
        )
    for step in planned.steps:
        if step.hold_seconds is None:
            hold = "until promoted"
        elif step.kind is StepKind.pause:
            hold = format_duration(step.hold_seconds)
        else:
            hold = f"{format_duration(step.hold_seconds)} (gate interval)" if step.gates else "-"
        rows.append(
            PlanRow(
                step=step.index + 1,
                kind=step.kind.value,
                weight=step.weight,
                hold=hold,
                gates=step.gates,
                rollback=_rollback_text(step.weight, step.mirror),
                mirror=step.mirror,
            )
        )
    gates = tuple(_plan_gate(c, queries) for c in checked)
    minimum = format_duration(planned.minimum_seconds)
    if planned.waits_for_promotion:
        minimum += " + time until promoted"
    metadata = manifest.get("metadata") or {}
    return Plan(
        name=str(metadata.get("name") or "<unnamed>"),
        namespace=str(metadata.get("namespace") or "default"),
        router=spec.traffic.router.value,
        blue=spec.blue.deployment,
        green=spec.green.deployment,
        rows=tuple(rows),
        gates=gates,
        minimum=minimum,
        bake=format_duration(planned.bake_seconds),
        waits_for_promotion=planned.waits_for_promotion,
        after_success=_after_success(spec),
        rollback_note=(
            f"a rollback scales {spec.green.deployment} to 0 once traffic is back on blue"
            if spec.rollback.scale_down_green
            else f"a rollback keeps {spec.green.deployment} running (scaleDownGreen: false)"
        )
        + (
            ""
            if spec.rollback.automatic
            else "; a failed gate pauses instead of rolling back (automatic: false)"
        ),
        phases=build_phases(spec, sql),
        point_of_no_return=point_of_no_return(spec),
        preview=_preview_text(spec, str(metadata.get("name") or "")),
        risk=assess(spec, sql, notes),
    )


def live_change(
    manifest: Mapping[str, Any], live: Mapping[str, Any] | None, blue_replicas: int | None = None
) -> tuple[str, str]:
    """(effect, message) of applying ``manifest`` over the live Migration (None: not created).

    ``blue_replicas``: the new spec's blue as the cluster runs it, which says the live side
    after a success recorded before status.liveDeployment existed (None: gone or unread).
    """
    if live is None:
        return "Create", "a new Migration: its first run starts once it is applied"
    spec = api.Migration.from_manifest(manifest).spec
    status = api.parse_status(live.get("status") or {})
    try:
        changed = api.parse_spec(live.get("spec") or {}) != spec
    except api.SpecInvalid:
        changed = True
    side = speccheck.live_after_success(status, spec, changed, blue_replicas)
    change = speccheck.effect_of(status, spec, side)
    return change.effect.value, change.message
