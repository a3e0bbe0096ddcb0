from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from cutover.api import (
    TERMINAL_PHASES,
    ConditionType,
    GateOutcome,
    Phase,
    SpecInvalid,
    parse_spec,
)
from cutover.cli.report import build_report
from cutover.core.gates import Reading
from cutover.core.machine import (
    TRANSITIONS,
    Event,
    PrepareGreen,
    RequestVerb,
    RestoreBlue,
    RetireBlue,
    SetWeight,
)

from .sim import T0, Sim
from .specs import gate, raw, spec


def phase_is(*phases: Phase):  # type: ignore[no-untyped-def]
    return lambda sim: sim.status.phase in phases


def condition(sim: Sim, type_: ConditionType) -> tuple[str, str]:
    found = sim.status.condition(type_)
    assert found is not None
    return found.status, found.reason


def fast_spec(**changes: object):  # type: ignore[no-untyped-def]
    base = {"gates": [gate(interval="10s", failureLimit=0)]}
    base.update(changes)
    return spec(**base)


# --- the happy path ---


def test_a_healthy_run_walks_every_step_and_waits_for_promotion_at_the_indefinite_pause() -> None:
    sim = Sim(fast_spec())
    sim.run(phase_is(Phase.paused))
    assert sim.status.reason == "PauseStep"
    assert sim.status.current_step_index == 3 and sim.status.weight == 50
    assert sim.weight_writes == [10, 50]
    assert (sim.blue, sim.green) == (2, 2)

    sim.ask(RequestVerb.promote)
    sim.run(phase_is(*TERMINAL_PHASES))
    assert sim.status.phase is Phase.succeeded
    assert sim.weight_writes == [10, 50, 100]
    assert (sim.blue, sim.green) == (0, 4)
    assert isinstance(sim.actions[-1], RetireBlue) or any(
        isinstance(a, RetireBlue) for a in sim.actions
    )
    assert condition(sim, ConditionType.complete) == ("True", "Succeeded")
    assert condition(sim, ConditionType.ready)[0] == "True"
    assert condition(sim, ConditionType.progressing)[0] == "False"


def test_the_timed_pause_holds_for_its_duration() -> None:
    sim = Sim(fast_spec())
    sim.run(lambda s: s.status.current_step_index == 1)
    pause_started = sim.now
    sim.run(lambda s: s.status.current_step_index == 2)
    assert sim.now - pause_started >= timedelta(minutes=2)
    assert sim.now - pause_started < timedelta(minutes=2, seconds=11)


def test_a_step_advances_only_after_a_passing_check_newer_than_the_step() -> None:
    sim = Sim(fast_spec(steps=[{"setWeight": 50}, {"setWeight": 100}]))
    sim.run(lambda s: s.status.weight == 50 and s.status.step_ready_at is not None)
    ready = sim.status.step_ready_at
    sim.run(lambda s: s.status.current_step_index == 1)
    record = sim.status.gate("error-rate")
    assert record is not None and record.last_passed_at is not None and ready is not None
    assert record.last_passed_at >= ready


def test_green_must_be_available_before_the_step_counts() -> None:
    sim = Sim(fast_spec(steps=[{"setWeight": 50}, {"setWeight": 100}]), ready_delay=30)
    sim.run(lambda s: s.status.weight == 50)
    sim.now += timedelta(seconds=10)
    sim.reconcile()
    assert sim.status.step_ready_at is None  # green pods not available yet
    sim.run(lambda s: s.status.step_ready_at is not None)
    assert sim.status.step_ready_at is not None
    assert sim.status.step_ready_at - T0 >= timedelta(seconds=30)


def test_without_gates_each_weight_step_moves_on_as_soon_as_green_is_ready() -> None:
    sim = Sim(spec(gates=[], steps=[{"setWeight": 25}, {"setWeight": 50}, {"setWeight": 100}]))
    sim.run(phase_is(*TERMINAL_PHASES), limit=60)
    assert sim.status.phase is Phase.succeeded
    assert sim.weight_writes == [25, 50, 100]


