"""HorizontalPodAutoscalers on blue or green: which runs may start, and green's floor during one."""

from __future__ import annotations

from typing import Any

import pytest

from cutover.api import ConditionType, Phase, parse_spec
from cutover.autoscalers import autoscaler
from cutover.core.autoscaling import Autoscaler, conflicts, pinned_min

from .sim import Sim
from .specs import raw

ISTIO: dict[str, Any] = {
    "blue": {"deployment": "checkout-blue", "service": "checkout-blue"},
    "green": {"deployment": "checkout-green", "service": "checkout-green"},
    "traffic": {"router": "istio", "istio": {"virtualService": "checkout"}},
}
STEPS = [{"setWeight": 50}, {"setWeight": 100}]


def hpa(deployment: str, low: int = 1, high: int = 10, saved: int | None = None) -> Autoscaler:
    return Autoscaler(f"{deployment}-hpa", deployment, low, high, saved)


@pytest.mark.parametrize("role", ["checkout-blue", "checkout-green"])
def test_the_replicas_router_refuses_an_hpa_on_either_side_naming_it(role: str) -> None:
    spec = parse_spec(raw(steps=STEPS))
    (problem,) = conflicts(spec, 4, [hpa(role), hpa("other-app")])
    assert problem.startswith(f"HorizontalPodAutoscaler {role}-hpa scales")
    assert f"Deployment {role}, and the replicas router sets its replicas" in problem
    assert "gatewayapi, istio, nginx or service" in problem


@pytest.mark.parametrize(
    ("high", "refused"), [(3, True), (4, False), (10, False)], ids=["below", "equal", "above"]
)
def test_a_weighted_router_refuses_a_green_hpa_capped_below_blue_s_size(
    high: int, refused: bool
) -> None:
    spec = parse_spec(raw(**ISTIO, steps=STEPS))
    problems = conflicts(spec, 4, [hpa("checkout-green", 1, high)])
    assert bool(problems) is refused
    if refused:
        assert "maxReplicas 3, below blue's 4 replicas" in problems[0]
        assert "Raise its maxReplicas to at least 4" in problems[0]


def test_a_weighted_router_shares_blue_with_its_hpa() -> None:
    spec = parse_spec(raw(**ISTIO, steps=STEPS))
    assert conflicts(spec, 4, [hpa("checkout-blue", 1, 2)]) == []


@pytest.mark.parametrize(
    ("low", "high", "saved", "total", "floor"),
    [
        (1, 10, None, 4, 4),  # raised to blue's size
        (6, 10, None, 4, 6),  # the owner's floor is higher: kept
        (4, 10, 1, 4, 4),  # already raised by this run: the saved floor counts, not 4
        (4, 10, 6, 4, 6),  # saved floor higher than blue
        (1, 3, None, 4, 3),  # never above maxReplicas (the run is refused before that)
        (1, 10, None, 0, 1),  # an empty blue still leaves the HPA a floor of 1
    ],
)
def test_green_s_floor_is_blue_s_size_within_the_hpa_s_bounds(
    low: int, high: int, saved: int | None, total: int, floor: int
) -> None:
    assert pinned_min(total, hpa("checkout-green", low, high, saved)) == floor


def test_an_hpa_conflict_fails_the_run_before_any_traffic_moves() -> None:
    sim = Sim(parse_spec(raw(steps=STEPS, gates=[])), autoscalers=(hpa("checkout-green"),))
    sim.reconcile()
    assert sim.status.phase is Phase.failed and sim.status.reason == "HPAConflict"
    assert sim.weight_writes == [] and sim.green == 0
    invalid = sim.status.condition(ConditionType.invalid_spec)
    assert invalid is not None and invalid.reason == "HPAConflict"
    assert "HorizontalPodAutoscaler checkout-green-hpa" in invalid.message


def test_a_weighted_run_with_green_s_hpa_goes_on() -> None:
    sim = Sim(parse_spec(raw(**ISTIO, steps=STEPS, gates=[])), autoscalers=(hpa("checkout-green"),))
    sim.run(until=lambda s: s.status.phase is Phase.succeeded, limit=60)
    assert sim.status.phase is Phase.succeeded


def _hpa_object(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "annotations": {"cutover.io/original": '{"minReplicas":2}'}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "green"},
            "maxReplicas": 8,
            **spec,
        },
    }


def test_an_hpa_object_is_read_with_its_defaults_and_saved_floor() -> None:
    assert autoscaler(_hpa_object()) == Autoscaler("web", "green", 1, 8, 2)
    assert autoscaler(_hpa_object(minReplicas=5)) == Autoscaler("web", "green", 5, 8, 2)
    other = _hpa_object(scaleTargetRef={"apiVersion": "apps/v1", "kind": "StatefulSet"})
    assert autoscaler(other) is None
