"""Notifications end to end: the real operator runs examples/replicas/migration-notify.yaml and
tells real local HTTP receivers about it. The Migration's signed webhook gets every phase change
in order; its Slack notifier (URL from a Secret) gets the Slack body and the URL stays out of
logs, status and Events; the operator's default notifier points at a receiver that is down, so
the run finishes without it, the failed attempts show in /metrics, and the notifications arrive
once it comes up."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from devtools.controlplane import ControlPlane
from tests.support.admission import free_port
from tests.support.json_server import Answer, JsonServer, Received, json_server

from .gates_support import events
from .harness import OperatorProcess, apply, apply_text, wait_for, wait_phase

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]
REPLICAS = Path(__file__).resolve().parents[2] / "examples" / "replicas"


@pytest.fixture
def namespace_prefix() -> str:
    return "notify"


@pytest.fixture
def receivers() -> Iterator[JsonServer]:
    with json_server() as server:
        yield server


def notify_secret(cluster: ControlPlane, namespace: str, url: str, slack: str, key: str) -> None:
    values = {"url": url, "signing-key": key, "slack-url": slack}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "checkout-notify"},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()},
    }
    apply_text(cluster, namespace, json.dumps(secret))


def bodies(received: list[Received], path: str) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in list(received) if r.path == path]


def transitions(status: dict[str, Any]) -> list[tuple[str, str]]:
    """(from, to) of every phase change, from the run's history."""
    found: list[tuple[str, str]] = []
    previous = "Pending"
    for entry in status["history"]:
        if entry["phase"] != previous:
            found.append((previous, entry["phase"]))
            previous = entry["phase"]
    return found


def scrape(port: int, kind: str, outcome: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    line = f'cutover_notifications_total{{kind="{kind}",outcome="{outcome}"}} '
    values = [float(row[len(line) :]) for row in text.splitlines() if row.startswith(line)]
    assert len(values) == 1, f"no {line!r} series in /metrics"
    return values[0]


def test_a_run_tells_its_notifiers_in_order_and_a_receiver_that_is_down_catches_up(
    cluster: ControlPlane, namespace: str, receivers: JsonServer
) -> None:
    key = f"key-{uuid.uuid4().hex}"
    slack_path = f"/services/T0/B0/{uuid.uuid4().hex}"
    receivers.answer("/deploys", Answer({}))
    receivers.answer(slack_path, Answer({}))
    down_port, metrics_port = free_port(), free_port()
    default = [
        {
            "name": "platform",
            "kind": "webhook",
            "url": f"http://127.0.0.1:{down_port}/platform",
            "events": ["PhaseChanged"],
        }
    ]
    env = {
        "CUTOVER_NOTIFY_DEFAULT": json.dumps(default),
        "CUTOVER_NOTIFY_BACKOFF": "0.25",
        "CUTOVER_METRICS_PORT": str(metrics_port),
    }
    operator = OperatorProcess(cluster, namespace, env=env).start()
    with ExitStack() as stack:
        stack.callback(operator.stop)
        notify_secret(
            cluster, namespace, receivers.url + "/deploys", receivers.url + slack_path, key
        )
        apply(cluster, namespace, REPLICAS / "app.yaml")
        apply(cluster, namespace, REPLICAS / "migration-notify.yaml")

        # The run does not wait for the receiver that is down.
        status = wait_phase(cluster, namespace, "checkout", "Succeeded", "RolledBack", "Failed")[
            "status"
        ]
        assert status["phase"] == "Succeeded", status
        expected = transitions(status)
        assert expected[0] == ("Pending", "Progressing") and expected[-1][1] == "Succeeded"

        # The Migration's webhook: each phase change once, in order, signed with the key.
        def told() -> list[tuple[str, str]]:
            return [
                (b["previousPhase"], b["phase"]) for b in bodies(receivers.received, "/deploys")
            ]

        wait_for(lambda: told() == expected, timeout=20, what=f"phase changes {expected}")
        for request in [r for r in receivers.received if r.path == "/deploys"]:
            digest = hmac.new(key.encode(), request.body, hashlib.sha256).hexdigest()
            assert request.headers["x-cutover-signature"] == f"sha256={digest}"
            body = json.loads(request.body)
            assert request.headers["x-cutover-delivery"] == body["id"]
            assert body["migration"]["namespace"] == namespace
            assert body["runId"] == status["runId"]
        ids = [b["id"] for b in bodies(receivers.received, "/deploys")]
        assert len(set(ids)) == len(ids), ids

        # The Slack notifier: the same phase changes, as Slack text.
        wait_for(lambda: len(bodies(receivers.received, slack_path)) == len(expected), timeout=20)
        texts = [b["text"] for b in bodies(receivers.received, slack_path)]
        assert texts[-1].startswith(f"{namespace}/checkout: ") and "Succeeded" in texts[-1]

        # The default notifier's receiver is down: attempts failed and were counted...
        wait_for(lambda: scrape(metrics_port, "webhook", "retried") >= 1, timeout=10)
        delivered = scrape(metrics_port, "webhook", "delivered")
        # ...and once it is up, the retries bring it the same phase changes, in order.
        platform = stack.enter_context(json_server(port=down_port))
        platform.answer("/platform", Answer({}))

        def caught_up() -> list[tuple[str, str]]:
            return [
                (b["previousPhase"], b["phase"]) for b in bodies(platform.received, "/platform")
            ]

        wait_for(lambda: caught_up() == expected, timeout=45, what="the default notifier")
        assert "x-cutover-signature" not in platform.received[0].headers  # it has no key
        wait_for(lambda: scrape(metrics_port, "webhook", "delivered") >= delivered + 1)

        shown = {
            "operator log": operator.log(),
            "events": json.dumps(events(cluster, namespace)),
            "status": json.dumps(status),
        }
        for where, text in shown.items():
            assert slack_path not in text, f"the Slack URL leaked into the {where}"
            assert key not in text, f"the signing key leaked into the {where}"
