"""cutover/notify.py: the background queue (order, retries with backoff, giving up, dropping when
full, all counted) and the sender against a real local HTTP receiver (signature, Slack body,
Secret URLs kept out of logs, the outbound policy)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from cutover import metrics
from cutover.api import MigrationStatus, Notifier, Phase
from cutover.core.notifications import Notification, Subject, derive
from cutover.egress import EgressPolicy
from cutover.kube import Kube, NotFound
from cutover.notify import (
    Backoff,
    Delivery,
    DeliveryQueue,
    GiveUp,
    Retry,
    Sender,
    load_defaults,
)
from tests.support.json_server import Answer, JsonServer, json_server

NOW = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)


def notification(phase: Phase = Phase.progressing, name: str = "checkout") -> Notification:
    subject = Subject("shop", name, f"uid-{name}", 1)
    before = MigrationStatus(run_id="1-1")
    (event,) = derive(before, MigrationStatus(phase=phase, run_id="1-1"), subject, NOW)
    return event


def delivery(
    phase: Phase = Phase.progressing, notifier: str = "ops", kind: str = "webhook"
) -> Delivery:
    target = Notifier(name=notifier, kind=kind, url="http://127.0.0.1:9/hook")
    return Delivery(target, notification(phase), "shop")


def count(outcome: str, kind: str = "webhook") -> float:
    value = metrics.REGISTRY.get_sample_value(
        "cutover_notifications_total", {"kind": kind, "outcome": outcome}
    )
    return value or 0.0


class Script:
    """A post function failing as told, recording what it was asked and the delays slept."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.posted: list[Phase] = []
        self.slept: list[float] = []

    async def post(self, item: Delivery) -> None:
        self.posted.append(item.notification.phase)
        if self.failures:
            raise self.failures.pop(0)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await asyncio.sleep(0)  # a real wait lets other lanes run


def queue(script: Script, **options: Any) -> DeliveryQueue:
    options.setdefault("backoff", Backoff(attempts=4, first=1.0, cap=3.0))
    return DeliveryQueue(script.post, sleep=script.sleep, jitter=lambda low, high: high, **options)


async def test_a_lane_delivers_in_order_retrying_with_growing_capped_delays() -> None:
    script = Script(Retry("connection refused"), Retry("HTTP 503"), Retry("HTTP 503"))
    q = queue(script)
    before = {o: count(o) for o in ("delivered", "retried", "failed")}
    q.submit(delivery(Phase.progressing))
    q.submit(delivery(Phase.succeeded))
    await q.join()
    assert script.posted == [Phase.progressing] * 4 + [Phase.succeeded]
    assert script.slept == [1.0, 2.0, 3.0]  # doubling, capped at 3
    assert count("delivered") - before["delivered"] == 2
    assert count("retried") - before["retried"] == 3
    assert count("failed") == before["failed"]
    assert q.pending == 0


async def test_jitter_keeps_at_least_half_the_delay() -> None:
    seen: list[tuple[float, float]] = []

    def jitter(low: float, high: float) -> float:
        seen.append((low, high))
        return low

    assert Backoff(first=2.0, cap=60.0).delay(3, jitter) == 8.0
    assert seen == [(8.0, 16.0)]


async def test_a_delivery_gives_up_after_its_attempts_and_the_next_one_still_goes() -> None:
    script = Script(*(Retry("connection refused") for _ in range(4)))
    q = queue(script)
    failed = count("failed")
    q.submit(delivery(Phase.progressing))
    q.submit(delivery(Phase.succeeded))
    await q.join()
    assert script.posted == [Phase.progressing] * 4 + [Phase.succeeded]
    assert count("failed") - failed == 1


async def test_a_permanent_refusal_is_not_retried() -> None:
    script = Script(GiveUp("HTTP 404"))
    q = queue(script)
    failed = count("failed", "slack")
    q.submit(delivery(kind="slack"))
    await q.join()
    assert script.posted == [Phase.progressing] and script.slept == []
    assert count("failed", "slack") - failed == 1


async def test_a_full_queue_drops_and_counts_instead_of_waiting() -> None:
    script = Script()
    q = queue(script, capacity=2)
    dropped = count("dropped")
    accepted = [
        q.submit(delivery(phase)) for phase in (Phase.progressing, Phase.paused, Phase.succeeded)
    ]
    assert accepted == [True, True, False]
    assert count("dropped") - dropped == 1
    await q.join()
    assert script.posted == [Phase.progressing, Phase.paused]


async def test_a_slow_receiver_holds_up_only_its_own_lane() -> None:
    script = Script(Retry("HTTP 503"))
    q = queue(script)
    q.submit(delivery(Phase.progressing, notifier="slow"))
    q.submit(delivery(Phase.succeeded, notifier="fast"))
    await q.join()
    # The second lane's delivery went out before the first lane's retry.
    assert script.posted == [Phase.progressing, Phase.succeeded, Phase.progressing]


# --- the sender, against a real local receiver -------------------------------------------------


