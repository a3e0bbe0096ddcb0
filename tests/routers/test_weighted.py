"""The traffic-router contract for the weighted routers (gatewayapi, istio, nginx) on a real
control plane, with the real upstream Gateway API and Istio CRDs (OpenAPI schemas, defaults and
CEL rules): every write a router makes must be accepted by them.

Each runs over a route object with more than the router owns (other rules, filters, timeouts,
annotations, Argo CD tracking metadata), so "only the owned fields change" is checked for real.
The routers act as the operator (the chart's RBAC with the three routers enabled); a real
Migration owns the nginx canary, so the garbage collector keeps it.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import pytest

from cutover.api import GROUP, KIND, PLURAL, VERSION, MigrationSpec, Router, SpecInvalid, parse_spec
from cutover.kube import Kube
from cutover.routers import router_for
from cutover.routers.base import (
    MANAGED_RULE,
    ORIGINAL_ANNOTATION,
    NotReady,
    Target,
    TrafficRouter,
    load_original,
)
from tests.routers.support import Audit, settle
from tests.routers.test_index_writes import index_now
from tests.support.manifests import deployment

BLUE, GREEN = "checkout-blue", "checkout-green"
WEIGHTS = [0, 1, 33, 50, 99, 100]
WEIGHTED = [Router.gatewayapi, Router.istio, Router.nginx]
ROUTE = {
    Router.gatewayapi: ("gateway.networking.k8s.io", "v1", "httproutes", "checkout"),
    Router.istio: ("networking.istio.io", "v1beta1", "virtualservices", "checkout"),
    Router.nginx: ("networking.k8s.io", "v1", "ingresses", "checkout"),
}
CANARY = "checkout-cutover-canary"
CANARY_MATCH: list[dict[str, Any]] = [
    {"name": "X-Canary", "exact": "1"},
    {"name": "beta", "cookie": True},
]
GREEN_COOKIE: dict[str, Any] = {"name": "cutover-green", "maxAge": "1h"}
USER_NOTES = {"team.example.com/owner": "payments", "argocd.argoproj.io/tracking-id": "shop:x"}

HTTP_ROUTE: dict[str, Any] = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "checkout", "annotations": dict(USER_NOTES)},
    "spec": {
        "parentRefs": [{"name": "public"}],
        "hostnames": ["shop.example.com"],
        "rules": [
            {
                "name": "admin",
                "matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
                "backendRefs": [{"name": "admin", "port": 80}],
            },
            {
                "name": "main",
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "filters": [
                    {
                        "type": "RequestHeaderModifier",
                        "requestHeaderModifier": {"set": [{"name": "X-Env", "value": "prod"}]},
                    }
                ],
                "timeouts": {"request": "10s"},
                "backendRefs": [
                    {"name": BLUE, "port": 80, "weight": 100},
                    {"name": GREEN, "port": 80, "weight": 0},
                ],
            },
        ],
    },
}
VIRTUAL_SERVICE: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1beta1",
    "kind": "VirtualService",
    "metadata": {"name": "checkout", "annotations": dict(USER_NOTES)},
    "spec": {
        "hosts": ["checkout"],
        "http": [
            {
                "name": "admin",
                "match": [{"uri": {"prefix": "/admin"}}],
                "route": [{"destination": {"host": "admin"}}],
            },
            {
                "name": "main",
                "timeout": "10s",
                "retries": {"attempts": 3},
                "route": [
                    {"destination": {"host": BLUE}, "weight": 100},
                    {"destination": {"host": GREEN}, "weight": 0},
                ],
            },
        ],
    },
}
INGRESS: dict[str, Any] = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "Ingress",
    "metadata": {
        "name": "checkout",
        "labels": {"app.kubernetes.io/instance": "shop", "tier": "web"},
        "annotations": {**USER_NOTES, "nginx.ingress.kubernetes.io/proxy-body-size": "8m"},
    },
    "spec": {
        "ingressClassName": "nginx",
        "rules": [
            {
                "host": "shop.example.com",
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": BLUE, "port": {"number": 80}}},
                        },
                        {
                            "path": "/admin",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "admin", "port": {"number": 80}}},
                        },
                    ]
                },
            }
        ],
    },
}
OBJECTS = {Router.gatewayapi: HTTP_ROUTE, Router.istio: VIRTUAL_SERVICE, Router.nginx: INGRESS}


@pytest.fixture()
def operator_values() -> dict[str, Any]:
    """The chart's RBAC with the three weighted routers enabled."""
    return {"routers": {kind.value: {"enabled": True} for kind in WEIGHTED}}


pytestmark = pytest.mark.usefixtures("third_party_crds")


