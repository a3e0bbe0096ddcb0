"""The decision engine: ``decide(spec, status, observations, now) -> Decision``.

Pure: no I/O, no clock. Phases move only along ``TRANSITIONS`` (data, drawn in
docs/state-machine.md); what happens inside a phase (which step, which weight, when to wake) is
computed by ``_Run``. The result is a new status and the actions that bring the cluster in line
with it; every action is idempotent, so applying a decision twice changes nothing.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cutover.api import (
    HISTORY_LIMIT,
    TERMINAL_PHASES,
    Condition,
    ConditionType,
    ErrorPolicy,
    Gate,
    GateOutcome,
    GateStatus,
    HistoryEntry,
    Hook,
    HookRun,
    HookStage,
    HookState,
    MigrationSpec,
    MigrationStatus,
    Phase,
    Router,
    SpecInvalid,
    Verdict,
)
from cutover.core import gates as gate_rules
from cutover.core import rollback as rollback_rules
from cutover.core import speccheck
from cutover.core.plan import green_replicas_needed
from cutover.durations import parse_duration

# --- inputs -----------------------------------------------------------------------------------


class RequestVerb(enum.StrEnum):
    promote = "promote"
    promote_full = "promote-full"
    pause = "pause"
    resume = "resume"
    abort = "abort"
    retry = "retry"


@dataclass(frozen=True)
class Request:
    """A manual request (from ``cutover promote`` etc.); ``id`` makes it act once only."""

    id: str
    verb: RequestVerb


@dataclass(frozen=True)
class DeploymentState:
    replicas: int  # spec.replicas
    available: int  # status.availableReplicas
    # The size a router saved before its first write: after a crash between a router write and
    # the status write, spec.replicas is no longer the size the run started from.
    original_replicas: int | None = None

    @property
    def size_before_run(self) -> int:
        return self.original_replicas if self.original_replicas is not None else self.replicas


@dataclass(frozen=True)
class JobState:
    """A hook's Job as the cluster reports it."""

    succeeded: bool = False
    failed: bool = False
    message: str = ""  # e.g. the Job's Failed condition message and the pod log's last lines


@dataclass(frozen=True)
class Observations:
    generation: int
    blue: DeploymentState | None = None  # None: the Deployment does not exist
    green: DeploymentState | None = None
    router_weight: int | None = None  # what the router reads from the cluster; None: cannot tell
    readings: Mapping[str, gate_rules.Reading] = field(default_factory=dict)
    request: Request | None = None
    preflight_errors: tuple[str, ...] = ()  # e.g. a PromQL syntax error found before starting
    # Actions of the previous decision that the router acknowledged in this same wake-up.
    acted: tuple[Action, ...] = ()
    jobs: Mapping[str, JobState] = field(default_factory=dict)  # hook Jobs by name
    migration: str = "migration"  # the Migration's name, for hook Job names


# --- outputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetWeight:
    weight: int
    total_replicas: int


@dataclass(frozen=True)
class PrepareGreen:
    """Scale green so that it can take any weight (routers that shift by weight, not pods)."""

    total_replicas: int


@dataclass(frozen=True)
class RestoreBlue:
    """All traffic back to blue in one router write, then green scaled down if asked."""

    total_replicas: int
    scale_down_green: bool


@dataclass(frozen=True)
class RetireBlue:
    """After success: blue is no longer needed."""

    total_replicas: int


@dataclass(frozen=True)
class RunHook:
    """Create the hook's Job (idempotent: the name is deterministic)."""

    stage: HookStage
    hook: str
    job: str
    step: int | None
    attempt: int
    timeout_seconds: float


@dataclass(frozen=True)
class StopJob:
    """Delete a Job that ran out of time."""

    job: str


@dataclass(frozen=True)
class EmitEvent:
    type: str  # Normal | Warning
    reason: str
    message: str


Action = SetWeight | PrepareGreen | RestoreBlue | RetireBlue | RunHook | StopJob | EmitEvent


@dataclass(frozen=True)
class Decision:
    status: MigrationStatus
    actions: tuple[Action, ...]
    requeue_after: float | None  # seconds until something is due; None: only a change wakes it


class StageResult(enum.StrEnum):
    """Where the hooks of one stage (preShift, afterStep, ...) stand."""

    done = "done"  # every hook succeeded
    running = "running"  # one is running or was just started
    failed = "failed"  # one failed with no retries left


# --- the phase table --------------------------------------------------------------------------


class Event(enum.StrEnum):
    start = "start"
    spec_invalid = "spec_invalid"
    preflight_failed = "preflight_failed"
    spec_changed = "spec_changed"
    pause = "pause"
    spec_pause = "spec_pause"
    pause_step = "pause_step"
    resume = "resume"
    promote = "promote"
    abort = "abort"
    retry = "retry"
    gate_failed = "gate_failed"
    gate_failed_hold = "gate_failed_hold"
    gate_error = "gate_error"
    gate_error_hold = "gate_error_hold"
    gate_inconclusive = "gate_inconclusive"
    deadline_exceeded = "deadline_exceeded"
    hook_failed = "hook_failed"
    hook_failed_hold = "hook_failed_hold"
    breach_hold = "breach_hold"
    green_missing = "green_missing"
    blue_missing = "blue_missing"
    steps_done = "steps_done"
    traffic_restored = "traffic_restored"


