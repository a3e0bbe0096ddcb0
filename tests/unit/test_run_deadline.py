"""spec.deadline: a whole run's time limit, and the outcome its author chose (rollback or pause)."""

from __future__ import annotations

from datetime import timedelta

from cutover.api import ConditionType, Phase
from cutover.core.observations import RequestVerb

from .sim import T0, Sim
from .specs import spec

# Held at 50 % until promoted: only the deadline can end it.
STEPS = [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]


def run(action: str) -> Sim:
    sim = Sim(spec(gates=[], steps=STEPS, deadline={"duration": "60s", "action": action}))
    sim.run(until=lambda s: s.status.phase is Phase.paused, limit=30)
    assert sim.status.weight == 50 and sim.status.reason == "PauseStep"
    return sim


def test_a_run_past_its_deadline_rolls_back_with_the_reason() -> None:
    sim = run("rollback")
    sim.run(until=lambda s: s.status.phase is Phase.rolled_back, limit=120)
    rolled = sim.status.condition(ConditionType.rolled_back)
    assert rolled is not None and rolled.reason == "RunDeadlineExceeded"
    assert "passed its deadline of 60s (spec.deadline)" in rolled.message
    assert sim.weight_in_cluster == 0
    # Not before the deadline: the run started at T0 and held until then.
    assert sim.status.deadline_reached_at is not None
    assert sim.status.deadline_reached_at >= T0 + timedelta(seconds=60)


def test_the_deadline_wakes_the_operator_even_while_nothing_else_is_due() -> None:
    sim = run("rollback")
    decision = sim.reconcile()
    assert decision.requeue_after is not None
    assert sim.now + timedelta(seconds=decision.requeue_after) >= T0 + timedelta(seconds=60)
    assert sim.now + timedelta(seconds=decision.requeue_after) <= T0 + timedelta(seconds=61)


def test_a_pause_deadline_holds_once_and_a_resume_goes_on() -> None:
    sim = run("pause")
    sim.ask(RequestVerb.promote)  # past the pause step: the run would finish now
    sim.now = T0 + timedelta(seconds=10)
    sim.status = sim.status.model_copy(update={"phase": Phase.paused, "reason": "PausedByUser"})
    sim.now = T0 + timedelta(seconds=61)
    sim.reconcile()
    # Already held by a person: the deadline does not take over the reason...
    assert sim.status.reason == "PausedByUser" and sim.status.deadline_reached_at is None
    sim.ask(RequestVerb.resume)
    # ...and holds the run as soon as it goes on again, once.
    assert (sim.status.phase, sim.status.reason) == (Phase.paused, "RunDeadlineExceeded")
    sim.ask(RequestVerb.resume)
    sim.run(until=lambda s: s.status.phase is Phase.succeeded, limit=120)
    assert sim.weight_in_cluster == 100


def test_past_the_point_of_no_return_the_deadline_holds_instead_of_rolling_back() -> None:
    sim = run("rollback")
    held = {"point_of_no_return": "contract hook started", "phase": Phase.progressing}
    sim.status = sim.status.model_copy(update=held)
    sim.now = T0 + timedelta(seconds=61)
    sim.reconcile()
    assert (sim.status.phase, sim.status.reason) == (Phase.paused, "RollbackNotAvailable")
    assert "not rolling back: contract hook started" in sim.status.message
    assert sim.weight_in_cluster == 50
