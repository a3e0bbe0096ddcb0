"""The rollback policies a user sets, each against the one decision that could ignore it.

Each test here was written against a mutation of the core that the rest of the suite let
through (docs/testing.md, "Mutation testing"): the least severe gate deciding, ``onError:
rollback`` or a failing hook ignoring ``rollback.automatic: false``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from cutover.api import TERMINAL_PHASES, ConditionType, GateOutcome, Phase, Verdict
from cutover.core.gates import Reading
from cutover.core.machine import RestoreBlue

from .sim import Sim
from .specs import gate, spec
from .test_hooks import HOOKS, hook, hooked


def settled(sim: Sim) -> bool:
    return sim.status.phase in TERMINAL_PHASES or sim.status.phase is Phase.paused


def rolled_back_to_blue(sim: Sim) -> bool:
    return any(isinstance(a, RestoreBlue) for a in sim.actions)


@pytest.mark.parametrize("failing_first", [True, False], ids=["failing-first", "failing-second"])
def test_when_two_gates_stop_a_run_at_once_the_failed_one_decides_not_the_inconclusive_one(
    failing_first: bool,
) -> None:
    failing = gate(name="error-rate", interval="10s", failureLimit=0)
    silent = gate(name="latency", interval="10s", inconclusiveLimit=0, onNoData="inconclusive")
    gates = [failing, silent] if failing_first else [silent, failing]
    sim = Sim(spec(gates=gates))
    sim.run(lambda s: s.status.weight == 10)
    started = sim.now

    def readings(name: str, now: datetime) -> Reading:
        if now <= started:
            return Reading.of(0.0)
        return Reading.of(0.5) if name == "error-rate" else Reading.no_data()

    sim.readings = readings
    sim.run(settled)

    # Both gates crossed their limits in the same check: the breach rolls back; a pause for the
    # inconclusive gate would leave green serving while it fails.
    assert {g.name: g.outcome for g in sim.status.gates} == {
        "error-rate": GateOutcome.failed,
        "latency": GateOutcome.inconclusive,
    }
    assert sim.status.phase is Phase.rolled_back
    assert sim.status.condition(ConditionType.rolled_back).reason == "GateFailed"  # type: ignore[union-attr]
    assert sim.weight_in_cluster == 0


def test_on_error_rollback_still_pauses_when_automatic_rollback_is_off() -> None:
    sim = Sim(
        spec(
            gates=[gate(interval="10s", consecutiveErrorLimit=1, onError="rollback")],
            rollback={"automatic": False},
        )
    )
    sim.run(lambda s: s.status.weight == 10)
    sim.readings = lambda _g, _n: Reading.error("connection refused")
    sim.run(settled)

    assert (sim.status.phase, sim.status.reason) == (Phase.paused, "GateError")
    assert not rolled_back_to_blue(sim) and sim.weight_in_cluster == 10


def test_on_error_rollback_rolls_back_when_automatic_rollback_is_on() -> None:
    sim = Sim(spec(gates=[gate(interval="10s", consecutiveErrorLimit=1, onError="rollback")]))
    sim.run(lambda s: s.status.weight == 10)
    sim.readings = lambda _g, _n: Reading.error("connection refused")
    sim.run(settled)

    assert sim.status.phase is Phase.rolled_back and rolled_back_to_blue(sim)


@pytest.mark.parametrize(
    ("automatic", "phase", "restored"),
    [(True, Phase.rolled_back, True), (False, Phase.paused, False)],
    ids=["automatic", "manual"],
)
def test_a_failing_hook_rolls_back_only_when_automatic_rollback_is_on(
    automatic: bool, phase: Phase, restored: bool
) -> None:
    hooks = dict(HOOKS, afterStep=[hook("check")])
    sim = Sim(
        hooked(hooks=hooks, rollback={"automatic": automatic}), hook_outcomes={"check": "fail"}
    )
    sim.run(settled)

    assert sim.status.phase is phase
    assert rolled_back_to_blue(sim) is restored
    if not automatic:
        assert sim.status.reason == "HookFailed" and sim.weight_in_cluster > 0
        assert "hook check (afterStep) failed after 1 attempt(s)" in (sim.status.message or "")


def test_a_failed_check_within_the_limit_holds_the_step_until_a_later_check_passes() -> None:
    sim = Sim(
        spec(
            gates=[gate(interval="10s", failureLimit=3)],
            steps=[{"setWeight": 10}, {"pause": {"duration": "1m"}}, {"setWeight": 100}],
        )
    )
    sim.run(lambda s: s.status.current_step_index == 1)
    assert sim.status.step_started_at is not None
    pause_end = sim.status.step_started_at + timedelta(minutes=1)
    # Passing checks all through the pause, then failing ones around its end.
    sim.readings = lambda _g, now: Reading.of(
        0.5 if pause_end - timedelta(seconds=5) <= now < pause_end + timedelta(seconds=25) else 0.0
    )
    sim.run(lambda s: s.now >= pause_end + timedelta(seconds=20))

    record = sim.status.gate("error-rate")
    assert record is not None and record.failed >= 2 and record.last_verdict is Verdict.failed
    assert (sim.status.phase, sim.status.current_step_index) == (Phase.progressing, 1)
    assert sim.weight_in_cluster == 10

    sim.run(lambda s: s.status.current_step_index == 2)
    assert sim.now >= pause_end + timedelta(seconds=25)  # the first passing check after the end
    assert sim.status.gate("error-rate").last_verdict is Verdict.passed  # type: ignore[union-attr]
