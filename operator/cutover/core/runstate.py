"""The state one decision works on, and the one way its phase changes: ``_fire`` moves along
``TRANSITIONS`` and does what entering a phase means (a rollback restores blue, pending resets
the run, a finished run closes its gates), recording history and an Event.

``RunState`` is the base of the run's parts (core.hooks, core.gating, core.steps) and of
``machine._Run``, which drives them.
"""

from __future__ import annotations

from datetime import datetime

from cutover.api import (
    HISTORY_LIMIT,
    Gate,
    GateOutcome,
    HistoryEntry,
    MigrationSpec,
    MigrationStatus,
    Phase,
    SpecInvalid,
)
from cutover.core import gates as gate_rules
from cutover.core.actions import Action, EmitEvent, RestoreBlue
from cutover.core.observations import Observations
from cutover.core.transitions import CHOSEN_PAUSES, REASONS, TRANSITIONS, Event


class RunState:
    def __init__(
        self,
        spec: MigrationSpec | SpecInvalid,
        status: MigrationStatus,
        observations: Observations,
        now: datetime,
    ) -> None:
        self.spec = spec
        self.s = status.edit_copy()
        self.obs = observations
        self.now = now
        self.actions: list[Action] = []
        self.problems: list[str] = []
        self.problem_reason: str | None = None  # InvalidSpec's reason when not the phase's
        self.started_in = status.phase

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
        if source is Phase.succeeded:
            # Leaving success (an undo, a breach in the window, a new run) ends its window.
            self.s.rollback_window_ends_at = None
            self.s.rollback_window_blue = self.s.rollback_window_green = None
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
            target is Phase.paused and reason not in CHOSEN_PAUSES
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

    def _next_run_id(self) -> str:
        """``<generation>-<attempt>``: a retry of the same spec gets the next attempt."""
        previous_attempt = 0
        if self.s.run_id and self.s.run_id.startswith(f"{self.obs.generation}-"):
            previous_attempt = int(self.s.run_id.rsplit("-", 1)[1])
        return f"{self.obs.generation}-{previous_attempt + 1}"

    def _enter_rollback(self, message: str) -> None:
        assert isinstance(self.spec, MigrationSpec)
        # Traffic that moved before a run was recorded (an operator killed between its router
        # write and its status write) is rolled back as a run too: its hook Jobs need its id.
        self.s.run_id = self.s.run_id or self._next_run_id()
        self.s.rollback_reason = message
        self.s.weight = 0
        self.s.mirror = 0  # the restore's one route write removes the mirror too
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
        self.s.deadline_reached_at = None

    def _resume_clocks(self) -> None:
        """Give back the time spent paused, so timed pauses and deadlines lose nothing."""
        if self.s.paused_at is not None and self.s.step_started_at is not None:
            self.s.step_started_at += self.now - self.s.paused_at
        if self.s.paused_at is not None and self.s.weight_acknowledged_at is not None:
            self.s.weight_acknowledged_at += self.now - self.s.paused_at
        self.s.paused_at = None
        assert isinstance(self.spec, MigrationSpec)
        # A person looked at the held run and let it go on: gates get a fresh budget.
        for index, record in enumerate(self.s.gates):
            gate = self._gate_spec(record.name)
            if gate is not None:
                self.s.gates[index] = gate_rules.excuse(record, gate)

    # --- helpers ---

    def _total(self) -> int:
        return self.s.total_replicas or 1

    def _gate_spec(self, name: str) -> Gate | None:
        assert isinstance(self.spec, MigrationSpec)
        return next((g for g in self.spec.gates if g.name == name), None)
