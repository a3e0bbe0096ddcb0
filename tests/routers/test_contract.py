"""The traffic-router contract, run against both routers on the in-process sandbox."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from cutover.api import MigrationSpec, Router
from cutover.core.plan import replica_split
from cutover.kube import Kube
from cutover.routers import router_for
from cutover.routers.base import (
    ORIGINAL_ANNOTATION,
    WEIGHT_ANNOTATION,
    NotReady,
    Target,
    TrafficRouter,
    TrafficRouterError,
)
from cutover.sandbox import SandboxCluster

NS = "default"
BLUE, GREEN, SERVICE = "checkout-blue", "checkout-green", "checkout"
BLUE_LABELS = {"app": "checkout", "version": "blue"}
# A key blue does not have: switching back to blue must remove it, not just change values.
GREEN_LABELS = {"app": "checkout", "version": "green", "release": "v2"}
USER_ANNOTATION = {"team.example.com/owner": "payments"}

SUPPORTED = {
    Router.replicas: [0, 1, 33, 50, 99, 100],
    Router.service: [0, 100],
}


def _deployment(name: str, labels: dict[str, str], replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": dict(USER_ANNOTATION)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "containers": [
                        {"name": "app", "image": f"shop:{name}", "ports": [{"containerPort": 80}]}
                    ]
                },
            },
        },
    }


def _service(selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE, "annotations": dict(USER_ANNOTATION)},
        "spec": {
            "selector": dict(selector),
            "ports": [
                {"name": "http", "port": 80, "targetPort": 8080},
                {"name": "envoy-admin", "port": 9901},  # a sidecar's port the user owns
            ],
        },
    }


def _target(kind: Router) -> Target:
    spec = MigrationSpec.model_validate(
        {
            "blue": {"deployment": BLUE},
            "green": {"deployment": GREEN},
            "traffic": {"router": kind.value, "service": SERVICE},
            "steps": [{"setWeight": 100}],
        }
    )
    return Target(NS, "checkout", "uid-1", spec)


async def _world(kube: Kube, kind: Router, total: int) -> tuple[TrafficRouter, Target]:
    # The replicas router needs one Service in front of both; the service router one on blue.
    selector = {"app": "checkout"} if kind is Router.replicas else BLUE_LABELS
    await kube.create("apps", "v1", "deployments", NS, _deployment(BLUE, BLUE_LABELS, total))
    await kube.create("apps", "v1", "deployments", NS, _deployment(GREEN, GREEN_LABELS, 0))
    await kube.create("", "v1", "services", NS, _service(selector))
    await _settled(kube)
    return router_for(kind, kube), _target(kind)


async def _settled(kube: Kube, timeout: float = 5.0) -> None:
    """Waits for the sandbox's Deployment controller to report every replica available."""
    deadline = time.monotonic() + timeout
    while True:
        pending = []
        for name in (BLUE, GREEN):
            obj = await kube.get("apps", "v1", "deployments", NS, name)
            if obj is None:
                continue
            status = obj.get("status") or {}
            if (
                status.get("observedGeneration") != obj["metadata"].get("generation")
                or (status.get("availableReplicas") or 0) != obj["spec"]["replicas"]
            ):
                pending.append(name)
        if not pending:
            return
        assert time.monotonic() < deadline, f"not settled: {pending}"
        await asyncio.sleep(0.02)


async def _until_ready(kube: Kube, move: Callable[[], Awaitable[None]]) -> None:
    """Runs a router move again while it reports NotReady, as the reconciler would."""
    for _ in range(20):
        try:
            await move()
            return
        except NotReady:
            await _settled(kube)
    raise AssertionError("the move never became ready")


async def _objects(kube: Kube) -> dict[str, dict[str, Any]]:
    found = {
        "blue": await kube.get("apps", "v1", "deployments", NS, BLUE),
        "green": await kube.get("apps", "v1", "deployments", NS, GREEN),
        "service": await kube.get("", "v1", "services", NS, SERVICE),
    }
    assert all(found.values())
    return {k: copy.deepcopy(v) for k, v in found.items() if v is not None}


def _writes(cluster: SandboxCluster, since: int) -> list[dict[str, Any]]:
    return [
        w
        for w in cluster.requests_since(since)
        if w["resource"] in ("deployments", "services") and w["code"] < 300
    ]


def _mark(cluster: SandboxCluster) -> int:
    return int(cluster.log.stats()["last_seq"])


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    return dict(obj["metadata"].get("annotations") or {})


