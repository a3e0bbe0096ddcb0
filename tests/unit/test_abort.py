"""An abort before a run is recorded: nothing to undo, or traffic that moved all the same."""

from __future__ import annotations

from cutover.api import ConditionType, Phase
from cutover.core.actions import EmitEvent, RestoreBlue, SetWeight
from cutover.core.machine import decide
from cutover.core.observations import RequestVerb

from .sim import Sim
from .specs import spec


def test_an_abort_before_anything_moved_ends_the_run_without_a_router_write() -> None:
    sim = Sim(spec(gates=[]))
    sim.ask(RequestVerb.abort)
    assert sim.status.phase is Phase.rolled_back and sim.status.reason == "Aborted"
    assert not [a for a in sim.actions if not isinstance(a, EmitEvent)]
    assert sim.weight_in_cluster == 0


def test_an_abort_after_a_router_write_the_status_never_recorded_restores_blue() -> None:
    """An operator killed between its first router write and its status write leaves a Pending
    status over a cluster where green has traffic: abort must bring it back, not just say so."""
    sim = Sim(spec(gates=[], steps=[{"setWeight": 100}]))
    first = decide(sim.spec, sim.status, sim.observe(), sim.now)
    weights = [a for a in first.actions if isinstance(a, SetWeight)]
    assert weights and weights[0].weight == 100
    sim.act(weights[0])  # the write happened; the status write that records it did not
    assert sim.status.phase is Phase.pending and sim.weight_in_cluster == 100

    sim.ask(RequestVerb.abort)
    assert any(isinstance(a, RestoreBlue) for a in sim.actions)
    sim.run(until=lambda s: s.status.phase is Phase.rolled_back, limit=60)
    rolled_back = sim.status.condition(ConditionType.rolled_back)
    assert rolled_back is not None and rolled_back.reason == "Aborted"
    assert sim.weight_in_cluster == 0 and sim.green == 0
    # A run the rollback can be told apart by, e.g. in its onRollback hook Jobs' names.
    assert sim.status.run_id == "1-1"