def _deployment(name: str, version: str, replicas: int) -> dict[str, Any]:
    return deployment(name, replicas, {"app": "checkout", "version": version}, f"shop:{version}")


def _service(name: str, version: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": "checkout", "version": version}, "ports": [{"port": 80}]},
    }


def _spec(kind: Router, **traffic: Any) -> MigrationSpec:
    settings: dict[Router, dict[str, Any]] = {
        Router.gatewayapi: {"gatewayAPI": {"httpRoute": "checkout", "rule": "main"}},
        Router.istio: {"istio": {"virtualService": "checkout", "route": "main"}},
        Router.nginx: {"nginx": {"ingress": "checkout"}},
    }
    return MigrationSpec.model_validate(
        {
            "blue": {"deployment": BLUE, "service": BLUE},
            "green": {"deployment": GREEN, "service": GREEN},
            "traffic": {"router": kind.value, **settings[kind], **traffic},
            "steps": [{"setWeight": 100}],
        }
    )


@dataclass(frozen=True)
class World:
    """One test's namespace: the operator's router, an admin client, and the Migration whose
    uid the router's objects refer to."""

    kube: Kube  # the operator's identity
    admin: Kube
    ns: str
    uid: str
    router: TrafficRouter

    @property
    def sticky(self) -> str:
        """The sticky cookie's value: the first group of the Migration's uid."""
        return self.uid.split("-")[0]

    def target(self, kind: Router, **traffic: Any) -> Target:
        return Target(self.ns, "checkout", self.uid, _spec(kind, **traffic))


async def _world(kube: Kube, admin: Kube, ns: str, kind: Router, total: int = 4) -> World:
    await admin.create("apps", "v1", "deployments", ns, _deployment(BLUE, "blue", total))
    await admin.create("apps", "v1", "deployments", ns, _deployment(GREEN, "green", 0))
    await admin.create("", "v1", "services", ns, _service(BLUE, "blue"))
    await admin.create("", "v1", "services", ns, _service(GREEN, "green"))
    group, version, plural, _ = ROUTE[kind]
    await admin.create(group, version, plural, ns, copy.deepcopy(OBJECTS[kind]))
    # A real Migration: the garbage collector deletes an object whose owner does not exist.
    migration = await admin.create(
        GROUP,
        VERSION,
        PLURAL,
        ns,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": "checkout"},
            "spec": _spec(kind).model_dump(by_alias=True, exclude_none=True, mode="json"),
        },
    )
    await _settled(admin, ns)
    return World(kube, admin, ns, migration["metadata"]["uid"], router_for(kind, kube))


async def _settled(kube: Kube, ns: str) -> None:
    for name in (BLUE, GREEN):
        assert await kube.get("apps", "v1", "deployments", ns, name) is not None
    await settle(kube, ns, (BLUE, GREEN))


async def _route(w: World, kind: Router, name: str | None = None) -> dict[str, Any] | None:
    group, version, plural, default = ROUTE[kind]
    return await w.kube.get(group, version, plural, w.ns, name or default)


async def _sticky_world(
    kube: Kube,
    admin: Kube,
    ns: str,
    kind: Router,
    match: list[dict[str, Any]],
    cookie: dict[str, Any],
) -> tuple[World, Target, dict[str, Any]]:
    """A world whose Migration sends ``match`` requests to green and keeps users there with
    ``cookie``, prepared by the router; with the route as the team wrote it."""
    w = await _world(kube, admin, ns, kind)
    target = w.target(kind, match=match, stickiness={"cookie": cookie})
    before = await _present(w, kind)
    await _prepared(w, target)
    return w, target, before


async def _present(w: World, kind: Router, name: str | None = None) -> dict[str, Any]:
    """The route (or the canary Ingress ``name``), which must exist."""
    route = await _route(w, kind, name)
    assert route is not None
    return route


async def _prepared(w: World, target: Target) -> None:
    """The router checks and prepares ``target`` (blue at 4), as a run's start does, and both
    Deployments settle."""
    assert await w.router.preflight(target) == []
    await w.router.prepare(target, 4)
    await _settled(w.kube, w.ns)


async def _no_writes(audit: Audit, call: Awaitable[object], message: str = "") -> None:
    """``call`` (a router method already done once) writes nothing: it is idempotent."""
    mark = audit.mark()
    await call
    assert audit.writes(mark) == [], message


async def _patch_route(w: World, kind: Router, ops: list[dict[str, Any]]) -> None:
    """Someone else (the admin) edits the route with a JSON patch."""
    group, version, plural, name = ROUTE[kind]
    await w.admin.patch(group, version, plural, w.ns, name, ops, patch_type="json")


