"""Checks before any user traffic (``spec.preview``): Argo Rollouts' previewService and
prePromotionAnalysis, in Cutover's terms.

Before the first step moves any traffic, a preview Service selecting only green's pods is
created (the shell's ``CreatePreview``), green must be ready at full size (routers that shift by
weight or all at once scaled it at the start), and the gates ``spec.preview.gates`` names are
checked at weight 0 (core.gating: ``previewing``). The first step starts once each of them
passed a check made after green was ready. A failure is a failure of the run like any other
(roll back, or pause with ``rollback.automatic: false``), only no user traffic ever moved; green
not ready within ``progressDeadline`` rolls back too. The preview Service is deleted when the run
is over, whatever its end.

Where the preview is lives in ``status.preview`` (with the run it belongs to), so an operator
restarted mid-preview neither starts it again nor skips it.
"""

from __future__ import annotations

import re

from cutover.api import (
    PREVIEW_SUFFIX,
    SERVICE_NAME_PATTERN,
    GateOutcome,
    MigrationSpec,
    Phase,
    PreviewState,
    PreviewStatus,
)
from cutover.core.actions import CreatePreview, DeletePreview
from cutover.core.gating import GateJudge
from cutover.core.transitions import Event, Reason
from cutover.durations import parse_duration

_MAX_SERVICE_NAME = 63


def service_name(spec: MigrationSpec, migration: str) -> str:
    """The preview Service's name: spec.preview.service, or ``<migration>-preview``."""
    given = spec.preview.service if spec.preview is not None else None
    return given or f"{migration}{PREVIEW_SUFFIX}"


def name_problems(spec: MigrationSpec, migration: str) -> list[str]:
    """The default name can be no Service's name (a Migration's name may hold dots or be long):
    the run then fails its preflight asking for one."""
    if spec.preview is None or spec.preview.service:
        return []
    name = service_name(spec, migration)
    if len(name) <= _MAX_SERVICE_NAME and re.fullmatch(SERVICE_NAME_PATTERN, name):
        return []
    return [
        f"spec.preview.service: the default name {name!r} (<migration>{PREVIEW_SUFFIX}) is not"
        f" a valid Service name (lower-case letters, digits and '-', at most"
        f" {_MAX_SERVICE_NAME} characters, starting with a letter): set one"
    ]


