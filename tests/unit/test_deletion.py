"""What `kubectl delete mig` does to traffic, in each state a run can be in (core/deletion.py)."""

from __future__ import annotations

import pytest

from cutover.api import MigrationStatus, Phase, SpecInvalid
from cutover.core.deletion import on_delete
from cutover.core.machine import EmitEvent, RestoreBlue

from .specs import spec


@pytest.mark.parametrize("phase", [Phase.progressing, Phase.paused, Phase.rolling_back])
def test_a_run_in_motion_gives_all_traffic_back_to_blue_before_it_goes(phase: Phase) -> None:
    status = MigrationStatus(phase=phase, weight=50, total_replicas=4)

    actions = on_delete(spec(), status)

    assert actions == (
        RestoreBlue(total_replicas=4, scale_down_green=True),
        EmitEvent(
            "Normal",
            "TrafficRestored",
            "deleted mid-run with 50% on green: all traffic returned to blue",
        ),
    )


def test_past_the_point_of_no_return_traffic_stays_and_a_warning_says_why() -> None:
    status = MigrationStatus(
        phase=Phase.progressing,
        weight=100,
        total_replicas=4,
        point_of_no_return="irreversible hook contract started at 10:00:00Z",
    )

    actions = on_delete(spec(), status)

    assert not any(isinstance(a, RestoreBlue) for a in actions)
    assert actions == (
        EmitEvent(
            "Warning",
            "RollbackNotAvailable",
            "deleted past the point of no return (irreversible hook contract started at"
            " 10:00:00Z): 100% stays on green",
        ),
    )


@pytest.mark.parametrize("phase", [Phase.pending, Phase.succeeded, Phase.rolled_back, Phase.failed])
def test_a_run_that_has_not_moved_traffic_or_has_ended_is_left_as_it_is(phase: Phase) -> None:
    assert on_delete(spec(), MigrationStatus(phase=phase, weight=0, total_replicas=4)) == ()


def test_with_an_invalid_spec_there_is_no_router_to_call_and_a_warning_says_so() -> None:
    status = MigrationStatus(phase=Phase.paused, weight=10, total_replicas=4)

    (event,) = on_delete(SpecInvalid(["spec.steps: bad"]), status)

    assert isinstance(event, EmitEvent) and (event.type, event.reason) == ("Warning", "InvalidSpec")
    assert event.message.endswith("10% stays on green")


def test_scale_down_green_follows_the_spec() -> None:
    keep_green = spec(rollback={"automatic": True, "scaleDownGreen": False})
    status = MigrationStatus(phase=Phase.progressing, weight=10)

    restore = on_delete(keep_green, status)[0]

    assert restore == RestoreBlue(total_replicas=1, scale_down_green=False)
