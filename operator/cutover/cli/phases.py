"""The migration plan's phases, point of no return and risk assessment (``plan -o json``).

A run goes through preShift hooks, the steps (with afterStep hooks after each non-zero
weight), the bake, postPromotion hooks, the rollback window (if any) and blue's retirement.
For each phase: how long it takes, which gates and hooks run, and whether a rollback can still
bring blue back. The risks name what makes the run dangerous, why, and what to do about it.
Pure: a spec and the SQL findings of its hooks in, data out.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from cutover import api
from cutover.cli.compat import BLUE_SERVES, Located
from cutover.core.plan import StepKind, schedule, step_gates
from cutover.durations import format_duration, parse_duration
from cutover.sqlcompat import Category


class Level(enum.StrEnum):
    low = "LOW"
    medium = "MEDIUM"
    high = "HIGH"


LEVELS = (Level.low, Level.medium, Level.high)


@dataclass(frozen=True)
class PlanHook:
    stage: str
    name: str
    timeout: str
    retries: int
    irreversible: bool
    sql: dict[str, int]  # statement class -> how many of the hook's statements have it


@dataclass(frozen=True)
class PlanPhase:
    name: str
    weight: int  # green's share of traffic during the phase
    min_seconds: float
    max_seconds: float | None  # None: until someone runs `cutover promote`
    duration: str
    gates: tuple[str, ...]
    hooks: tuple[PlanHook, ...]
    rollback_available: bool
    rollback: str


@dataclass(frozen=True)
class Risk:
    level: str  # a Level's value: plain text, so that the YAML output can hold it
    risk: str
    reason: str
    mitigation: str


@dataclass(frozen=True)
class RiskAssessment:
    level: str
    risks: tuple[Risk, ...]


def _attempts_seconds(hooks: Sequence[api.Hook]) -> float:
    """The longest the hooks of one stage can take: every attempt of each, one after another."""
    return sum(parse_duration(h.timeout) * (h.retries + 1) for h in hooks)


def _plan_hooks(
    stage: api.HookStage, hooks: Sequence[api.Hook], sql: Sequence[Located]
) -> tuple[PlanHook, ...]:
    planned = []
    for hook in hooks:
        counts: dict[str, int] = {}
        for item in sql:
            ref = item.source.hook
            if ref is not None and ref.stage is stage and ref.name == hook.name:
                key = item.finding.category.value
                counts[key] = counts.get(key, 0) + 1
        planned.append(
            PlanHook(stage.value, hook.name, hook.timeout, hook.retries, hook.irreversible, counts)
        )
    return tuple(planned)


def _span(low: float, high: float | None) -> str:
    if high is None:
        return f"{format_duration(low)} + until promoted" if low else "until promoted"
    if high == low:
        return format_duration(low)
    return f"{format_duration(low)} to {format_duration(high)}"


def build_phases(spec: api.MigrationSpec, sql: Sequence[Located]) -> tuple[PlanPhase, ...]:
    planned = schedule(spec)
    hooks = spec.hooks
    blue, green = spec.blue.deployment, spec.green.deployment
    back = f"traffic back to {blue}, then the onRollback hooks run"
    phases = [
        PlanPhase(
            name="preShift",
            weight=0,
            min_seconds=0.0,
            max_seconds=_attempts_seconds(hooks.pre_shift),
            duration=_span(0.0, _attempts_seconds(hooks.pre_shift)),
            gates=(),
            hooks=_plan_hooks(api.HookStage.pre_shift, hooks.pre_shift, sql),
            rollback_available=True,
            rollback=f"no traffic has moved; the onRollback hooks undo the expand ({blue} serves)",
        )
    ]
    deadline = parse_duration(spec.progress_deadline)
    if planned.preview_seconds is not None:
        low = planned.preview_seconds
        phases.append(
            PlanPhase(
                name="preview",
                weight=0,
                min_seconds=low,
                max_seconds=low + deadline,
                duration=_span(low, low + deadline),
                gates=planned.preview_gates,
                hooks=(),
                rollback_available=True,
                rollback=(
                    f"no user traffic has moved: {green} was checked through its preview Service"
                    f" only; {back}"
                ),
            )
        )
    after_step = _attempts_seconds(hooks.after_step)
    for step in planned.steps:
        with_hooks = step.kind is StepKind.set_weight and step.weight > 0
        low = step.hold_seconds or 0.0
        high: float | None
        if step.hold_seconds is None:
            high = None
        elif step.kind in (StepKind.set_weight, StepKind.set_mirror):
            high = low + deadline + (after_step if with_hooks else 0.0)
        else:
            high = low
        label = {
            StepKind.set_weight: f"setWeight {step.weight}",
            StepKind.set_mirror: f"setMirror {step.mirror}",
        }.get(step.kind, "pause")
        phases.append(
            PlanPhase(
                name=f"step {step.index + 1}: {label}",
                weight=step.weight,
                min_seconds=low,
                max_seconds=high,
                duration=_span(low, high),
                gates=step.gates,
                hooks=_plan_hooks(api.HookStage.after_step, hooks.after_step, sql)
                if with_hooks
                else (),
                rollback_available=True,
                rollback=f"{green} {step.weight} % -> 0 %; {back}" if step.weight else back,
            )
        )
    bake = parse_duration(spec.bake)
    gate_names = tuple(g.name for g in step_gates(spec))
    phases.append(
        PlanPhase(
            name="bake",
            weight=100,
            min_seconds=bake,
            max_seconds=bake,
            duration=format_duration(bake),
            gates=gate_names if bake else (),
            hooks=(),
            rollback_available=True,
            rollback=f"{blue} is still there: {back}",
        )
    )
    irreversible = [h.name for h in hooks.post_promotion if h.irreversible]
    post = _attempts_seconds(hooks.post_promotion)
    phases.append(
        PlanPhase(
            name="postPromotion",
            weight=100,
            min_seconds=0.0,
            max_seconds=post,
            duration=_span(0.0, post),
            gates=(),
            hooks=_plan_hooks(api.HookStage.post_promotion, hooks.post_promotion, sql),
            rollback_available=not irreversible,
            rollback=(
                f"none once {irreversible[0]} starts (irreversible): a failure pauses the run"
                if irreversible
                else f"{blue} is still there: {back}"
            ),
        )
    )
    window = planned.window_seconds
    if window > 0:
        # No window opens past the point of no return: blue could not serve the data again.
        final = [h.name for stage in api.HookStage for h in hooks.of(stage) if h.irreversible]
        phases.append(
            PlanPhase(
                name="rollbackWindow",
                weight=100,
                min_seconds=0.0 if final else window,
                max_seconds=0.0 if final else window,
                duration="0s" if final else format_duration(window),
                gates=() if final else tuple(g.name for g in step_gates(spec) if not g.dry_run),
                hooks=(),
                rollback_available=not final,
                rollback=(
                    f"none: no window opens past the point of no return ({final[0]} is"
                    f" irreversible); {blue} is retired at success"
                    if final
                    else f"Succeeded, {blue} kept at full size: `cutover undo` or a failed gate"
                    f" puts all traffic back on it at once (one router write); `cutover promote`"
                    " retires it early"
                ),
            )
        )
    phases.append(
        PlanPhase(
            name="complete",
            weight=100,
            min_seconds=0.0,
            max_seconds=0.0,
            duration="0s",
            gates=(),
            hooks=(),
            rollback_available=False,
            rollback=f"none: {blue} is retired",
        )
    )
    return tuple(phases)


def point_of_no_return(spec: api.MigrationSpec) -> str:
    for hook in spec.hooks.post_promotion:
        if hook.irreversible:
            return f"postPromotion hook {hook.name} starts (irreversible: true)"
    window = parse_duration(spec.rollback.window)
    if window > 0:
        return (
            f"the rollback window closes ({format_duration(window)} after success) and"
            f" {spec.blue.deployment} is retired"
        )
    return f"the run succeeds and {spec.blue.deployment} is retired"


_ANY_STAGE = tuple(api.HookStage)
_POST = (api.HookStage.post_promotion,)
# (class, stages, irreversible hooks only/not/either, level, risk, why, mitigation)
_SQL_RULES: tuple[
    tuple[Category, tuple[api.HookStage, ...], bool | None, Level, str, str, str], ...
] = (
    (
        Category.contract,
        BLUE_SERVES,
        None,
        Level.high,
        "contract SQL while blue serves",
        "breaks blue mid-run",
        "move the contract statements to a postPromotion hook marked irreversible: true",
    ),
    (
        Category.contract,
        _POST,
        False,
        Level.high,
        "contract SQL in a reversible hook",
        "once it ran, a rollback to blue meets a schema blue cannot use",
        "mark the hook irreversible: true so that a failure pauses instead of rolling back",
    ),
    (
        Category.contract,
        _POST,
        True,
        Level.medium,
        "contract SQL at the point of no return",
        "after it, problems are fixed forward, not rolled back",
        "bake long enough to see green under full traffic, back up what is dropped, and check"
        " the contract's preconditions inside its transaction",
    ),
    (
        Category.locking,
        _ANY_STAGE,
        None,
        Level.medium,
        "locking SQL",
        "holds a lock that blocks the table while it runs",
        "use CONCURRENTLY or online DDL where possible, set lock_timeout, run off-peak",
    ),
    (
        Category.unknown,
        BLUE_SERVES,
        None,
        Level.medium,
        "unclassified SQL while blue serves",
        "cutover compat cannot tell whether blue survives it",
        "review these statements by hand (cutover compat lists them)",
    ),
)


def _hooks_with(
    sql: Sequence[Located],
    category: Category,
    stages: Sequence[api.HookStage],
    irreversible: bool | None,
) -> list[str]:
    """Each hook with statements of ``category``: how many, and where the first is."""
    found: dict[str, list[str]] = {}
    for item in sql:
        ref = item.source.hook
        if ref is None or item.finding.category is not category or ref.stage not in stages:
            continue
        if irreversible is None or ref.irreversible is irreversible:
            found.setdefault(ref.name, []).append(f"{item.source.file}:{item.line}")
    return [
        f"{name} ({len(places)} statement{'s' if len(places) > 1 else ''}, first at {places[0]})"
        for name, places in found.items()
    ]


def _sql_risks(sql: Sequence[Located]) -> list[Risk]:
    risks = []
    for category, stages, irreversible, level, risk, why, mitigation in _SQL_RULES:
        hooks = _hooks_with(sql, category, stages, irreversible)
        if hooks:
            risks.append(Risk(level.value, risk, f"{', '.join(hooks)}: {why}", mitigation))
    return risks


def _spec_risks(spec: api.MigrationSpec) -> list[Risk]:
    risks = []
    if not spec.gates:
        risks.append(
            Risk(
                Level.high.value,
                "no gates",
                "nothing checks green's health: a broken green is promoted on time alone",
                "add gates on green's error rate and latency (spec.gates)",
            )
        )
    passing = [g.name for g in spec.gates if g.on_no_data is api.NoDataPolicy.pass_]
    if passing:
        risks.append(
            Risk(
                Level.medium.value,
                "gates that pass on no data",
                f"{', '.join(passing)}: an empty query result counts as a pass, so a green that"
                " serves nothing (or a broken query) looks healthy",
                "set onNoData: inconclusive (with an inconclusiveLimit) or fail",
            )
        )
    irreversible = [h.name for h in spec.hooks.post_promotion if h.irreversible]
    if irreversible and parse_duration(spec.bake) == 0:
        risks.append(
            Risk(
                Level.high.value,
                "irreversible step without a bake",
                f"{', '.join(irreversible)} runs right after weight 100: no time to notice a"
                " problem while blue can still come back",
                "set spec.bake (e.g. 10m or more) so that gates watch green at 100 % first",
            )
        )
    if spec.hooks.pre_shift and not spec.hooks.on_rollback:
        risks.append(
            Risk(
                Level.medium.value,
                "expand without an undo",
                "preShift hooks change the data side but no onRollback hook undoes them",
                "add an idempotent onRollback hook that removes what the expand added",
            )
        )
    if not spec.rollback.automatic:
        risks.append(
            Risk(
                Level.low.value,
                "manual rollback",
                "a failed gate pauses the run: traffic stays on green until someone acts",
                "make sure someone is paged on a RollbackNotAvailable or GateFailed pause",
            )
        )
    return risks


def assess(spec: api.MigrationSpec, sql: Sequence[Located], notes: Sequence[str]) -> RiskAssessment:
    risks = _spec_risks(spec) + _sql_risks(sql)
    if notes:
        risks.append(
            Risk(
                Level.low.value,
                "SQL not checked",
                "; ".join(notes),
                "give the manifests holding the hooks' ConfigMaps with -f",
            )
        )
    ranked = sorted(risks, key=lambda r: -LEVELS.index(Level(r.level)))
    return RiskAssessment(ranked[0].level if ranked else Level.low.value, tuple(ranked))