@pytest.mark.parametrize(
    ("kind", "total"),
    [(Router.replicas, 4), (Router.replicas, 10), (Router.service, 4)],
    ids=["replicas-4", "replicas-10", "service-4"],
)
async def test_contract(kube: Kube, cluster: SandboxCluster, kind: Router, total: int) -> None:
    router, target = await _world(kube, kind, total)
    assert await router.preflight(target) == []
    before = await _objects(kube)

    await router.prepare(target, total)
    await router.prepare(target, total)  # idempotent
    await _settled(kube)

    for weight in SUPPORTED[kind]:
        await router.set_weight(target, weight, total)
        await _settled(kube)
        assert await router.get_weight(target) == weight
        assert await router.verify(target, weight) is True
        if kind is Router.replicas:
            now = await _objects(kube)
            split = (now["blue"]["spec"]["replicas"], now["green"]["spec"]["replicas"])
            assert split == replica_split(total, weight)
        mark = _mark(cluster)
        await router.set_weight(target, weight, total)
        assert _writes(cluster, mark) == [], f"second set_weight({weight}) wrote"

    # Back to a weight where both versions could take traffic, then roll back.
    middle = 50 if kind is Router.replicas else 100
    await router.set_weight(target, middle, total)
    await _settled(kube)
    assert await router.verify(target, 0) is False
    mark = _mark(cluster)
    await router.restore(target, total, True)
    writes = _writes(cluster, mark)
    assert writes, "restore wrote nothing"
    first = writes[0]
    if kind is Router.replicas:
        # Green to zero: blue still has pods, so that one write sends everything to blue.
        assert (first["resource"], first["name"]) == ("deployments", GREEN)
        assert first["body"]["spec"]["replicas"] == 0
    else:
        assert (first["resource"], first["name"]) == ("services", SERVICE)
        selector = {**GREEN_LABELS, **first["body"]["spec"]["selector"]}
        assert {k: v for k, v in selector.items() if v is not None} == BLUE_LABELS
    await _settled(kube)
    after = await _objects(kube)
    for key in ("blue", "green", "service"):
        assert after[key]["spec"] == before[key]["spec"], key
        assert _annotations(after[key]) == USER_ANNOTATION, key
    assert await router.get_weight(target) == 0
    mark = _mark(cluster)
    await router.restore(target, total, True)  # idempotent
    assert _writes(cluster, mark) == []


