"""Whether `cutover abort` (or a breach) can still put traffic back on blue: one rule, used for
status.rollbackAvailable, the RollbackAvailable condition and the CLI's report alike; and the
same question after success, while the rollback window keeps blue at full size (`cutover undo`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cutover.api import MigrationStatus, Phase


class RollbackCode(enum.StrEnum):
    """The RollbackAvailable condition's reason."""

    available = "Available"
    window = "RollbackWindow"
    irreversible = "IrreversibleHookStarted"
    blue_retired = "BlueRetired"
    rolling_back = "RollingBack"
    rolled_back = "RolledBack"
    nothing_to_roll_back = "NothingToRollBack"
    run_ended = "RunEnded"
    blue_missing = "BlueMissing"


@dataclass(frozen=True)
class Availability:
    available: bool
    code: RollbackCode
    message: str


def window_open(status: MigrationStatus) -> bool:
    """Succeeded, with blue still at full size until status.rollbackWindowEndsAt."""
    return status.phase is Phase.succeeded and status.rollback_window_ends_at is not None


def window_end(status: MigrationStatus) -> str:
    ends = status.rollback_window_ends_at
    return ends.strftime("%Y-%m-%dT%H:%M:%SZ") if ends is not None else "?"


def availability(status: MigrationStatus) -> Availability:
    phase, weight = status.phase, status.weight
    if phase is Phase.succeeded:
        if window_open(status) and not status.point_of_no_return:
            return Availability(
                True,
                RollbackCode.window,
                f"`cutover undo` puts all traffic back on blue until {window_end(status)}"
                " (the rollback window)",
            )
        return Availability(False, RollbackCode.blue_retired, "succeeded: blue was retired")
    if status.point_of_no_return:
        return Availability(False, RollbackCode.irreversible, status.point_of_no_return)
    if phase is Phase.rolling_back:
        return Availability(False, RollbackCode.rolling_back, "already rolling back")
    if phase is Phase.rolled_back:
        return Availability(
            False, RollbackCode.rolled_back, "already rolled back: traffic is on blue"
        )
    if phase is Phase.failed:
        if weight == 0:
            return Availability(
                False, RollbackCode.nothing_to_roll_back, "nothing to roll back: traffic is on blue"
            )
        return Availability(
            False,
            RollbackCode.run_ended,
            f"the run ended with {weight}% on green: a corrected spec starts a new run",
        )
    if status.reason == RollbackCode.blue_missing.value:
        return Availability(False, RollbackCode.blue_missing, "the blue Deployment is gone")
    if weight == 0:
        return Availability(
            True, RollbackCode.available, "all traffic is still on blue: abort stops the run"
        )
    return Availability(
        True, RollbackCode.available, f"`cutover abort` returns {weight}% from green to blue"
    )


def undo_refusal(status: MigrationStatus) -> str | None:
    """Why `cutover undo` cannot put traffic back on blue now; None when it can."""
    if status.phase is not Phase.succeeded:
        return (
            f"undo takes back a success during its rollback window; the run is"
            f" {status.phase.value} (`cutover abort` returns traffic to blue during a run)"
        )
    if status.point_of_no_return:
        # Blue cannot serve the data any more (e.g. the schema was contracted).
        return f"rollback refused past the point of no return: {status.point_of_no_return}"
    if status.rollback_window_ends_at is None:
        return "no rollback window is open: blue was retired (spec.rollback.window)"
    return None
