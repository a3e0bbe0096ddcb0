"""Manual requests (``cutover promote``, ``pause``, ``resume``, ``abort``, ``retry``, ``undo``):
each acts once (by its id), and only in the phases where it means something; otherwise an Event
says that it was ignored (an ``undo`` that cannot roll back says why).
"""

from __future__ import annotations

from cutover.api import MigrationSpec, Phase
from cutover.core import rollback as rollback_rules
from cutover.core.observations import RequestVerb
from cutover.core.steps import StepRunner
from cutover.core.transitions import Event, Reason


class RequestHandler(StepRunner):
    def _handle_request(self, spec: MigrationSpec) -> None:
        request = self.obs.request
        if request is None or request.id == self.s.last_request:
            return
        self.s.last_request = request.id
        verb = request.verb
        handled = False
        if verb is RequestVerb.abort:
            # Only Pending tells the two apart: an active run always has its traffic to restore.
            moved = self.s.phase is Phase.pending and (
                self.s.weight > 0 or bool(self.obs.router_weight)
            )
            event = Event.abort_moved if moved else Event.abort
            handled = self._fire(event, "aborted by request: returning all traffic to blue")
        elif verb is RequestVerb.undo:
            handled = self._undo()
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

    def _undo(self) -> bool:
        refusal = rollback_rules.undo_refusal(self.s)
        if refusal is not None:
            self._event("Warning", Reason.rollback_not_available, f"undo refused: {refusal}")
            return True
        return self._fire(Event.undo, "undone by request in the rollback window: rolling back")

    def _resume(self, spec: MigrationSpec, message: str) -> bool:
        if self.s.phase is not Phase.paused:
            return False
        if spec.paused:
            return False
        if self.s.reason == Reason.pause_step:
            return self._promote(spec, full=False)
        return self._fire(Event.resume, message)

    def _promote(self, spec: MigrationSpec, *, full: bool) -> bool:
        if self._window_open():
            # Sure of green before the window ends: blue is retired now.
            self.s.rollback_window_ends_at = self.now
            self._history(Reason.promoted, "promoted in the rollback window: retiring blue now")
            return True
        if self.s.phase not in (Phase.progressing, Phase.paused) or spec.paused:
            return False
        if full:
            self.s.full_promotion = True
            self._advance_to(len(spec.steps), "promoted fully: skipping remaining steps and gates")
        elif not self._skip_preview(spec, "promoted during the preview: its checks skipped"):
            self._advance_to(self.s.current_step_index + 1, "promoted: skipping to the next step")
        if self.s.phase is Phase.paused:
            self._fire(Event.promote, "promoted by request")
        return True
