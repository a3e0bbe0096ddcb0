"""What a new spec does to a Migration in its current phase: one rule for the operator (which
acts on it) and for `cutover plan --live` (which says it before anything is applied)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cutover.api import MigrationSpec, MigrationStatus, Phase


class ChangeEffect(enum.StrEnum):
    first_run = "FirstRun"  # not started yet: the run uses the new spec
    restart = "Restart"  # a run in progress starts again from its first step
    after_rollback = "AfterRollback"  # the rollback finishes first
    new_run = "NewRun"  # traffic is on blue: a new run starts from it
    recorded = "Recorded"  # after success, same green: nothing moves until the next release
    new_release = "NewRelease"  # after success, a new green: a run from the live side
    refused = "Refused"  # after success, a new green against the retired blue


@dataclass(frozen=True)
class Change:
    effect: ChangeEffect
    message: str
    live: str | None = None  # the live Deployment after a success, when known


def live_after_success(
    status: MigrationStatus, spec: MigrationSpec, spec_changed: bool, blue_replicas: int | None
) -> str:
    """The Deployment that serves everything after a Succeeded run.

    A status written before liveDeployment existed does not say it: with the spec unchanged it
    is green; after an edit it is the side that still has pods (blue, when the edit made the
    old green the new blue; ``blue_replicas`` None: blue is gone or unknown).
    """
    if status.live_deployment:
        return status.live_deployment
    if spec_changed and blue_replicas:
        return spec.blue.deployment
    return spec.green.deployment


def effect_of(status: MigrationStatus, spec: MigrationSpec, live: str) -> Change:
    """What ``spec`` does in the status's phase; ``live``: see live_after_success."""
    phase, steps = status.phase, len(spec.steps)
    if phase is Phase.pending:
        return Change(
            ChangeEffect.first_run, f"the run has not started: it will run these {steps} steps"
        )
    if phase in (Phase.progressing, Phase.paused):
        return Change(
            ChangeEffect.restart,
            f"the run starts again from step 1 of {steps} with this spec"
            f" ({status.weight}% on green now)",
        )
    if phase is Phase.rolling_back:
        return Change(
            ChangeEffect.after_rollback,
            "the rollback to blue finishes first; `cutover retry` then runs this spec",
        )
    if phase in (Phase.rolled_back, Phase.failed):
        return Change(
            ChangeEffect.new_run,
            f"a new run starts from {spec.blue.deployment} (blue) towards {spec.green.deployment}:"
            f" step 1 of {steps}",
        )
    if spec.green.deployment == live:
        return Change(
            ChangeEffect.recorded,
            f"nothing moves: {live} keeps all traffic; the change applies to the next run,"
            " which a new spec.green starts",
            live,
        )
    if spec.blue.deployment != live:
        return Change(
            ChangeEffect.refused,
            f"spec.blue: {spec.blue.deployment} was retired by the last run and {live} serves"
            f" all traffic; set spec.blue to {live} to start a run towards"
            f" {spec.green.deployment}",
            live,
        )
    return Change(
        ChangeEffect.new_release,
        f"new release {spec.green.deployment}: starting from {live}, the live side",
        live,
    )
