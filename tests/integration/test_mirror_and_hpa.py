"""setMirror steps and HorizontalPodAutoscalers through the real operator, on the real route CRDs
and the real controller-manager's HPA controller (no metrics server: it does not scale by load,
but it does hold a Deployment inside the HPA's min/max bounds)."""

from __future__ import annotations

import time
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
    writes,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("third_party_crds")]


@pytest.fixture
def namespace_prefix() -> str:
    return "mir"


@pytest.fixture
def chart_values() -> dict[str, Any]:
    return {"routers": {"istio": {"enabled": True}, "gatewayapi": {"enabled": True}}}


def _status(cluster: ControlPlane, namespace: str) -> dict[str, Any]:
    return migration(cluster, namespace, "checkout").get("status") or {}


def _held_at(cluster: ControlPlane, namespace: str, step: int) -> dict[str, Any]:
    """Waits until the run holds at ``step`` (counted from 1) on a pause until promoted."""

    def probe() -> dict[str, Any] | None:
        status = _status(cluster, namespace)
        held = status.get("phase") == "Paused" and status.get("currentStepIndex") == step - 1
        return status if held else None

    return wait_for(probe, timeout=90, what=f"held at step {step}")  # type: ignore[no-any-return]


def _request(cluster: ControlPlane, namespace: str, verb: str, request_id: str) -> None:
    cluster.kubectl(
        "annotate", "-n", namespace, "mig/checkout", f"cutover.io/request={verb}:{request_id}"
    )


def _applied(cluster: ControlPlane, namespace: str, router: str, *files: str) -> dict[str, Any]:
    """The example app, its route and ``files`` of examples/<router>; the route as written."""
    for name in ("app.yaml", "route.yaml", *files):
        apply(cluster, namespace, ROOT / "examples" / router / name)
    kind = {"istio": "virtualservices.networking.istio.io"}.get(
        router, "httproutes.gateway.networking.k8s.io"
    )
    return get(cluster, namespace, kind, "checkout")


def _istio_main(cluster: ControlPlane, namespace: str) -> dict[str, Any]:
    route = get(cluster, namespace, "virtualservices.networking.istio.io", "checkout")
    return next(r for r in route["spec"]["http"] if r.get("name") == "main")  # type: ignore[no-any-return]


