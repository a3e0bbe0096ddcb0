"""The decision engine: ``decide(spec, status, observations, now) -> Decision``.

Pure: no I/O, no clock. Phases move only along ``TRANSITIONS`` (core.transitions, drawn in
docs/state-machine.md); what happens inside a phase is computed by ``_Run``, which handles the
manual request, then ticks the phase (start, active run, rolling back) until nothing more can
happen without the cluster, and finally writes the conditions and when to wake. The requests,
steps, gates and hooks it drives are in core.manual, core.steps, core.gating and core.hooks.
The result is a new status and the actions that bring the cluster in line with it; every action
is idempotent, so applying a decision twice changes nothing.

The shell and the tests import the core's vocabulary from here; the names are re-exported from
the modules that define them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cutover.api import (
    TERMINAL_PHASES,
    ConditionType,
    DeadlineAction,
    GateStatus,
    HookStage,
    MigrationSpec,
    MigrationStatus,
    Phase,
    Shift,
    SpecInvalid,
)
from cutover.core import autoscaling, speccheck
from cutover.core import rollback as rollback_rules
from cutover.core.actions import (
    Action,
    CreatePreview,
    Decision,
    DeletePreview,
    EmitEvent,
    HoldBlue,
    PrepareGreen,
    RestoreBlue,
    RetireBlue,
    RunHook,
    SetMirror,
    SetWeight,
    StopJob,
)
from cutover.core.conditions import update_conditions
from cutover.core.gating import gates_due, previewing
from cutover.core.hooks import StageResult, job_name
from cutover.core.manual import RequestHandler
from cutover.core.observations import DeploymentState, JobState, Observations, Request, RequestVerb
from cutover.core.transitions import (
    GATE_HOLDS,
    REASONS,
    TRAFFIC_RESTORED_PREFIX,
    TRANSITIONS,
    Event,
    Reason,
    breach_cause,
)
from cutover.durations import parse_duration, seconds_until_past

__all__ = [
    "GATE_HOLDS",
    "REASONS",
    "TRAFFIC_RESTORED_PREFIX",
    "TRANSITIONS",
    "Action",
    "CreatePreview",
    "Decision",
    "DeletePreview",
    "DeploymentState",
    "EmitEvent",
    "Event",
    "HoldBlue",
    "JobState",
    "Observations",
    "PrepareGreen",
    "Reason",
    "Request",
    "RequestVerb",
    "RestoreBlue",
    "RetireBlue",
    "RunHook",
    "SetMirror",
    "SetWeight",
    "StageResult",
    "StopJob",
    "breach_cause",
    "decide",
    "gates_due",
    "job_name",
]

# Rounds of "tick" per decision: a transition can enable the next (start -> first weight).
_MAX_ROUNDS = 8
_ROLLBACK_RETRY = 1.0


def decide(
    spec: MigrationSpec | SpecInvalid,
    status: MigrationStatus,
    observations: Observations,
    now: datetime,
) -> Decision:
    return _Run(spec, status, observations, now).decide()


class _Run(RequestHandler):
    """One decision: the request, then rounds of progress, then conditions and the next wake."""

    def decide(self) -> Decision:
        self._adopt_legacy_point_of_no_return()
        if isinstance(self.spec, SpecInvalid):
            self._spec_invalid(self.spec)
        else:
            self._valid(self.spec)
        self._tidy_preview()
        self.s.observed_generation = self.obs.generation
        if isinstance(self.spec, MigrationSpec):
            # Counted from 1 wherever a person reads it (kubectl get, cutover list and status).
            total = len(self.spec.steps)
            self.s.step = f"{min(self.s.current_step_index + 1, total)}/{total}"
        update_conditions(
            self.s,
            problems=self.problems,
            problem_reason=self.problem_reason,
            spec_invalid=isinstance(self.spec, SpecInvalid),
            generation=self.obs.generation,
            now=self.now,
        )
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
        if self._window_open():
            # No router without a valid spec: the window (blue kept, green serving) waits for
            # one, then goes on where it was.
            self.s.message = f"{message}; the rollback window waits for a valid spec"
            return
        if self.s.phase is Phase.paused and self.s.reason == Reason.invalid_spec:
            self.s.message = message
            return
        self._fire(Event.spec_invalid, message)

    def _valid(self, spec: MigrationSpec) -> None:
        generation_changed = (
            self.s.observed_generation is not None
            and self.s.observed_generation != self.obs.generation
        )
        # A new release (or other versions) during the rollback window: the kept blue is
        # retired first, by name; then the spec takes effect as after any success.
        stale = self._window_open() and not self._window_matches(spec)
        if stale and not self._close_window(spec, "the spec names other versions"):
            return
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
        blue_replicas = self.obs.blue.replicas if self.obs.blue is not None else None
        live = speccheck.live_after_success(self.s, spec, generation_changed, blue_replicas)
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

    # --- one round of progress ---

    def _tick(self, spec: MigrationSpec) -> None:
        phase = self.s.phase
        if phase is Phase.pending:
            self._start(spec)
        elif phase in (Phase.progressing, Phase.paused):
            self._active(spec)
        elif phase is Phase.rolling_back:
            self._rolling_back()
        elif self._window_open():
            self._keep_window(spec)

    def _start(self, spec: MigrationSpec) -> None:
        if self.obs.template_problems:
            self.problems = list(self.obs.template_problems)
            self._fire(Event.template_unresolved, "; ".join(self.obs.template_problems))
            return
        if self.obs.forbidden:
            self.problems = list(self.obs.forbidden)
            self._fire(Event.forbidden, "; ".join(self.obs.forbidden))
            return
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
        conflicts = autoscaling.conflicts(spec, total, self.obs.autoscalers)
        if conflicts:
            self.problems = conflicts
            self._fire(Event.autoscaler_conflict, "; ".join(conflicts))
            return
        self.s.run_id = self._next_run_id()
        self.s.total_replicas = total
        self.s.current_step_index = 0
        self.s.started_at = self.now
        self.s.step_started_at = self.now
        self.s.step_ready_at = None
        self.s.weight_acknowledged_at = None
        self.s.gates = [GateStatus(name=g.name) for g in spec.gates]
        self._fire(
            Event.start,
            f"run {self.s.run_id} started: {len(spec.steps)} steps,"
            f" {spec.blue.deployment} -> {spec.green.deployment}",
        )
        if spec.traffic.router.capabilities.shift is not Shift.pods:
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
        if self._run_deadline(spec):
            return
        self._spec_pause(spec)
        if self._judge_gates(spec):
            return
        if self.s.phase is Phase.progressing:
            self._progress(spec)

    def _run_deadline(self, spec: MigrationSpec) -> bool:
        """spec.deadline passed: roll back or pause, once per run (a resume goes on)."""
        deadline = spec.deadline
        if deadline is None or self.s.started_at is None or self.s.deadline_reached_at:
            return False
        if self.now < self.s.started_at + timedelta(seconds=parse_duration(deadline.duration)):
            return False
        message = f"the run passed its deadline of {deadline.duration} (spec.deadline)"
        if deadline.action is DeadlineAction.rollback:
            fired = self._fire(Event.run_deadline, f"{message}: rolling back")
        else:
            # Already held (e.g. by a person): the deadline pauses it once it goes on again.
            fired = self._fire(
                Event.run_deadline_hold, f"{message}: paused, promote or resume to go on"
            )
        if fired:
            self.s.deadline_reached_at = self.now
        return fired

    def _deadline_wake(self, spec: MigrationSpec) -> float | None:
        if spec.deadline is None or self.s.started_at is None or self.s.deadline_reached_at:
            return None
        end = self.s.started_at + timedelta(seconds=parse_duration(spec.deadline.duration))
        return seconds_until_past(end, self.now)

    def _spec_pause(self, spec: MigrationSpec) -> None:
        if spec.paused and self.s.phase is Phase.progressing:
            self._fire(Event.spec_pause, "spec.paused is true")
        elif (
            not spec.paused
            and self.s.phase is Phase.paused
            and self.s.reason == Reason.paused_by_spec
        ):
            self._fire(Event.resume, "spec.paused is false again")

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

    # --- timing ---

    def _requeue(self) -> float | None:
        phase = self.s.phase
        if self._window_open() and isinstance(self.spec, MigrationSpec):
            return max(min(self._window_wake()), 0.0)
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
        if self.s.weight > 0 or previewing(self.s):
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
        deadline = self._deadline_wake(self.spec)
        if deadline is not None:
            candidates.append(deadline)
        positive = [max(c, 0.0) for c in candidates]
        return min(positive) if positive else None