async def _replicas(w: World, name: str) -> int:
    obj = await w.kube.get("apps", "v1", "deployments", w.ns, name)
    assert obj is not None
    return int(obj["spec"]["replicas"])


def _weights(kind: Router, route: dict[str, Any]) -> tuple[int, int] | None:
    if kind is Router.gatewayapi:
        refs = {r["name"]: r.get("weight") for r in route["spec"]["rules"][-1]["backendRefs"]}
        return refs[BLUE], refs[GREEN]
    if kind is Router.istio:
        dests = {
            d["destination"]["host"]: d.get("weight") for d in route["spec"]["http"][-1]["route"]
        }
        return dests[BLUE], dests[GREEN]
    return None


@pytest.mark.parametrize("kind", WEIGHTED, ids=[k.value for k in WEIGHTED])
async def test_contract(kube: Kube, admin: Kube, ns: str, audit: Audit, kind: Router) -> None:
    w = await _world(kube, admin, ns, kind)
    router, target = w.router, w.target(kind)
    assert await router.preflight(target) == []
    before = await _present(w, kind)

    await router.prepare(target, 4)
    await _no_writes(audit, router.prepare(target, 4))  # idempotent
    assert await _replicas(w, GREEN) == 4
    saved = await _route(w, kind)
    assert saved is not None and saved["spec"] == before["spec"]
    if kind is Router.nginx:
        assert ORIGINAL_ANNOTATION in saved["metadata"]["annotations"]
    else:
        # A route table is first written with the first weight, its original with it.
        assert saved == before
    await _settled(kube, ns)

    for weight in WEIGHTS:
        await router.set_weight(target, weight, 4)
        assert await router.get_weight(target) == weight
        if weight == WEIGHTS[0]:
            assert load_original(await _present(w, kind)) == {"spec": before["spec"]}
        route = await _route(w, kind)
        assert route is not None
        weights = _weights(kind, route)
        assert weights in (None, (100 - weight, weight))
        await _no_writes(
            audit, router.set_weight(target, weight, 4), f"second set_weight({weight}) wrote"
        )

    await router.set_weight(target, 50, 4)
    assert await router.get_weight(target) != 0
    await router.restore(target, 4, True)
    after = await _present(w, kind)
    assert after["spec"] == before["spec"]
    assert after["metadata"]["annotations"] == before["metadata"]["annotations"]
    assert after["metadata"].get("labels") == before["metadata"].get("labels")
    if kind is Router.nginx:
        assert await _route(w, kind, CANARY) is None
    assert await router.get_weight(target) == 0
    assert await _replicas(w, GREEN) == 0
    assert await _replicas(w, BLUE) == 4
    await _no_writes(audit, router.restore(target, 4, True))  # idempotent


@pytest.mark.parametrize("kind", WEIGHTED, ids=[k.value for k in WEIGHTED])
async def test_retire_blue_keeps_green_at_100(
    kube: Kube, admin: Kube, ns: str, audit: Audit, kind: Router
) -> None:
    w = await _world(kube, admin, ns, kind)
    router, target = w.router, w.target(kind, match=[{"name": "X-Canary", "exact": "1"}])
    await _prepared(w, target)
    await router.set_weight(target, 50, 4)
    await router.set_weight(target, 100, 4)
    await router.retire_blue(target)
    assert await router.get_weight(target) == 100
    assert await _replicas(w, BLUE) == 0
    route = await _present(w, kind)
    assert ORIGINAL_ANNOTATION not in route["metadata"]["annotations"]
    assert MANAGED_RULE not in str(route["spec"])
    if kind is Router.nginx:
        assert await _route(w, kind, CANARY) is None
        backends = [
            p["backend"]["service"]["name"] for p in route["spec"]["rules"][0]["http"]["paths"]
        ]
        assert backends == [GREEN, "admin"]
    else:
        assert _weights(kind, route) == (0, 100)
    await _no_writes(audit, router.retire_blue(target))