def test_routers_that_shift_by_weight_get_green_scaled_up_first() -> None:
    raw_spec = raw(traffic={"router": "service", "service": "checkout"})
    raw_spec["steps"] = [{"setWeight": 0}, {"pause": {"duration": "1m"}}, {"setWeight": 100}]
    sim = Sim(parse_spec(raw_spec))
    sim.reconcile()
    assert PrepareGreen(total_replicas=4) in sim.actions


def test_the_bake_window_keeps_blue_until_it_ends() -> None:
    sim = Sim(fast_spec(steps=[{"setWeight": 100}], bake="5m"))
    sim.run(lambda s: s.status.current_step_index == 1)
    assert not any(isinstance(a, RetireBlue) for a in sim.actions)
    finishing = sim.now
    sim.run(phase_is(*TERMINAL_PHASES))
    assert sim.status.phase is Phase.succeeded
    assert sim.now - finishing >= timedelta(minutes=5)


# --- breaches ---


def failing_from(when: datetime):  # type: ignore[no-untyped-def]
    return lambda _gate, now: Reading.of(0.5 if now >= when else 0.0)


def test_a_failing_gate_at_step_two_returns_all_traffic_to_blue_in_one_action() -> None:
    sim = Sim(fast_spec())
    sim.run(lambda s: s.status.current_step_index == 2)
    sim.readings = failing_from(sim.now)
    sim.run(phase_is(*TERMINAL_PHASES, Phase.paused))
    assert sim.status.phase is Phase.rolled_back
    restores = [a for a in sim.actions if isinstance(a, RestoreBlue)]
    assert restores == [RestoreBlue(total_replicas=4, scale_down_green=True)]
    assert sim.weight_in_cluster == 0 and (sim.blue, sim.green) == (4, 0)
    assert sim.status.weight == 0
    status, reason = condition(sim, ConditionType.rolled_back)
    assert (status, reason) == ("True", "GateFailed")
    message = sim.status.condition(ConditionType.rolled_back).message  # type: ignore[union-attr]
    assert "error-rate" in message and "0.5 is above max 0.01" in message
    warnings = [e for e in sim.events if e.type == "Warning"]
    assert warnings and warnings[0].reason == "GateFailed"
    record = sim.status.gate("error-rate")
    assert record is not None and record.failed == 1 and record.last_value == 0.5


def test_failures_within_the_limit_hold_the_weight_but_do_not_roll_back() -> None:
    sim = Sim(spec(gates=[gate(interval="10s", failureLimit=3)]))
    sim.run(lambda s: s.status.weight == 10)
    sim.readings = failing_from(sim.now)
    sim.run(lambda s: (s.status.gate("error-rate") or s).failed == 2)  # type: ignore[union-attr]
    assert sim.status.phase is Phase.progressing and sim.status.weight == 10
    assert sim.status.current_step_index == 0


def test_with_automatic_rollback_off_a_breach_pauses_instead() -> None:
    sim = Sim(fast_spec(rollback={"automatic": False}))
    sim.run(lambda s: s.status.weight == 10)
    sim.readings = failing_from(sim.now)
    sim.run(phase_is(Phase.paused, *TERMINAL_PHASES))
    assert sim.status.phase is Phase.paused and sim.status.reason == "GateFailed"
    assert not any(isinstance(a, RestoreBlue) for a in sim.actions)
    assert sim.weight_in_cluster == 10


def test_inconclusive_checks_beyond_the_limit_pause_and_resume_continues() -> None:
    sim = Sim(spec(gates=[gate(interval="10s", inconclusiveLimit=1)]))
    sim.readings = lambda _g, _n: Reading.no_data()
    sim.run(phase_is(Phase.paused))
    assert sim.status.reason == "InconclusiveGate"
    assert condition(sim, ConditionType.paused) == ("True", "InconclusiveGate")
    sim.readings = lambda _g, _n: Reading.of(0.0)
    sim.ask(RequestVerb.resume)
    assert sim.status.phase is Phase.progressing
    record = sim.status.gate("error-rate")
    assert record is not None and record.outcome is GateOutcome.running