P = Phase
E = Event
_ACTIVE_BREAKS = {
    E.gate_failed: P.rolling_back,
    E.gate_error: P.rolling_back,
    E.deadline_exceeded: P.rolling_back,
    E.green_missing: P.rolling_back,
    E.abort: P.rolling_back,
    E.hook_failed: P.rolling_back,
    E.hook_failed_hold: P.paused,
    E.breach_hold: P.paused,
    E.gate_failed_hold: P.paused,
    E.gate_error_hold: P.paused,
    E.gate_inconclusive: P.paused,
    E.blue_missing: P.paused,
    E.spec_invalid: P.paused,
    E.spec_changed: P.pending,
}
TRANSITIONS: dict[Phase, dict[Event, Phase]] = {
    P.pending: {
        E.start: P.progressing,
        E.spec_invalid: P.failed,
        E.preflight_failed: P.failed,
        # Nothing moved yet: traffic is already all on blue.
        E.abort: P.rolled_back,
        E.spec_changed: P.pending,
    },
    P.progressing: {
        **_ACTIVE_BREAKS,
        E.pause: P.paused,
        E.spec_pause: P.paused,
        E.pause_step: P.paused,
        E.steps_done: P.succeeded,
    },
    P.paused: {
        **_ACTIVE_BREAKS,
        E.resume: P.progressing,
        E.promote: P.progressing,
    },
    P.rolling_back: {E.traffic_restored: P.rolled_back},
    P.rolled_back: {E.retry: P.pending, E.spec_changed: P.pending, E.spec_invalid: P.failed},
    P.succeeded: {E.spec_changed: P.pending, E.spec_invalid: P.failed},
    P.failed: {E.retry: P.pending, E.spec_changed: P.pending, E.spec_invalid: P.failed},
}


class Reason(enum.StrEnum):
    """Why the phase is what it is: condition, history and Event reasons (API-visible)."""

    started = "Started"
    invalid_spec = "InvalidSpec"
    preflight_failed = "PreflightFailed"
    spec_changed = "SpecChanged"
    paused_by_user = "PausedByUser"
    paused_by_spec = "PausedBySpec"
    pause_step = "PauseStep"
    resumed = "Resumed"
    promoted = "Promoted"
    aborted = "Aborted"
    retried = "Retried"
    gate_failed = "GateFailed"
    gate_error = "GateError"
    inconclusive_gate = "InconclusiveGate"
    progress_deadline_exceeded = "ProgressDeadlineExceeded"
    hook_failed = "HookFailed"
    rollback_not_available = "RollbackNotAvailable"
    green_missing = "GreenMissing"
    blue_missing = "BlueMissing"
    succeeded = "Succeeded"
    traffic_restored = "TrafficRestored"
    waiting_for_deployments = "WaitingForDeployments"
    # History and Event reasons that do not change the phase.
    weight_set = "WeightSet"
    step_started = "StepStarted"
    hook_started = "HookStarted"
    hook_succeeded = "HookSucceeded"
    rollback_disabled = "RollbackDisabled"
    request_ignored = "RequestIgnored"
    # After Succeeded: a spec edit that keeps spec.green waits for the next run; a new spec.green
    # whose spec.blue is not the live side is refused (it would bring the retired version back).
    spec_recorded = "SpecRecorded"
    blue_retired = "BlueRetired"


R = Reason
# Reasons a phase was entered with; they become condition reasons and Event reasons.
REASONS: dict[Event, Reason] = {
    E.start: R.started,
    E.spec_invalid: R.invalid_spec,
    E.preflight_failed: R.preflight_failed,
    E.spec_changed: R.spec_changed,
    E.pause: R.paused_by_user,
    E.spec_pause: R.paused_by_spec,
    E.pause_step: R.pause_step,
    E.resume: R.resumed,
    E.promote: R.promoted,
    E.abort: R.aborted,
    E.retry: R.retried,
    E.gate_failed: R.gate_failed,
    E.gate_failed_hold: R.gate_failed,
    E.gate_error: R.gate_error,
    E.gate_error_hold: R.gate_error,
    E.gate_inconclusive: R.inconclusive_gate,
    E.deadline_exceeded: R.progress_deadline_exceeded,
    E.hook_failed: R.hook_failed,
    E.hook_failed_hold: R.hook_failed,
    E.breach_hold: R.rollback_not_available,
    E.green_missing: R.green_missing,
    E.blue_missing: R.blue_missing,
    E.steps_done: R.succeeded,
    E.traffic_restored: R.traffic_restored,
}
_INVALID_REASONS = frozenset({R.invalid_spec, R.preflight_failed})
# The reasons a gate holds the run with (Paused, automatic: false or inconclusive).
GATE_HOLDS = frozenset(
    REASONS[e] for e in (E.gate_failed_hold, E.gate_error_hold, E.gate_inconclusive)
)
# Holds a person asked for (or the spec did): a Normal Event, where other holds warn.
_CHOSEN_PAUSES = frozenset({R.paused_by_spec, R.paused_by_user, R.pause_step})

# Rounds of "tick" per decision: a transition can enable the next (start -> first weight).
_MAX_ROUNDS = 8
# Deployment changes wake a waiting Migration (handlers.wake_on_deployment); this poll is only
# a safety net for a missed event.
_READINESS_POLL = 5.0
_HOOK_POLL = 2.0
_ROLLBACK_RETRY = 1.0


def decide(
    spec: MigrationSpec | SpecInvalid,
    status: MigrationStatus,
    observations: Observations,
    now: datetime,
) -> Decision:
    return _Run(spec, status, observations, now).decide()