@pytest.mark.parametrize("kind", [Router.gatewayapi, Router.istio], ids=["gatewayapi", "istio"])
async def test_edits_by_others_survive(kube: Kube, admin: Kube, ns: str, kind: Router) -> None:
    w = await _world(kube, admin, ns, kind)
    router, target = w.router, w.target(kind)
    await _prepared(w, target)
    await router.set_weight(target, 10, 4)
    key = "rules" if kind is Router.gatewayapi else "http"
    # Someone else inserts a rule at the front (every index shifts) and edits the weighted one.
    extra = copy.deepcopy(OBJECTS[kind]["spec"][key][0])
    extra["name"] = "docs"
    timeout = ["timeouts", "request"] if kind is Router.gatewayapi else ["timeout"]
    await _patch_route(
        w,
        kind,
        [
            {"op": "add", "path": f"/spec/{key}/0", "value": extra},
            {"op": "replace", "path": f"/spec/{key}/2/" + "/".join(timeout), "value": "30s"},
            {"op": "add", "path": "/metadata/labels", "value": {"tier": "web"}},
        ],
    )
    await router.set_weight(target, 60, 4)
    assert await router.get_weight(target) == 60
    await router.restore(target, 4, True)
    now = await _present(w, kind)
    assert [r["name"] for r in now["spec"][key]] == ["docs", "admin", "main"]
    rule = now["spec"][key][2]
    assert (rule["timeouts"]["request"] if kind is Router.gatewayapi else rule["timeout"]) == "30s"
    assert now["metadata"]["labels"] == {"tier": "web"}
    assert _weights(kind, now) == (100, 0)


async def test_a_concurrent_write_between_read_and_patch_is_not_lost(
    kube: Kube, admin: Kube, ns: str, audit: Audit
) -> None:
    w = await _world(kube, admin, ns, Router.gatewayapi)
    router = w.router
    target = w.target(Router.gatewayapi, match=[{"name": "X-Canary", "exact": "1"}])
    plural = ROUTE[Router.gatewayapi][2]
    real_get = kube.get
    raced = False

    async def racing_get(*args: Any) -> dict[str, Any] | None:
        nonlocal raced
        obj = await real_get(*args)
        if args[2] == plural and not raced:
            raced = True  # another writer slips in right after our read: indexes shift
            extra = {"name": "docs", "backendRefs": [{"name": "docs", "port": 80}]}
            await _patch_route(
                w, Router.gatewayapi, [{"op": "add", "path": "/spec/rules/0", "value": extra}]
            )
        return obj

    await _prepared(w, target)
    # A router without a copy of the route (as after an operator restart) reads it first.
    router = router_for(Router.gatewayapi, kube)
    mark = audit.mark()
    kube.get = racing_get  # type: ignore[method-assign,assignment]
    await router.set_weight(target, 30, 4)
    kube.get = real_get  # type: ignore[method-assign]
    route = await _present(w, Router.gatewayapi)
    assert [r.get("name") for r in route["spec"]["rules"]] == [
        "docs",
        "admin",
        MANAGED_RULE,
        "main",
    ]
    assert await router.get_weight(target) == 30
    # The API server itself refused the stale patch (a failed "test" op), then the re-planned
    # one went through: one rejected and one accepted write of the route.
    attempts = [(e["verb"], e["code"]) for e in audit.attempts(mark, (plural,))]
    assert attempts == [("patch", 422), ("patch", 200)]


async def test_gatewayapi_match_and_sticky_rules(
    kube: Kube, admin: Kube, ns: str, audit: Audit
) -> None:
    w, target, before = await _sticky_world(
        kube, admin, ns, Router.gatewayapi, CANARY_MATCH, GREEN_COOKIE
    )
    router = w.router
    await router.set_weight(target, 0, 4)
    route = await _present(w, Router.gatewayapi)
    rules = route["spec"]["rules"]
    assert [r["name"] for r in rules] == ["admin", MANAGED_RULE, "main"]
    managed = rules[1]
    # Green's backendRef as the CRD defaults it (group, kind, and weight 1: all of this rule).
    assert managed["backendRefs"] == [
        {"group": "", "kind": "Service", "name": GREEN, "port": 80, "weight": 1}
    ]
    assert managed["timeouts"] == {"request": "10s"} and managed["filters"] == rules[2]["filters"]
    headers = [m["headers"][-1] for m in managed["matches"]]
    assert all(m["path"] == {"type": "PathPrefix", "value": "/"} for m in managed["matches"])
    assert headers[0] == {"type": "Exact", "name": "X-Canary", "value": "1"}
    assert headers[1]["name"] == "Cookie" and "beta=" in headers[1]["value"]
    assert headers[2]["name"] == "Cookie" and f"cutover-green={w.sticky}" in headers[2]["value"]
    green_ref = rules[2]["backendRefs"][1]
    assert green_ref["filters"] == [
        {
            "type": "ResponseHeaderModifier",
            "responseHeaderModifier": {
                "add": [
                    {
                        "name": "Set-Cookie",
                        "value": f"cutover-green={w.sticky}; Max-Age=3600; Path=/",
                    }
                ]
            },
        }
    ]
    assert await router.get_weight(target) == 0
    await router.set_weight(target, 25, 4)
    await _no_writes(audit, router.set_weight(target, 25, 4))
    await router.restore(target, 4, True)
    after = await _route(w, Router.gatewayapi)
    assert after is not None and after["spec"] == before["spec"]