@pytest.mark.parametrize("kind", [Router.replicas, Router.service])
async def test_edits_by_others_survive(kube: Kube, cluster: SandboxCluster, kind: Router) -> None:
    router, target = await _world(kube, kind, 4)
    await router.prepare(target, 4)
    await router.set_weight(target, 50 if kind is Router.replicas else 0, 4)
    await _settled(kube)
    # Someone else edits fields the router does not own.
    await kube.patch("", "v1", "services", NS, SERVICE, {"metadata": {"labels": {"tier": "web"}}})
    env = {"name": "app", "env": [{"name": "MODE", "value": "debug"}]}
    await kube.patch(
        "apps",
        "v1",
        "deployments",
        NS,
        GREEN,
        {"spec": {"template": {"spec": {"containers": [env]}}}},
        patch_type="strategic",
    )
    await router.set_weight(target, 100, 4)
    await _settled(kube)
    await _until_ready(kube, lambda: router.restore(target, 4, True))
    await _settled(kube)
    now = await _objects(kube)
    assert now["service"]["metadata"]["labels"] == {"tier": "web"}
    container = now["green"]["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [{"name": "MODE", "value": "debug"}]
    assert container["image"] == f"shop:{GREEN}"
    assert await router.get_weight(target) == 0


async def test_replicas_nominal_vs_effective_weight(kube: Kube) -> None:
    router, target = await _world(kube, Router.replicas, 4)
    await router.set_weight(target, 10, 4)  # 1 pod of 4: effectively 25 %
    assert await router.get_weight(target) == 10
    # Someone scales green by hand: the nominal weight no longer describes the pods.
    await kube.patch(
        "apps", "v1", "deployments", NS, GREEN, {"spec": {"replicas": 3}}, patch_type="strategic"
    )
    assert await router.get_weight(target) == 50  # 3 of 6 pods
    assert await router.verify(target, 10) is False


async def test_replicas_never_empties_the_serving_side(kube: Kube) -> None:
    router, target = await _world(kube, Router.replicas, 4)
    # 0 -> 100 in one go: green has no ready pod yet, so blue keeps its pods for now.
    with pytest.raises(NotReady, match=f"{NS}/{GREEN}"):
        await router.set_weight(target, 100, 4)
    now = await _objects(kube)
    assert (now["blue"]["spec"]["replicas"], now["green"]["spec"]["replicas"]) == (4, 4)
    await _settled(kube)
    await router.set_weight(target, 100, 4)
    await _settled(kube)
    assert await router.get_weight(target) == 100
    # Rolling back from 100 %: blue first needs a ready pod before green's go.
    with pytest.raises(NotReady, match=f"{NS}/{BLUE}"):
        await router.restore(target, 4, True)
    await _settled(kube)
    await router.restore(target, 4, True)
    now = await _objects(kube)
    assert (now["blue"]["spec"]["replicas"], now["green"]["spec"]["replicas"]) == (4, 0)
    assert ORIGINAL_ANNOTATION not in _annotations(now["blue"])


@pytest.mark.parametrize("kind", [Router.replicas, Router.service])
async def test_retire_blue(kube: Kube, cluster: SandboxCluster, kind: Router) -> None:
    router, target = await _world(kube, kind, 4)
    await router.prepare(target, 4)
    await _settled(kube)
    await router.set_weight(target, 50 if kind is Router.replicas else 100, 4)
    await _settled(kube)
    await router.set_weight(target, 100, 4)
    await _settled(kube)
    await router.retire_blue(target, 4)
    now = await _objects(kube)
    assert now["blue"]["spec"]["replicas"] == 0
    assert now["green"]["spec"]["replicas"] == 4
    for obj in now.values():
        assert ORIGINAL_ANNOTATION not in _annotations(obj)
        assert WEIGHT_ANNOTATION not in _annotations(obj)
    assert await router.get_weight(target) == 100
    mark = _mark(cluster)
    await router.retire_blue(target, 4)
    assert _writes(cluster, mark) == []


async def test_service_router_rejects_partial_weights_and_early_retire(kube: Kube) -> None:
    router, target = await _world(kube, Router.service, 4)
    with pytest.raises(TrafficRouterError, match="weight 50"):
        await router.set_weight(target, 50, 4)
    with pytest.raises(TrafficRouterError, match=f"Service {NS}/{SERVICE}"):
        await router.retire_blue(target, 4)


@pytest.mark.parametrize("kind", [Router.replicas, Router.service])
async def test_preflight_missing_objects(kube: Kube, kind: Router) -> None:
    router, target = await _world(kube, kind, 4)
    await kube.delete("apps", "v1", "deployments", NS, GREEN)
    await kube.delete("", "v1", "services", NS, SERVICE)
    problems = await router.preflight(target)
    assert any(f"Deployment {NS}/{GREEN} not found" in p for p in problems), problems
    assert any(f"Service {NS}/{SERVICE} not found" in p for p in problems), problems
    assert await router.get_weight(target) is None
    with pytest.raises(TrafficRouterError, match="not found"):
        await router.set_weight(target, 0, 4)


async def test_replicas_preflight_selector_mismatch(kube: Kube) -> None:
    router, target = await _world(kube, Router.replicas, 4)
    await kube.patch("", "v1", "services", NS, SERVICE, {"spec": {"selector": {"app": "other"}}})
    problems = await router.preflight(target)
    assert len(problems) == 2 and all(f"Service {NS}/{SERVICE}" in p for p in problems)
    assert "app=other" in problems[0] and "version=blue" in problems[0]


async def test_service_preflight_labels_that_cannot_tell_versions_apart(kube: Kube) -> None:
    router, target = await _world(kube, Router.service, 4)
    shared = {"app": "checkout"}
    await kube.delete("apps", "v1", "deployments", NS, GREEN)
    await kube.create("apps", "v1", "deployments", NS, _deployment(GREEN, shared, 0))
    problems = await router.preflight(target)
    # green selects app=checkout, which blue's pods also carry.
    assert any("green's labels {app=checkout} also match blue's pods" in p for p in problems)


def test_registry(kube: Kube) -> None:
    assert type(router_for(Router.replicas, kube)).__name__ == "ReplicasRouter"
    assert type(router_for(Router.service, kube)).__name__ == "ServiceRouter"
    assert type(router_for(Router.gatewayapi, kube)).__name__ == "GatewayAPIRouter"
    assert type(router_for(Router.istio, kube)).__name__ == "IstioRouter"
    assert type(router_for(Router.nginx, kube)).__name__ == "NginxRouter"
    with pytest.raises(ValueError, match="known routers: gatewayapi, istio, nginx, replicas"):
        router_for("bogus", kube)  # type: ignore[arg-type]
