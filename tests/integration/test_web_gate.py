"""The ``web`` gate provider on the real control plane: the real operator asks a real local
HTTP server answering JSON, with an API key read from a Secret."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.controlplane import ControlPlane
from tests.support.json_server import Answer, JsonServer, json_server

from .gates_support import events, gate_record, migration_manifest, start_app
from .harness import OperatorProcess, apply_text, replicas, wait_phase

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
TERMINAL = ("Succeeded", "RolledBack", "Failed")


@pytest.fixture
def namespace_prefix() -> str:
    return "webgate"


@pytest.fixture
def health() -> Iterator[JsonServer]:
    with json_server() as server:
        yield server


def api_key_secret(cluster: ControlPlane, namespace: str) -> str:
    key = f"key-{uuid.uuid4().hex}"
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "health-api"},
        "data": {"key": base64.b64encode(key.encode()).decode()},
    }
    apply_text(cluster, namespace, json.dumps(secret))
    return key


def web_gate(server: JsonServer, **fields: Any) -> dict[str, Any]:
    return {
        "name": "health",
        "interval": "1s",
        "web": {
            "url": server.url + "/apps/{{namespace}}/{{green}}",
            "jsonPath": "$.data.errorRate",
            "headers": [{"name": "X-Api-Key", "valueFrom": {"name": "health-api", "key": "key"}}],
        },
        "threshold": {"max": 0.05},
        **fields,
    }


@pytest.mark.usefixtures("operator")
def test_a_web_gate_against_a_healthy_endpoint_succeeds_and_keeps_its_key_secret(
    cluster: ControlPlane, namespace: str, operator: OperatorProcess, health: JsonServer
) -> None:
    key = api_key_secret(cluster, namespace)
    health.answer(f"/apps/{namespace}/shop-green", Answer({"data": {"errorRate": 0.01}}))
    start_app(cluster, namespace, "shop", "shop", [web_gate(health)])

    final = wait_phase(cluster, namespace, "shop", *TERMINAL)["status"]

    assert final["phase"] == "Succeeded", final
    assert replicas(cluster, namespace, "shop-green") == 2
    record = gate_record(final, "health")
    assert record["passed"] >= 2 and record["lastValue"] == 0.01, record
    assert {r.headers.get("x-api-key") for r in health.received} == {key}
    shown = {
        "operator log": operator.log(),
        "events": json.dumps(events(cluster, namespace)),
        "status": json.dumps(final),
    }
    for where, text in shown.items():
        assert key not in text, f"the API key leaked into the {where}"


@pytest.mark.usefixtures("operator")
def test_a_web_gate_against_a_failing_endpoint_rolls_back(
    cluster: ControlPlane, namespace: str, health: JsonServer
) -> None:
    api_key_secret(cluster, namespace)
    health.answer(f"/apps/{namespace}/shop-green", Answer({"data": {"errorRate": 0.4}}))
    start_app(cluster, namespace, "shop", "shop", [web_gate(health)])

    final = wait_phase(cluster, namespace, "shop", *TERMINAL)["status"]

    assert final["phase"] == "RolledBack", final
    assert replicas(cluster, namespace, "shop-green") == 0
    assert replicas(cluster, namespace, "shop-blue") == 2
    record = gate_record(final, "health")
    assert record["failed"] >= 1 and record["lastValue"] == 0.4, record
    assert "0.4 is above max 0.05" in (record.get("lastMessage") or ""), record


def test_the_api_server_refuses_a_gate_with_two_providers_or_none(
    cluster: ControlPlane, namespace: str, health: JsonServer
) -> None:
    both = web_gate(health, prometheus={"address": "http://127.0.0.1:9", "query": "up"})
    neither = {k: v for k, v in web_gate(health).items() if k != "web"}
    for name, gate in (("both", both), ("neither", neither)):
        manifest = migration_manifest(name, "shop", [gate])
        result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest, check=False)
        assert result.returncode != 0, result.stdout
        assert "a gate needs exactly one of prometheus, web" in result.stderr, result.stderr