@pytest.mark.parametrize(
    ("on_error", "phase", "reason"),
    [("pause", Phase.paused, "GateError"), ("rollback", Phase.rolled_back, "GateError")],
)
def test_provider_errors_beyond_the_limit_follow_on_error(
    on_error: str, phase: Phase, reason: str
) -> None:
    sim = Sim(spec(gates=[gate(interval="10s", consecutiveErrorLimit=2, onError=on_error)]))
    sim.run(lambda s: s.status.weight == 10)
    sim.readings = lambda _g, _n: Reading.error("connection refused")
    sim.run(phase_is(Phase.paused, *TERMINAL_PHASES))
    assert sim.status.phase is phase
    # A finished rollback's phase reason is the last transition (traffic back on blue); the
    # cause a user reads is the RolledBack condition's.
    if phase is Phase.rolled_back:
        assert condition(sim, ConditionType.rolled_back) == ("True", reason)
        assert sim.status.rollback_reason is not None
        assert "connection refused" in sim.status.rollback_reason
    else:
        assert sim.status.reason == reason
        assert condition(sim, ConditionType.paused) == ("True", reason)
    record = sim.status.gate("error-rate")
    assert record is not None and record.consecutive_errors == 3 and record.failed == 0


def test_errors_interleaved_with_good_readings_never_stop_the_run() -> None:
    sim = Sim(
        spec(
            gates=[gate(interval="10s", consecutiveErrorLimit=1)],
            steps=[{"setWeight": 10}, {"pause": {"duration": "5m"}}, {"setWeight": 100}],
        )
    )
    flip = {"n": 0}

    def alternate(_g: str, _n: datetime) -> Reading:
        flip["n"] += 1
        return Reading.error("timeout") if flip["n"] % 2 else Reading.of(0.0)

    sim.readings = alternate
    sim.run(phase_is(*TERMINAL_PHASES, Phase.paused))
    assert sim.status.phase is Phase.succeeded


def test_green_not_ready_before_the_progress_deadline_rolls_back() -> None:
    sim = Sim(fast_spec(progressDeadline="1m"), ready_delay=10_000)
    sim.run(phase_is(*TERMINAL_PHASES, Phase.paused))
    assert sim.status.phase is Phase.rolled_back
    assert condition(sim, ConditionType.rolled_back) == ("True", "ProgressDeadlineExceeded")
    assert sim.now - T0 <= timedelta(minutes=1, seconds=2)


def test_green_deleted_mid_run_rolls_back() -> None:
    sim = Sim(fast_spec())
    sim.run(lambda s: s.status.weight == 10)
    sim.green_exists = False
    sim.reconcile()
    assert sim.status.phase is Phase.rolled_back
    assert condition(sim, ConditionType.rolled_back)[1] == "GreenMissing"


def test_blue_deleted_mid_run_pauses_since_rollback_is_impossible() -> None:
    sim = Sim(fast_spec())
    sim.run(lambda s: s.status.weight == 10)
    sim.blue_exists = False
    sim.reconcile()
    assert sim.status.phase is Phase.paused and sim.status.reason == "BlueMissing"


# --- manual control ---


def test_abort_returns_traffic_to_blue() -> None:
    sim = Sim(fast_spec())
    sim.run(lambda s: s.status.weight == 50)
    sim.ask(RequestVerb.abort)
    assert sim.status.phase is Phase.rolled_back
    assert condition(sim, ConditionType.rolled_back) == ("True", "Aborted")
    assert sim.weight_in_cluster == 0


def test_a_request_acts_once_even_when_seen_again() -> None:
    sim = Sim(fast_spec())
    sim.run(phase_is(Phase.paused))
    sim.ask(RequestVerb.promote)
    index = sim.status.current_step_index
    request = sim.status.last_request
    assert request == "req-1"
    from cutover.core.machine import Request

    sim.request = Request(id="req-1", verb=RequestVerb.promote)
    sim.reconcile()
    assert sim.status.current_step_index == index


def test_promote_full_skips_remaining_steps_gates_and_bake() -> None:
    sim = Sim(fast_spec(bake="1h"))
    sim.run(lambda s: s.status.weight == 10)
    sim.ask(RequestVerb.promote_full)
    sim.run(phase_is(*TERMINAL_PHASES), limit=30)
    assert sim.status.phase is Phase.succeeded
    assert sim.weight_writes == [10, 100]