async def test_istio_match_and_sticky_routes(
    kube: Kube, admin: Kube, ns: str, audit: Audit
) -> None:
    w, target, before = await _sticky_world(
        kube,
        admin,
        ns,
        Router.istio,
        [{"name": "X-Canary", "regex": "yes|1"}],
        {"name": "sticky", "maxAge": "10m"},
    )
    router = w.router
    await router.set_weight(target, 5, 4)
    route = await _present(w, Router.istio)
    http = route["spec"]["http"]
    assert [r["name"] for r in http] == ["admin", MANAGED_RULE, "main"]
    assert http[1]["route"] == [{"destination": {"host": GREEN}, "weight": 100}]
    assert http[1]["timeout"] == "10s" and http[1]["retries"] == {"attempts": 3}
    assert http[1]["match"][0]["headers"] == {"x-canary": {"regex": "yes|1"}}
    assert f"sticky={w.sticky}" in http[1]["match"][1]["headers"]["cookie"]["regex"]
    assert http[2]["route"][1]["headers"] == {
        "response": {"add": {"Set-Cookie": f"sticky={w.sticky}; Max-Age=600; Path=/"}}
    }
    await _no_writes(
        audit, router.set_weight(target, 5, 4)
    )  # the stored route already says so: no write
    await router.restore(target, 4, False)
    after = await _route(w, Router.istio)
    assert after is not None and after["spec"] == before["spec"]
    assert await _replicas(w, GREEN) == 4  # not asked to scale green down


async def test_istio_subsets_name_the_versions(kube: Kube, admin: Kube, ns: str) -> None:
    w = await _world(kube, admin, ns, Router.istio)
    router = w.router
    dests = [
        {"destination": {"host": "checkout", "subset": "blue"}, "weight": 100},
        {"destination": {"host": "checkout", "subset": "green"}},
    ]
    await _patch_route(
        w, Router.istio, [{"op": "replace", "path": "/spec/http/1/route", "value": dests}]
    )
    target = w.target(Router.istio)
    assert await router.preflight(target) == []
    await _prepared(w, target)
    await router.set_weight(target, 40, 4)
    assert await router.get_weight(target) == 40
    await router.restore(target, 4, True)
    route = await _route(w, Router.istio)
    assert route is not None and route["spec"]["http"][1]["route"] == dests


async def test_nginx_canary_ingress(kube: Kube, admin: Kube, ns: str, audit: Audit) -> None:
    w, target, before = await _sticky_world(
        kube, admin, ns, Router.nginx, CANARY_MATCH, GREEN_COOKIE
    )
    router = w.router
    await router.set_weight(target, 20, 4)
    canary = await _present(w, Router.nginx, CANARY)
    meta = canary["metadata"]
    assert meta["ownerReferences"][0]["kind"] == "Migration"
    assert meta["ownerReferences"][0]["uid"] == target.uid
    assert meta["labels"] == {"tier": "web"}  # Argo CD's tracking label not copied
    notes = meta["annotations"]
    assert not any(k.startswith("argocd.argoproj.io/") for k in notes)
    assert ORIGINAL_ANNOTATION not in notes
    prefix = "nginx.ingress.kubernetes.io/"
    assert {k.removeprefix(prefix): v for k, v in notes.items() if k.startswith(prefix)} == {
        "proxy-body-size": "8m",
        "canary": "true",
        "canary-weight": "20",
        "canary-by-header": "X-Canary",
        "canary-by-header-value": "1",
        "canary-by-cookie": "beta",
        "affinity": "cookie",
        "affinity-canary-behavior": "sticky",
        "session-cookie-name": "cutover-green",
        "session-cookie-max-age": "3600",
    }
    paths = canary["spec"]["rules"][0]["http"]["paths"]
    assert [p["backend"]["service"]["name"] for p in paths] == [GREEN]  # admin path left out
    stable = await _route(w, Router.nginx)
    assert stable is not None and stable["spec"] == before["spec"]
    await _no_writes(audit, router.set_weight(target, 20, 4))
    await router.restore(target, 4, True)
    assert await _route(w, Router.nginx, CANARY) is None


