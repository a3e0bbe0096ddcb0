"""setMirror steps: green gets copies of live requests from one step until the next setWeight or
setMirror step, and never after a rollback; routers that cannot copy requests refuse the spec."""

from __future__ import annotations

from typing import Any

import pytest

from cutover.api import ConditionType, Phase, SpecInvalid, parse_spec
from cutover.core.actions import SetMirror
from cutover.core.observations import RequestVerb
from cutover.core.plan import StepKind, mirror_at, schedule

from .sim import Sim
from .specs import raw

ISTIO: dict[str, Any] = {
    "blue": {"deployment": "checkout-blue", "service": "checkout-blue"},
    "green": {"deployment": "checkout-green", "service": "checkout-green"},
    "traffic": {"router": "istio", "istio": {"virtualService": "checkout"}},
}
STEPS: list[dict[str, Any]] = [
    {"setMirror": {"percent": 50}},
    {"pause": {}},
    {"setWeight": 20},
    {"setMirror": {"percent": 100}},
    {"pause": {}},
    {"setWeight": 100},
]


def mirrored(steps: list[dict[str, Any]] = STEPS, **changes: Any) -> Sim:
    return Sim(parse_spec(raw(**ISTIO, steps=steps, gates=[], **changes)))


def held(sim: Sim) -> Sim:
    sim.run(until=lambda s: s.status.phase is Phase.paused, limit=60)
    return sim


def test_a_mirror_step_copies_requests_before_green_answers_any() -> None:
    sim = held(mirrored())
    assert (sim.status.current_step_index, sim.status.weight) == (1, 0)
    assert sim.mirror_in_cluster == 50 and sim.status.mirror == 50
    assert sim.order() == ["mirror 50"]
    assert any(h.reason == "MirrorSet" for h in sim.status.history)


def test_the_next_weight_step_removes_the_mirror_and_a_later_one_sets_it_again() -> None:
    sim = held(mirrored())
    sim.ask(RequestVerb.promote)
    held(sim)
    assert sim.status.current_step_index == 4
    assert sim.order() == ["mirror 50", "weight 20", "mirror 0", "mirror 100"]
    assert (sim.mirror_in_cluster, sim.weight_in_cluster) == (100, 20)
    sim.ask(RequestVerb.promote)
    sim.run(until=lambda s: s.status.phase is Phase.succeeded, limit=120)
    assert sim.order()[-3:] == ["weight 100", "mirror 0", "retire"]
    assert sim.mirror_in_cluster == 0 and sim.status.mirror == 0


def test_a_rollback_while_mirroring_removes_the_mirror_with_the_restore() -> None:
    sim = held(mirrored())
    sim.ask(RequestVerb.abort)
    sim.run(until=lambda s: s.status.phase is Phase.rolled_back, limit=60)
    assert sim.mirror_in_cluster == 0 and sim.status.mirror == 0
    assert sim.order() == ["mirror 50", "restore"]


def test_a_mirror_the_cluster_lost_is_written_again() -> None:
    steps = [{"setMirror": {"percent": 50}}, {"pause": {"duration": "1h"}}, {"setWeight": 100}]
    sim = mirrored(steps=steps)
    sim.run(until=lambda s: s.status.current_step_index == 1, limit=60)
    sim.mirror_in_cluster = 0  # e.g. the route re-applied from Git while an operator restarted
    sim.reconcile()
    assert sim.actions.count(SetMirror(50)) == 2
    assert sim.mirror_in_cluster == 50 and sim.status.current_step_index == 1


def test_green_must_be_ready_for_the_copies_before_the_mirror_step_is_done() -> None:
    sim = mirrored(steps=[{"setMirror": {"percent": 10}}, {"setWeight": 100}])
    sim.ready_delay = 30
    sim.reconcile()
    assert sim.status.current_step_index == 0 and sim.mirror_in_cluster == 10
    sim.run(until=lambda s: s.status.current_step_index == 1, limit=60)
    assert sim.status.step_ready_at is None or sim.status.weight == 100


@pytest.mark.parametrize(
    ("index", "percent"), [(0, 50), (1, 50), (2, 0), (3, 100), (4, 100), (5, 0), (6, 0)]
)
def test_the_mirror_lasts_through_pauses_until_the_next_weight_step(
    index: int, percent: int
) -> None:
    spec = parse_spec(raw(**ISTIO, steps=STEPS, gates=[]))
    assert mirror_at(spec, index) == percent


def test_the_plan_shows_each_step_s_mirror() -> None:
    planned = schedule(parse_spec(raw(**ISTIO, steps=STEPS, gates=[])))
    assert [(s.kind, s.weight, s.mirror) for s in planned.steps] == [
        (StepKind.set_mirror, 0, 50),
        (StepKind.pause, 0, 50),
        (StepKind.set_weight, 20, 0),
        (StepKind.set_mirror, 20, 100),
        (StepKind.pause, 20, 100),
        (StepKind.set_weight, 100, 0),
    ]


@pytest.mark.parametrize("router", ["replicas", "service", "nginx"])
def test_a_router_that_cannot_copy_requests_refuses_a_mirror_step(router: str) -> None:
    traffic: dict[str, Any] = {"router": router, "service": "checkout"}
    if router == "nginx":
        traffic = {"router": router, "nginx": {"ingress": "checkout"}}
    steps = [{"setMirror": {"percent": 50}}, {"setWeight": 100}]
    with pytest.raises(SpecInvalid) as caught:
        parse_spec(raw(**{**ISTIO, "traffic": traffic}, steps=steps))
    assert caught.value.problems == [
        f"spec: steps[0].setMirror: the {router} router cannot copy requests to green;"
        " use gatewayapi, istio"
    ]


def test_mirror_0_is_allowed_anywhere_and_mirroring_at_weight_100_is_not() -> None:
    parse_spec(raw(steps=[{"setMirror": {"percent": 0}}, {"setWeight": 100}]))
    with pytest.raises(SpecInvalid, match="nothing left to mirror"):
        parse_spec(raw(**ISTIO, steps=[{"setWeight": 100}, {"setMirror": {"percent": 5}}]))


def test_a_refused_mirror_spec_fails_the_run_before_traffic_moves() -> None:
    sim = Sim(SpecInvalid(["spec: steps[0].setMirror: the replicas router cannot copy"]))
    sim.reconcile()
    assert sim.status.phase is Phase.failed and sim.weight_writes == []
    invalid = sim.status.condition(ConditionType.invalid_spec)
    assert invalid is not None and invalid.status == "True"
    assert "cannot copy" in invalid.message