def test_pause_and_resume_by_request_keep_the_remaining_pause_time() -> None:
    sim = Sim(fast_spec())
    sim.run(lambda s: s.status.current_step_index == 1)
    started = sim.now
    sim.now += timedelta(seconds=60)
    sim.ask(RequestVerb.pause)
    assert sim.status.phase is Phase.paused and sim.status.reason == "PausedByUser"
    sim.now += timedelta(minutes=30)
    sim.ask(RequestVerb.resume)
    resumed = sim.now
    sim.run(lambda s: s.status.current_step_index == 2)
    # 60 s were spent before the pause; the other 60 s run after resuming.
    assert sim.now - resumed >= timedelta(seconds=60)
    assert sim.now - started >= timedelta(minutes=32)


def test_spec_paused_holds_and_unpausing_resumes() -> None:
    paused = fast_spec(paused=True)
    sim = Sim(paused)
    sim.reconcile()
    assert sim.status.phase is Phase.paused and sim.status.reason == "PausedBySpec"
    sim.ask(RequestVerb.resume)
    assert sim.status.phase is Phase.paused  # the spec wins over a request
    sim.spec = fast_spec(paused=False)
    sim.generation = 2
    sim.reconcile()
    assert sim.status.phase is Phase.progressing


def test_requests_that_make_no_sense_are_ignored_with_an_event() -> None:
    sim = Sim(fast_spec())
    sim.run(lambda s: s.status.weight == 10)
    sim.ask(RequestVerb.retry)
    assert sim.status.phase is Phase.progressing
    assert sim.events[-1].reason == "RequestIgnored"


def test_retry_after_a_rollback_starts_a_new_run_from_the_first_step() -> None:
    sim = Sim(fast_spec())
    sim.run(lambda s: s.status.weight == 10)
    sim.ask(RequestVerb.abort)
    first_run = sim.status.run_id
    sim.ask(RequestVerb.retry)
    assert sim.status.phase is Phase.progressing
    assert sim.status.run_id != first_run and sim.status.current_step_index == 0
    assert sim.weight_in_cluster == 10


# --- terminal phases, spec changes, invalid input ---


def test_terminal_phases_absorb_gates_and_requests_other_than_retry() -> None:
    sim = Sim(fast_spec())
    sim.run(lambda s: s.status.weight == 10)
    sim.ask(RequestVerb.abort)
    before = sim.status.model_copy(deep=True)
    for verb in (RequestVerb.promote, RequestVerb.resume, RequestVerb.pause, RequestVerb.abort):
        sim.now += timedelta(minutes=1)
        sim.ask(verb)
        assert sim.status.phase is Phase.rolled_back
    assert sim.status.history == before.history
    assert sim.weight_in_cluster == 0


def test_a_new_generation_during_a_run_restarts_from_the_first_step() -> None:
    sim = Sim(fast_spec())
    sim.run(lambda s: s.status.weight == 50)
    sim.spec = fast_spec(steps=[{"setWeight": 20}, {"setWeight": 100}])
    sim.generation = 2
    sim.reconcile()
    assert sim.status.current_step_index == 0 and sim.status.weight == 20
    assert sim.status.observed_generation == 2
    assert [h.reason for h in sim.status.history].count("SpecChanged") == 1


def test_an_invalid_spec_fails_with_invalid_spec_and_touches_nothing() -> None:
    try:
        parse_spec(raw(steps=[]))
    except SpecInvalid as error:
        invalid = error
    sim = Sim(invalid)
    sim.reconcile()
    assert sim.status.phase is Phase.failed
    status, reason = condition(sim, ConditionType.invalid_spec)
    assert (status, reason) == ("True", "InvalidSpec")
    assert "spec.steps" in sim.status.condition(ConditionType.invalid_spec).message  # type: ignore[union-attr]
    assert not [a for a in sim.actions if a.__class__.__name__ != "EmitEvent"]
    sim.now += timedelta(minutes=1)
    sim.reconcile()
    assert condition(sim, ConditionType.invalid_spec)[0] == "True"


def test_a_spec_made_invalid_mid_run_holds_traffic_where_it_is() -> None:
    sim = Sim(fast_spec())
    sim.run(lambda s: s.status.weight == 10)
    writes = list(sim.weight_writes)
    sim.spec = SpecInvalid(["spec.steps: bad"])
    sim.generation = 2
    sim.reconcile()
    assert sim.status.phase is Phase.paused and sim.status.reason == "InvalidSpec"
    assert sim.weight_writes == writes


