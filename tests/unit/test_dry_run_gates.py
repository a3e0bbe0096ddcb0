"""Dry-run gates are checked and recorded but never stop, hold or pause a run."""

from __future__ import annotations

import io
from datetime import datetime

from rich.console import Console

from cutover.api import TERMINAL_PHASES, GateOutcome, Phase, Verdict
from cutover.cli.render import report_renderable
from cutover.cli.report import build_report
from cutover.core.gates import Reading
from cutover.core.machine import RequestVerb, RestoreBlue

from .sim import Sim
from .specs import gate, spec


def trial_fails(name: str, _now: datetime) -> Reading:
    return Reading.of(0.5 if name == "trial" else 0.0)


def trial_errors(name: str, _now: datetime) -> Reading:
    return Reading.error("connection refused") if name == "trial" else Reading.of(0.0)


def trial_has_no_data(name: str, _now: datetime) -> Reading:
    return Reading.no_data() if name == "trial" else Reading.of(0.0)


def two_gates(**trial: object):  # type: ignore[no-untyped-def]
    return spec(
        gates=[
            gate(interval="10s", failureLimit=0),
            gate(name="trial", interval="10s", dryRun=True, **trial),
        ]
    )


def test_a_failing_dry_run_gate_neither_rolls_back_nor_holds_a_step() -> None:
    sim = Sim(two_gates(failureLimit=0), readings=trial_fails)
    sim.run(lambda s: s.status.phase is Phase.paused or s.status.phase in TERMINAL_PHASES)
    # The spec's indefinite pause at 50 %: reached past every weight step despite the failures.
    assert sim.status.phase is Phase.paused and sim.status.reason == "PauseStep"
    assert sim.status.weight == 50
    assert not any(isinstance(a, RestoreBlue) for a in sim.actions)
    trial = sim.status.gate("trial")
    assert trial is not None and trial.dry_run
    assert trial.outcome is GateOutcome.failed and trial.failed >= 2
    assert trial.last_verdict is Verdict.failed and trial.last_value == 0.5
    real = sim.status.gate("error-rate")
    assert real is not None and not real.dry_run and real.outcome is GateOutcome.running
    sim.ask(RequestVerb.promote)
    sim.run(lambda s: s.status.phase in TERMINAL_PHASES)
    assert sim.status.phase is Phase.succeeded


def test_a_dry_run_gate_erroring_or_without_data_never_pauses() -> None:
    for readings in (trial_errors, trial_has_no_data):
        sim = Sim(
            two_gates(consecutiveErrorLimit=0, inconclusiveLimit=0, onError="rollback"),
            readings=readings,
        )
        sim.run(lambda s: s.status.reason == "PauseStep" or s.status.phase in TERMINAL_PHASES)
        assert sim.status.phase is Phase.paused and sim.status.weight == 50
        trial = sim.status.gate("trial")
        assert trial is not None
        assert trial.outcome in (GateOutcome.error, GateOutcome.inconclusive)


def test_the_same_gate_not_in_dry_run_rolls_back() -> None:
    sim = Sim(
        spec(gates=[gate(name="trial", interval="10s", failureLimit=0)]), readings=trial_fails
    )
    sim.run(lambda s: s.status.phase in TERMINAL_PHASES or s.status.phase is Phase.paused)
    assert sim.status.phase is Phase.rolled_back


def test_a_step_waits_only_for_gates_that_are_not_dry_run() -> None:
    # The dry-run gate never passes (no data counted as a failure) and the run still advances.
    sim = Sim(two_gates(onNoData="fail", failureLimit=1000), readings=trial_has_no_data)
    sim.run(lambda s: s.status.weight == 50)
    trial = sim.status.gate("trial")
    assert trial is not None and trial.last_passed_at is None


def test_the_status_report_marks_dry_run_gates_and_leaves_them_out_of_the_risk() -> None:
    migration_spec = two_gates(failureLimit=0)
    sim = Sim(migration_spec, readings=trial_fails)
    sim.run(lambda s: s.status.reason == "PauseStep")
    manifest = {
        "metadata": {"name": "checkout", "namespace": "shop"},
        "spec": migration_spec.to_dict(),
        "status": sim.status.to_dict(),
    }
    report = build_report(manifest, now=sim.now)
    gates = {g.name: g for g in report.gates}
    assert gates["trial"].dry_run and not gates["error-rate"].dry_run
    assert gates["trial"].outcome == "Failed"
    assert not any("trial" in reason for reason in report.risk.reasons)
    buffer = io.StringIO()
    Console(file=buffer, width=120, highlight=False).print(report_renderable(report))
    text = buffer.getvalue()
    assert "trial (dry run)" in text and "error-rate (dry run)" not in text