@pytest.mark.parametrize("kind", WEIGHTED, ids=[k.value for k in WEIGHTED])
async def test_a_step_reads_nothing_and_a_route_edited_since_is_read_not_clobbered(
    kube: Kube, admin: Kube, ns: str, audit: Audit, kind: Router
) -> None:
    """A run's steps plan from the watch-fed Deployment index and from the route as our last
    write left it: no read. Someone else's edit since then gets that plan refused by the API
    server, and the step is planned again from a read; the edit survives."""
    w = await _world(kube, admin, ns, kind)
    target = w.target(kind)
    await _prepared(w, target)
    await w.router.set_weight(target, 10, 4)
    await _settled(w.kube, w.ns)
    indexed = dataclasses.replace(target, deployments=await index_now(admin, ns))

    mark = audit.mark()
    await w.router.set_weight(indexed, 50, 4)
    # nginx reads its stable Ingress (the canary copies its rules); the route routers nothing.
    assert audit.reads(mark) == ([("get", "ingresses")] if kind is Router.nginx else [])
    assert await w.router.get_weight(target) == 50

    # Someone edits the weighted rule (the canary Ingress, nginx's own object, only its labels).
    group, version, plural, name = ROUTE[kind]
    timeout = {
        Router.gatewayapi: "/spec/rules/1/timeouts/request",
        Router.istio: "/spec/http/1/timeout",
    }
    edit = (
        [{"op": "add", "path": "/metadata/labels/edited-by", "value": "someone"}]
        if kind is Router.nginx
        else [{"op": "replace", "path": timeout[kind], "value": "45s"}]
    )
    edited = CANARY if kind is Router.nginx else name
    await w.admin.patch(group, version, plural, ns, edited, edit, patch_type="json")
    mark = audit.mark()
    await w.router.set_weight(indexed, 80, 4)
    attempts = [(e["verb"], e["code"]) for e in audit.attempts(mark, (plural,))]
    now = await _present(w, kind, edited)
    if kind is Router.nginx:
        assert attempts == [("patch", 200)]  # the labels are not the router's: not tested
        assert now["metadata"]["labels"]["edited-by"] == "someone"
    else:
        assert attempts == [("patch", 422), ("patch", 200)]  # refused, read, planned again
        rule = now["spec"]["rules" if kind is Router.gatewayapi else "http"][1]
        assert (
            rule["timeouts"]["request"] if kind is Router.gatewayapi else rule["timeout"]
        ) == "45s"
    assert await w.router.get_weight(target) == 80


@pytest.mark.parametrize("kind", [Router.gatewayapi, Router.istio])
async def test_waiting_for_greens_pods_reads_nothing(
    kube: Kube, admin: Kube, ns: str, audit: Audit, kind: Router
) -> None:
    """A run whose green has no available pod yet is woken by every change of its Deployments,
    and each wake-up asks the router again (and the reconciler asks for the weight). Both are
    answered from the route as the router's own last write left it: no GET per wake-up, which
    with 1,000 runs starting at once was ~6 route reads per run."""
    w = await _world(kube, admin, ns, kind)
    target = w.target(kind)
    await _prepared(w, target)
    indexed = await index_now(admin, ns)
    green = indexed(ns, GREEN)
    assert green is not None and green.available == 4
    starting = dataclasses.replace(green, available=0)
    no_pods = dataclasses.replace(
        target, deployments=lambda n, name: starting if name == GREEN else indexed(n, name)
    )
    mark = audit.mark()
    for _ in range(3):
        with pytest.raises(NotReady):
            await w.router.set_weight(no_pods, 10, 4)
        assert await w.router.get_weight(no_pods) == 0
    assert audit.reads(mark) == []
    assert audit.writes(mark) == []
    # Once green has pods, the step is written from that same copy.
    await w.router.set_weight(dataclasses.replace(target, deployments=indexed), 10, 4)
    assert audit.reads(mark) == []
    assert _weights(kind, await _present(w, kind)) == (90, 10)


@pytest.mark.parametrize("kind", [Router.gatewayapi, Router.istio])
async def test_after_a_restart_waiting_for_greens_pods_reads_the_route_once(
    kube: Kube, admin: Kube, ns: str, audit: Audit, kind: Router
) -> None:
    """An operator restarted while a run waits for green's pods holds no copy of the route:
    its first wake-up reads the route, and the wake-ups after it are answered from that read."""
    w = await _world(kube, admin, ns, kind)
    target = w.target(kind)
    await _prepared(w, target)
    indexed = await index_now(admin, ns)
    green = indexed(ns, GREEN)
    assert green is not None
    starting = dataclasses.replace(green, available=0)
    no_pods = dataclasses.replace(
        target, deployments=lambda n, name: starting if name == GREEN else indexed(n, name)
    )
    restarted = router_for(kind, kube)
    mark = audit.mark()
    for _ in range(3):
        with pytest.raises(NotReady):
            await restarted.set_weight(no_pods, 10, 4)
        assert await restarted.get_weight(no_pods) == 0
    assert audit.reads(mark) == [("get", ROUTE[kind][2])]
    assert audit.writes(mark) == []


