"""The rollback window after success (``spec.rollback.window``): blue is kept at full size and out
of traffic, the gates keep running, and a failed gate or ``cutover undo`` puts all traffic back on
blue at once (one router write, no pod to start); when the window closes, blue is retired.

The run is Succeeded during the window (Ready and Complete are True, so GitOps tools see it
healthy); ``status.rollbackWindowEndsAt`` and the RollbackWindow condition say that blue can still
come back, and until when. Past the point of no return no window opens: blue could not serve the
data any more, so it is retired at success as without a window.
"""

from __future__ import annotations

from datetime import timedelta

from cutover.api import GateOutcome, MigrationSpec
from cutover.core import rollback as rollback_rules
from cutover.core.actions import HoldBlue, RetireBlue
from cutover.core.gating import GateJudge
from cutover.core.transitions import Event, Reason
from cutover.durations import parse_duration

# Outcomes a breach in the window may end in without rolling back (a hold has nothing to hold
# after success): each new check that finds one says so in a Warning Event.
_UNHEEDED = frozenset({GateOutcome.failed, GateOutcome.error, GateOutcome.inconclusive})


class WindowKeeper(GateJudge):
    def _window_open(self) -> bool:
        return rollback_rules.window_open(self.s)

    def _keeps_blue(self, spec: MigrationSpec) -> bool:
        """Whether success opens a rollback window (not past the point of no return)."""
        return parse_duration(spec.rollback.window) > 0 and not self.s.point_of_no_return

    def _succeed(self, spec: MigrationSpec) -> None:
        """All steps, the bake and the postPromotion hooks are done: Succeeded, with blue retired
        or (with a window) kept at full size until the window closes."""
        if self._keeps_blue(spec):
            if not any(isinstance(a, HoldBlue) for a in self.obs.acted):
                # Succeeded only once the router kept blue: a crash in between must not leave
                # an open window whose rollback has pods to start.
                self.actions.append(HoldBlue(self._total()))
                return
            ends = self.now + timedelta(seconds=parse_duration(spec.rollback.window))
            fired = self._fire(
                Event.steps_done,
                f"all traffic on {spec.green.deployment}; {spec.blue.deployment} kept at full size"
                f" until {ends.strftime('%Y-%m-%dT%H:%M:%SZ')} (rollback window"
                f" {spec.rollback.window}): `cutover undo` or a failed gate puts traffic back",
            )
            if fired:
                self.s.rollback_window_ends_at = ends
                self.s.rollback_window_blue = spec.blue
                self.s.rollback_window_green = spec.green
            return
        if not any(isinstance(a, RetireBlue) for a in self.obs.acted):
            # Succeeded only once the router acknowledged the retirement: a crash in between
            # must not leave a "succeeded" run with blue still scaled.
            self.actions.append(RetireBlue())
            return
        message = f"all traffic on {spec.green.deployment}; {spec.blue.deployment} retired"
        if parse_duration(spec.rollback.window) > 0 and self.s.point_of_no_return:
            message += (
                f" (no rollback window past the point of no return: {self.s.point_of_no_return})"
            )
        self._fire(Event.steps_done, message)

    def _keep_window(self, spec: MigrationSpec) -> None:
        """One round inside the window: green gone or a failed gate rolls back; the window's end
        retires blue."""
        if self.obs.green is None:
            self._fire(
                Event.green_missing,
                f"green Deployment {spec.green.deployment!r} is gone in the rollback window",
            )
            return
        checked = {g.name: g.last_evaluated_at for g in self.s.gates}
        if self._judge_gates(spec):
            return
        for record in self.s.gates:
            fresh = record.last_evaluated_at != checked.get(record.name)
            if fresh and not record.dry_run and record.outcome in _UNHEEDED:
                self._event(
                    "Warning",
                    Reason.gate_failed,
                    f"gate {record.name} is {record.outcome.value} in the rollback window"
                    f" ({record.last_message}); not rolled back automatically: `cutover undo`"
                    " puts all traffic back on blue",
                )
        ends = self.s.rollback_window_ends_at
        if ends is not None and self.now >= ends:
            self._close_window(spec, f"the rollback window of {spec.rollback.window} closed")

    def _window_matches(self, spec: MigrationSpec) -> bool:
        """Whether the spec still names the versions the window was opened for."""
        blue, green = self.s.rollback_window_blue, self.s.rollback_window_green
        return (blue is None or blue == spec.blue) and (green is None or green == spec.green)

    def _close_window(self, spec: MigrationSpec, why: str) -> bool:
        """Retires the kept blue; True once the router did (the window is then closed)."""
        blue = self.s.rollback_window_blue or spec.blue
        green = self.s.rollback_window_green or spec.green
        if not any(isinstance(a, RetireBlue) for a in self.obs.acted):
            if not any(isinstance(a, RetireBlue) for a in self.actions):
                self.actions.append(RetireBlue(blue, green))
            return False
        self.s.rollback_window_ends_at = None
        self.s.rollback_window_blue = self.s.rollback_window_green = None
        self._finalize_gates()
        message = f"{why}: {blue.deployment} retired, {green.deployment} serves all traffic"
        self.s.message = message
        self._history(Reason.window_closed, message)
        self._event("Normal", Reason.window_closed, message)
        return True

    def _window_wake(self) -> list[float]:
        """Seconds until the window's end and its gates' next checks."""
        ends = self.s.rollback_window_ends_at
        if ends is None:
            return []
        wakes = [(ends - self.now).total_seconds()]
        wakes += [
            (g.next_check_at - self.now).total_seconds()
            for g in self.s.gates
            if g.next_check_at is not None
        ]
        return wakes