def gates_due(spec: MigrationSpec, status: MigrationStatus, now: datetime) -> list[Gate]:
    """Gates whose next check is due: the shell measures these before calling ``decide``."""
    if status.phase not in (Phase.progressing, Phase.paused) or status.weight == 0:
        return []
    due = []
    for gate in spec.gates:
        record = status.gate(gate.name)
        if record and record.next_check_at is not None and record.next_check_at <= now:
            due.append(gate)
    return due


TRAFFIC_RESTORED_PREFIX = "all traffic on blue; "


def breach_cause(message: str) -> str:
    """The cause a breach message and the rollback message it led to share: a breach says what it
    set off ("...: rolling back"), and "rolled back: ...: rolling back" would say it twice."""
    cause = message.removeprefix(TRAFFIC_RESTORED_PREFIX)
    cause = cause.replace(": rolling back (onError: rollback)", " (onError: rollback)")
    return cause.removesuffix(": rolling back")


class _Run:
    def __init__(
        self,
        spec: MigrationSpec | SpecInvalid,
        status: MigrationStatus,
        observations: Observations,
        now: datetime,
    ) -> None:
        self.spec = spec
        self.s = status.model_copy(deep=True)
        self.obs = observations
        self.now = now
        self.actions: list[Action] = []
        self.problems: list[str] = []
        self.problem_reason: str | None = None  # InvalidSpec's reason when not the phase's
        self.started_in = status.phase

    # --- entry point ---

    def decide(self) -> Decision:
        self._adopt_legacy_point_of_no_return()
        if isinstance(self.spec, SpecInvalid):
            self._spec_invalid(self.spec)
        else:
            self._valid(self.spec)
        self.s.observed_generation = self.obs.generation
        if isinstance(self.spec, MigrationSpec):
            # Counted from 1 wherever a person reads it (kubectl get, cutover list and status).
            total = len(self.spec.steps)
            self.s.step = f"{min(self.s.current_step_index + 1, total)}/{total}"
        self._conditions()
        return Decision(self.s, tuple(self.actions), self._requeue())

    def _adopt_legacy_point_of_no_return(self) -> None:
        """Status written before point_of_no_return existed kept the fact only in the
        RollbackAvailable condition's reason."""
        old = self.s.condition(ConditionType.rollback_available)
        if (
            self.s.point_of_no_return is None
            and old is not None
            and old.status == "False"
            and old.reason == rollback_rules.RollbackCode.irreversible.value
            and self.s.phase in (Phase.progressing, Phase.paused)
        ):
            self.s.point_of_no_return = old.message or "an irreversible hook started"

    def _spec_invalid(self, error: SpecInvalid) -> None:
        self.problems = list(error.problems)
        message = "invalid spec: " + "; ".join(error.problems)
        if self.s.phase is Phase.paused and self.s.reason == Reason.invalid_spec:
            self.s.message = message
            return
        self._fire(Event.spec_invalid, message)

    def _valid(self, spec: MigrationSpec) -> None:
        generation_changed = (
            self.s.observed_generation is not None
            and self.s.observed_generation != self.obs.generation
        )
        if self.s.phase is Phase.succeeded:
            self._after_success(spec, generation_changed)
        elif generation_changed:
            self._fire(Event.spec_changed, "the spec changed: starting again from the first step")
        self._handle_request(spec)
        for _ in range(_MAX_ROUNDS):
            before = self._fingerprint()
            moves_before = self._moves()
            self._tick(spec)
            # An action must be carried out and observed before the run can go further.
            if self._fingerprint() == before or self._moves() > moves_before:
                break

    def _after_success(self, spec: MigrationSpec, generation_changed: bool) -> bool:
        """Green serves everything and blue is retired. Only the next release (a new spec.green)
        starts a run, from the live side; any other edit waits for that run (core.speccheck).
        Returns whether a new run started."""
        live = self.s.live_deployment or self._live_before_tracking(spec, generation_changed)
        self.s.live_deployment = live
        change = speccheck.effect_of(self.s, spec, live)
        if change.effect is speccheck.ChangeEffect.recorded:
            if generation_changed:
                self._event(
                    "Normal", Reason.spec_recorded, f"spec change recorded: {change.message}"
                )
            return False
        if change.effect is speccheck.ChangeEffect.refused:
            self.problem_reason = Reason.blue_retired
            self.problems = [change.message]
            if generation_changed:
                self._event("Warning", Reason.blue_retired, change.message)
            return False
        started = self._fire(Event.spec_changed, change.message)
        if started:
            # The new run's green has no traffic yet and its blue (the live side) has it all:
            # nothing of the last run's step, weight or gate verdicts describes it.
            self.s.weight = 0
            self.s.current_step_index = 0
            self.s.gates = []
        return started

    def _live_before_tracking(self, spec: MigrationSpec, generation_changed: bool) -> str:
        """For a run that succeeded before live_deployment was recorded: unchanged spec, green;
        else the side that still has pods (blue, if the edit made the old green the new blue)."""
        if not generation_changed or self.obs.blue is None or self.obs.blue.replicas == 0:
            return spec.green.deployment
        return spec.blue.deployment

    def _moves(self) -> int:
        return sum(1 for a in self.actions if not isinstance(a, EmitEvent))

    def _fingerprint(self) -> tuple[object, ...]:
        return (
            self.s.phase,
            self.s.current_step_index,
            self.s.weight,
            self.s.step_ready_at,
            len(self.actions),
        )

    # --- transitions ---

    def _fire(self, event: Event, message: str) -> bool:
        source = self.s.phase
        target = TRANSITIONS[source].get(event)
        if target is Phase.rolling_back and self.s.point_of_no_return:
            # Past the point of no return (an irreversible hook started): hold and alert.
            event = Event.breach_hold
            target = TRANSITIONS[source].get(event)
            message = f"{message}; not rolling back: {self.s.point_of_no_return}"
        if target is None:
            return False
        reason = REASONS[event]
        if target is Phase.paused and source is Phase.paused:
            # Already held: keep the first reason (the one a person must act on).
            return False
        self.s.phase = target
        self.s.reason = reason.value
        self.s.message = message
        if target is Phase.paused:
            self.s.paused_at = self.now
        if source is Phase.paused and target is Phase.progressing:
            self._resume_clocks()
        if target is Phase.rolling_back:
            self._enter_rollback(message)
        if target is Phase.pending:
            self._reset_run()
        if target in (Phase.succeeded, Phase.rolled_back, Phase.failed):
            self._finalize_gates()
        if target is Phase.succeeded:
            self.s.completed_at = self.now
            if isinstance(self.spec, MigrationSpec):
                self.s.live_deployment = self.spec.green.deployment
        if target is Phase.rolled_back:
            self.s.completed_at = self.now
            self.s.rollback_reason = self.s.rollback_reason or message
            if isinstance(self.spec, MigrationSpec):
                self.s.live_deployment = self.spec.blue.deployment
        self._history(reason, message)
        warning = target in (Phase.rolling_back, Phase.failed) or (
            target is Phase.paused and reason not in _CHOSEN_PAUSES
        )
        self._event("Warning" if warning else "Normal", reason, message)
        return True

    def _finalize_gates(self) -> None:
        """A finished run's gates are no longer "Running": they passed, or were never checked."""
        for record in self.s.gates:
            if record.outcome is GateOutcome.running:
                record.outcome = GateOutcome.passed
            elif record.outcome is GateOutcome.pending:
                record.outcome = GateOutcome.skipped

    def _history(self, reason: str, message: str) -> None:
        self.s.history.append(
            HistoryEntry(
                time=self.now,
                phase=self.s.phase,
                step=self.s.current_step_index,
                weight=self.s.weight,
                reason=reason,
                message=message,
            )
        )
        del self.s.history[:-HISTORY_LIMIT]

    def _event(self, type_: str, reason: str, message: str) -> None:
        self.actions.append(EmitEvent(type_, str(reason), message))

    def _enter_rollback(self, message: str) -> None:
        assert isinstance(self.spec, MigrationSpec)
        self.s.rollback_reason = message
        self.s.weight = 0
        self.s.step_ready_at = None
        self.actions.append(
            RestoreBlue(
                total_replicas=self._total(),
                scale_down_green=self.spec.rollback.scale_down_green,
            )
        )

    def _reset_run(self) -> None:
        self.s.started_at = None
        self.s.completed_at = None
        self.s.step_started_at = None
        self.s.step_ready_at = None
        self.s.paused_at = None
        self.s.rollback_reason = None
        self.s.full_promotion = False
        self.s.hooks = []
        self.s.point_of_no_return = None

    def _resume_clocks(self) -> None:
        """Give back the time spent paused, so timed pauses and deadlines lose nothing."""
        if self.s.paused_at is not None and self.s.step_started_at is not None:
            self.s.step_started_at += self.now - self.s.paused_at
        self.s.paused_at = None
        assert isinstance(self.spec, MigrationSpec)
        # A person looked at the held run and let it go on: gates get a fresh budget.
        for index, record in enumerate(self.s.gates):
            gate = self._gate_spec(record.name)
            if gate is not None:
                self.s.gates[index] = gate_rules.excuse(record, gate)

    # --- manual requests ---

    def _handle_request(self, spec: MigrationSpec) -> None:
        request = self.obs.request
        if request is None or request.id == self.s.last_request:
            return
        self.s.last_request = request.id
        verb = request.verb
        handled = False
        if verb is RequestVerb.abort:
            handled = self._fire(Event.abort, "aborted by request: returning all traffic to blue")
        elif verb is RequestVerb.retry:
            handled = self._fire(Event.retry, "retry requested: starting a new run")
        elif verb is RequestVerb.pause:
            handled = self._fire(Event.pause, "paused by request")
        elif verb is RequestVerb.resume:
            handled = self._resume(spec, "resumed by request")
        elif verb in (RequestVerb.promote, RequestVerb.promote_full):
            handled = self._promote(spec, full=verb is RequestVerb.promote_full)
        if not handled:
            self._event(
                "Normal",
                Reason.request_ignored,
                f"request {verb.value} has no effect in phase {self.s.phase.value}",
            )

    def _resume(self, spec: MigrationSpec, message: str) -> bool:
        if self.s.phase is not Phase.paused:
            return False
        if spec.paused:
            return False
        if self.s.reason == Reason.pause_step:
            return self._promote(spec, full=False)
        return self._fire(Event.resume, message)

    def _promote(self, spec: MigrationSpec, *, full: bool) -> bool:
        if self.s.phase not in (Phase.progressing, Phase.paused) or spec.paused:
            return False
        if full:
            self.s.full_promotion = True
            self._advance_to(len(spec.steps), "promoted fully: skipping remaining steps and gates")
        else:
            self._advance_to(self.s.current_step_index + 1, "promoted: skipping to the next step")
        if self.s.phase is Phase.paused:
            self._fire(Event.promote, "promoted by request")
        return True

    # --- one round of progress ---

    def _tick(self, spec: MigrationSpec) -> None:
        phase = self.s.phase
        if phase is Phase.pending:
            self._start(spec)
        elif phase in (Phase.progressing, Phase.paused):
            self._active(spec)
        elif phase is Phase.rolling_back:
            self._rolling_back()

    def _start(self, spec: MigrationSpec) -> None:
        if self.obs.preflight_errors:
            self.problems = list(self.obs.preflight_errors)
            self._fire(Event.preflight_failed, "; ".join(self.obs.preflight_errors))
            return
        missing = [
            f"Deployment {ref.deployment!r} ({role}) not found"
            for role, ref, state in (
                ("blue", spec.blue, self.obs.blue),
                ("green", spec.green, self.obs.green),
            )
            if state is None
        ]
        if missing:
            # GitOps tools may apply the Migration before its Deployments: wait for them.
            self.s.reason = Reason.waiting_for_deployments.value
            self.s.message = "; ".join(missing)
            return
        assert self.obs.blue is not None and self.obs.green is not None
        total = self.obs.blue.size_before_run or self.obs.green.size_before_run or 1
        previous_attempt = 0
        if self.s.run_id and self.s.run_id.startswith(f"{self.obs.generation}-"):
            previous_attempt = int(self.s.run_id.rsplit("-", 1)[1])
        self.s.run_id = f"{self.obs.generation}-{previous_attempt + 1}"
        self.s.total_replicas = total
        self.s.current_step_index = 0
        self.s.started_at = self.now
        self.s.step_started_at = self.now
        self.s.step_ready_at = None
        self.s.gates = [GateStatus(name=g.name) for g in spec.gates]
        self._fire(
            Event.start,
            f"run {self.s.run_id} started: {len(spec.steps)} steps,"
            f" {spec.blue.deployment} -> {spec.green.deployment}",
        )
        if spec.traffic.router is not Router.replicas:
            self.actions.append(PrepareGreen(total))
        if spec.paused:
            self._fire(Event.spec_pause, "spec.paused is true")

    def _active(self, spec: MigrationSpec) -> None:
        if self.obs.green is None:
            self._fire(Event.green_missing, f"green Deployment {spec.green.deployment!r} is gone")
            return
        if self.obs.blue is None and self.s.weight < 100:
            self._fire(
                Event.blue_missing,
                f"blue Deployment {spec.blue.deployment!r} is gone: cannot roll back;"
                " promote to go on with green, or recreate blue and resume",
            )
            return
        self._spec_pause(spec)
        if self._judge_gates(spec):
            return
        if self.s.phase is Phase.progressing:
            self._progress(spec)

    def _spec_pause(self, spec: MigrationSpec) -> None:
        if spec.paused and self.s.phase is Phase.progressing:
            self._fire(Event.spec_pause, "spec.paused is true")
        elif (
            not spec.paused
            and self.s.phase is Phase.paused
            and self.s.reason == Reason.paused_by_spec
        ):
            self._fire(Event.resume, "spec.paused is false again")

    def _judge_gates(self, spec: MigrationSpec) -> bool:
        """Record due readings; returns True when a gate stopped the run."""
        if self.s.weight == 0:
            return False
        due = {g.name for g in gates_due(spec, self.s, self.now)}
        worst: tuple[int, Event, str] | None = None
        for gate in spec.gates:
            record = self.s.gate(gate.name)
            if record is None:
                record = GateStatus(name=gate.name)
                self.s.gates.append(record)
            reading = self.obs.readings.get(gate.name)
            if reading is not None and gate.name in due:
                judgement = gate_rules.judge(reading, gate)
                updated = gate_rules.record(record, gate, reading, judgement, self.now)
                self.s.gates[self.s.gates.index(record)] = updated
                record = updated
            candidate = self._gate_event(gate, record)
            if candidate and (worst is None or candidate[0] > worst[0]):
                worst = candidate
        if worst is None:
            return False
        _, event, message = worst
        return self._fire(event, message) and self.s.phase is not Phase.progressing

    def _gate_event(self, gate: Gate, record: GateStatus) -> tuple[int, Event, str] | None:
        assert isinstance(self.spec, MigrationSpec)
        evaluated = record.last_evaluated_at
        when = evaluated.strftime("%H:%M:%SZ") if evaluated else "?"
        detail = f"gate {gate.name} at {when}: {record.last_message}"
        rank = gate_rules.severity(record.outcome)
        if record.outcome is GateOutcome.failed:
            counts = f"({record.failed} failed checks, failureLimit {gate.failure_limit})"
            if self.spec.rollback.automatic:
                return rank, Event.gate_failed, f"{detail} {counts}: rolling back"
            return (
                rank,
                Event.gate_failed_hold,
                f"{detail} {counts}: paused (automatic rollback off)",
            )
        if record.outcome is GateOutcome.error:
            counts = (
                f"({record.consecutive_errors} errors in a row,"
                f" consecutiveErrorLimit {gate.consecutive_error_limit})"
            )
            if gate.on_error is ErrorPolicy.rollback and self.spec.rollback.automatic:
                return (
                    rank,
                    Event.gate_error,
                    f"{detail} {counts}: rolling back (onError: rollback)",
                )
            return rank, Event.gate_error_hold, f"{detail} {counts}: paused"
        if record.outcome is GateOutcome.inconclusive:
            counts = (
                f"({record.inconclusive} inconclusive checks,"
                f" inconclusiveLimit {gate.inconclusive_limit})"
            )
            return rank, Event.gate_inconclusive, f"{detail} {counts}: paused, promote or resume"
        return None

    def _progress(self, spec: MigrationSpec) -> None:
        if not self._stage_ok(spec, HookStage.pre_shift, None):
            return
        index = self.s.current_step_index
        finishing = index >= len(spec.steps)
        step = None if finishing else spec.steps[index]
        if finishing:
            target = 100
        elif step is not None and step.set_weight is not None:
            target = step.set_weight
        else:
            target = self.s.weight
        if not self._weight_applied(target):
            return
        if self.s.step_ready_at is None and not self._green_ready(spec, target):
            return
        if finishing:
            self._finish(spec)
            return
        assert step is not None
        if step.set_weight is not None:
            hooks_done = target == 0 or self._stage_ok(spec, HookStage.after_step, index)
            if hooks_done and self._gates_passed_since(spec, self.s.step_ready_at):
                self._advance_to(index + 1, f"weight {target}% held and gates passed")
            return
        assert step.pause is not None
        if step.pause.duration is None:
            self._fire(Event.pause_step, f"step {index + 1}: paused until promoted")
            return
        end = self._pause_end(step.pause.duration)
        if self.now >= end and self._gates_passed_since(spec, self.s.step_ready_at):
            self._advance_to(index + 1, f"pause of {step.pause.duration} over")

    def _weight_applied(self, target: int) -> bool:
        """Sets the weight when the status or the cluster disagree with ``target``."""
        router_weight = self.obs.router_weight
        in_cluster = router_weight is None or router_weight == target
        if self.s.weight == target and (in_cluster or self._wrote_weight()):
            return True
        self.actions.append(SetWeight(target, self._total()))
        if self.s.weight != target:
            self.s.weight = target
            self.s.step_ready_at = None
            self._history(Reason.weight_set, f"green weight set to {target}%")
        return False

    def _wrote_weight(self) -> bool:
        return any(isinstance(a, SetWeight) for a in self.actions)

    def _green_ready(self, spec: MigrationSpec, target: int) -> bool:
        green = self.obs.green
        needed = green_replicas_needed(spec, self._total(), target)
        if green is not None and green.available >= needed:
            self.s.step_ready_at = self.now
            if target > 0:
                self._schedule_first_checks(spec)
            return True
        deadline = parse_duration(spec.progress_deadline)
        started = self.s.step_started_at or self.now
        if (self.now - started).total_seconds() > deadline:
            have = green.available if green is not None else 0
            self._fire(
                Event.deadline_exceeded,
                f"green {spec.green.deployment} has {have}/{needed} replicas available"
                f" {spec.progress_deadline} after the step started (progressDeadline)",
            )
        return False

    def _schedule_first_checks(self, spec: MigrationSpec) -> None:
        for gate in spec.gates:
            record = self.s.gate(gate.name)
            if record is not None and record.next_check_at is None:
                record.next_check_at = self.now + timedelta(seconds=parse_duration(gate.interval))

    def _gates_passed_since(self, spec: MigrationSpec, since: datetime | None) -> bool:
        """Every gate passed a check newer than ``since`` and its latest check passed: a failed
        check within failureLimit holds the weight until a later check passes."""
        if self.s.weight == 0 or since is None:
            return True
        for gate in spec.gates:
            record = self.s.gate(gate.name)
            if record is None or record.last_passed_at is None or record.last_passed_at <= since:
                return False
            if record.last_verdict is not Verdict.passed:
                return False
        return True

    def _pause_end(self, duration: str) -> datetime:
        started = self.s.step_started_at or self.now
        return started + timedelta(seconds=parse_duration(duration))

    def _advance_to(self, index: int, message: str) -> None:
        assert isinstance(self.spec, MigrationSpec)
        index = min(index, len(self.spec.steps))
        self.s.current_step_index = index
        self.s.step_started_at = self.now
        self.s.step_ready_at = None
        label = "finishing" if index >= len(self.spec.steps) else f"step {index + 1}"
        # History only: Events mark phase changes, so a long run does not flood `kubectl events`
        # (and each Event is an API write).
        self._history(Reason.step_started, f"{message}; {label} of {len(self.spec.steps)}")

    def _finish(self, spec: MigrationSpec) -> None:
        bake = 0.0 if self.s.full_promotion else parse_duration(spec.bake)
        ready = self.s.step_ready_at or self.now
        if bake > 0:
            if (self.now - ready).total_seconds() < bake:
                return
            if not self._gates_passed_since(spec, ready):
                return
        if not self._stage_ok(spec, HookStage.post_promotion, None):
            return
        if not any(isinstance(a, RetireBlue) for a in self.obs.acted):
            # Succeeded only once the router acknowledged the retirement: a crash in between
            # must not leave a "succeeded" run with blue still scaled.
            self.actions.append(RetireBlue(self._total()))
            return
        self._fire(
            Event.steps_done,
            f"all traffic on {spec.green.deployment}; {spec.blue.deployment} retired",
        )

    def _rolling_back(self) -> None:
        router_weight = self.obs.router_weight
        acted_before = self.started_in is Phase.rolling_back
        restored = any(isinstance(a, RestoreBlue) for a in self.obs.acted)
        done = router_weight == 0 or (router_weight is None and restored)
        confirmed = any(r.stage is HookStage.on_rollback for r in self.s.hooks)
        if done and acted_before and not restored and not confirmed:
            # Weight 0 read after a restart may be a half-done restore (replicas: green at 0,
            # blue not yet back to its size): finish it (idempotent) before calling it done.
            # onRollback hooks start only once a restore was confirmed.
            done = False
        if done:
            assert isinstance(self.spec, MigrationSpec)
            state, problem = self._run_stage(self.spec, HookStage.on_rollback, None)
            if state is StageResult.running:
                self.s.message = f"traffic on blue; running onRollback hooks ({self.s.message})"
                return
            reason = breach_cause(self.s.rollback_reason or "")
            self._fire(Event.traffic_restored, f"{TRAFFIC_RESTORED_PREFIX}{reason}")
            self.s.message = f"rolled back: {reason}"
            if state is StageResult.failed:
                self.s.message += f"; {problem}: the data side may need a person"
        elif acted_before and not any(isinstance(a, RestoreBlue) for a in self.actions):
            assert isinstance(self.spec, MigrationSpec)
            self.actions.append(RestoreBlue(self._total(), self.spec.rollback.scale_down_green))

    # --- hooks ---

    def _stage_ok(self, spec: MigrationSpec, stage: HookStage, step: int | None) -> bool:
        """True once every hook of the stage succeeded; a failure stops the run like a gate."""
        state, problem = self._run_stage(spec, stage, step)
        if state is StageResult.failed:
            event = Event.hook_failed if spec.rollback.automatic else Event.hook_failed_hold
            self._fire(event, problem)
        return state is StageResult.done

    def _run_stage(
        self, spec: MigrationSpec, stage: HookStage, step: int | None
    ) -> tuple[StageResult, str]:
        """Where the stage's hooks stand, and why one failed; they run one after another."""
        for hook in spec.hooks.of(stage):
            while True:
                runs = [
                    r
                    for r in self.s.hooks
                    if r.stage is stage and r.name == hook.name and r.step == step
                ]
                last = runs[-1] if runs else None
                if last is None:
                    self._start_hook(hook, stage, step, attempt=1)
                    return StageResult.running, ""
                if last.state is HookState.succeeded:
                    break
                if last.state is HookState.failed:
                    if last.attempt <= hook.retries:
                        self._start_hook(hook, stage, step, attempt=last.attempt + 1)
                        return StageResult.running, ""
                    return StageResult.failed, (
                        f"hook {hook.name} ({stage.value}) failed after {last.attempt}"
                        f" attempt(s): {last.message}"
                    )
                if not self._observe_hook(hook, last):
                    return StageResult.running, ""
        return StageResult.done, ""

    def _observe_hook(self, hook: Hook, run: HookRun) -> bool:
        """Updates a running hook from its Job; True when it finished (either way)."""
        job = self.obs.jobs.get(run.job)
        timed_out = (self.now - run.started_at).total_seconds() > parse_duration(hook.timeout)
        if job is not None and job.succeeded:
            run.state = HookState.succeeded
            run.finished_at = self.now
            run.message = job.message
            self._event(
                "Normal", Reason.hook_succeeded, f"hook {hook.name}: Job {run.job} succeeded"
            )
            return True
        if (job is not None and job.failed) or timed_out:
            run.state = HookState.failed
            run.finished_at = self.now
            if job is not None and job.failed:
                run.message = job.message or "Job failed"
            else:
                run.message = f"timed out after {hook.timeout}"
                self.actions.append(StopJob(run.job))
            self._event(
                "Warning",
                Reason.hook_failed,
                f"hook {hook.name}: Job {run.job} (attempt {run.attempt} of"
                f" {hook.retries + 1}) failed: {run.message}",
            )
            return True
        if job is None:
            # Not seen yet (or deleted by someone): creating it again is a no-op if it exists.
            self.actions.append(self._run_action(hook, run))
        return False

    def _start_hook(self, hook: Hook, stage: HookStage, step: int | None, attempt: int) -> None:
        assert self.s.run_id is not None
        run = HookRun(
            name=hook.name,
            stage=stage,
            step=step,
            attempt=attempt,
            job=job_name(self.obs.migration, self.s.run_id, hook.name, step, attempt),
            started_at=self.now,
        )
        self.s.hooks.append(run)
        if hook.irreversible and not self.s.point_of_no_return:
            self.s.point_of_no_return = (
                f"irreversible hook {hook.name} started at {self.now.isoformat(timespec='seconds')}"
            )
            self._history(Reason.rollback_disabled, self.s.point_of_no_return)
            self._event("Warning", Reason.rollback_disabled, self.s.point_of_no_return)
        self._history(Reason.hook_started, f"hook {hook.name} ({stage.value}): Job {run.job}")
        self.actions.append(self._run_action(hook, run))

    @staticmethod
    def _run_action(hook: Hook, run: HookRun) -> RunHook:
        return RunHook(
            stage=run.stage,
            hook=hook.name,
            job=run.job,
            step=run.step,
            attempt=run.attempt,
            timeout_seconds=parse_duration(hook.timeout),
        )

    def _hook_wake(self, spec: MigrationSpec) -> float | None:
        running = [r for r in self.s.hooks if r.state is HookState.running]
        if not running:
            return None
        timeouts = {
            h.name: parse_duration(h.timeout) for stage in HookStage for h in spec.hooks.of(stage)
        }
        left = [
            timeouts.get(r.name, 0.0) - (self.now - r.started_at).total_seconds() for r in running
        ]
        return max(min([_HOOK_POLL, *left]), 0.0)

    # --- helpers ---

    def _total(self) -> int:
        return self.s.total_replicas or 1

    def _gate_spec(self, name: str) -> Gate | None:
        assert isinstance(self.spec, MigrationSpec)
        return next((g for g in self.spec.gates if g.name == name), None)

    # --- conditions and timing ---

    def _conditions(self) -> None:
        phase = self.s.phase
        reason = self.s.reason or phase.value
        message = self.s.message
        old_invalid = self.s.condition(ConditionType.invalid_spec)
        still_invalid = (phase is Phase.failed and reason in _INVALID_REASONS) or (
            phase is Phase.paused and reason == Reason.invalid_spec
        )
        if not self.problems and still_invalid and old_invalid and old_invalid.status == "True":
            self.problems = [old_invalid.message]
        invalid = bool(self.problems)
        # One rule for status.rollbackAvailable, its condition and the CLI's report.
        rollback = rollback_rules.availability(self.s)
        self.s.rollback_available = rollback.available
        self.s.rollback_unavailable_reason = None if rollback.available else rollback.message
        wanted: dict[ConditionType, tuple[bool, str, str]] = {
            ConditionType.ready: (phase is Phase.succeeded, reason, message),
            ConditionType.progressing: (
                phase in (Phase.pending, Phase.progressing, Phase.rolling_back),
                reason,
                message,
            ),
            ConditionType.paused: (phase is Phase.paused, reason, message),
            ConditionType.complete: (phase is Phase.succeeded, reason, message),
            ConditionType.rolled_back: (
                phase is Phase.rolled_back,
                _rollback_code(self.s) if phase is Phase.rolled_back else reason,
                message,
            ),
            ConditionType.invalid_spec: (
                invalid,
                (self.problem_reason or reason) if invalid else "SpecValid",
                "; ".join(self.problems) if invalid else "",
            ),
            ConditionType.stalled: (
                phase in (Phase.rolled_back, Phase.failed),
                _rollback_code(self.s)
                if phase is Phase.rolled_back
                else reason
                if phase is Phase.failed
                else "NotStalled",
                message if phase in (Phase.rolled_back, Phase.failed) else "",
            ),
            ConditionType.rollback_available: (
                rollback.available,
                rollback.code.value,
                rollback.message,
            ),
        }
        if isinstance(self.spec, SpecInvalid):
            wanted[ConditionType.invalid_spec] = (
                True,
                Reason.invalid_spec,
                "; ".join(self.problems),
            )
        conditions = []
        for type_, (truth, why, text) in wanted.items():
            status = "True" if truth else "False"
            old = self.s.condition(type_)
            changed = old is None or old.status != status
            conditions.append(
                Condition(
                    type=type_,
                    status=status,
                    reason=why,
                    message=text,
                    last_transition_time=self.now
                    if changed or old is None
                    else old.last_transition_time,
                    observed_generation=self.obs.generation,
                )
            )
        self.s.conditions = conditions

    def _requeue(self) -> float | None:
        phase = self.s.phase
        if phase in TERMINAL_PHASES:
            return None
        if phase is Phase.rolling_back or phase is Phase.pending:
            if isinstance(self.spec, MigrationSpec):
                hooks = self._hook_wake(self.spec)
                if hooks is not None:
                    return min(hooks, _ROLLBACK_RETRY)
            return _ROLLBACK_RETRY
        if isinstance(self.spec, SpecInvalid):
            return None  # only a new spec can move it on, and that wakes the operator anyway
        candidates: list[float] = []
        if self.s.weight > 0:
            candidates += [
                (g.next_check_at - self.now).total_seconds()
                for g in self.s.gates
                if g.next_check_at is not None
            ]
        if phase is Phase.progressing:
            wake = self._progress_wake(self.spec)
            if wake is not None:
                candidates.append(wake)
        hooks = self._hook_wake(self.spec)
        if hooks is not None:
            candidates.append(hooks)
        positive = [max(c, 0.0) for c in candidates]
        return min(positive) if positive else None

    def _progress_wake(self, spec: MigrationSpec) -> float | None:
        if self.s.step_ready_at is None:
            started = self.s.step_started_at or self.now
            deadline = parse_duration(spec.progress_deadline)
            # Just past the deadline, so the wake-up that judges it is not a poll too late.
            left = deadline - (self.now - started).total_seconds() + 0.05
            return min(_READINESS_POLL, max(left, 0.0))
        index = self.s.current_step_index
        if index >= len(spec.steps):
            bake = parse_duration(spec.bake)
            return max((self.s.step_ready_at - self.now).total_seconds() + bake, 0.0)
        step = spec.steps[index]
        if step.pause is not None and step.pause.duration is not None:
            return (self._pause_end(step.pause.duration) - self.now).total_seconds()
        # Otherwise the next gate check (already a candidate) is what moves the step on.
        return None


def job_name(migration: str, run_id: str, hook: str, step: int | None, attempt: int) -> str:
    """Deterministic, so a restart finds the Job it created instead of creating another."""
    parts = [migration, run_id, hook]
    if step is not None:
        parts.append(f"s{step}")
    if attempt > 1:
        parts.append(f"a{attempt}")
    name = "-".join(parts).lower()
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in name).strip("-")
    if len(name) > 63:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[:54].rstrip('-')}-{digest}"
    return name


def _rollback_code(status: MigrationStatus) -> str:
    """The reason the run entered RollingBack: the first entry of the last RollingBack stretch."""
    code = "RolledBack"
    for entry in reversed(status.history):
        if entry.phase is Phase.rolling_back:
            code = entry.reason
        elif code != "RolledBack" and entry.phase is not Phase.rolled_back:
            break
    return code
