"""Gates inside a run: which checks are due, how their recorded verdicts (core.gates) stop or
hold the run, and whether every gate passed since a step became ready.

A dry-run gate (``dryRun: true``) is checked and recorded like any other, but its outcome never
stops, holds or pauses the run, and a step never waits for it: it is how a new gate is tried on
real traffic before it is trusted. Gates also run in the rollback window after success
(core.window).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cutover.api import (
    ErrorPolicy,
    Gate,
    GateOutcome,
    GateStatus,
    MigrationSpec,
    MigrationStatus,
    Phase,
    PreviewState,
    Verdict,
)
from cutover.core import gates as gate_rules
from cutover.core import rollback as rollback_rules
from cutover.core.runstate import RunState
from cutover.core.transitions import Event
from cutover.durations import parse_duration


def previewing(status: MigrationStatus) -> bool:
    """Whether this run's preview gates are being checked (green ready, weight 0; core.preview)."""
    preview = status.preview
    return (
        preview is not None
        and preview.run_id == status.run_id
        and preview.state is PreviewState.checking
        and status.phase in (Phase.progressing, Phase.paused)
    )


def gates_now(spec: MigrationSpec, status: MigrationStatus) -> list[Gate]:
    """The gates the run checks now: the preview's while it checks green at weight 0, else the
    others (a preview gate asks the preview Service, which only the preview has)."""
    named = set(spec.preview.gates) if spec.preview is not None else set()
    if previewing(status):
        return [g for g in spec.gates if g.name in named]
    return [g for g in spec.gates if g.name not in named]


def gates_due(spec: MigrationSpec, status: MigrationStatus, now: datetime) -> list[Gate]:
    """Gates whose next check is due: the shell measures these before calling ``decide``."""
    active = status.phase in (Phase.progressing, Phase.paused) or rollback_rules.window_open(status)
    if not active or (status.weight == 0 and not previewing(status)):
        return []
    due = []
    for gate in gates_now(spec, status):
        record = status.gate(gate.name)
        if record and record.next_check_at is not None and record.next_check_at <= now:
            due.append(gate)
    return due


class GateJudge(RunState):
    def _judge_gates(self, spec: MigrationSpec) -> bool:
        """Record due readings; returns True when a gate stopped the run."""
        if self.s.weight == 0 and not previewing(self.s):
            return False
        due = {g.name for g in gates_due(spec, self.s, self.now)}
        worst: tuple[int, Event, str] | None = None
        for gate in gates_now(spec, self.s):
            record = self.s.gate(gate.name)
            if record is None:
                record = GateStatus(name=gate.name, dry_run=gate.dry_run)
                self.s.gates.append(record)
            elif record.dry_run != gate.dry_run:
                record.dry_run = gate.dry_run
            reading = self.obs.readings.get(gate.name)
            if reading is not None and gate.name in due:
                if reading.kind is gate_rules.ReadingKind.pending:
                    updated = gate_rules.wait(record, gate, reading, self.now)
                else:
                    judgement = gate_rules.judge(reading, gate)
                    updated = gate_rules.record(record, gate, reading, judgement, self.now)
                self.s.gates[self.s.gates.index(record)] = updated
                record = updated
            if gate.dry_run:
                continue
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
        # A preview gate failing says so: no user traffic had moved yet.
        kind = "preview gate" if previewing(self.s) else "gate"
        detail = f"{kind} {gate.name} at {when}: {record.last_message}"
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

    def _schedule_first_checks(self, spec: MigrationSpec) -> None:
        for gate in gates_now(spec, self.s):
            record = self.s.gate(gate.name)
            if record is not None and record.next_check_at is None:
                record.next_check_at = self.now + timedelta(seconds=parse_duration(gate.interval))

    def _gates_passed_since(self, spec: MigrationSpec, since: datetime | None) -> bool:
        """Every gate passed a check newer than ``since`` and its latest check passed: a failed
        check within failureLimit holds the weight until a later check passes."""
        if (self.s.weight == 0 and not previewing(self.s)) or since is None:
            return True
        for gate in gates_now(spec, self.s):
            if gate.dry_run:
                continue
            record = self.s.gate(gate.name)
            if record is None or record.last_passed_at is None or record.last_passed_at <= since:
                return False
            if record.last_verdict is not Verdict.passed:
                return False
        return True
