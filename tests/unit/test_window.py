"""spec.rollback.window: after success blue is kept at full size, the gates keep running, and a
failed gate or `cutover undo` puts all traffic back on blue at once; the window's end retires
blue. Driven through the decision engine with a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cutover.api import (
    ConditionType,
    MigrationStatus,
    Phase,
    SpecInvalid,
    parse_spec,
)
from cutover.cli.report import build_report
from cutover.core import deletion
from cutover.core import rollback as rollback_rules
from cutover.core.activity import needs_attention
from cutover.core.gates import Reading
from cutover.core.machine import (
    EmitEvent,
    HoldBlue,
    RequestVerb,
    RestoreBlue,
    RetireBlue,
    SetWeight,
    gates_due,
)

from .sim import Sim
from .specs import gate, raw, spec

STEPS = [{"setWeight": 50}, {"setWeight": 100}]
WINDOW = timedelta(minutes=10)


def window_spec(**changes: Any) -> Any:
    fields: dict[str, Any] = {
        "steps": STEPS,
        "gates": [gate(failureLimit=0)],
        "rollback": {"window": "10m"},
    }
    fields.update(changes)
    return spec(**fields)


def succeeded(sim: Sim) -> Sim:
    sim.run(until=lambda s: s.status.phase is Phase.succeeded, limit=600)
    assert sim.status.phase is Phase.succeeded
    return sim


def in_window(**changes: Any) -> Sim:
    return succeeded(Sim(window_spec(**changes)))


def condition(sim: Sim, type_: ConditionType) -> tuple[str, str, str]:
    found = sim.status.condition(type_)
    assert found is not None
    return found.status, found.reason, found.message


def test_success_keeps_blue_at_full_size_and_opens_the_window() -> None:
    sim = in_window()
    # Blue was given its size back (one HoldBlue) before the run said Succeeded; nothing retired.
    assert sim.order()[-2:] == ["weight 100", "hold"]
    assert sim.blue == 4 and sim.held and sim.weight_in_cluster == 100
    assert sim.status.rollback_window_ends_at == sim.status.completed_at + WINDOW
    assert sim.status.completed_at is not None
    ends = sim.status.rollback_window_ends_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"checkout-blue kept at full size until {ends}" in sim.status.message
    # Succeeded for GitOps tools and `kubectl wait --for=condition=Complete`...
    assert condition(sim, ConditionType.complete)[0] == "True"
    assert condition(sim, ConditionType.ready)[0] == "True"
    # ...and the window says blue can still come back, until when.
    status, reason, message = condition(sim, ConditionType.rollback_window)
    assert (status, reason) == ("True", "Open")
    assert f"until {ends}" in message and "`cutover undo`" in message
    assert condition(sim, ConditionType.rollback_available)[:2] == ("True", "RollbackWindow")
    assert sim.status.rollback_available


def test_the_window_keeps_checking_gates_and_wakes_for_them_and_for_its_end() -> None:
    sim = in_window()
    assert needs_attention(Phase.succeeded, 1, 1, False, window_open=True)
    decision = sim.reconcile()
    assert decision.requeue_after is not None and 0 < decision.requeue_after <= 30
    sim.now += timedelta(seconds=31)
    assert [g.name for g in gates_due(sim.spec, sim.status, sim.now)] == ["error-rate"]  # type: ignore[arg-type]
    checked = sim.status.gates[0].last_evaluated_at
    sim.reconcile()
    assert sim.status.gates[0].last_evaluated_at == sim.now != checked


def test_the_window_closing_retires_blue_and_the_run_stays_succeeded() -> None:
    sim = in_window()
    ends = sim.status.rollback_window_ends_at
    assert ends is not None
    sim.run(until=lambda s: s.status.rollback_window_ends_at is None, limit=900)
    assert sim.now >= ends and sim.now < ends + timedelta(seconds=1)
    assert sim.status.phase is Phase.succeeded and sim.blue == 0 and not sim.held
    assert sim.order()[-1] == "retire"
    assert "the rollback window of 10m closed: checkout-blue retired" in sim.status.message
    assert condition(sim, ConditionType.rollback_window)[:2] == ("False", "Closed")
    assert condition(sim, ConditionType.rollback_available)[:2] == ("False", "BlueRetired")
    assert [e.reason for e in sim.events][-1] == "RollbackWindowClosed"
    assert all(g.outcome.value == "Passed" for g in sim.status.gates)
    assert not needs_attention(Phase.succeeded, 1, 1, False, window_open=False)
    assert sim.reconcile().requeue_after is None


def test_undo_in_the_window_puts_traffic_back_on_blue_with_one_write() -> None:
    sim = in_window()
    writes = len(sim.actions)
    sim.ask(RequestVerb.undo)
    sim.run(until=lambda s: s.status.phase is Phase.rolled_back, limit=60)
    moves = [a for a in sim.actions[writes:] if not isinstance(a, EmitEvent)]
    assert moves == [RestoreBlue(total_replicas=4, scale_down_green=True)]
    assert sim.weight_in_cluster == 0 and sim.blue == 4
    status, reason, message = condition(sim, ConditionType.rolled_back)
    assert (status, reason) == ("True", "Undone")
    assert message == "rolled back: undone by request in the rollback window"
    assert sim.status.rollback_window_ends_at is None
    assert sim.status.live_deployment == "checkout-blue"
    assert condition(sim, ConditionType.complete)[0] == "False"


def test_a_failed_gate_in_the_window_rolls_back_with_its_reason() -> None:
    sim = in_window()
    sim.readings = lambda _g, _n: Reading.of(0.5)
    sim.run(until=lambda s: s.status.phase is Phase.rolled_back, limit=120)
    assert sim.weight_in_cluster == 0 and sim.blue == 4
    status, reason, message = condition(sim, ConditionType.rolled_back)
    assert (status, reason) == ("True", "GateFailed")
    assert "gate error-rate" in message and "0.5" in message
    assert not [a for a in sim.actions if isinstance(a, SetWeight) and a.weight < 100][1:]


def test_without_automatic_rollback_a_breach_in_the_window_warns_and_keeps_green() -> None:
    sim = in_window(rollback={"window": "10m", "automatic": False})
    sim.readings = lambda _g, _n: Reading.of(0.5)
    sim.now += timedelta(seconds=31)
    sim.reconcile()
    assert sim.status.phase is Phase.succeeded and sim.weight_in_cluster == 100
    warning = sim.events[-1]
    assert warning.type == "Warning" and "in the rollback window" in warning.message
    assert "`cutover undo`" in warning.message


def test_promote_in_the_window_retires_blue_now() -> None:
    sim = in_window()
    sim.ask(RequestVerb.promote)
    assert sim.status.rollback_window_ends_at is None and sim.blue == 0
    assert sim.status.phase is Phase.succeeded


def test_undo_without_a_window_is_refused_and_says_why() -> None:
    sim = succeeded(Sim(spec(steps=STEPS, gates=[])))
    assert sim.blue == 0
    sim.ask(RequestVerb.undo)
    assert sim.status.phase is Phase.succeeded
    refused = sim.events[-1]
    assert (refused.type, refused.reason) == ("Warning", "RollbackNotAvailable")
    assert refused.message == (
        "undo refused: no rollback window is open: blue was retired (spec.rollback.window)"
    )


def test_past_the_point_of_no_return_no_window_opens_and_undo_says_why() -> None:
    contract = {
        "name": "contract",
        "irreversible": True,
        "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}},
    }
    sim = Sim(window_spec(hooks={"postPromotion": [contract]}))
    succeeded(sim)
    assert sim.status.point_of_no_return is not None
    assert sim.status.rollback_window_ends_at is None and sim.blue == 0
    assert "no rollback window past the point of no return: irreversible hook contract" in (
        sim.status.message
    )
    sim.ask(RequestVerb.undo)
    assert sim.status.phase is Phase.succeeded
    assert sim.events[-1].message.startswith(
        "undo refused: rollback refused past the point of no return: irreversible hook contract"
    )


def test_a_restarted_operator_resumes_the_window_from_status() -> None:
    sim = in_window()
    ends = sim.status.rollback_window_ends_at
    assert ends is not None
    # A new operator: nothing but the stored status, minutes later.
    restarted = Sim(sim.spec, blue=4, green=4, status=sim.status, weight_in_cluster=100)
    restarted.now = ends - timedelta(seconds=5)
    restarted.reconcile()
    assert restarted.status.rollback_window_ends_at == ends and restarted.actions == []
    restarted.run(until=lambda s: s.status.rollback_window_ends_at is None, limit=60)
    retired = [a for a in restarted.actions if not isinstance(a, EmitEvent)]
    assert retired == [RetireBlue(sim.spec.blue, sim.spec.green)]  # type: ignore[union-attr]


def test_a_new_release_in_the_window_retires_the_kept_blue_first() -> None:
    sim = in_window()
    sim.spec = parse_spec(
        raw(
            blue={"deployment": "checkout-green"},
            green={"deployment": "checkout-v3"},
            steps=STEPS,
            gates=[],
            rollback={"window": "10m"},
        )
    )
    sim.generation = 2
    writes = len(sim.actions)
    sim.reconcile()
    # The kept blue, by name (the new spec's blue is the live side), retired before anything else.
    moves = [a for a in sim.actions[writes:] if not isinstance(a, EmitEvent)]
    assert moves[0] == RetireBlue(spec().blue, spec().green)
    assert not [a for a in moves[1:] if isinstance(a, RetireBlue | RestoreBlue)]
    closed = next(e for e in sim.events[::-1] if e.reason == "RollbackWindowClosed")
    assert closed.message == (
        "the spec names other versions: checkout-blue retired, checkout-green serves all traffic"
    )
    # Then the new run went on from the live side (instantly here: no gates, pods ready at once).
    assert sim.status.run_id == "2-1" and sim.status.live_deployment == "checkout-v3"


def test_an_invalid_spec_in_the_window_keeps_it_and_says_so() -> None:
    sim = in_window()
    sim.spec = SpecInvalid(["spec.steps: the last setWeight must be 100"])
    sim.generation = 2
    sim.reconcile()
    assert sim.status.phase is Phase.succeeded and sim.status.rollback_window_ends_at
    assert sim.status.message.endswith("the rollback window waits for a valid spec")
    assert condition(sim, ConditionType.invalid_spec)[0] == "True"


def test_green_gone_in_the_window_puts_traffic_back_on_blue() -> None:
    sim = in_window()
    sim.green_exists = False
    sim.run(until=lambda s: s.status.phase is Phase.rolled_back, limit=60)
    assert condition(sim, ConditionType.rolled_back)[1] == "GreenMissing"


def test_deleting_the_migration_in_the_window_retires_blue() -> None:
    sim = in_window()
    actions = deletion.on_delete(sim.spec, sim.status)
    assert actions[0] == RetireBlue(sim.spec.blue, sim.spec.green)  # type: ignore[union-attr]
    assert actions[1] == EmitEvent(
        "Normal",
        "RollbackWindowClosed",
        "deleted in the rollback window: checkout-blue retired, checkout-green keeps all traffic",
    )
    # Deleted after the next release was applied: the window's own versions go by name.
    release = parse_spec(
        raw(blue={"deployment": "checkout-green"}, green={"deployment": "checkout-v3"})
    )
    kept = deletion.on_delete(release, sim.status)
    assert kept[0] == RetireBlue(spec().blue, spec().green)
    assert isinstance(kept[1], EmitEvent) and "checkout-blue retired" in kept[1].message
    # A status that does not name them (written before they were recorded): the spec's.
    unnamed = sim.status.model_copy(
        update={"rollback_window_blue": None, "rollback_window_green": None}
    )
    assert deletion.on_delete(release, unnamed)[0] == RetireBlue(release.blue, release.green)
    closed = sim.status.model_copy(update={"rollback_window_ends_at": None})
    assert deletion.on_delete(sim.spec, closed) == ()


def test_the_replicas_router_needs_the_service_to_keep_blue_out() -> None:
    fields = raw(steps=STEPS, rollback={"window": "10m"})
    fields["traffic"] = {"router": "replicas"}
    with pytest.raises(SpecInvalid, match=r"rollback\.window: the replicas router"):
        parse_spec(fields)
    fields["rollback"] = {"window": "0s"}
    parse_spec(fields)


def test_hold_happens_only_once_green_serves_everything() -> None:
    sim = Sim(window_spec())
    sim.run(until=lambda s: any(isinstance(a, HoldBlue) for a in s.actions), limit=600)
    assert sim.weight_in_cluster == 100 and sim.status.step_ready_at is not None


# --- the rules in core/rollback.py ---


def status(**fields: Any) -> MigrationStatus:
    return MigrationStatus(**fields)


ENDS = datetime(2026, 1, 1, 12, 10, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "is_open"),
    [
        ({"phase": Phase.succeeded, "rollback_window_ends_at": ENDS}, True),
        ({"phase": Phase.succeeded}, False),
        ({"phase": Phase.progressing, "rollback_window_ends_at": ENDS}, False),
        ({"phase": Phase.rolled_back, "rollback_window_ends_at": ENDS}, False),
    ],
)
def test_window_open_needs_success_and_an_end(fields: dict[str, Any], is_open: bool) -> None:
    assert rollback_rules.window_open(status(**fields)) is is_open


def test_availability_in_and_after_the_window() -> None:
    ends = ENDS
    open_ = status(phase=Phase.succeeded, weight=100, rollback_window_ends_at=ends)
    assert rollback_rules.window_end(open_) == "2026-01-01T12:10:05Z"
    assert rollback_rules.availability(open_) == rollback_rules.Availability(
        True,
        rollback_rules.RollbackCode.window,
        "`cutover undo` puts all traffic back on blue until 2026-01-01T12:10:05Z"
        " (the rollback window)",
    )
    irreversible = open_.model_copy(update={"point_of_no_return": "hook contract started"})
    assert (
        rollback_rules.availability(irreversible).code is rollback_rules.RollbackCode.blue_retired
    )
    closed = open_.model_copy(update={"rollback_window_ends_at": None})
    assert rollback_rules.availability(closed) == rollback_rules.Availability(
        False, rollback_rules.RollbackCode.blue_retired, "succeeded: blue was retired"
    )
    assert rollback_rules.window_end(closed) == "?"


def test_undo_refusals_say_why() -> None:
    ends = ENDS
    open_ = status(phase=Phase.succeeded, weight=100, rollback_window_ends_at=ends)
    assert rollback_rules.undo_refusal(open_) is None
    assert (
        rollback_rules.undo_refusal(
            open_.model_copy(update={"point_of_no_return": "hook contract started"})
        )
        == "rollback refused past the point of no return: hook contract started"
    )
    assert (
        rollback_rules.undo_refusal(open_.model_copy(update={"rollback_window_ends_at": None}))
        == "no rollback window is open: blue was retired (spec.rollback.window)"
    )
    running = rollback_rules.undo_refusal(status(phase=Phase.progressing, weight=50))
    assert running == (
        "undo takes back a success during its rollback window; the run is Progressing"
        " (`cutover abort` returns traffic to blue during a run)"
    )


def test_undo_is_ignored_in_a_run_and_abort_still_works_there() -> None:
    sim = Sim(spec(steps=[{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}], gates=[]))
    sim.run(until=lambda s: s.status.phase is Phase.paused, limit=60)
    sim.ask(RequestVerb.undo)
    assert sim.status.phase is Phase.paused and sim.weight_in_cluster == 50
    assert "the run is Paused" in sim.events[-1].message


def test_cutover_status_says_the_window_is_open_and_what_undo_does() -> None:
    sim = in_window()
    obj = {
        "metadata": {"name": "checkout", "namespace": "shop"},
        "spec": raw(steps=STEPS, gates=[gate(failureLimit=0)], rollback={"window": "10m"}),
        "status": sim.status.to_dict(),
    }
    report = build_report(obj, now=sim.now + timedelta(minutes=4))
    ends = sim.status.rollback_window_ends_at
    assert ends is not None
    assert report.next_steps == [
        f"rollback window open until {ends.strftime('%H:%M:%SZ')} (in 6m): blue is kept at full"
        " size; `cutover undo` puts all traffic back on it, `cutover promote` retires it now"
    ]
    assert report.rollback.state.value == "AVAILABLE"
    assert report.rollback.reason.startswith("`cutover undo` puts all traffic back on blue until")
