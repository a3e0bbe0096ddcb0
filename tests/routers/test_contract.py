"""The traffic-router contract, run against both routers on a real control plane.

The routers act as the operator does (the chart's ServiceAccount and RBAC); the Deployments get
real ReplicaSets and pods (kube-controller-manager and kwok), and every write is counted from the
kube-apiserver's audit log.
"""

from __future__ import annotations

import copy
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
from tests.routers.support import Audit, settle, user_annotations

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


def _target(ns: str, kind: Router) -> Target:
    spec = MigrationSpec.model_validate(
        {
            "blue": {"deployment": BLUE},
            "green": {"deployment": GREEN},
            "traffic": {"router": kind.value, "service": SERVICE},
            "steps": [{"setWeight": 100}],
        }
    )
    return Target(ns, "checkout", "uid-1", spec)


async def _world(
    kube: Kube, admin: Kube, ns: str, kind: Router, total: int
) -> tuple[TrafficRouter, Target]:
    # The replicas router needs one Service in front of both; the service router one on blue.
    selector = {"app": "checkout"} if kind is Router.replicas else BLUE_LABELS
    await admin.create("apps", "v1", "deployments", ns, _deployment(BLUE, BLUE_LABELS, total))
    await admin.create("apps", "v1", "deployments", ns, _deployment(GREEN, GREEN_LABELS, 0))
    await admin.create("", "v1", "services", ns, _service(selector))
    await _settled(admin, ns)
    return router_for(kind, kube), _target(ns, kind)


async def _settled(kube: Kube, ns: str) -> None:
    """Waits for the Deployment controller to report every replica of both updated and ready."""
    await settle(kube, ns, (BLUE, GREEN))


async def _until_ready(kube: Kube, ns: str, move: Callable[[], Awaitable[None]]) -> None:
    """Runs a router move again while it reports NotReady, as the reconciler would."""
    for _ in range(20):
        try:
            await move()
            return
        except NotReady:
            await _settled(kube, ns)
    raise AssertionError("the move never became ready")


async def _objects(kube: Kube, ns: str) -> dict[str, dict[str, Any]]:
    found = {
        "blue": await kube.get("apps", "v1", "deployments", ns, BLUE),
        "green": await kube.get("apps", "v1", "deployments", ns, GREEN),
        "service": await kube.get("", "v1", "services", ns, SERVICE),
    }
    assert all(found.values())
    return {k: copy.deepcopy(v) for k, v in found.items() if v is not None}


def _writes(audit: Audit, since: int) -> list[dict[str, Any]]:
    return audit.writes(since, ("deployments", "services"))


@pytest.mark.parametrize(
    ("kind", "total"),
    [(Router.replicas, 4), (Router.replicas, 10), (Router.service, 4)],
    ids=["replicas-4", "replicas-10", "service-4"],
)
async def test_contract(
    kube: Kube, admin: Kube, ns: str, audit: Audit, kind: Router, total: int
) -> None:
    router, target = await _world(kube, admin, ns, kind, total)
    assert await router.preflight(target) == []
    before = await _objects(kube, ns)

    await router.prepare(target, total)
    await router.prepare(target, total)  # idempotent
    await _settled(kube, ns)

    for weight in SUPPORTED[kind]:
        await router.set_weight(target, weight, total)
        await _settled(kube, ns)
        assert await router.get_weight(target) == weight
        if kind is Router.replicas:
            now = await _objects(kube, ns)
            split = (now["blue"]["spec"]["replicas"], now["green"]["spec"]["replicas"])
            assert split == replica_split(total, weight)
        mark = audit.mark()
        await router.set_weight(target, weight, total)
        assert _writes(audit, mark) == [], f"second set_weight({weight}) wrote"

    # Back to a weight where both versions could take traffic, then roll back.
    middle = 50 if kind is Router.replicas else 100
    await router.set_weight(target, middle, total)
    await _settled(kube, ns)
    assert await router.get_weight(target) != 0
    mark = audit.mark()
    await router.restore(target, total, True)
    writes = _writes(audit, mark)
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
    await _settled(kube, ns)
    after = await _objects(kube, ns)
    for key in ("blue", "green", "service"):
        assert after[key]["spec"] == before[key]["spec"], key
        assert user_annotations(after[key]) == USER_ANNOTATION, key
    assert await router.get_weight(target) == 0
    mark = audit.mark()
    await router.restore(target, total, True)  # idempotent
    assert _writes(audit, mark) == []


