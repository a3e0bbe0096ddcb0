"""The weighted routers through the real operator: a full success and an aborted run each."""

from __future__ import annotations

from typing import Any

import pytest

from devtools.controlplane import ControlPlane

from .harness import (
    ROOT,
    OperatorProcess,
    apply,
    get,
    migration,
    replicas,
    wait_for,
    wait_phase,
)

# The routes' CRDs (session-scoped: installed before any namespace or operator of a test).
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("third_party_crds")]
ROUTES = {
    "gatewayapi": ("httproutes.gateway.networking.k8s.io", "route.yaml"),
    "istio": ("virtualservices.networking.istio.io", "route.yaml"),
    "nginx": ("ingress", "ingress.yaml"),
}
CANARY = "checkout-cutover-canary"


@pytest.fixture
def namespace_prefix() -> str:
    return "w"


@pytest.fixture
def chart_values() -> dict[str, Any]:
    """What a user of these routers sets in the chart; without it RBAC denies the route writes."""
    return {"routers": {name: {"enabled": True} for name in ROUTES}}


def _setup(cluster: ControlPlane, namespace: str, router: str) -> tuple[str, dict[str, Any]]:
    """The example app and its route; the route's kind and the route as the team wrote it."""
    kind, route_file = ROUTES[router]
    apply(cluster, namespace, ROOT / "examples" / router / "app.yaml")
    apply(cluster, namespace, ROOT / "examples" / router / route_file)
    return kind, get(cluster, namespace, kind, "checkout")


def _green_weight(router: str, route: dict[str, Any]) -> tuple[int, int] | None:
    if router == "gatewayapi":
        rule = next(r for r in route["spec"]["rules"] if r.get("name") == "main")
        refs = {r["name"]: r.get("weight") for r in rule["backendRefs"]}
        return refs["checkout-blue"], refs["checkout-green"]
    if router == "istio":
        http = next(r for r in route["spec"]["http"] if r.get("name") == "main")
        dests = {d["destination"]["host"]: d.get("weight") for d in http["route"]}
        return dests["checkout-blue"], dests["checkout-green"]
    return None


def _canary(cluster: ControlPlane, namespace: str) -> dict[str, Any] | None:
    found = cluster.kubectl("get", "-n", namespace, "ingress", CANARY, "-o", "name", check=False)
    return {"found": True} if found.returncode == 0 else None


@pytest.mark.parametrize("router", sorted(ROUTES))
def test_success(
    cluster: ControlPlane, namespace: str, operator: OperatorProcess, router: str
) -> None:
    kind, before = _setup(cluster, namespace, router)
    apply(cluster, namespace, ROOT / "examples" / router / "migration.yaml")
    obj = wait_phase(
        cluster, namespace, "checkout", "Succeeded", "RolledBack", "Failed", timeout=90
    )
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    route = get(cluster, namespace, kind, "checkout")
    assert "cutover.io/original" not in (route["metadata"].get("annotations") or {})
    assert "cutover-match" not in str(route["spec"])
    if router == "nginx":
        paths = route["spec"]["rules"][0]["http"]["paths"]
        assert [p["backend"]["service"]["name"] for p in paths] == ["checkout-green"]
        assert _canary(cluster, namespace) is None
    else:
        assert _green_weight(router, route) == (0, 100)
        # Everything but the weights is as the team wrote it.
        assert _green_weight(router, before) == (100, 0)
    assert replicas(cluster, namespace, "checkout-blue") == 0
    assert replicas(cluster, namespace, "checkout-green") == 4


@pytest.mark.parametrize("router", sorted(ROUTES))
def test_abort_restores_the_original(
    cluster: ControlPlane, namespace: str, operator: OperatorProcess, router: str
) -> None:
    kind, before = _setup(cluster, namespace, router)
    manifest = (ROOT / "examples" / router / "migration.yaml").read_text()
    # A long pause at 50 % holds the run where the abort can catch it.
    slow = manifest.replace(
        "    - pause: {duration: 2s}\n    - setWeight: 100", "    - pause: {}\n    - setWeight: 100"
    )
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=slow)
    wait_for(
        lambda: (migration(cluster, namespace, "checkout").get("status") or {}).get("weight") == 50,
        timeout=60,
        what="weight 50",
    )
    if router == "nginx":
        assert _canary(cluster, namespace) is not None
    cluster.kubectl("annotate", "-n", namespace, "mig/checkout", "cutover.io/request=abort:t1")
    obj = wait_phase(cluster, namespace, "checkout", "RolledBack", timeout=60)
    assert obj["status"]["lastRequest"] == "t1"
    route = get(cluster, namespace, kind, "checkout")
    assert route["spec"] == before["spec"]
    assert "cutover.io/original" not in (route["metadata"].get("annotations") or {})
    if router == "nginx":
        assert _canary(cluster, namespace) is None
    else:
        assert _green_weight(router, route) == (100, 0)
    assert replicas(cluster, namespace, "checkout-blue") == 4
    assert replicas(cluster, namespace, "checkout-green") == 0


@pytest.mark.parametrize("router", ["gatewayapi", "istio"])
def test_a_router_the_chart_does_not_enable_fails_clearly_before_any_traffic_moves(
    cluster: ControlPlane, namespace: str, router: str
) -> None:
    _setup(cluster, namespace, router)
    process = OperatorProcess(cluster, namespace).start()  # the chart's defaults: router off
    try:
        apply(cluster, namespace, ROOT / "examples" / router / "migration.yaml")
        obj = wait_phase(cluster, namespace, "checkout", "Failed", "RolledBack", timeout=60)
    finally:
        process.stop()
    failed = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert failed["reason"] == "PreflightFailed", failed
    assert "forbidden" in failed["message"].lower(), failed["message"]
    assert obj["status"]["weight"] == 0
    assert replicas(cluster, namespace, "checkout-blue") == 4
    assert replicas(cluster, namespace, "checkout-green") == 0
