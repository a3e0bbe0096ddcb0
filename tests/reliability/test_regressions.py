"""Regression tests for the bugs the crash driver found (decision engine, in-process, fast)."""

from __future__ import annotations

from cutover.api import Phase
from cutover.core.machine import Request, RequestVerb, RestoreBlue, SetWeight, decide
from cutover.routers.replicas import _split_matches
from tests.unit.sim import Sim
from tests.unit.specs import spec

TIMED = [{"setWeight": 25}, {"pause": {"duration": "1h"}}, {"setWeight": 100}]


def test_a_half_applied_replica_move_is_not_read_back_as_done() -> None:
    # Found by test_crash: SIGKILL between the replicas router's two patches (green 0->1 with
    # the nominal weight annotation, blue 4->3 not yet sent). 4+1 pods split to "25 %" by their
    # own sum, so the router read the nominal weight back and the run went on with blue at 4.
    # The router now checks the split against the run's total (blue's saved size).
    assert not _split_matches(4, 1, 25, total=4)
    assert _split_matches(3, 1, 25, total=4)
    assert _split_matches(2, 2, 50, total=None)  # no saved size: the pair's own sum


def test_a_weight_the_router_reads_differently_is_written_again() -> None:
    sim = Sim(spec(gates=[], steps=TIMED))
    sim.run(lambda s: s.status.current_step_index == 1)
    sim.blue, sim.weight_in_cluster = 4, 20  # the lost write, as the router now reports it
    sim.actions.clear()
    sim.reconcile()
    assert [a.weight for a in sim.actions if isinstance(a, SetWeight)] == [25]
    assert (sim.blue, sim.green) == (3, 1)


def test_a_complete_split_is_not_written_again_after_a_restart() -> None:
    sim = Sim(spec(gates=[], steps=TIMED))
    sim.run(lambda s: s.status.current_step_index == 1)
    sim.actions.clear()
    sim.reconcile()
    assert not [a for a in sim.actions if isinstance(a, SetWeight)]


def test_a_half_done_restore_is_finished_after_a_restart() -> None:
    # Found by test_crash: SIGKILL inside RestoreBlue after green went to 0 and before blue went
    # back to its size. Green at 0 reads as weight 0, and the run was declared RolledBack with
    # blue at 2 of its 4 pods.
    sim = Sim(spec(gates=[], steps=[{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]))
    sim.run(lambda s: s.status.phase is Phase.paused)
    assert (sim.blue, sim.green) == (2, 2)
    sim.request = Request(id="a1", verb=RequestVerb.abort)
    decision = decide(sim.spec, sim.status, sim.observe(), sim.now)
    assert decision.status.phase is Phase.rolling_back
    assert any(isinstance(a, RestoreBlue) for a in decision.actions)
    sim.status, sim.request = decision.status, None
    sim.green, sim.weight_in_cluster = 0, 0  # the restore's first write only
    sim.actions.clear()
    sim.reconcile()
    assert any(isinstance(a, RestoreBlue) for a in sim.actions)
    assert sim.status.phase is Phase.rolled_back
    assert (sim.blue, sim.green) == (4, 0)
