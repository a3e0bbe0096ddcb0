"""spec.rollback.window end to end, with the replicas router (the case where blue must be kept
out of a Service that selects both versions): after success blue is back at full size with no
traffic; `cutover undo` puts all traffic on blue's already running pods with one Service write;
a window that closes (across an operator restart) retires blue and the run stays Succeeded. And
one weighted router (Gateway API): blue was never scaled down, and undo is one route write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devtools.controlplane import ControlPlane

from .gates_support import condition, events
from .harness import ROOT, OperatorProcess, apply, apply_text, get, wait_for, wait_phase, writes

# The routes' CRDs (session-scoped: installed before any namespace or operator of a test).
pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(240),
    pytest.mark.usefixtures("third_party_crds"),
]
REPLICAS = ROOT / "examples" / "replicas"
EXAMPLE = REPLICAS / "migration-window.yaml"


@pytest.fixture
def namespace_prefix() -> str:
    return "window"


@pytest.fixture
def chart_values() -> dict[str, Any]:
    """The Gateway API router's RBAC, as its users enable it in the chart."""
    return {"routers": {"gatewayapi": {"enabled": True}}}


def request(cluster: ControlPlane, namespace: str, verb: str) -> None:
    """What ``cutover <verb>`` writes."""
    cluster.kubectl("annotate", "-n", namespace, "mig/checkout", f"cutover.io/request={verb}:t1")


def blue_pods(cluster: ControlPlane, namespace: str) -> dict[str, bool]:
    """Blue's pods: uid -> ready."""
    out = cluster.kubectl(
        "get", "-n", namespace, "pods", "-l", "app=checkout,version=blue", "-o", "json"
    ).stdout
    pods: dict[str, bool] = {}
    for pod in json.loads(out)["items"]:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        ready = any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (pod.get("status") or {}).get("conditions") or []
        )
        pods[pod["metadata"]["uid"]] = ready
    return pods


