"""The phase table: which event moves a Migration from which phase to which, and the reason each
records. ``TRANSITIONS`` and ``REASONS`` are data, the single source of docs/state-machine.md
(``make docs`` runs cutover.docgen); the reasons are the vocabulary the CLI reads back.
"""

from __future__ import annotations

import enum

from cutover.api import Phase


class Event(enum.StrEnum):
    start = "start"
    spec_invalid = "spec_invalid"
    preflight_failed = "preflight_failed"
    autoscaler_conflict = "autoscaler_conflict"  # an HPA would fight the router (core.autoscaling)
    forbidden = "forbidden"  # the author may not do what the spec asks (hook Jobs, Secrets)
    template_unresolved = "template_unresolved"  # a gate's template or its args are wrong
    spec_changed = "spec_changed"
    pause = "pause"
    spec_pause = "spec_pause"
    pause_step = "pause_step"
    resume = "resume"
    promote = "promote"
    abort = "abort"
    abort_moved = "abort_moved"  # an abort before the run started, with traffic already moved
    retry = "retry"
    gate_failed = "gate_failed"
    gate_failed_hold = "gate_failed_hold"
    gate_error = "gate_error"
    gate_error_hold = "gate_error_hold"
    gate_inconclusive = "gate_inconclusive"
    deadline_exceeded = "deadline_exceeded"
    run_deadline = "run_deadline"  # spec.deadline passed, action rollback
    run_deadline_hold = "run_deadline_hold"  # spec.deadline passed, action pause
    hook_failed = "hook_failed"
    hook_failed_hold = "hook_failed_hold"
    breach_hold = "breach_hold"
    green_missing = "green_missing"
    blue_missing = "blue_missing"
    steps_done = "steps_done"
    traffic_restored = "traffic_restored"
    undo = "undo"  # `cutover undo` in the rollback window after success


P = Phase
E = Event
_ACTIVE_BREAKS = {
    E.gate_failed: P.rolling_back,
    E.gate_error: P.rolling_back,
    E.deadline_exceeded: P.rolling_back,
    E.run_deadline: P.rolling_back,
    E.run_deadline_hold: P.paused,
    E.green_missing: P.rolling_back,
    E.abort: P.rolling_back,
    E.hook_failed: P.rolling_back,
    E.hook_failed_hold: P.paused,
    E.breach_hold: P.paused,
    E.gate_failed_hold: P.paused,
    E.gate_error_hold: P.paused,
    E.gate_inconclusive: P.paused,
    E.blue_missing: P.paused,
    E.spec_invalid: P.paused,
    E.spec_changed: P.pending,
}
TRANSITIONS: dict[Phase, dict[Event, Phase]] = {
    P.pending: {
        E.start: P.progressing,
        E.spec_invalid: P.failed,
        E.preflight_failed: P.failed,
        E.autoscaler_conflict: P.failed,
        E.forbidden: P.failed,
        E.template_unresolved: P.failed,
        # Nothing moved yet: traffic is already all on blue.
        E.abort: P.rolled_back,
        # A spec change restarted a run in flight, or an operator died between its router write
        # and its status write: green has traffic, which must come back first.
        E.abort_moved: P.rolling_back,
        E.spec_changed: P.pending,
    },
    P.progressing: {
        **_ACTIVE_BREAKS,
        E.pause: P.paused,
        E.spec_pause: P.paused,
        E.pause_step: P.paused,
        E.steps_done: P.succeeded,
    },
    P.paused: {
        **_ACTIVE_BREAKS,
        E.resume: P.progressing,
        E.promote: P.progressing,
    },
    P.rolling_back: {E.traffic_restored: P.rolled_back},
    P.rolled_back: {E.retry: P.pending, E.spec_changed: P.pending, E.spec_invalid: P.failed},
    P.succeeded: {
        # Only while the rollback window is open (spec.rollback.window): blue is still at full
        # size, so a breach or an undo puts traffic back on it; core/window.py guards these.
        E.gate_failed: P.rolling_back,
        E.gate_error: P.rolling_back,
        E.green_missing: P.rolling_back,
        E.undo: P.rolling_back,
        E.spec_changed: P.pending,
        E.spec_invalid: P.failed,
    },
    P.failed: {E.retry: P.pending, E.spec_changed: P.pending, E.spec_invalid: P.failed},
}


