"""The migration report behind ``cutover status``: a pure function of the Migration object.

Everything here works on the raw dictionary the API server returns (plus a clock), so the report
can be unit-tested from recorded objects without a cluster, and renders the same for humans
(``cli.render``) and machines (``-o json|yaml``).

Risk rule (also in docs/cli.md), from the gates' latest values and counts in this run:

* HIGH: a gate is Failed or Error, has any failed check, or its latest value is outside its
  threshold or within 10 % of it (the margin: distance to the bound relative to the bound);
  also while rolling back.
* MEDIUM: a gate has inconclusive checks or provider errors, a margin under 25 %, or no value yet
  while green takes traffic; or green takes traffic with no gates at all (nothing watches it).
* LOW: otherwise.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from cutover import api
from cutover.api import (
    TERMINAL_PHASES,
    ConditionType,
    Gate,
    GateOutcome,
    GateStatus,
    HistoryEntry,
    MigrationSpec,
    MigrationStatus,
    Phase,
    PreviewState,
    PreviewStatus,
)
from cutover.core import rollback as rollback_rules
from cutover.core.transitions import GATE_HOLDS, Reason, breach_cause
from cutover.durations import format_duration, parse_duration

# Below these relative margins a gate is close enough to its bound to worry about.
HIGH_MARGIN = 0.10
MEDIUM_MARGIN = 0.25

# History reasons that are worth showing as issues (the rest is normal progress).
_ISSUE_REASONS: dict[str, str] = {
    Reason.gate_failed: "gate failed",
    Reason.gate_error: "gate provider errors",
    Reason.inconclusive_gate: "gate inconclusive",
    Reason.progress_deadline_exceeded: "progress deadline exceeded",
    Reason.green_missing: "green Deployment missing",
    Reason.blue_missing: "blue Deployment missing",
    Reason.invalid_spec: "invalid spec",
    Reason.preflight_failed: "preflight failed",
    Reason.aborted: "aborted",
    Reason.traffic_restored: "rolled back",
}


class OverallStatus(enum.StrEnum):
    in_progress = "IN_PROGRESS"
    rolling_back = "ROLLING_BACK"
    completed = "COMPLETED"
    rolled_back = "ROLLED_BACK"
    paused = "PAUSED"
    failed = "FAILED"


_OVERALL = {
    Phase.pending: OverallStatus.in_progress,
    Phase.progressing: OverallStatus.in_progress,
    # Traffic on its way back to blue: not progress, and a person should see it at once.
    Phase.rolling_back: OverallStatus.rolling_back,
    Phase.paused: OverallStatus.paused,
    Phase.succeeded: OverallStatus.completed,
    Phase.rolled_back: OverallStatus.rolled_back,
    Phase.failed: OverallStatus.failed,
}


class Risk(enum.StrEnum):
    low = "LOW"
    medium = "MEDIUM"
    high = "HIGH"


class RollbackState(enum.StrEnum):
    available = "AVAILABLE"
    not_available = "NOT_AVAILABLE"


class _Report(BaseModel):
    model_config = ConfigDict(frozen=True)


class GateReport(_Report):
    name: str
    outcome: str
    verdict: str | None
    value: float | None
    threshold: str
    margin: float | None  # relative distance to the bound; negative: outside
    passed: int
    failed: int
    inconclusive: int
    errors: int
    next_check_at: datetime | None
    message: str | None
    # Checked and shown, but never stops or holds the run (spec dryRun: true).
    dry_run: bool = False


class Issue(_Report):
    time: datetime | None
    kind: str
    message: str


class RiskReport(_Report):
    level: Risk
    reasons: list[str]


class RollbackReport(_Report):
    state: RollbackState
    reason: str


class TaskState(enum.StrEnum):
    done = "completed"
    running = "in progress"
    stopped = "stopped"  # where a run that did not succeed ended
    upcoming = "upcoming"


class Task(_Report):
    """One step of the run, as the seed's status report lists them (✓ / 🔄 / ⏳)."""

    step: int  # 1-based
    description: str
    state: TaskState
    issues: list[str] = []  # ⚠️ what went wrong at this step


