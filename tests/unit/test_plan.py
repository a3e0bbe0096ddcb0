from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cutover.cli.phases import build_phases
from cutover.core.plan import effective_weight, replica_split, schedule

from .specs import gate, spec


@given(
    total=st.integers(min_value=1, max_value=500), weight=st.integers(min_value=0, max_value=100)
)
def test_a_version_with_traffic_always_has_a_pod(total: int, weight: int) -> None:
    blue, green = replica_split(total, weight)
    assert (green > 0) == (weight > 0)
    assert (blue > 0) == (weight < 100)
    if total > 1 or weight in (0, 100):
        assert blue + green == total


@given(total=st.integers(min_value=2, max_value=500), weight=st.integers(min_value=1, max_value=99))
def test_the_split_is_as_close_to_the_weight_as_pods_allow(total: int, weight: int) -> None:
    _blue, green = replica_split(total, weight)
    ideal = total * weight / 100
    assert abs(green - ideal) < 1
    if 1 <= round(ideal) <= total - 1:
        assert abs(green - ideal) <= 0.5


def test_splits_of_a_four_pod_service() -> None:
    assert [replica_split(4, w) for w in (0, 10, 25, 50, 90, 100)] == [
        (4, 0),
        (3, 1),
        (3, 1),
        (2, 2),
        (1, 3),
        (0, 4),
    ]
    assert effective_weight(3, 1) == 25


def test_schedule_lists_holds_gates_and_the_minimum_duration() -> None:
    plan = schedule(spec())
    assert [(s.kind, s.weight) for s in plan.steps] == [
        ("setWeight", 10),
        ("pause", 10),
        ("setWeight", 50),
        ("pause", 50),
        ("setWeight", 100),
    ]
    assert plan.steps[1].hold_seconds == 120
    assert plan.steps[3].indefinite and plan.waits_for_promotion
    assert plan.steps[0].gates == ("error-rate",)
    # One 30 s check at 10 %, the 2 m pause, 30 s at 50 %, one check in the
    # indefinite pause, 30 s at 100 %.
    assert plan.minimum_seconds == 30 + 120 + 30 + 30 + 30


def test_a_zero_weight_step_needs_no_gate() -> None:
    plan = schedule(spec(steps=[{"setWeight": 0}, {"setWeight": 100}]))
    assert plan.steps[0].gates == () and plan.steps[0].hold_seconds == 0


def test_the_preview_comes_first_with_its_own_gates_and_the_steps_wait_for_the_others() -> None:
    smoke = gate(
        name="smoke",
        interval="20s",
        prometheus={"address": "http://prometheus:9090", "query": "up"},
    )
    parsed = spec(
        traffic={"router": "gatewayapi", "gatewayAPI": {"httpRoute": "orders"}},
        steps=[{"setWeight": 20}, {"setWeight": 100}],
        gates=[smoke, gate(interval="30s")],
        preview={"gates": ["smoke"]},
    )
    planned = schedule(parsed)
    assert planned.preview_gates == ("smoke",) and planned.preview_seconds == 20
    assert [s.gates for s in planned.steps] == [("error-rate",), ("error-rate",)]
    # The preview's interval, then one of the step gate's at each of the two weights.
    assert planned.minimum_seconds == 20 + 30 + 30
    phases = [p.name for p in build_phases(parsed, ())]
    assert phases[:3] == ["preShift", "preview", "step 1: setWeight 20"]
    without = schedule(spec(gates=[gate(interval="30s")]))
    assert without.preview_seconds is None and without.preview_gates == ()