class PreviewRunner(GateJudge):
    def _preview_done(self, spec: MigrationSpec) -> bool:
        """True once the run may move user traffic: no preview asked, or it passed. Otherwise
        does the preview's next move (create its Service, wait for green, judge its gates)."""
        if spec.preview is None:
            return True
        preview = self._this_runs_preview()
        if self.s.current_step_index > 0 or self.s.weight > 0:
            # Promoted past the first step (or traffic moved before this run knew of a
            # preview): nothing is left to check before user traffic.
            self._skip_preview(spec, "promoted past the preview: its checks skipped")
            return True
        if preview is None:
            preview = PreviewStatus(
                run_id=self.s.run_id or "",
                service=service_name(spec, self.obs.migration),
                started_at=self.now,
            )
            self.s.preview = preview
            self._history(
                Reason.preview_started,
                f"preview Service {preview.service} selects only green's pods; no user traffic"
                " moves before the preview passed",
            )
        if preview.state is PreviewState.passed:
            return True
        if not preview.service_created:
            if not any(isinstance(a, CreatePreview) for a in self.obs.acted):
                if self._preview_overdue(spec, preview):
                    # Asked for since the preview started and never in place (the reason, e.g.
                    # a write refused, is in the message and a RouterError Event).
                    self._fire(
                        Event.deadline_exceeded,
                        f"preview: Service {preview.service} not in place"
                        f" {spec.progress_deadline} after the preview started"
                        " (progressDeadline); no user traffic moved",
                    )
                    return False
                if not any(isinstance(a, CreatePreview) for a in self.actions):
                    self.actions.append(CreatePreview(preview.service))
                return False
            preview.service_created = True
        if preview.state is PreviewState.starting and not self._preview_ready(spec, preview):
            return False
        if not self._gates_passed_since(spec, preview.ready_at):
            return False
        gates = ", ".join(spec.preview.gates)
        checked = f"gates {gates} passed" if gates else "no gates to check"
        self._end_preview(
            spec,
            f"preview passed: green ready behind {preview.service}, {checked}; the first step"
            " moves user traffic",
        )
        return True

    def _this_runs_preview(self) -> PreviewStatus | None:
        preview = self.s.preview
        if preview is None or preview.run_id != self.s.run_id:
            return None
        return preview

    def _preview_ready(self, spec: MigrationSpec, preview: PreviewStatus) -> bool:
        """Green available at full size: the preview's gates are checked from now on."""
        green = self.obs.green
        needed = max(self._total(), 1)
        if green is not None and green.available >= needed:
            preview.state = PreviewState.checking
            preview.ready_at = self.now
            self._schedule_first_checks(spec)  # previewing now: the preview's gates
            assert spec.preview is not None
            what = ", ".join(spec.preview.gates) or "no gates"
            self._history(
                Reason.preview_ready,
                f"green {spec.green.deployment} ready at full size ({needed} replicas) behind"
                f" preview Service {preview.service}; checking {what} at weight 0",
            )
            return True
        # As for a step: a Deployment seen before green's scale-up landed says nothing yet.
        current = green is None or green.replicas >= needed
        if self._preview_overdue(spec, preview) and current:
            have = green.available if green is not None else 0
            self._fire(
                Event.deadline_exceeded,
                f"preview: green {spec.green.deployment} has {have}/{needed} replicas available"
                f" {spec.progress_deadline} after the preview started (progressDeadline); no"
                " user traffic moved",
            )
        return False

    def _preview_overdue(self, spec: MigrationSpec, preview: PreviewStatus) -> bool:
        waited = (self.now - preview.started_at).total_seconds()
        return waited > parse_duration(spec.progress_deadline)

    def _skip_preview(self, spec: MigrationSpec, message: str) -> bool:
        """A promotion during the preview ends it as passed; True if there was one to end."""
        preview = self._this_runs_preview()
        if spec.preview is None or preview is None or preview.ended_at is not None:
            return False
        self._end_preview(spec, message)
        return True

    def _end_preview(self, spec: MigrationSpec, message: str) -> None:
        preview = self.s.preview
        assert preview is not None and spec.preview is not None
        preview.state = PreviewState.passed
        preview.ended_at = self.now
        for record in self.s.gates:
            if record.name in spec.preview.gates:
                # Their checking is over: no more checks, nor wake-ups for them.
                record.next_check_at = None
                if record.outcome is GateOutcome.running:
                    record.outcome = GateOutcome.passed
        # The first step's clocks (a timed pause, the progress deadline) start now.
        self.s.step_started_at = self.now
        self.s.step_ready_at = None
        self.s.weight_acknowledged_at = None
        self._history(Reason.preview_passed, message)
        self._event("Normal", Reason.preview_passed, message)

    def _tidy_preview(self) -> None:
        """A run that is over (or restarting) deletes its preview Service, whatever its end;
        deleted once the shell acknowledged it (an unacknowledged delete is asked again)."""
        preview = self.s.preview
        if preview is None or preview.service_deleted:
            return
        active = preview.run_id == self.s.run_id and self.s.phase in (
            Phase.progressing,
            Phase.paused,
        )
        if active:
            return
        if preview.ended_at is None:
            preview.state = PreviewState.failed
            preview.ended_at = self.now
        if any(isinstance(a, DeletePreview) for a in self.obs.acted):
            preview.service_deleted = True
            return
        if not any(isinstance(a, DeletePreview) for a in self.actions):
            self.actions.append(DeletePreview(preview.service))