class Side(_Report):
    """One version, like a branch of `kubectl argo rollouts get rollout`'s tree."""

    role: str  # blue / green
    deployment: str
    replicas: int | None = None  # None: not readable (missing, or RBAC)
    ready: int | None = None
    image: str | None = None
    note: str | None = None


class Report(_Report):
    namespace: str
    name: str
    status: OverallStatus
    phase: str
    reason: str | None
    message: str
    started_at: datetime | None
    completed_at: datetime | None
    step: int  # 1-based; equals total_steps while finishing
    total_steps: int
    step_description: str
    progress_percent: int
    weight: int
    blue: str
    green: str
    gates: list[GateReport]
    issues: list[Issue]
    next_steps: list[str]
    risk: RiskReport
    rollback: RollbackReport
    spec_problems: list[str]
    tasks: list[Task] = []
    key_metrics: list[str] = []
    sides: list[Side] = []

    @property
    def terminal(self) -> bool:
        return Phase(self.phase) in TERMINAL_PHASES

    def to_data(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _when(moment: datetime, now: datetime) -> str:
    seconds = (moment - now).total_seconds()
    stamp = moment.astimezone(UTC).strftime("%H:%M:%SZ")
    if seconds <= 0:
        return f"{stamp} (due now)"
    return f"{stamp} (in {format_duration(max(seconds, 1))})"


def threshold_text(gate: Gate) -> str:
    if gate.threshold is not None:
        bounds = []
        if gate.threshold.min is not None:
            bounds.append(f">= {gate.threshold.min:g}")
        if gate.threshold.max is not None:
            bounds.append(f"<= {gate.threshold.max:g}")
        return " and ".join(bounds)
    assert gate.compare is not None
    text = f"<= baseline x {1 + gate.compare.max_increase:g}"
    if gate.compare.tolerance:
        text += f" + {gate.compare.tolerance:g}"
    return f"{text} ({gate.compare.test.value})"


def _relative(distance: float, bound: float) -> float:
    # A bound of 0 has no scale: being on the right side of it at all is comfortable.
    if bound == 0:
        return 1.0 if distance > 0 else (0.0 if distance == 0 else -1.0)
    return distance / abs(bound)


def gate_margin(gate: Gate, record: GateStatus | None) -> float | None:
    """Relative distance of the latest value to the nearest bound; negative when outside."""
    if record is None or record.last_value is None or math.isnan(record.last_value):
        return None
    value = record.last_value
    if gate.threshold is not None:
        margins = []
        if gate.threshold.max is not None:
            margins.append(_relative(gate.threshold.max - value, gate.threshold.max))
        if gate.threshold.min is not None:
            margins.append(_relative(value - gate.threshold.min, gate.threshold.min))
        return min(margins)
    assert gate.compare is not None
    if gate.compare.test is not api.CompareTest.ratio or record.last_baseline is None:
        return None  # a statistical test has no distance to a bound
    bound = record.last_baseline * (1 + gate.compare.max_increase) + gate.compare.tolerance
    return _relative(bound - value, bound)


def _gate_reports(spec: MigrationSpec, status: MigrationStatus) -> list[GateReport]:
    reports = []
    # A gate from a template is judged as resolved at the run's preflight, recorded in status.
    resolved = {r.gate.name: r.gate for r in status.resolved_gates}
    for written in spec.gates:
        gate = resolved.get(written.name, written) if written.template_ref else written
        record = status.gate(gate.name)
        unresolved = gate.template_ref
        margin = gate_margin(gate, record) if unresolved is None else None
        reports.append(
            GateReport(
                name=gate.name,
                outcome=(record.outcome if record else GateOutcome.pending).value,
                verdict=record.last_verdict.value if record and record.last_verdict else None,
                value=record.last_value if record else None,
                threshold=(
                    threshold_text(gate)
                    if unresolved is None
                    else f"as {unresolved.describe()} says (not resolved)"
                ),
                margin=None if margin is None else round(margin, 4),
                passed=record.passed if record else 0,
                failed=record.failed if record else 0,
                inconclusive=record.inconclusive if record else 0,
                errors=record.errors if record else 0,
                next_check_at=_aware(record.next_check_at) if record else None,
                message=record.last_message if record else None,
                dry_run=gate.dry_run,
            )
        )
    return reports


def assess_risk(
    spec: MigrationSpec, status: MigrationStatus, gates: list[GateReport]
) -> RiskReport:
    high: list[str] = []
    medium: list[str] = []
    if status.phase is Phase.rolling_back:
        high.append("rolling back")
    for gate in gates:
        if gate.dry_run:  # what it finds is for people to read; the run does not act on it
            continue
        if gate.outcome in (GateOutcome.failed.value, GateOutcome.error.value):
            high.append(f"gate {gate.name} is {gate.outcome}")
        elif gate.failed:
            high.append(f"gate {gate.name} has {gate.failed} failed check(s)")
        if gate.margin is not None and gate.margin < 0:
            high.append(f"gate {gate.name} is outside its threshold ({gate.threshold})")
        elif gate.margin is not None and gate.margin < HIGH_MARGIN:
            high.append(f"gate {gate.name} is within {HIGH_MARGIN:.0%} of its threshold")
        elif gate.margin is not None and gate.margin < MEDIUM_MARGIN:
            medium.append(f"gate {gate.name} is within {MEDIUM_MARGIN:.0%} of its threshold")
        if gate.inconclusive:
            medium.append(f"gate {gate.name} has {gate.inconclusive} inconclusive check(s)")
        if gate.errors:
            medium.append(f"gate {gate.name} had {gate.errors} provider error(s)")
    active = status.phase in (Phase.progressing, Phase.paused)
    if active and status.weight > 0:
        if not spec.gates:
            medium.append("green takes traffic and no gate checks it")
        for gate in gates:
            if gate.value is None and gate.verdict is None:
                medium.append(f"gate {gate.name} has no value yet")
    if high:
        return RiskReport(level=Risk.high, reasons=high + medium)
    if medium:
        return RiskReport(level=Risk.medium, reasons=medium)
    if not gates:
        return RiskReport(level=Risk.low, reasons=["no gate concerns (no gates defined)"])
    if all(g.value is None and g.verdict is None for g in gates):
        # Nothing was measured: "within thresholds" would claim checks that never ran.
        if status.weight == 0:
            return RiskReport(level=Risk.low, reasons=["no gate checked yet; no traffic on green"])
        return RiskReport(
            level=Risk.medium, reasons=["green takes traffic and no gate has a value"]
        )
    return RiskReport(level=Risk.low, reasons=["all gates within their thresholds"])


def _rollback(raw_status: Mapping[str, Any], status: MigrationStatus) -> RollbackReport:
    # The operator's own rule (core.rollback), so the report and the RollbackAvailable
    # condition never disagree.
    found = rollback_rules.availability(status)
    if found.available and raw_status.get("rollbackAvailable") is False:
        # An operator older than core.rollback recorded the point of no return only here.
        why = raw_status.get("rollbackUnavailableReason") or "the operator reports it unavailable"
        return RollbackReport(state=RollbackState.not_available, reason=str(why))
    state = RollbackState.available if found.available else RollbackState.not_available
    return RollbackReport(state=state, reason=found.message)


# History entries with these reasons start a new run: what came before belongs to earlier runs.
_RUN_BOUNDARIES = frozenset({Reason.spec_changed, Reason.retried})


def current_run(history: list[HistoryEntry]) -> list[HistoryEntry]:
    """The entries of the run in progress (or the last one): status.history keeps them all."""
    starts = [i for i, entry in enumerate(history) if entry.reason in _RUN_BOUNDARIES]
    return history[starts[-1] :] if starts else list(history)


def _issues(status: MigrationStatus) -> list[Issue]:
    issues: list[Issue] = []
    seen: set[str] = set()
    for entry in current_run(status.history):
        kind = _ISSUE_REASONS.get(entry.reason)
        # A breach and the rollback it caused tell one story: compare them by their cause.
        cause = breach_cause(entry.message)
        if kind is None or cause in seen:
            continue
        seen.add(cause)
        issues.append(Issue(time=_aware(entry.time), kind=kind, message=entry.message))
    invalid = status.condition(ConditionType.invalid_spec)
    if (
        invalid is not None
        and invalid.status == "True"
        and not any(invalid.message in i.message for i in issues)
    ):
        issues.append(
            Issue(
                time=_aware(invalid.last_transition_time),
                kind="invalid spec",
                message=invalid.message,
            )
        )
    if status.rollback_reason and not any(status.rollback_reason in i.message for i in issues):
        issues.append(Issue(time=None, kind="rolled back", message=status.rollback_reason))
    return issues


def _step_text(spec: MigrationSpec | None, index: int) -> str:
    if spec is None:
        return "-"
    if index >= len(spec.steps):
        return "finishing"
    step = spec.steps[index]
    if step.set_weight is not None:
        return f"setWeight {step.set_weight}"
    if step.set_mirror is not None:
        return f"setMirror {step.set_mirror.percent}"
    assert step.pause is not None
    return f"pause {step.pause.duration}" if step.pause.duration else "pause until promoted"


def _next_gate_check(gates: list[GateReport]) -> datetime | None:
    times = [g.next_check_at for g in gates if g.next_check_at is not None]
    return min(times) if times else None


def _next_steps(
    spec: MigrationSpec | None,
    status: MigrationStatus,
    gates: list[GateReport],
    now: datetime,
) -> list[str]:
    phase = status.phase
    reason = status.reason or ""
    if phase is Phase.succeeded:
        refused = status.condition(ConditionType.invalid_spec)
        if refused is not None and refused.status == "True":
            return [f"the applied spec was refused: {refused.message}"]
        ends = _aware(status.rollback_window_ends_at)
        if ends is not None:
            return [
                f"rollback window open until {_when(ends, now)}: blue is kept at full size;"
                " `cutover undo` puts all traffic back on it, `cutover promote` retires it now"
            ]
        return ["none: all traffic is on green"]
    if phase is Phase.rolled_back:
        return ["`cutover retry` starts a new run (or apply a new spec)"]
    if phase is Phase.failed:
        if "not found" in status.message:
            # The spec is fine (lint passes): the cluster lacks an object it names.
            return ["create what the message says is missing, then `cutover retry`"]
        return ["fix the spec (`cutover lint -f FILE`) and apply it, or `cutover retry`"]
    if phase is Phase.rolling_back:
        return ["returning all traffic to blue"]
    if spec is None:
        return ["fix the spec (`cutover lint -f FILE`) and apply it"]
    if phase is Phase.pending:
        if reason == Reason.waiting_for_deployments:
            return [f"waiting for Deployments: {status.message}"]
        return ["waiting for the operator to start the run"]
    steps: list[str] = []
    index = status.current_step_index
    step = spec.steps[index] if index < len(spec.steps) else None
    started = _aware(status.step_started_at)
    if phase is Phase.paused:
        if reason == Reason.pause_step:
            steps.append(f"waiting for `cutover promote` (step {index + 1} pauses until promoted)")
        elif reason == Reason.paused_by_spec:
            steps.append("spec.paused is true: set it to false to go on")
        elif reason == Reason.paused_by_user:
            steps.append("paused by request: `cutover resume` to go on")
        elif reason in GATE_HOLDS:
            steps.append(
                "held by a gate: investigate, then `cutover resume`/`cutover promote` to go on"
                " or `cutover abort` to return traffic to blue"
            )
        elif reason == Reason.invalid_spec:
            steps.append("the spec became invalid: fix it and apply it")
        elif reason == Reason.blue_missing:
            steps.append("blue is gone: `cutover promote` to go on, or recreate blue and resume")
        else:
            steps.append(f"paused ({reason or 'no reason'}): `cutover resume` to go on")
    elif (preview := _preview_under_way(status)) is not None:
        if preview.state is PreviewState.starting:
            end = (_aware(preview.started_at) or now) + timedelta(
                seconds=parse_duration(spec.progress_deadline)
            )
            steps.append(
                f"preview: waiting for green to be ready at full size behind Service"
                f" {preview.service} (progressDeadline at {_when(end, now)}); no user traffic yet"
            )
        else:
            names = ", ".join(spec.preview.gates) if spec.preview else ""
            steps.append(
                f"preview: checking {names or 'nothing'} through Service {preview.service} at"
                " weight 0; no user traffic moves before the preview passed"
            )
    elif step is None:
        bake = parse_duration(spec.bake)
        ready = _aware(status.step_ready_at)
        if bake > 0 and ready is not None and not status.full_promotion:
            steps.append(f"baking at 100% until {_when(ready + timedelta(seconds=bake), now)}")
        else:
            steps.append("finishing: waiting for green to take all traffic, then retiring blue")
    elif status.step_ready_at is None:
        target = step.set_weight if step.set_weight is not None else status.weight
        deadline = ""
        if started is not None:
            end = started + timedelta(seconds=parse_duration(spec.progress_deadline))
            deadline = f" (progressDeadline at {_when(end, now)})"
        steps.append(f"waiting for green to be ready at {target}%{deadline}")
    elif step.pause is not None and step.pause.duration is not None and started is not None:
        end = started + timedelta(seconds=parse_duration(step.pause.duration))
        steps.append(f"timed pause of {step.pause.duration} ends at {_when(end, now)}")
    elif spec.gates and status.weight > 0:
        steps.append(f"holding {status.weight}% until every gate passes a check")
    else:
        steps.append("moving to the next step")
    if phase in (Phase.progressing, Phase.paused) and status.weight > 0:
        check = _next_gate_check(gates)
        if check is not None:
            steps.append(f"next gate check at {_when(check, now)}")
    if phase in (Phase.progressing, Phase.paused) and status.mirror > 0:
        steps.append(
            f"green gets copies of {status.mirror}% of requests (answers thrown away) until the"
            " next setWeight step"
        )
    return steps


def _preview_under_way(status: MigrationStatus) -> PreviewStatus | None:
    """This run's preview while it starts or checks (spec.preview)."""
    preview = status.preview
    if preview is None or preview.run_id != status.run_id:
        return None
    return preview if preview.state in (PreviewState.starting, PreviewState.checking) else None


def _invalid_risk(status: MigrationStatus) -> RiskReport:
    if status.weight > 0:
        return RiskReport(level=Risk.high, reasons=["green takes traffic and the spec is invalid"])
    return RiskReport(level=Risk.medium, reasons=["the spec is invalid: the run cannot go on"])


def _tasks(spec: MigrationSpec, status: MigrationStatus, issues: list[Issue]) -> list[Task]:
    index = status.current_step_index
    finished = status.phase is Phase.succeeded
    tasks = []
    for position in range(len(spec.steps)):
        if finished or position < index:
            state = TaskState.done
        elif position == index and status.phase not in TERMINAL_PHASES:
            state = TaskState.running
        elif position == index:
            state = TaskState.stopped
        else:
            state = TaskState.upcoming
        at_step = [
            f"{i.kind}: {i.message}"
            for i in issues
            if position == index and state is not TaskState.done
        ]
        tasks.append(
            Task(
                step=position + 1,
                description=_step_text(spec, position),
                state=state,
                issues=at_step,
            )
        )
    return tasks


def _key_metrics(
    status: MigrationStatus, gates: list[GateReport], issues: list[Issue]
) -> list[str]:
    """The gates' latest values (availability, error rates: whatever the gates measure), the
    data-side hooks' progress, and the issues so far."""
    metrics = [
        f"{g.name}: {_metric(g.value)} ({g.threshold})"
        for g in gates
        if g.value is not None or g.verdict is not None
    ]
    by_hook: dict[str, list[str]] = {}
    for run in status.hooks:
        by_hook.setdefault(f"{run.name} ({run.stage.value})", []).append(run.state.value)
    for hook, states in by_hook.items():
        succeeded = states.count("Succeeded")
        metrics.append(f"hook {hook}: {succeeded} of {len(states)} Jobs succeeded")
    metrics.append(f"issues encountered: {len(issues)}")
    return metrics


def _metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def sides_from(
    spec: MigrationSpec | None, deployments: Mapping[str, Mapping[str, Any] | None] | None
) -> list[Side]:
    """Blue and green as the cluster has them; ``deployments`` maps a name to the Deployment
    (None: not found) and is None when they could not be read at all."""
    if spec is None:
        return []
    sides = []
    for role, ref in (("blue", spec.blue), ("green", spec.green)):
        name = ref.deployment
        if deployments is None:
            sides.append(Side(role=role, deployment=name, note="not readable"))
            continue
        found = deployments.get(name)
        if found is None:
            sides.append(Side(role=role, deployment=name, note="not found"))
            continue
        containers = ((found.get("spec") or {}).get("template") or {}).get("spec") or {}
        images = [str(c.get("image")) for c in containers.get("containers") or []]
        sides.append(
            Side(
                role=role,
                deployment=name,
                replicas=int((found.get("spec") or {}).get("replicas") or 0),
                ready=int((found.get("status") or {}).get("readyReplicas") or 0),
                image=", ".join(images) or None,
            )
        )
    return sides


def build_report(
    obj: Mapping[str, Any],
    now: datetime | None = None,
    deployments: Mapping[str, Mapping[str, Any] | None] | None = None,
) -> Report:
    """The report for one Migration object as returned by the API server; ``deployments`` (blue
    and green by name, when the caller could read them) adds the per-side tree."""
    now = now or datetime.now(UTC)
    metadata = obj.get("metadata") or {}
    raw_spec = obj.get("spec") or {}
    raw_status = obj.get("status") or {}
    status = api.parse_status(raw_status)
    spec: MigrationSpec | None
    problems: list[str] = []
    try:
        spec = api.parse_spec(raw_spec)
    except api.SpecInvalid as error:
        spec, problems = None, list(error.problems)
    total = len(spec.steps) if spec else len(raw_spec.get("steps") or [])
    index = status.current_step_index
    if status.phase is Phase.succeeded:
        progress = 100
    elif total:
        progress = min(100, round(100 * min(index, total) / total))
    else:
        progress = 0
    gates = _gate_reports(spec, status) if spec else []
    issues = _issues(status)
    blue = (raw_spec.get("blue") or {}).get("deployment", "?")
    green = (raw_spec.get("green") or {}).get("deployment", "?")
    return Report(
        namespace=metadata.get("namespace", "default"),
        name=metadata.get("name", "?"),
        status=_OVERALL[status.phase],
        phase=status.phase.value,
        reason=status.reason,
        message=status.message,
        started_at=_aware(status.started_at),
        completed_at=_aware(status.completed_at),
        step=min(index + 1, total) if total else 0,
        total_steps=total,
        step_description=_step_text(spec, index),
        progress_percent=progress,
        weight=status.weight,
        blue=str(blue),
        green=str(green),
        gates=gates,
        issues=issues,
        next_steps=_next_steps(spec, status, gates, now),
        risk=assess_risk(spec, status, gates) if spec else _invalid_risk(status),
        rollback=_rollback(raw_status, status),
        spec_problems=problems,
        tasks=_tasks(spec, status, issues) if spec else [],
        key_metrics=_key_metrics(status, gates, issues),
        sides=sides_from(spec, deployments) if deployments is not None else [],
    )