@pytest.mark.parametrize("kind", [Router.replicas, Router.service])
async def test_edits_by_others_survive(kube: Kube, admin: Kube, ns: str, kind: Router) -> None:
    router, target = await _world(kube, admin, ns, kind, 4)
    await router.prepare(target, 4)
    await router.set_weight(target, 50 if kind is Router.replicas else 0, 4)
    await _settled(kube, ns)
    # Someone else edits fields the router does not own.
    await admin.patch("", "v1", "services", ns, SERVICE, {"metadata": {"labels": {"tier": "web"}}})
    env = {"name": "app", "env": [{"name": "MODE", "value": "debug"}]}
    await admin.patch(
        "apps",
        "v1",
        "deployments",
        ns,
        GREEN,
        {"spec": {"template": {"spec": {"containers": [env]}}}},
        patch_type="strategic",
    )
    await router.set_weight(target, 100, 4)
    await _settled(kube, ns)
    await _until_ready(kube, ns, lambda: router.restore(target, 4, True))
    await _settled(kube, ns)
    now = await _objects(kube, ns)
    assert now["service"]["metadata"]["labels"] == {"tier": "web"}
    container = now["green"]["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [{"name": "MODE", "value": "debug"}]
    assert container["image"] == f"shop:{GREEN}"
    assert await router.get_weight(target) == 0


async def test_replicas_nominal_vs_effective_weight(kube: Kube, admin: Kube, ns: str) -> None:
    router, target = await _world(kube, admin, ns, Router.replicas, 4)
    await router.set_weight(target, 10, 4)  # 1 pod of 4: effectively 25 %
    assert await router.get_weight(target) == 10
    # Someone scales green by hand: the nominal weight no longer describes the pods.
    await admin.patch(
        "apps", "v1", "deployments", ns, GREEN, {"spec": {"replicas": 3}}, patch_type="strategic"
    )
    assert await router.get_weight(target) == 50  # 3 of 6 pods


async def test_replicas_never_empties_the_serving_side(kube: Kube, admin: Kube, ns: str) -> None:
    router, target = await _world(kube, admin, ns, Router.replicas, 4)
    # 0 -> 100 in one go: green has no ready pod yet, so blue keeps its pods for now.
    with pytest.raises(NotReady, match=f"{ns}/{GREEN}"):
        await router.set_weight(target, 100, 4)
    now = await _objects(kube, ns)
    assert (now["blue"]["spec"]["replicas"], now["green"]["spec"]["replicas"]) == (4, 4)
    await _settled(kube, ns)
    await router.set_weight(target, 100, 4)
    await _settled(kube, ns)
    assert await router.get_weight(target) == 100
    # Rolling back from 100 %: blue first needs a ready pod before green's go.
    with pytest.raises(NotReady, match=f"{ns}/{BLUE}"):
        await router.restore(target, 4, True)
    await _settled(kube, ns)
    await router.restore(target, 4, True)
    now = await _objects(kube, ns)
    assert (now["blue"]["spec"]["replicas"], now["green"]["spec"]["replicas"]) == (4, 0)
    assert ORIGINAL_ANNOTATION not in user_annotations(now["blue"])


@pytest.mark.parametrize("kind", [Router.replicas, Router.service])
async def test_retire_blue(kube: Kube, admin: Kube, ns: str, audit: Audit, kind: Router) -> None:
    router, target = await _world(kube, admin, ns, kind, 4)
    await router.prepare(target, 4)
    await _settled(kube, ns)
    await router.set_weight(target, 50 if kind is Router.replicas else 100, 4)
    await _settled(kube, ns)
    await router.set_weight(target, 100, 4)
    await _settled(kube, ns)
    await router.retire_blue(target)
    now = await _objects(kube, ns)
    assert now["blue"]["spec"]["replicas"] == 0
    assert now["green"]["spec"]["replicas"] == 4
    for obj in now.values():
        assert ORIGINAL_ANNOTATION not in user_annotations(obj)
        assert WEIGHT_ANNOTATION not in user_annotations(obj)
    assert await router.get_weight(target) == 100
    mark = audit.mark()
    await router.retire_blue(target)
    assert _writes(audit, mark) == []


async def test_service_router_rejects_partial_weights_and_early_retire(
    kube: Kube, admin: Kube, ns: str
) -> None:
    router, target = await _world(kube, admin, ns, Router.service, 4)
    with pytest.raises(TrafficRouterError, match="weight 50"):
        await router.set_weight(target, 50, 4)
    with pytest.raises(TrafficRouterError, match=f"Service {ns}/{SERVICE}"):
        await router.retire_blue(target)


@pytest.mark.parametrize("kind", [Router.replicas, Router.service])
async def test_preflight_missing_objects(kube: Kube, admin: Kube, ns: str, kind: Router) -> None:
    router, target = await _world(kube, admin, ns, kind, 4)
    await admin.delete("apps", "v1", "deployments", ns, GREEN)
    await admin.delete("", "v1", "services", ns, SERVICE)
    problems = await router.preflight(target)
    assert any(f"Deployment {ns}/{GREEN} not found" in p for p in problems), problems
    assert any(f"Service {ns}/{SERVICE} not found" in p for p in problems), problems
    assert await router.get_weight(target) is None
    with pytest.raises(TrafficRouterError, match="not found"):
        await router.set_weight(target, 0, 4)


async def test_replicas_preflight_selector_mismatch(kube: Kube, admin: Kube, ns: str) -> None:
    router, target = await _world(kube, admin, ns, Router.replicas, 4)
    await admin.patch("", "v1", "services", ns, SERVICE, {"spec": {"selector": {"app": "other"}}})
    problems = await router.preflight(target)
    assert len(problems) == 2 and all(f"Service {ns}/{SERVICE}" in p for p in problems)
    assert "app=other" in problems[0] and "version=blue" in problems[0]


async def test_service_preflight_labels_that_cannot_tell_versions_apart(
    kube: Kube, admin: Kube, ns: str
) -> None:
    router, target = await _world(kube, admin, ns, Router.service, 4)
    shared = {"app": "checkout"}
    await admin.delete("apps", "v1", "deployments", ns, GREEN)
    await admin.create("apps", "v1", "deployments", ns, _deployment(GREEN, shared, 0))
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


async def _held(kube: Kube, admin: Kube, ns: str) -> tuple[TrafficRouter, Target]:
    """The replicas router at 100 %, blue held for the rollback window."""
    router, target = await _world(kube, admin, ns, Router.replicas, 4)
    await router.prepare(target, 4)
    await _until_ready(kube, ns, lambda: router.set_weight(target, 100, 4))
    await _settled(kube, ns)
    await router.hold_blue(target, 4)
    await _settled(kube, ns)
    return router, target


async def test_replicas_hold_keeps_blue_at_size_out_of_the_service(
    kube: Kube, admin: Kube, ns: str, audit: Audit
) -> None:
    router, target = await _held(kube, admin, ns)
    now = await _objects(kube, ns)
    assert (now["blue"]["spec"]["replicas"], now["green"]["spec"]["replicas"]) == (4, 4)
    # Narrowed with green's own labels only: blue's pods are out, green's keep everything.
    assert now["service"]["spec"]["selector"] == {
        "app": "checkout",
        "version": "green",
        "release": "v2",
    }
    assert await router.get_weight(target) == 100
    mark = audit.mark()
    await router.hold_blue(target, 4)  # idempotent
    assert _writes(audit, mark) == []

    mark = audit.mark()
    await router.restore(target, 4, True)
    writes = _writes(audit, mark)
    # One write moves all traffic: the Service narrowed to blue's running pods.
    first = writes[0]
    assert (first["resource"], first["name"]) == ("services", SERVICE)
    narrowed = {**now["service"]["spec"]["selector"], **first["body"]["spec"]["selector"]}
    assert {k: v for k, v in narrowed.items() if v is not None} == BLUE_LABELS
    assert "replicas" not in json_of(writes, "deployments", BLUE)
    await _settled(kube, ns)
    after = await _objects(kube, ns)
    assert after["service"]["spec"]["selector"] == {"app": "checkout"}
    assert (after["blue"]["spec"]["replicas"], after["green"]["spec"]["replicas"]) == (4, 0)
    for obj in after.values():
        assert user_annotations(obj) == USER_ANNOTATION
    assert await router.get_weight(target) == 0


async def test_replicas_retire_after_a_hold_scales_blue_down_before_the_selector_returns(
    kube: Kube, admin: Kube, ns: str, audit: Audit
) -> None:
    router, target = await _held(kube, admin, ns)
    mark = audit.mark()
    await router.retire_blue(target)
    order = [(w["resource"], w["name"]) for w in _writes(audit, mark)]
    assert order.index(("deployments", BLUE)) < order.index(("services", SERVICE))
    now = await _objects(kube, ns)
    assert now["service"]["spec"]["selector"] == {"app": "checkout"}
    assert (now["blue"]["spec"]["replicas"], now["green"]["spec"]["replicas"]) == (0, 4)
    for obj in now.values():
        assert user_annotations(obj) == USER_ANNOTATION
    assert await router.get_weight(target) == 100
    mark = audit.mark()
    await router.retire_blue(target)
    assert _writes(audit, mark) == []


def json_of(writes: list[dict[str, Any]], resource: str, name: str) -> dict[str, Any]:
    """What the writes to one object set in its spec, merged in order."""
    spec: dict[str, Any] = {}
    for write in writes:
        if (write["resource"], write["name"]) == (resource, name):
            spec.update((write.get("body") or {}).get("spec") or {})
    return spec
