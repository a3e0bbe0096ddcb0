"""What deleting a Migration does to traffic: one rule, in the core like every other decision.

A run still in motion gives all traffic back to blue before the Migration goes. Past the point
of no return (an irreversible hook started) blue can no longer serve the data, so traffic stays
where it is and a Warning says why, as a breach does then. A run that has not moved traffic, or
has ended, leaves everything as it is; in the rollback window after success, the blue kept for
it is retired.
"""

from __future__ import annotations

from cutover.api import TERMINAL_PHASES, MigrationSpec, MigrationStatus, Phase, SpecInvalid
from cutover.core.actions import Action, EmitEvent, RestoreBlue, RetireBlue
from cutover.core.rollback import window_open
from cutover.core.transitions import Reason


def on_delete(spec: MigrationSpec | SpecInvalid, status: MigrationStatus) -> tuple[Action, ...]:
    """The actions that deleting the Migration takes (none when nothing needs to move)."""
    if window_open(status) and isinstance(spec, MigrationSpec):
        # The release stands: the blue kept for the rollback window is retired, as at its end.
        blue = status.rollback_window_blue or spec.blue
        green = status.rollback_window_green or spec.green
        return (
            RetireBlue(blue, green),
            EmitEvent(
                "Normal",
                Reason.window_closed,
                f"deleted in the rollback window: {blue.deployment} retired,"
                f" {green.deployment} keeps all traffic",
            ),
        )
    if status.phase in TERMINAL_PHASES or status.phase is Phase.pending:
        return ()
    weight = status.weight
    if isinstance(spec, SpecInvalid):
        return (
            EmitEvent(
                "Warning",
                Reason.invalid_spec,
                f"deleted with an invalid spec, so no router to call: {weight}% stays on green",
            ),
        )
    if status.point_of_no_return:
        return (
            EmitEvent(
                "Warning",
                Reason.rollback_not_available,
                f"deleted past the point of no return ({status.point_of_no_return}):"
                f" {weight}% stays on green",
            ),
        )
    return (
        RestoreBlue(status.total_replicas or 1, spec.rollback.scale_down_green),
        EmitEvent(
            "Normal",
            Reason.traffic_restored,
            f"deleted mid-run with {weight}% on green: all traffic returned to blue",
        ),
    )