def test_preflight_errors_fail_the_run_before_any_traffic_moves() -> None:
    sim = Sim(fast_spec(), preflight_errors=("gates[0]: parse error at char 5",))
    sim.reconcile()
    assert sim.status.phase is Phase.failed
    assert condition(sim, ConditionType.invalid_spec) == ("True", "PreflightFailed")
    assert sim.weight_writes == []


def test_missing_deployments_keep_the_run_pending_until_they_appear() -> None:
    sim = Sim(fast_spec(), green_exists=False)
    decision = sim.reconcile()
    assert sim.status.phase is Phase.pending and "checkout-green" in sim.status.message
    assert decision.requeue_after is not None
    sim.green_exists = True
    sim.reconcile()
    assert sim.status.phase is Phase.progressing


# --- restart safety, timing, conditions ---


def test_deciding_again_from_the_stored_status_repeats_no_write() -> None:
    sim = Sim(fast_spec())
    sim.run(lambda s: s.status.current_step_index == 1)
    writes = list(sim.weight_writes)
    # A restarted operator sees the same status and the same cluster.
    restarted = Sim(
        fast_spec(),
        status=sim.status,
        blue=sim.blue,
        green=sim.green,
        weight_in_cluster=sim.weight_in_cluster,
        now=sim.now,
    )
    restarted.reconcile()
    assert restarted.weight_writes == []
    assert writes == [10]


def test_a_write_lost_in_a_crash_is_made_again_once() -> None:
    sim = Sim(fast_spec())
    sim.run(lambda s: s.status.weight == 10)
    # The status says 10 %, but the operator died before the router write landed.
    sim.weight_in_cluster = 0
    sim.reconcile()
    assert sim.weight_writes == [10, 10] and sim.weight_in_cluster == 10


def test_nothing_to_wait_for_means_no_wake_up() -> None:
    sim = Sim(spec(gates=[]))
    decision = sim.run(phase_is(Phase.paused))
    assert sim.status.reason == "PauseStep" and decision.requeue_after is None


def test_wake_ups_follow_the_gate_interval() -> None:
    sim = Sim(fast_spec())
    decision = sim.run(lambda s: s.status.step_ready_at is not None)
    assert decision.requeue_after == pytest.approx(10.0)


def test_condition_times_change_only_when_their_status_changes() -> None:
    sim = Sim(fast_spec())
    sim.reconcile()
    first = sim.status.condition(ConditionType.progressing)
    sim.run(lambda s: s.status.weight == 50)
    later = sim.status.condition(ConditionType.progressing)
    assert first is not None and later is not None
    assert first.last_transition_time == later.last_transition_time
    assert later.observed_generation == 1


def test_history_is_bounded() -> None:
    steps = [{"setWeight": w} for w in range(1, 101)]
    sim = Sim(spec(gates=[], steps=steps))
    sim.run(phase_is(*TERMINAL_PHASES), limit=7200)
    assert sim.status.phase is Phase.succeeded
    assert len(sim.status.history) == 50


# --- the table itself ---


def test_terminal_phases_leave_only_by_retry_or_a_new_spec() -> None:
    # Succeeded also rolls back, but only while its rollback window keeps blue (test_window.py).
    in_window = {Event.gate_failed, Event.gate_error, Event.green_missing, Event.undo}
    for phase in TERMINAL_PHASES:
        allowed = {Event.retry, Event.spec_changed, Event.spec_invalid}
        if phase is Phase.succeeded:
            allowed |= in_window
            assert {TRANSITIONS[phase][e] for e in in_window} == {Phase.rolling_back}
        assert set(TRANSITIONS[phase]) <= allowed


def test_rolling_back_can_only_end_rolled_back() -> None:
    assert TRANSITIONS[Phase.rolling_back] == {Event.traffic_restored: Phase.rolled_back}


def test_every_phase_is_in_the_table() -> None:
    assert set(TRANSITIONS) == set(Phase)