class Secrets:
    """The one Kube call the sender makes: reading a Secret's key."""

    def __init__(self, values: dict[tuple[str, str, str], str]) -> None:
        self.values = values

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        try:
            return self.values[(namespace, name, key)]
        except KeyError:
            raise NotFound(f"Secret {namespace}/{name} not found", status=404) from None


@pytest.fixture
def receiver() -> Iterator[JsonServer]:
    with json_server() as server:
        server.answer("/hook", Answer({}))
        server.answer("/services/T0/B0/s3cr3t", Answer({}))
        yield server


def sender(secrets: dict[tuple[str, str, str], str], **options: Any) -> Sender:
    egress = options.pop("egress", EgressPolicy.build())
    backoff = Backoff(attempts=2, first=0.01)
    return Sender(cast(Kube, Secrets(secrets)), egress, backoff=backoff, **options)


async def test_a_webhook_is_signed_with_the_key_from_its_secret(receiver: JsonServer) -> None:
    key = "hmac-key-123"
    notifier = Notifier.model_validate(
        {
            "name": "ops",
            "kind": "webhook",
            "url": receiver.url + "/hook",
            "signingKey": {"name": "hooks", "key": "hmac"},
        }
    )
    s = sender({("shop", "hooks", "hmac"): key})
    event = notification(Phase.succeeded)
    s.submit([notifier], [event])
    await s.queue.join()
    s.close()
    (request,) = receiver.received
    expected = hmac.new(key.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-cutover-signature"] == f"sha256={expected}"
    assert request.headers["x-cutover-event"] == "PhaseChanged"
    assert request.headers["x-cutover-delivery"] == event.id
    body = json.loads(request.body)
    assert (body["id"], body["phase"]) == (event.id, "Succeeded")


async def test_a_slack_url_from_a_secret_gets_the_slack_body_and_stays_out_of_logs(
    receiver: JsonServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = receiver.url + "/services/T0/B0/s3cr3t"
    notifier = Notifier.model_validate(
        {"name": "chat", "kind": "slack", "urlFrom": {"name": "slack", "key": "url"}}
    )
    s = sender({("shop", "slack", "url"): url})
    s.submit([notifier], [notification(Phase.paused)])
    await s.queue.join()
    s.close()
    (request,) = receiver.received
    body = json.loads(request.body)
    assert set(body) == {"text", "blocks"} and "Paused" in body["text"]
    assert "x-cutover-signature" not in request.headers
    logged = caplog.text + json.dumps([r.__dict__ for r in caplog.records], default=str)
    assert "s3cr3t" not in logged
    assert "notification delivered" in caplog.text


async def test_a_default_notifier_reads_its_secret_in_the_operators_namespace(
    receiver: JsonServer,
) -> None:
    default = Notifier.model_validate(
        {"name": "platform", "kind": "webhook", "urlFrom": {"name": "hooks", "key": "url"}}
    )
    s = sender(
        {("cutover-system", "hooks", "url"): receiver.url + "/hook"},
        defaults=[default],
        operator_namespace="cutover-system",
    )
    s.submit([], [notification()])
    await s.queue.join()
    s.close()
    assert len(receiver.received) == 1


async def test_an_address_the_outbound_policy_refuses_is_sent_nothing(receiver: JsonServer) -> None:
    notifier = Notifier(name="ops", kind="webhook", url=receiver.url + "/hook")
    s = sender({}, egress=EgressPolicy.build(allowed_hosts="10.0.0.0/8"))
    failed = count("failed")
    s.submit([notifier], [notification()])
    await s.queue.join()
    s.close()
    assert receiver.received == []
    assert count("failed") - failed == 1


async def test_a_receiver_answering_500_is_retried_and_404_is_not(receiver: JsonServer) -> None:
    receiver.answer("/down", Answer({}, status=503))
    receiver.answer("/gone", Answer({}, status=404))
    down = Notifier(name="down", kind="webhook", url=receiver.url + "/down")
    gone = Notifier(name="gone", kind="webhook", url=receiver.url + "/gone")
    s = sender({})
    s.submit([down, gone], [notification()])
    await s.queue.join()
    s.close()
    paths = [r.path for r in receiver.received]
    assert paths.count("/down") == 2 and paths.count("/gone") == 1


def test_default_notifiers_come_from_the_environment_and_a_bad_setting_means_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = json.dumps([{"name": "ops", "kind": "slack", "url": "https://hooks.example/x"}])
    (ops,) = load_defaults({"CUTOVER_NOTIFY_DEFAULT": good})
    assert (ops.name, ops.kind.value) == ("ops", "slack")
    assert load_defaults({}) == []
    bad = json.dumps([{"name": "ops", "kind": "pager", "url": "https://x"}])
    assert load_defaults({"CUTOVER_NOTIFY_DEFAULT": bad}) == []
    assert load_defaults({"CUTOVER_NOTIFY_DEFAULT": "[{"}) == []
    problems = [r.__dict__.get("problems") for r in caplog.records]
    assert any(p and "CUTOVER_NOTIFY_DEFAULT[0].kind" in p[0] for p in problems), problems
