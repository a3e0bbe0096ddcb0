"""spec.preview end to end (examples/service/migration-preview.yaml), with the service router and a
web gate asking a real local HTTP server: the preview Service the operator creates selects only
green's pods and is gone when the run is over; a preview gate that passes lets the Service switch
to green, one that fails rolls back with the user-facing Service never having selected green."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from devtools.controlplane import ControlPlane
from tests.support.json_server import Answer, JsonServer, json_server

from .harness import ROOT, apply, apply_text, get, replicas, wait_for, wait_phase, writes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
SERVICE = ROOT / "examples" / "service"
EXAMPLE_HOST = "http://{{preview.service}}.{{namespace}}.svc"
TERMINAL = ("Succeeded", "RolledBack", "Failed")
GREEN = {"app": "checkout", "version": "green"}


@pytest.fixture
def namespace_prefix() -> str:
    return "preview"


@pytest.fixture
def smoke() -> Iterator[JsonServer]:
    with json_server() as server:
        yield server


def start(cluster: ControlPlane, namespace: str, server: JsonServer, failing: int) -> str:
    """The example app and Migration, its gate asking ``server`` every second; returns the path
    the gate asks (the preview Service's name and the namespace in it, as rendered)."""
    path = f"/checkout-preview/{namespace}/healthz"
    server.answer(path, Answer({"failing": failing}))
    apply(cluster, namespace, SERVICE / "app.yaml")
    migration = yaml.safe_load((SERVICE / "migration-preview.yaml").read_text())
    gate = migration["spec"]["gates"][0]
    gate["web"]["url"] = gate["web"]["url"].replace(
        EXAMPLE_HOST, server.url + "/{{preview.service}}/{{namespace}}"
    )
    gate["interval"] = "1s"
    apply_text(cluster, namespace, json.dumps(migration))
    return path


def service_writes(cluster: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    return [e for e in writes(cluster, namespace, "services") if e["name"] == name]


def pods(cluster: ControlPlane, namespace: str, selector: dict[str, str]) -> list[dict[str, Any]]:
    labels = ",".join(f"{k}={v}" for k, v in selector.items())
    out = cluster.kubectl("get", "-n", namespace, "pods", "-l", labels, "-o", "json").stdout
    return [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]


def preview_gone(cluster: ControlPlane, namespace: str) -> bool:
    result = cluster.kubectl(
        "get", "-n", namespace, "service", "checkout-preview", "-o", "name", check=False
    )
    return result.returncode != 0 and "NotFound" in result.stderr


@pytest.mark.usefixtures("operator")
def test_a_passing_preview_checks_green_alone_before_the_switch_and_removes_its_service(
    cluster: ControlPlane, namespace: str, smoke: JsonServer
) -> None:
    path = start(cluster, namespace, smoke, failing=0)

    final = wait_phase(cluster, namespace, "checkout", *TERMINAL)["status"]

    assert final["phase"] == "Succeeded", final
    preview = final["preview"]
    assert (preview["service"], preview["state"]) == ("checkout-preview", "Passed"), preview
    # The gate asked through the preview Service's rendered name.
    assert any(r.path == path for r in smoke.received), [r.path for r in smoke.received]
    # Created once, owned by the Migration, selecting only green's pods; then deleted (the
    # status says Succeeded first: the intent is written before the act).
    wait_for(lambda: preview_gone(cluster, namespace), timeout=20, what="preview Service gone")
    created = service_writes(cluster, namespace, "checkout-preview")
    assert [e["method"] for e in created] == ["POST", "DELETE"], created
    body = created[0]["body"]
    assert body["spec"]["selector"] == GREEN, body
    ports = [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http"}]
    assert body["spec"]["ports"] == ports, body  # the user-facing Service's
    owner = body["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Migration", "checkout"), owner
    selected = pods(cluster, namespace, body["spec"]["selector"])
    assert len(selected) == replicas(cluster, namespace, "checkout-green") == 4
    assert all(p["metadata"]["labels"]["version"] == "green" for p in selected)
    # The user-facing Service moved to green only after the preview Service existed.
    switched = [
        e
        for e in service_writes(cluster, namespace, "checkout")
        if ((e["body"] or {}).get("spec") or {}).get("selector", {}).get("version") == "green"
    ]
    assert switched and switched[0]["received"] >= created[0]["received"], switched
    assert get(cluster, namespace, "service", "checkout")["spec"]["selector"] == GREEN


@pytest.mark.usefixtures("operator")
def test_a_preview_gate_failing_at_weight_0_rolls_back_and_user_traffic_never_moves(
    cluster: ControlPlane, namespace: str, smoke: JsonServer
) -> None:
    path = start(cluster, namespace, smoke, failing=1)

    final = wait_phase(cluster, namespace, "checkout", *TERMINAL)["status"]

    assert final["phase"] == "RolledBack", final
    assert final["reason"] == "TrafficRestored", final
    assert final["rollbackReason"].startswith("preview gate smoke at "), final
    assert "1 is above max 0" in final["rollbackReason"], final
    assert final["preview"]["state"] == "Failed", final["preview"]
    assert any(r.path == path for r in smoke.received)
    # User traffic never moved: the weight stayed 0 and the user-facing Service never selected
    # green (the router wrote nothing but its saved original), blue kept its size.
    assert final["weight"] == 0
    assert all(h["weight"] == 0 for h in final["history"]), final["history"]
    to_green = [
        e
        for e in service_writes(cluster, namespace, "checkout")
        if "green" in json.dumps((e["body"] or {}).get("spec") or {})
    ]
    assert to_green == []
    assert get(cluster, namespace, "service", "checkout")["spec"]["selector"]["version"] == "blue"
    assert replicas(cluster, namespace, "checkout-blue") == 4
    assert replicas(cluster, namespace, "checkout-green") == 0
    wait_for(lambda: preview_gone(cluster, namespace), timeout=20, what="preview Service gone")
