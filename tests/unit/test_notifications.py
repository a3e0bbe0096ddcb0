"""core/notifications.py: which events a status write makes happen, who hears them, and what the
bodies say (the signature checked with the standard library, as a receiver would)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cutover.api import (
    GateOutcome,
    GateStatus,
    HistoryEntry,
    MigrationStatus,
    Notifier,
    NotifyEvent,
    Phase,
    SpecInvalid,
    Verdict,
)
from cutover.core.gates import Reading
from cutover.core.notifications import (
    Notification,
    Subject,
    derive,
    effective_notifiers,
    encode,
    sign,
    slack_body,
    wanted,
    webhook_body,
)

from .sim import Sim
from .specs import gate as gate_spec
from .specs import spec

NOW = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)
SUBJECT = Subject("shop", "checkout", "uid-1", 3)


def status(phase: Phase = Phase.progressing, **fields: Any) -> MigrationStatus:
    fields.setdefault("run_id", "3-1")
    fields.setdefault("observed_generation", 3)
    history = [HistoryEntry(time=NOW, phase=phase, step=0, weight=0, reason="X")]
    fields.setdefault("history", history)
    return MigrationStatus(phase=phase, **fields)


def gate(outcome: GateOutcome, **fields: Any) -> GateStatus:
    return GateStatus(name="errors", outcome=outcome, **fields)


def kinds(before: MigrationStatus, after: MigrationStatus) -> list[NotifyEvent]:
    return [n.kind for n in derive(before, after, SUBJECT, NOW)]


def test_the_same_status_written_again_tells_nobody_anything() -> None:
    same = status(gates=[gate(GateOutcome.failed)], point_of_no_return="hook x")
    assert derive(same, same.model_copy(deep=True), SUBJECT, NOW) == []


def test_a_phase_change_is_one_event_naming_both_phases() -> None:
    (event,) = derive(
        status(Phase.pending), status(Phase.progressing, reason="Started"), SUBJECT, NOW
    )
    assert event.kind is NotifyEvent.phase_changed
    assert (event.previous_phase, event.phase) == (Phase.pending, Phase.progressing)
    assert event.headline == "Pending -> Progressing (Started)"


def test_a_gate_breach_then_the_rollback_it_causes_come_in_that_order() -> None:
    before = status(gates=[gate(GateOutcome.running)])
    after = status(
        Phase.rolling_back,
        reason="GateFailed",
        rollback_reason="gate errors failed",
        gates=[gate(GateOutcome.failed, failed=2, last_message="0.4 is above max 0.05")],
    )
    events = derive(before, after, SUBJECT, NOW)
    assert [e.kind for e in events] == [
        NotifyEvent.gate_failed,
        NotifyEvent.phase_changed,
        NotifyEvent.rollback_started,
    ]
    assert events[0].gate is not None and events[0].gate.name == "errors"
    assert events[2].detail == "gate errors failed"


@pytest.mark.parametrize(
    ("outcome", "told"),
    [
        (GateOutcome.failed, True),
        (GateOutcome.error, True),
        (GateOutcome.inconclusive, True),
        (GateOutcome.running, False),
        (GateOutcome.passed, False),
        (GateOutcome.skipped, False),
        (GateOutcome.pending, False),
    ],
)
def test_only_a_gate_past_its_limits_is_a_gate_failure(outcome: GateOutcome, told: bool) -> None:
    found = kinds(status(gates=[gate(GateOutcome.running)]), status(gates=[gate(outcome)]))
    assert (NotifyEvent.gate_failed in found) is told


def test_a_gate_already_failed_is_not_told_again_but_a_new_failure_kind_is() -> None:
    failed = status(gates=[gate(GateOutcome.failed)])
    assert kinds(failed, status(gates=[gate(GateOutcome.failed)])) == []
    assert kinds(failed, status(gates=[gate(GateOutcome.error)])) == [NotifyEvent.gate_failed]


def test_a_new_run_does_not_inherit_the_last_runs_gate_outcomes() -> None:
    before = status(run_id="3-1", gates=[gate(GateOutcome.failed)])
    after = status(run_id="3-2", gates=[gate(GateOutcome.failed)])
    assert kinds(before, after) == [NotifyEvent.gate_failed]


def test_passing_the_point_of_no_return_is_told_once() -> None:
    after = status(point_of_no_return="irreversible hook contract started at 06:00")
    (event,) = derive(status(), after, SUBJECT, NOW)
    assert event.kind is NotifyEvent.point_of_no_return
    assert event.detail == "irreversible hook contract started at 06:00"
    assert kinds(after, after.model_copy(deep=True)) == []


def test_ids_are_stable_and_tell_different_events_apart() -> None:
    before, after = status(Phase.pending), status(Phase.progressing)
    first = derive(before, after, SUBJECT, NOW)[0]
    again = derive(before, after, SUBJECT, NOW + timedelta(minutes=5))[0]
    assert first.id == again.id
    assert first.id.startswith("uid-1/3-1/PhaseChanged/g3/s0/")
    # Pausing a second time in the same step, later, is another event.
    later = [
        HistoryEntry(
            time=NOW + timedelta(minutes=1), phase=Phase.paused, step=0, weight=0, reason="X"
        )
    ]
    one = derive(status(), status(Phase.paused), SUBJECT, NOW)[0]
    two = derive(status(), status(Phase.paused, history=later), SUBJECT, NOW)[0]
    assert one.id != two.id
    other_run = derive(status(Phase.pending, run_id="3-2"), status(run_id="3-2"), SUBJECT, NOW)[0]
    assert other_run.id != first.id


def test_a_migrations_notifier_replaces_the_default_of_the_same_name_and_adds_the_rest() -> None:
    ops = Notifier(name="ops", kind="webhook", url="http://ops.example/hook")
    chat = Notifier(name="chat", kind="slack", url="https://hooks.slack.test/a")
    mine = Notifier(
        name="ops", kind="webhook", url="http://team.example/hook", events=["GateFailed"]
    )
    assert effective_notifiers([ops, chat], [mine]) == [chat, mine]
    assert effective_notifiers([ops], []) == [ops]


def test_a_notifier_hears_only_the_events_it_asks_for() -> None:
    notifier = Notifier(name="n", kind="webhook", url="http://x", events=["RollbackStarted"])
    events = derive(status(), status(Phase.rolling_back, reason="Aborted"), SUBJECT, NOW)
    assert [e.kind for e in wanted(notifier, events)] == [NotifyEvent.rollback_started]
    every = Notifier(name="all", kind="webhook", url="http://x")
    assert wanted(every, events) == events


def test_the_webhook_body_carries_what_a_receiver_routes_and_dedupes_on() -> None:
    after = status(
        Phase.rolling_back,
        reason="GateFailed",
        message="gate errors failed",
        rollback_reason="gate errors failed",
        step="2/5",
        current_step_index=1,
        weight=50,
        gates=[gate(GateOutcome.failed, last_value=0.4, last_verdict=Verdict.failed)],
    )
    events = derive(status(gates=[gate(GateOutcome.running)]), after, SUBJECT, NOW)
    body = json.loads(encode(webhook_body(events[0])))
    assert body["kind"] == "GateFailed" and body["id"] == events[0].id
    assert body["migration"] == {
        "namespace": "shop",
        "name": "checkout",
        "uid": "uid-1",
        "generation": 3,
    }
    assert (body["runId"], body["phase"], body["previousPhase"]) == (
        "3-1",
        "RollingBack",
        "Progressing",
    )
    assert (body["step"], body["stepIndex"], body["weight"]) == ("2/5", 1, 50)
    assert body["gate"] == {
        "name": "errors",
        "outcome": "Failed",
        "lastValue": 0.4,
        "lastMessage": None,
        "dryRun": False,
    }
    rollback = json.loads(encode(webhook_body(events[2])))
    assert rollback["rollbackReason"] == "gate errors failed" and "gate" not in rollback


def test_the_slack_body_has_text_and_blocks_with_markup_escaped() -> None:
    after = status(
        Phase.paused, reason="GateInconclusive", message="<@here> & more", step="2/5", weight=20
    )
    (event,) = derive(status(), after, SUBJECT, NOW)
    body = slack_body(event)
    assert body["text"] == "shop/checkout: Progressing -> Paused (GateInconclusive)"
    section, context = body["blocks"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert "&lt;@here&gt; &amp; more" in section["text"]["text"]
    assert "<@here>" not in json.dumps(body["blocks"])
    assert context["elements"][0]["text"] == "phase Paused · weight 20% · step 2/5 · run 3-1"


def test_the_signature_is_the_hmac_sha256_of_the_bytes_sent() -> None:
    payload = encode({"b": 1, "a": "x"})
    assert payload == b'{"a":"x","b":1}'
    expected = hmac.new(b"k3y", payload, hashlib.sha256).hexdigest()
    assert sign(b"k3y", payload) == f"sha256={expected}"
    assert sign(b"other", payload) != sign(b"k3y", payload)


def test_spec_notify_is_validated_with_paths() -> None:
    good = spec(notify=[{"name": "ops", "kind": "webhook", "urlFrom": {"name": "s", "key": "url"}}])
    assert good.notify[0].events == list(NotifyEvent)
    cases = {
        "needs exactly one of url or urlFrom": [{"name": "a", "kind": "slack"}],
        "signingKey is for kind webhook only": [
            {
                "name": "a",
                "kind": "slack",
                "url": "https://x",
                "signingKey": {"name": "s", "key": "k"},
            }
        ],
        "'a' is used twice": [
            {"name": "a", "kind": "slack", "url": "https://x"},
            {"name": "a", "kind": "webhook", "url": "https://y"},
        ],
        "Input should be 'PhaseChanged'": [
            {"name": "a", "kind": "slack", "url": "https://x", "events": ["Everything"]}
        ],
    }
    for message, notify in cases.items():
        with pytest.raises(SpecInvalid) as error:
            spec(**{"notify": notify})
        assert any(p.startswith("spec.notify") and message in p for p in error.value.problems), (
            error.value.problems
        )


# --- against the decision engine's own statuses ------------------------------------------------


class Recorded(Sim):
    """The simulated cluster, keeping every status the engine produced (the reconciler writes
    each one that comes with actions, and the last of a wake-up)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "status":
            self.__dict__.setdefault("written", []).append(value)
        super().__setattr__(name, value)

    def told(self) -> list[Notification]:
        found: list[Notification] = []
        written: list[MigrationStatus] = self.__dict__["written"]
        for before, after in itertools.pairwise(written):
            found += derive(before, after, SUBJECT, NOW)
        return found


def test_a_run_whose_gate_fails_tells_the_whole_story_once_and_in_order() -> None:
    sim = Recorded(spec(gates=[gate_spec(interval="10s", failureLimit=0)]))
    sim.run(lambda s: s.status.current_step_index == 2)
    sim.readings = lambda _gate, now: Reading.of(0.5)
    sim.run(lambda s: s.status.phase in (Phase.rolled_back, Phase.succeeded, Phase.paused))
    story = [
        (n.kind.value, n.gate.name if n.gate else f"{n.previous_phase.value}->{n.phase.value}")
        for n in sim.told()
    ]
    assert story == [
        ("PhaseChanged", "Pending->Progressing"),
        ("GateFailed", "error-rate"),
        ("PhaseChanged", "Progressing->RollingBack"),
        ("RollbackStarted", "Progressing->RollingBack"),
        ("PhaseChanged", "RollingBack->RolledBack"),
    ]
    ids = [n.id for n in sim.told()]
    assert len(set(ids)) == len(ids)