@pytest.mark.parametrize("kind", [Router.gatewayapi, Router.istio])
async def test_a_starts_checks_read_the_services_and_the_route_not_the_deployments(
    kube: Kube, admin: Kube, ns: str, audit: Audit, kind: Router
) -> None:
    """Blue and green are known from the watch-fed index; what it does not hold (the two
    Services, the route) is read, all at once, before a run's first write. The start writes
    green's size only; the route's first write (the first weight, the original on record
    with it) is planned from the checks' read."""
    w = await _world(kube, admin, ns, kind)
    target = w.target(kind)
    indexed = dataclasses.replace(target, deployments=await index_now(admin, ns))
    before = await _present(w, kind)
    mark = audit.mark()
    assert await w.router.preflight(indexed) == []
    checks = sorted([("get", "services"), ("get", "services"), ("get", ROUTE[kind][2])])
    assert sorted(audit.reads(mark)) == checks
    await w.router.prepare(indexed, 4)
    assert sorted(audit.reads(mark)) == checks
    assert [(e["resource"], e["name"]) for e in audit.writes(mark)] == [("deployments", GREEN)]
    await _settled(kube, ns)
    ready = dataclasses.replace(target, deployments=await index_now(admin, ns))
    mark = audit.mark()
    await w.router.set_weight(ready, 10, 4)
    assert audit.reads(mark) == []
    route = await _present(w, kind)
    assert _weights(kind, route) == (90, 10)
    assert load_original(route) == {"spec": before["spec"]}


@pytest.mark.parametrize("kind", [Router.gatewayapi, Router.istio])
async def test_a_route_edited_after_the_start_checks_is_recorded_as_edited(
    kube: Kube, admin: Kube, ns: str, audit: Audit, kind: Router
) -> None:
    """A run plans the route's first write from the start checks' read; if someone edits the
    route in between, that write is refused, the route read again, and the original recorded
    (restored at the run's end) is the route with their edit, not the copy from before it."""
    w = await _world(kube, admin, ns, kind)
    target = w.target(kind)
    assert await w.router.preflight(target) == []
    await w.router.prepare(target, 4)
    await _settled(kube, ns)
    key = "hostnames" if kind is Router.gatewayapi else "hosts"
    # Not a field the weight write tests: only the guard on the whole route sees this edit.
    await _patch_route(
        w, kind, [{"op": "replace", "path": f"/spec/{key}/0", "value": "new.example"}]
    )
    mark = audit.mark()
    await w.router.set_weight(
        dataclasses.replace(target, deployments=await index_now(admin, ns)), 10, 4
    )
    assert audit.reads(mark) == [("get", ROUTE[kind][2])]
    original = load_original(await _present(w, kind))
    assert original is not None and original["spec"][key][0] == "new.example"


@pytest.mark.parametrize("kind", WEIGHTED, ids=[k.value for k in WEIGHTED])
async def test_preflight_names_missing_objects(
    kube: Kube, admin: Kube, ns: str, kind: Router
) -> None:
    w = await _world(kube, admin, ns, kind)
    router = w.router
    group, version, plural, name = ROUTE[kind]
    await admin.delete(group, version, plural, ns, name)
    await admin.delete("", "v1", "services", ns, GREEN)
    problems = await router.preflight(w.target(kind))
    assert any(f"Service {ns}/{GREEN} not found" in p for p in problems), problems
    assert any(f"{ns}/checkout not found" in p for p in problems), problems
    spec = w.target(kind).spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    del spec["green"]["service"]
    bare = Target(ns, "checkout", "uid", MigrationSpec.model_validate(spec))
    assert any("spec.green.service" in p for p in await router.preflight(bare))


@pytest.mark.parametrize("kind", [Router.gatewayapi, Router.istio], ids=["gatewayapi", "istio"])
async def test_preflight_rule_without_both_services(
    kube: Kube, admin: Kube, ns: str, kind: Router
) -> None:
    w = await _world(kube, admin, ns, kind)
    router = w.router
    key, entries = ("rules", "backendRefs") if kind is Router.gatewayapi else ("http", "route")
    await _patch_route(w, kind, [{"op": "remove", "path": f"/spec/{key}/1/{entries}/1"}])
    problems = await router.preflight(w.target(kind))
    assert len(problems) == 1 and f"{ns}/checkout" in problems[0] and "green" in problems[0]
    named = w.target(
        kind,
        **(
            {"gatewayAPI": {"httpRoute": "checkout", "rule": "nope"}}
            if kind is Router.gatewayapi
            else {"istio": {"virtualService": "checkout", "route": "nope"}}
        ),
    )
    assert "named 'nope'" in (await router.preflight(named))[0]