def _gateway_mirrors(cluster: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    route = get(cluster, namespace, "httproutes.gateway.networking.k8s.io", "checkout")
    rule = next(r for r in route["spec"]["rules"] if r.get("name") == "main")
    return [f["requestMirror"] for f in rule.get("filters") or [] if f["type"] == "RequestMirror"]


def test_istio_mirror_lasts_until_the_next_weight_step_and_a_rollback_removes_it(
    cluster: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    before = _applied(cluster, namespace, "istio")
    apply(cluster, namespace, ROOT / "examples" / "istio" / "migration-mirror.yaml")

    status = _held_at(cluster, namespace, 2)
    assert (status["weight"], status["mirror"]) == (0, 50)
    main = _istio_main(cluster, namespace)
    assert main["mirror"] == {"host": "checkout-green", "port": {"number": 80}}
    assert main["mirrorPercentage"] == {"value": 50}
    assert [d["weight"] for d in main["route"]] == [100, 0]  # green answers nothing yet
    assert replicas(cluster, namespace, "checkout-green") == 4  # ready for the copies

    _request(cluster, namespace, "promote", "p1")
    status = _held_at(cluster, namespace, 4)
    assert (status["weight"], status["mirror"]) == (20, 0)
    main = _istio_main(cluster, namespace)
    assert "mirror" not in main and "mirrorPercentage" not in main
    assert [d["weight"] for d in main["route"]] == [80, 20]

    # A second run, rolled back while it mirrors: the restore's one write ends the mirror.
    _request(cluster, namespace, "abort", "a1")
    wait_phase(cluster, namespace, "checkout", "RolledBack", timeout=60)
    _request(cluster, namespace, "retry", "r1")
    _held_at(cluster, namespace, 2)
    assert "mirror" in _istio_main(cluster, namespace)
    _request(cluster, namespace, "abort", "a2")
    obj = wait_phase(cluster, namespace, "checkout", "RolledBack", timeout=60)
    assert obj["status"]["mirror"] == 0
    route = get(cluster, namespace, "virtualservices.networking.istio.io", "checkout")
    assert route["spec"] == before["spec"]
    assert "cutover.io/original" not in (route["metadata"].get("annotations") or {})


def test_gatewayapi_mirror_with_green_s_hpa_pinned_and_a_deletion_mid_mirror(
    cluster: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    before = _applied(cluster, namespace, "gatewayapi", "hpa.yaml")
    apply(cluster, namespace, ROOT / "examples" / "gatewayapi" / "migration-mirror.yaml")

    status = _held_at(cluster, namespace, 2)
    assert (status["weight"], status["mirror"]) == (0, 25)
    (mirror,) = _gateway_mirrors(cluster, namespace)
    assert mirror["percent"] == 25
    assert (mirror["backendRef"]["name"], mirror["backendRef"]["port"]) == ("checkout-green", 80)

    # Green's HPA holds green at blue's size for the run; Cutover wrote that floor, not a
    # replica count the HPA would undo. Sampled across more than one HPA sync (15 s): no fight.
    hpa = get(cluster, namespace, "hpa", "checkout-green")
    assert hpa["spec"]["minReplicas"] == 4 and hpa["spec"]["maxReplicas"] == 8
    assert hpa["metadata"]["annotations"]["cutover.io/original"] == '{"minReplicas":1}'
    since = cluster.stats()["last_seq"]
    samples = []
    for _ in range(5):
        samples.append(replicas(cluster, namespace, "checkout-green"))
        time.sleep(4)
    assert samples == [4] * 5
    scaled = [
        e
        for e in writes(cluster, namespace, "deployments", since=since)
        if e.get("name") == "checkout-green"
    ]
    assert scaled == [], [(e["user"], e["verb"], e.get("subresource")) for e in scaled]
    # The HPA controller is alive and judging green (within bounds, it has no metrics to act on).
    hpa = get(cluster, namespace, "hpa", "checkout-green")
    assert (hpa.get("status") or {}).get("currentReplicas") == 4

    cluster.kubectl("delete", "-n", namespace, "mig/checkout", "--wait=true", "--timeout=60s")
    route = get(cluster, namespace, "httproutes.gateway.networking.k8s.io", "checkout")
    assert _gateway_mirrors(cluster, namespace) == []
    assert route["spec"] == before["spec"]
    hpa = get(cluster, namespace, "hpa", "checkout-green")
    assert hpa["spec"]["minReplicas"] == 1
    assert "cutover.io/original" not in (hpa["metadata"].get("annotations") or {})
    assert replicas(cluster, namespace, "checkout-green") == 0


def test_the_replicas_router_refuses_a_deployment_scaled_by_an_hpa(
    cluster: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    apply(cluster, namespace, ROOT / "examples" / "replicas" / "app.yaml")
    apply(cluster, namespace, ROOT / "examples" / "gatewayapi" / "hpa.yaml")
    apply(cluster, namespace, ROOT / "examples" / "replicas" / "migration.yaml")
    obj = wait_phase(cluster, namespace, "checkout", "Failed", "Progressing", timeout=60)
    invalid = next(c for c in obj["status"]["conditions"] if c["type"] == "InvalidSpec")
    assert (obj["status"]["phase"], invalid["reason"]) == ("Failed", "HPAConflict"), obj["status"]
    assert (
        "HorizontalPodAutoscaler checkout-green scales green Deployment checkout-green"
        in (invalid["message"])
    )
    assert obj["status"]["weight"] == 0
    assert replicas(cluster, namespace, "checkout-green") == 0
    hpa = get(cluster, namespace, "hpa", "checkout-green")
    assert hpa["spec"]["minReplicas"] == 1  # nothing written