def test_set_weight_carries_the_total_captured_at_start() -> None:
    sim = Sim(fast_spec(), blue=6)
    sim.reconcile()
    weights = [a for a in sim.actions if isinstance(a, SetWeight)]
    assert weights and weights[0].total_replicas == 6
    assert sim.status.total_replicas == 6


def test_history_names_why_a_run_paused() -> None:
    sim = Sim(spec(gates=[]))
    sim.run(phase_is(Phase.paused))
    assert sim.status.history[-1].reason == "PauseStep"
    held = Sim(fast_spec(paused=True))
    held.reconcile()
    assert held.status.history[-1].reason == "PausedBySpec"


def test_a_run_that_ended_badly_is_stalled_for_kstatus() -> None:
    sim = Sim(fast_spec())
    sim.run(lambda s: s.status.weight == 10)
    assert condition(sim, ConditionType.stalled) == ("False", "NotStalled")
    sim.ask(RequestVerb.abort)
    assert condition(sim, ConditionType.stalled) == ("True", "Aborted")


# --- spec changes after success (issue 14, item 1) ------------------------------------------


def _succeeded() -> Sim:
    sim = Sim(fast_spec(steps=[{"setWeight": 50}, {"setWeight": 100}]))
    sim.run(phase_is(*TERMINAL_PHASES))
    assert sim.status.phase is Phase.succeeded and (sim.blue, sim.green) == (0, 4)
    assert sim.status.live_deployment == "checkout-green"
    return sim


def _next_release(sim: Sim) -> Sim:
    """The next release: the old green is now the live blue, a new Deployment is green."""
    sim.spec = fast_spec(
        blue={"deployment": "checkout-green"},
        green={"deployment": "checkout-v3"},
        steps=[{"setWeight": 50}, {"setWeight": 100}],
    )
    sim.blue, sim.green, sim.weight_in_cluster = 4, 0, 0
    sim.generation = 2
    return sim


def test_an_edit_after_success_that_keeps_green_moves_no_traffic() -> None:
    sim = _succeeded()
    writes = list(sim.weight_writes)
    sim.spec = fast_spec(
        steps=[{"setWeight": 25}, {"setWeight": 100}],
        gates=[gate(interval="10s", failureLimit=0, threshold={"max": 0.5})],
    )
    sim.generation = 2
    sim.run(lambda s: False, limit=120)
    assert sim.status.phase is Phase.succeeded and sim.status.weight == 100
    assert sim.weight_writes == writes  # blue was retired and stays retired
    assert (sim.blue, sim.green) == (0, 4)
    assert sim.status.observed_generation == 2
    assert [e.reason for e in sim.events].count("SpecRecorded") == 1
    assert condition(sim, ConditionType.invalid_spec)[0] == "False"


def test_a_new_green_starts_the_next_run_from_the_live_side() -> None:
    sim = _next_release(_succeeded())
    sim.run(phase_is(*TERMINAL_PHASES), limit=600)
    assert sim.status.phase is Phase.succeeded
    assert sim.status.live_deployment == "checkout-v3"
    assert sim.weight_writes[-2:] == [50, 100]
    assert (sim.blue, sim.green) == (0, 4)


def test_a_new_green_against_the_retired_blue_is_refused_and_moves_nothing() -> None:
    sim = _succeeded()
    writes, actions = list(sim.weight_writes), len(sim.actions)
    sim.spec = fast_spec(green={"deployment": "checkout-v3"})  # blue still checkout-blue
    sim.generation = 2
    sim.run(lambda s: False, limit=120)
    assert sim.status.phase is Phase.succeeded
    assert sim.weight_writes == writes
    assert not [a for a in sim.actions[actions:] if a.__class__.__name__ != "EmitEvent"]
    status, reason = condition(sim, ConditionType.invalid_spec)
    assert (status, reason) == ("True", "BlueRetired")
    message = sim.status.condition(ConditionType.invalid_spec).message  # type: ignore[union-attr]
    assert "checkout-blue was retired" in message and "set spec.blue to checkout-green" in message
    assert [e.reason for e in sim.events].count("BlueRetired") == 1