def deployment(cluster: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return get(cluster, namespace, "deployment", name)


def selector(cluster: ControlPlane, namespace: str) -> dict[str, str]:
    return dict(get(cluster, namespace, "service", "checkout")["spec"]["selector"])


def cutover(cluster: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    """The `cutover` CLI, as a person runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    return subprocess.run(
        [sys.executable, "-m", "cutover.cli", *args, "--kubeconfig", str(cluster.kubeconfig)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def open_window(cluster: ControlPlane, namespace: str, manifest: Path | str) -> dict[str, Any]:
    apply(cluster, namespace, REPLICAS / "app.yaml")
    if isinstance(manifest, Path):
        apply(cluster, namespace, manifest)
    else:
        apply_text(cluster, namespace, manifest)
    status = wait_phase(cluster, namespace, "checkout", "Succeeded", "RolledBack", timeout=60)[
        "status"
    ]
    assert status["phase"] == "Succeeded", status
    return status


def test_undo_in_the_window_puts_traffic_on_blues_running_pods(
    cluster: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    status = open_window(cluster, namespace, EXAMPLE)
    assert status["rollbackWindowEndsAt"], status
    assert condition(status, "Complete")["status"] == "True"
    # `kubectl get mig` shows until when blue can come back.
    header, row = cluster.kubectl("get", "-n", namespace, "mig").stdout.splitlines()[:2]
    assert header.split()[:6] == ["NAME", "PHASE", "STEP", "WEIGHT", "AGE", "WINDOW"]
    assert status["rollbackWindowEndsAt"] in row.split()
    window = condition(status, "RollbackWindow")
    assert (window["status"], window["reason"]) == ("True", "Open"), window
    # Blue is back at full size, out of the Service: it selects green's pods alone.
    wait_for(
        lambda: list(blue_pods(cluster, namespace).values()) == [True] * 4,
        timeout=60,
        what="blue's 4 pods ready",
    )
    assert selector(cluster, namespace) == {"app": "checkout", "version": "green"}
    assert deployment(cluster, namespace, "checkout-green")["spec"]["replicas"] == 4
    before = set(blue_pods(cluster, namespace))
    mark = cluster.stats()["last_seq"]

    done = cutover(cluster, "undo", "checkout", "-n", namespace, "--wait-timeout", "30s")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "undo: all traffic will return to blue (checkout-blue)" in done.stdout

    final = wait_phase(cluster, namespace, "checkout", "RolledBack", timeout=60)["status"]
    rolled = condition(final, "RolledBack")
    assert rolled["reason"] == "Undone", rolled
    assert rolled["message"] == "rolled back: undone by request in the rollback window"
    assert "rollbackWindowEndsAt" not in final
    # The first traffic write was the Service, narrowed to blue's pods: no Deployment grew.
    first = next(
        w
        for w in writes(cluster, namespace, since=mark)
        if w["resource"] in ("services", "deployments")
    )
    assert first["resource"] == "services", first
    assert first["body"]["spec"]["selector"]["version"] == "blue", first
    # The same blue pods serve, none started; green is gone and the Service is as it was.
    assert set(blue_pods(cluster, namespace)) == before
    assert deployment(cluster, namespace, "checkout-blue")["spec"]["replicas"] == 4
    wait_for(
        lambda: deployment(cluster, namespace, "checkout-green")["spec"]["replicas"] == 0,
        timeout=30,
    )
    assert selector(cluster, namespace) == {"app": "checkout"}
    service = get(cluster, namespace, "service", "checkout")
    assert "cutover.io/original" not in (service["metadata"].get("annotations") or {})
    assert "cutover.io/held" not in (
        deployment(cluster, namespace, "checkout-blue")["metadata"].get("annotations") or {}
    )


def test_a_window_that_closes_retires_blue_and_the_run_stays_succeeded(
    cluster: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    short = EXAMPLE.read_text().replace("window: 10m", "window: 8s")
    status = open_window(cluster, namespace, short)
    assert status["rollbackWindowEndsAt"], status
    # An operator killed in the window: the next one finds it in the status and closes it.
    operator.kill()
    assert deployment(cluster, namespace, "checkout-blue")["spec"]["replicas"] == 4
    operator.start()
    wait_for(
        lambda: (
            "rollbackWindowEndsAt"
            not in (
                get(cluster, namespace, "migrations.cutover.io", "checkout").get("status") or {}
            )
        ),
        timeout=60,
        what="the window closed",
    )
    final = get(cluster, namespace, "migrations.cutover.io", "checkout")["status"]
    assert final["phase"] == "Succeeded", final
    assert condition(final, "RollbackWindow")["status"] == "False"
    assert "the rollback window of 8s closed: checkout-blue retired" in final["message"]
    assert deployment(cluster, namespace, "checkout-blue")["spec"]["replicas"] == 0
    assert deployment(cluster, namespace, "checkout-green")["spec"]["replicas"] == 4
    assert selector(cluster, namespace) == {"app": "checkout"}
    closed = [
        e for e in events(cluster, namespace, "checkout") if e["reason"] == "RollbackWindowClosed"
    ]
    assert len(closed) == 1, closed
    # After the window an undo is refused, and says why.
    late = cutover(cluster, "undo", "checkout", "-n", namespace)
    assert late.returncode == 1
    assert "no rollback window is open: blue was retired" in late.stderr


def test_undo_with_a_weighted_router_is_one_route_write_to_blues_running_pods(
    cluster: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    example = ROOT / "examples" / "gatewayapi"
    apply(cluster, namespace, example / "app.yaml")
    apply(cluster, namespace, example / "route.yaml")
    manifest = (example / "migration.yaml").read_text() + "  rollback: {window: 10m}\n"
    apply_text(cluster, namespace, manifest)
    status = wait_phase(cluster, namespace, "checkout", "Succeeded", "RolledBack", timeout=90)[
        "status"
    ]
    assert status["phase"] == "Succeeded" and status["rollbackWindowEndsAt"], status
    # Blue was never scaled down: its pods are the ones that served before the run.
    assert deployment(cluster, namespace, "checkout-blue")["spec"]["replicas"] == 4
    before = blue_pods(cluster, namespace)
    assert list(before.values()) == [True] * 4
    mark = cluster.stats()["last_seq"]
    request(cluster, namespace, "undo")
    final = wait_phase(cluster, namespace, "checkout", "RolledBack", timeout=60)["status"]
    assert condition(final, "RolledBack")["reason"] == "Undone"
    first = next(
        w
        for w in writes(cluster, namespace, since=mark)
        if w["resource"] in ("httproutes", "deployments")
    )
    assert first["resource"] == "httproutes", first
    route = get(cluster, namespace, "httproutes.gateway.networking.k8s.io", "checkout")
    rule = next(r for r in route["spec"]["rules"] if r.get("name") == "main")
    assert {r["name"]: r.get("weight") for r in rule["backendRefs"]} == {
        "checkout-blue": 100,
        "checkout-green": 0,
    }
    assert set(blue_pods(cluster, namespace)) == set(before)