async def test_nginx_preflight_rejects_matches_it_cannot_express(
    kube: Kube, admin: Kube, ns: str
) -> None:
    w = await _world(kube, admin, ns, Router.nginx)
    target = w.target(
        Router.nginx,
        match=[
            {"name": "a", "exact": "1"},
            {"name": "b", "exact": "2"},
            {"name": "c", "cookie": True, "exact": "x"},
        ],
    )
    problems = await w.router.preflight(target)
    assert any("at most one header" in p for p in problems)
    assert any("'always'" in p for p in problems)


@pytest.mark.parametrize("kind", ["replicas", "service"])
def test_stickiness_is_invalid_for_routers_below_http(kind: str) -> None:
    with pytest.raises(SpecInvalid, match="cannot keep users on green"):
        parse_spec(
            {
                "blue": {"deployment": "a"},
                "green": {"deployment": "b"},
                "traffic": {"router": kind, "service": "s", "stickiness": {"cookie": {}}},
                "steps": [{"setWeight": 100}],
            }
        )


MIRRORING = [Router.gatewayapi, Router.istio]


def _mirror(kind: Router, route: dict[str, Any]) -> dict[str, Any] | None:
    """What the weighted rule mirrors to: Istio's mirror + percentage, or the RequestMirror."""
    if kind is Router.istio:
        rule = route["spec"]["http"][-1]
        if "mirror" not in rule:
            return None
        return {"to": rule["mirror"], "percent": rule.get("mirrorPercentage")}
    rule = route["spec"]["rules"][-1]
    found = [f for f in rule.get("filters") or [] if f["type"] == "RequestMirror"]
    return (
        {
            "to": found[0]["requestMirror"]["backendRef"],
            "percent": found[0]["requestMirror"]["percent"],
        }
        if found
        else None
    )


@pytest.mark.parametrize("kind", MIRRORING, ids=[k.value for k in MIRRORING])
async def test_mirror_is_accepted_by_the_real_crd_and_leaves_with_the_next_move(
    kube: Kube, admin: Kube, ns: str, audit: Audit, kind: Router
) -> None:
    w = await _world(kube, admin, ns, kind)
    router = w.router
    target = w.target(kind, match=CANARY_MATCH, stickiness={"cookie": GREEN_COOKIE})
    before = await _present(w, kind)
    await _prepared(w, target)

    await router.set_mirror(target, 25)
    assert await router.get_mirror(target) == 25
    mirrored = _mirror(kind, await _present(w, kind))
    if kind is Router.istio:
        assert mirrored == {"to": {"host": GREEN}, "percent": {"value": 25}}
    else:
        assert mirrored is not None and mirrored["percent"] == 25
        assert mirrored["to"]["name"] == GREEN and mirrored["to"]["port"] == 80
    await _no_writes(audit, router.set_mirror(target, 25), "a second set_mirror(25) wrote")

    # A weight write keeps the mirror (the next step's own setMirror 0 ends it); the match
    # rule sends its requests to green already and never copies them.
    await router.set_weight(target, 10, 4)
    route = await _present(w, kind)
    assert _mirror(kind, route) is not None
    assert "mirror" not in str(route["spec"][_rules_key(kind)][-2])
    assert await router.get_weight(target) == 10

    await router.set_mirror(target, 0)
    assert await router.get_mirror(target) == 0
    assert _mirror(kind, await _present(w, kind)) is None
    await _no_writes(audit, router.set_mirror(target, 0), "removing an absent mirror wrote")

    # A rollback while mirroring: the restore's one write takes the mirror away too.
    await router.set_mirror(target, 100)
    assert await router.get_mirror(target) == 100
    await router.restore(target, 4, True)
    after = await _present(w, kind)
    assert after["spec"] == before["spec"]
    assert await router.get_mirror(target) == 0


def _rules_key(kind: Router) -> str:
    return "http" if kind is Router.istio else "rules"


async def test_an_istio_route_mirroring_elsewhere_is_refused_before_a_mirror_run(
    kube: Kube, admin: Kube, ns: str
) -> None:
    w = await _world(kube, admin, ns, Router.istio)
    await _patch_route(
        w, Router.istio, [{"op": "add", "path": "/spec/http/1/mirror", "value": {"host": "shadow"}}]
    )
    spec = _spec(Router.istio).model_dump(by_alias=True, exclude_none=True)
    spec["steps"] = [{"setMirror": {"percent": 50}}, {"setWeight": 100}]
    target = Target(ns, "checkout", w.uid, MigrationSpec.model_validate(spec))
    problems = await w.router.preflight(target)
    assert len(problems) == 1 and "already mirrors its http route to shadow" in problems[0]
    assert await w.router.preflight(w.target(Router.istio)) == []  # no setMirror step: fine