def test_after_a_rollback_blue_is_the_live_side_and_an_edit_starts_a_new_run() -> None:
    sim = Sim(fast_spec())
    sim.run(lambda s: s.status.weight == 10)
    sim.ask(RequestVerb.abort)
    sim.run(phase_is(Phase.rolled_back))
    assert sim.status.live_deployment == "checkout-blue"
    sim.spec = fast_spec(steps=[{"setWeight": 20}, {"setWeight": 100}])
    sim.generation = 2
    sim.reconcile()
    assert sim.status.phase is Phase.progressing and sim.status.weight == 20


# --- rollback availability: one truth (issue 14, item 4) -------------------------------------


def _rollback_truth(sim: Sim) -> tuple[bool, str, str]:
    found = sim.status.condition(ConditionType.rollback_available)
    assert found is not None
    assert (found.status == "True") is sim.status.rollback_available
    obj = {
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {},
        "status": sim.status.to_dict(),
    }
    report = build_report(obj, now=sim.now)
    assert (report.rollback.state.value == "AVAILABLE") is sim.status.rollback_available
    return sim.status.rollback_available, found.reason, report.rollback.reason


def test_rollback_availability_is_one_truth_for_status_condition_and_report() -> None:
    sim = Sim(fast_spec(steps=[{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]))
    sim.run(phase_is(Phase.paused))
    assert _rollback_truth(sim)[:2] == (True, "Available")
    sim.ask(RequestVerb.promote)
    sim.run(phase_is(*TERMINAL_PHASES))
    assert sim.status.phase is Phase.succeeded
    assert _rollback_truth(sim) == (False, "BlueRetired", "succeeded: blue was retired")

    aborted = Sim(fast_spec())
    aborted.run(lambda s: s.status.weight == 10)
    aborted.ask(RequestVerb.abort)
    aborted.run(phase_is(Phase.rolled_back))
    assert _rollback_truth(aborted)[:2] == (False, "RolledBack")


def test_the_step_a_person_reads_is_counted_from_one() -> None:
    sim = Sim(fast_spec())
    sim.reconcile()
    assert (sim.status.current_step_index, sim.status.step) == (0, "1/5")
    sim.run(phase_is(Phase.paused))
    assert (sim.status.current_step_index, sim.status.step) == (3, "4/5")
    sim.ask(RequestVerb.promote)
    sim.run(phase_is(*TERMINAL_PHASES))
    assert sim.status.step == "5/5"  # finished: the last step, not a sixth


def test_a_next_release_that_fails_preflight_reports_its_own_run_not_the_last_one() -> None:
    sim = _next_release(_succeeded())
    sim.preflight_errors = ("gates[0]: parse error at char 5",)
    sim.reconcile()
    assert sim.status.phase is Phase.failed
    # Traffic is all on the live side (this run's blue), and the step is this run's first.
    assert (sim.status.weight, sim.status.step) == (0, "1/2")
    assert sim.status.gates == []
    assert sim.status.rollback_available is False
    assert sim.status.rollback_unavailable_reason == "nothing to roll back: traffic is on blue"


def test_a_rollback_message_says_it_once_with_a_time_a_person_reads() -> None:
    sim = Sim(fast_spec())
    sim.run(lambda s: s.status.current_step_index == 2)
    sim.now += timedelta(microseconds=123456)  # a clock with sub-second precision, as in life
    sim.readings = failing_from(sim.now)
    sim.run(phase_is(*TERMINAL_PHASES, Phase.paused))
    message = sim.status.message
    assert message.startswith("rolled back: gate error-rate at "), message
    assert "rolling back" not in message, message
    assert not re.search(r"\d\.\d{3,}", message.split(" at ", 1)[1][:20]), message
    assert re.search(r" at \d\d:\d\d:\d\dZ", message), message


def test_a_finished_run_has_no_gate_still_running() -> None:
    sim = Sim(fast_spec(steps=[{"setWeight": 50}, {"setWeight": 100}]))
    sim.run(phase_is(*TERMINAL_PHASES))
    assert sim.status.phase is Phase.succeeded
    assert [g.outcome for g in sim.status.gates] == [GateOutcome.passed]

    never_checked = Sim(fast_spec(steps=[{"setWeight": 100}]))
    never_checked.run(phase_is(*TERMINAL_PHASES))
    outcomes = {g.outcome for g in never_checked.status.gates}
    assert outcomes <= {GateOutcome.passed, GateOutcome.skipped}, outcomes
