"""The progress deadline is green's time, not the operator's: it counts from the moment the step's
weight is in place, and it is judged only on a Deployment observation that includes the write."""

from __future__ import annotations

from datetime import timedelta

from cutover.api import MigrationStatus, Phase
from cutover.core.actions import Action, SetWeight
from cutover.core.machine import decide
from cutover.core.observations import DeploymentState, Observations, Request, RequestVerb

from .sim import T0
from .specs import spec

SPEC = spec(gates=[], steps=[{"setWeight": 50}, {"setWeight": 100}], progressDeadline="10s")
BLUE = DeploymentState(replicas=4, available=4)
STARTING = DeploymentState(replicas=2, available=0)  # green scaled for 50 %, no pod ready yet


def at(
    status: MigrationStatus,
    seconds: float,
    green: DeploymentState,
    acted: tuple[Action, ...] = (),
    request: Request | None = None,
) -> MigrationStatus:
    observed = Observations(
        generation=1, blue=BLUE, green=green, router_weight=50, acted=acted, request=request
    )
    return decide(SPEC, status, observed, T0 + timedelta(seconds=seconds)).status


def acknowledged_at(seconds: float) -> MigrationStatus:
    """The first step decided at T0 (weight 50 asked of the router); the write lands later."""
    first = decide(SPEC, MigrationStatus(), Observations(1, BLUE, DeploymentState(0, 0), 0), T0)
    assert [a for a in first.actions if isinstance(a, SetWeight)] == [SetWeight(50, 4)]
    return at(first.status, seconds, STARTING, acted=(SetWeight(50, 4),))


def test_a_write_that_lands_late_does_not_spend_greens_deadline() -> None:
    # The operator (or the API server) took 30 s to carry the write out: three deadlines.
    acked = acknowledged_at(30)
    assert acked.phase is Phase.progressing, acked.message
    assert acked.weight_acknowledged_at == T0 + timedelta(seconds=30)
    # Green is still starting 9 s after its weight landed: within the 10 s.
    assert at(acked, 39, DeploymentState(2, 1)).phase is Phase.progressing


def test_a_green_that_never_becomes_ready_still_rolls_back_after_the_deadline() -> None:
    late = at(acknowledged_at(30), 41, DeploymentState(2, 1))
    assert late.phase is Phase.rolling_back
    assert "1/2 replicas available 10s after its weight was in place" in late.message


def test_an_observation_from_before_the_scale_up_landed_is_not_judged() -> None:
    # The watch still shows green at 0 replicas: it has not delivered the write yet.
    stale = at(acknowledged_at(1), 60, DeploymentState(0, 0))
    assert stale.phase is Phase.progressing, stale.message
    assert at(stale, 61, STARTING).phase is Phase.rolling_back


def test_time_paused_is_given_back_to_the_deadline() -> None:
    held = acknowledged_at(1).model_copy(
        update={"phase": Phase.paused, "paused_at": T0 + timedelta(seconds=2)}
    )
    resumed = at(held, 102, STARTING, request=Request(id="r1", verb=RequestVerb.resume))
    assert resumed.phase is Phase.progressing, resumed.message
    assert resumed.weight_acknowledged_at == T0 + timedelta(seconds=101)
    assert at(resumed, 110, STARTING).phase is Phase.progressing
