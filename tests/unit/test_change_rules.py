"""The two small rules a person reads most directly: what a spec change does in each phase
(`cutover plan --live`, the operator's SpecChanged handling) and whether a rollback is still
possible (status.rollbackAvailable, the RollbackAvailable condition, the report). Each case
pins the effect and the exact words."""

from __future__ import annotations

import pytest

from cutover.api import MigrationStatus, Phase
from cutover.core.rollback import RollbackCode, availability
from cutover.core.speccheck import ChangeEffect, effect_of, live_after_success

from .specs import spec

# ISSUE_SPEC: checkout-blue -> checkout-green in 5 steps.
NEXT = spec(blue={"deployment": "checkout-green"}, green={"deployment": "checkout-v3"})
AGAINST_RETIRED = spec(green={"deployment": "checkout-v3"})


@pytest.mark.parametrize(
    ("status", "new_spec", "effect", "message", "live"),
    [
        (
            MigrationStatus(phase=Phase.pending),
            spec(),
            ChangeEffect.first_run,
            "the run has not started: it will run these 5 steps",
            None,
        ),
        (
            MigrationStatus(phase=Phase.paused, weight=10),
            spec(),
            ChangeEffect.restart,
            "the run starts again from step 1 of 5 with this spec (10% on green now)",
            None,
        ),
        (
            MigrationStatus(phase=Phase.rolling_back, weight=10),
            spec(),
            ChangeEffect.after_rollback,
            "the rollback to blue finishes first; `cutover retry` then runs this spec",
            None,
        ),
        (
            MigrationStatus(phase=Phase.failed),
            spec(),
            ChangeEffect.new_run,
            "a new run starts from checkout-blue (blue) towards checkout-green: step 1 of 5",
            None,
        ),
        (
            MigrationStatus(phase=Phase.succeeded, weight=100, live_deployment="checkout-green"),
            spec(),
            ChangeEffect.recorded,
            "nothing moves: checkout-green keeps all traffic; the change applies to the next run,"
            " which a new spec.green starts",
            "checkout-green",
        ),
        (
            MigrationStatus(phase=Phase.succeeded, weight=100, live_deployment="checkout-green"),
            AGAINST_RETIRED,
            ChangeEffect.refused,
            "spec.blue: checkout-blue was retired by the last run and checkout-green serves all"
            " traffic; set spec.blue to checkout-green to start a run towards checkout-v3",
            "checkout-green",
        ),
        (
            MigrationStatus(phase=Phase.succeeded, weight=100, live_deployment="checkout-green"),
            NEXT,
            ChangeEffect.new_release,
            "new release checkout-v3: starting from checkout-green, the live side",
            "checkout-green",
        ),
    ],
    ids=["pending", "paused", "rolling-back", "failed", "same-green", "retired-blue", "release"],
)
def test_what_a_spec_change_does_in_each_phase(
    status: MigrationStatus, new_spec: object, effect: ChangeEffect, message: str, live: str | None
) -> None:
    # Which side is live only matters after a success; before it, any name gives the same answer.
    change = effect_of(status, new_spec, status.live_deployment or "not-asked")  # type: ignore[arg-type]
    assert (change.effect, change.message, change.live) == (effect, message, live)


def test_the_recorded_live_side_wins_over_what_the_deployments_look_like() -> None:
    recorded = MigrationStatus(phase=Phase.succeeded, live_deployment="checkout-v2")
    assert live_after_success(recorded, spec(), spec_changed=True, blue_replicas=3) == "checkout-v2"


@pytest.mark.parametrize(
    ("spec_changed", "blue_replicas", "live"),
    [
        (False, 3, "checkout-green"),  # unchanged spec: green, whatever blue still runs
        (True, 3, "checkout-blue"),  # an edit that made the old green the new blue
        (True, 0, "checkout-green"),  # blue retired to zero: green serves
        (True, None, "checkout-green"),  # blue gone
    ],
)
def test_a_success_recorded_before_live_deployment_existed_reads_the_side_with_pods(
    spec_changed: bool, blue_replicas: int | None, live: str
) -> None:
    legacy = MigrationStatus(phase=Phase.succeeded, weight=100)
    assert live_after_success(legacy, spec(), spec_changed, blue_replicas) == live


def test_a_legacy_success_with_the_old_green_as_new_blue_is_a_new_release() -> None:
    """Before, the new spec's green was taken as live: this release was swallowed as recorded."""
    legacy = MigrationStatus(phase=Phase.succeeded, weight=100)
    release = NEXT  # blue: checkout-green (the old green), green: checkout-v3
    live = live_after_success(legacy, release, spec_changed=True, blue_replicas=3)
    change = effect_of(legacy, release, live)
    assert (change.effect, change.live) == (ChangeEffect.new_release, "checkout-green")


@pytest.mark.parametrize(
    ("status", "available", "code", "message"),
    [
        (
            MigrationStatus(phase=Phase.succeeded, weight=100),
            False,
            RollbackCode.blue_retired,
            "succeeded: blue was retired",
        ),
        (
            MigrationStatus(phase=Phase.progressing, weight=100, point_of_no_return="contract ran"),
            False,
            RollbackCode.irreversible,
            "contract ran",
        ),
        (
            MigrationStatus(phase=Phase.rolling_back, weight=10),
            False,
            RollbackCode.rolling_back,
            "already rolling back",
        ),
        (
            MigrationStatus(phase=Phase.rolled_back),
            False,
            RollbackCode.rolled_back,
            "already rolled back: traffic is on blue",
        ),
        (
            MigrationStatus(phase=Phase.failed),
            False,
            RollbackCode.nothing_to_roll_back,
            "nothing to roll back: traffic is on blue",
        ),
        (
            MigrationStatus(phase=Phase.failed, weight=25),
            False,
            RollbackCode.run_ended,
            "the run ended with 25% on green: a corrected spec starts a new run",
        ),
        (
            MigrationStatus(phase=Phase.paused, weight=25, reason="BlueMissing"),
            False,
            RollbackCode.blue_missing,
            "the blue Deployment is gone",
        ),
        (
            MigrationStatus(phase=Phase.progressing),
            True,
            RollbackCode.available,
            "all traffic is still on blue: abort stops the run",
        ),
        (
            MigrationStatus(phase=Phase.paused, weight=50),
            True,
            RollbackCode.available,
            "`cutover abort` returns 50% from green to blue",
        ),
    ],
    ids=[
        "succeeded",
        "irreversible",
        "rolling-back",
        "rolled-back",
        "failed-on-blue",
        "failed-on-green",
        "blue-missing",
        "not-started",
        "mid-run",
    ],
)
def test_whether_traffic_can_still_go_back_to_blue_and_why(
    status: MigrationStatus, available: bool, code: RollbackCode, message: str
) -> None:
    found = availability(status)
    assert (found.available, found.code, found.message) == (available, code, message)