class Reason(enum.StrEnum):
    """Why the phase is what it is: condition, history and Event reasons (API-visible)."""

    started = "Started"
    invalid_spec = "InvalidSpec"
    preflight_failed = "PreflightFailed"
    hpa_conflict = "HPAConflict"
    forbidden = "Forbidden"
    gate_template_unresolved = "GateTemplateUnresolved"
    spec_changed = "SpecChanged"
    paused_by_user = "PausedByUser"
    paused_by_spec = "PausedBySpec"
    pause_step = "PauseStep"
    resumed = "Resumed"
    promoted = "Promoted"
    aborted = "Aborted"
    retried = "Retried"
    gate_failed = "GateFailed"
    gate_error = "GateError"
    inconclusive_gate = "InconclusiveGate"
    progress_deadline_exceeded = "ProgressDeadlineExceeded"
    run_deadline_exceeded = "RunDeadlineExceeded"
    hook_failed = "HookFailed"
    rollback_not_available = "RollbackNotAvailable"
    green_missing = "GreenMissing"
    blue_missing = "BlueMissing"
    succeeded = "Succeeded"
    traffic_restored = "TrafficRestored"
    waiting_for_deployments = "WaitingForDeployments"
    # History and Event reasons that do not change the phase.
    weight_set = "WeightSet"
    mirror_set = "MirrorSet"
    # Checks before any user traffic (spec.preview): started, green ready, passed.
    preview_started = "PreviewStarted"
    preview_ready = "PreviewReady"
    preview_passed = "PreviewPassed"
    step_started = "StepStarted"
    hook_started = "HookStarted"
    hook_succeeded = "HookSucceeded"
    rollback_disabled = "RollbackDisabled"
    request_ignored = "RequestIgnored"
    # After Succeeded: a spec edit that keeps spec.green waits for the next run; a new spec.green
    # whose spec.blue is not the live side is refused (it would bring the retired version back).
    spec_recorded = "SpecRecorded"
    blue_retired = "BlueRetired"
    # The rollback window after success: `cutover undo` rolled back, or it closed (blue retired).
    undone = "Undone"
    window_closed = "RollbackWindowClosed"


R = Reason
# Reasons a phase was entered with; they become condition reasons and Event reasons.
REASONS: dict[Event, Reason] = {
    E.start: R.started,
    E.spec_invalid: R.invalid_spec,
    E.preflight_failed: R.preflight_failed,
    E.autoscaler_conflict: R.hpa_conflict,
    E.forbidden: R.forbidden,
    E.template_unresolved: R.gate_template_unresolved,
    E.spec_changed: R.spec_changed,
    E.pause: R.paused_by_user,
    E.spec_pause: R.paused_by_spec,
    E.pause_step: R.pause_step,
    E.resume: R.resumed,
    E.promote: R.promoted,
    E.abort: R.aborted,
    E.abort_moved: R.aborted,
    E.retry: R.retried,
    E.gate_failed: R.gate_failed,
    E.gate_failed_hold: R.gate_failed,
    E.gate_error: R.gate_error,
    E.gate_error_hold: R.gate_error,
    E.gate_inconclusive: R.inconclusive_gate,
    E.deadline_exceeded: R.progress_deadline_exceeded,
    E.run_deadline: R.run_deadline_exceeded,
    E.run_deadline_hold: R.run_deadline_exceeded,
    E.hook_failed: R.hook_failed,
    E.hook_failed_hold: R.hook_failed,
    E.breach_hold: R.rollback_not_available,
    E.green_missing: R.green_missing,
    E.blue_missing: R.blue_missing,
    E.steps_done: R.succeeded,
    E.traffic_restored: R.traffic_restored,
    E.undo: R.undone,
}
# Failed with one of these, the spec is to blame: the InvalidSpec condition keeps its problems.
INVALID_REASONS = frozenset(
    {R.invalid_spec, R.preflight_failed, R.hpa_conflict, R.forbidden, R.gate_template_unresolved}
)
# The reasons a gate holds the run with (Paused, automatic: false or inconclusive).
GATE_HOLDS = frozenset(
    REASONS[e] for e in (E.gate_failed_hold, E.gate_error_hold, E.gate_inconclusive)
)
# Holds a person asked for (or the spec did): a Normal Event, where other holds warn.
CHOSEN_PAUSES = frozenset({R.paused_by_spec, R.paused_by_user, R.pause_step})


# How traffic_restored's message starts; breach_cause() takes it off again.
TRAFFIC_RESTORED_PREFIX = "all traffic on blue; "


def breach_cause(message: str) -> str:
    """The cause a breach message and the rollback message it led to share: a breach says what it
    set off ("...: rolling back"), and "rolled back: ...: rolling back" would say it twice."""
    cause = message.removeprefix(TRAFFIC_RESTORED_PREFIX)
    cause = cause.replace(": rolling back (onError: rollback)", " (onError: rollback)")
    return cause.removesuffix(": rolling back")
