"""The status conditions (Ready, Progressing, Paused, Complete, RolledBack, InvalidSpec, Stalled,
RollbackAvailable, RollbackWindow) and status.rollbackAvailable, derived from the phase a
decision ends in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cutover.api import Condition, ConditionType, MigrationStatus, Phase
from cutover.core import rollback as rollback_rules
from cutover.core.transitions import INVALID_REASONS, Reason


def update_conditions(
    status: MigrationStatus,
    *,
    problems: Sequence[str],
    problem_reason: str | None,
    spec_invalid: bool,
    generation: int,
    now: datetime,
) -> None:
    """Writes the conditions into ``status``; a condition's transition time moves only when its
    status changes. ``problems`` are the spec's (or preflight's) errors found by this decision."""
    problems = list(problems)
    phase = status.phase
    reason = status.reason or phase.value
    message = status.message
    old_invalid = status.condition(ConditionType.invalid_spec)
    still_invalid = (phase is Phase.failed and reason in INVALID_REASONS) or (
        phase is Phase.paused and reason == Reason.invalid_spec
    )
    if not problems and still_invalid and old_invalid and old_invalid.status == "True":
        problems = [old_invalid.message]
    invalid = bool(problems)
    # One rule for status.rollbackAvailable, its condition and the CLI's report.
    rollback = rollback_rules.availability(status)
    status.rollback_available = rollback.available
    status.rollback_unavailable_reason = None if rollback.available else rollback.message
    wanted: dict[ConditionType, tuple[bool, str, str]] = {
        ConditionType.ready: (phase is Phase.succeeded, reason, message),
        ConditionType.progressing: (
            phase in (Phase.pending, Phase.progressing, Phase.rolling_back),
            reason,
            message,
        ),
        ConditionType.paused: (phase is Phase.paused, reason, message),
        ConditionType.complete: (phase is Phase.succeeded, reason, message),
        ConditionType.rolled_back: (
            phase is Phase.rolled_back,
            _rollback_code(status) if phase is Phase.rolled_back else reason,
            message,
        ),
        ConditionType.invalid_spec: (
            invalid,
            (problem_reason or reason) if invalid else "SpecValid",
            "; ".join(problems) if invalid else "",
        ),
        ConditionType.stalled: (
            phase in (Phase.rolled_back, Phase.failed),
            _rollback_code(status)
            if phase is Phase.rolled_back
            else reason
            if phase is Phase.failed
            else "NotStalled",
            message if phase in (Phase.rolled_back, Phase.failed) else "",
        ),
        ConditionType.rollback_available: (
            rollback.available,
            rollback.code.value,
            rollback.message,
        ),
        # Ready and Complete are True during the window (the release is done and healthy for
        # GitOps tools); this one says blue can still come back, until when.
        ConditionType.rollback_window: (
            rollback_rules.window_open(status),
            "Open" if rollback_rules.window_open(status) else "Closed",
            f"blue is kept at full size until {rollback_rules.window_end(status)}: `cutover undo`"
            " or a failed gate puts all traffic back on it, `cutover promote` retires it now"
            if rollback_rules.window_open(status)
            else "",
        ),
    }
    if spec_invalid:
        wanted[ConditionType.invalid_spec] = (
            True,
            Reason.invalid_spec,
            "; ".join(problems),
        )
    conditions = []
    for type_, (truth, why, text) in wanted.items():
        value = "True" if truth else "False"
        old = status.condition(type_)
        changed = old is None or old.status != value
        conditions.append(
            Condition(
                type=type_,
                status=value,
                reason=why,
                message=text,
                last_transition_time=now if changed or old is None else old.last_transition_time,
                observed_generation=generation,
            )
        )
    status.conditions = conditions


def _rollback_code(status: MigrationStatus) -> str:
    """The reason the run entered RollingBack: the first entry of the last RollingBack stretch."""
    code = "RolledBack"
    for entry in reversed(status.history):
        if entry.phase is Phase.rolling_back:
            code = entry.reason
        elif code != "RolledBack" and entry.phase is not Phase.rolled_back:
            break
    return code
