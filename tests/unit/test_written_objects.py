"""Planning a route's write from the copy our last write returned (routers/base.py): no read when
the copy is current, a read when it is not, and never a loop on a copy of a deleted route."""

from __future__ import annotations

import copy
from typing import Any, cast

import jsonpatch  # type: ignore[import-untyped]  # Kopf's dependency
import pytest

from cutover.api import parse_spec
from cutover.kube import Kube, KubeError
from cutover.routers.base import Target, TrafficRouterError, WrittenObjects, json_patch_converge
from cutover.routers.gatewayapi import GatewayAPIRouter

from .specs import raw

RESOURCE = ("gateway.networking.k8s.io", "v1", "httproutes")
KEY = ("httproutes", "shop", "checkout")


def route(weight: int) -> dict[str, Any]:
    return {"metadata": {"name": "checkout"}, "spec": {"weight": weight}}


class FakeKube:
    """One route; a patch carries the weight wanted, refused (422) if its test op fails."""

    def __init__(self, current: dict[str, Any] | None) -> None:
        self.current = current
        self.requests: list[str] = []

    async def get(self, *args: Any) -> dict[str, Any] | None:
        self.requests.append("get")
        return self.current

    async def patch(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.requests.append("patch")
        test, replace = args[5]
        if self.current is None:
            raise KubeError("not found", status=404)
        if self.current["spec"]["weight"] != test["value"]:
            raise KubeError("test failed", status=422)
        self.current = route(replace["value"])
        return self.current


def plan_weight(wanted: int) -> Any:
    def plan(obj: dict[str, Any]) -> list[dict[str, Any]]:
        seen = obj["spec"]["weight"]
        if seen == wanted:
            return []
        return [
            {"op": "test", "path": "/spec/weight", "value": seen},
            {"op": "replace", "path": "/spec/weight", "value": wanted},
        ]

    return plan


async def converge(kube: FakeKube, written: WrittenObjects, wanted: int) -> dict[str, Any]:
    return await json_patch_converge(
        cast(Kube, kube),
        RESOURCE,
        "shop",
        "checkout",
        plan_weight(wanted),
        what="HTTPRoute",
        written=written,
    )


async def test_a_current_copy_saves_the_read_and_a_stale_one_costs_a_refusal_and_a_read() -> None:
    kube, written = FakeKube(route(0)), WrittenObjects()
    await converge(kube, written, 10)
    assert kube.requests == ["get", "patch"]  # no copy yet

    kube.requests.clear()
    await converge(kube, written, 50)
    assert kube.requests == ["patch"]  # planned from the copy the last write returned

    kube.current = route(70)  # someone else's write
    kube.requests.clear()
    await converge(kube, written, 80)
    assert kube.requests == ["patch", "get", "patch"] and kube.current == route(80)

    # "Nothing to write" from a copy is only believed after a read.
    kube.current = route(20)
    kube.requests.clear()
    await converge(kube, written, 80)
    assert kube.requests == ["get", "patch"] and kube.current == route(80)


async def test_a_copy_of_a_route_deleted_since_ends_in_not_found_and_is_forgotten() -> None:
    kube, written = FakeKube(route(0)), WrittenObjects()
    await converge(kube, written, 10)
    kube.current = None
    with pytest.raises(TrafficRouterError, match="not found"):
        await converge(kube, written, 50)
    assert written.get(KEY) is None
    kube.requests.clear()
    with pytest.raises(TrafficRouterError, match="not found"):
        await converge(kube, written, 50)
    assert kube.requests == ["get"]  # no copy left to patch from


def test_past_its_limit_the_oldest_copy_is_forgotten() -> None:
    written = WrittenObjects(limit=2)
    for name in ("a", "b", "c"):
        written.keep(("httproutes", "shop", name), route(0))
    assert written.get(("httproutes", "shop", "a")) is None
    assert written.get(("httproutes", "shop", "c")) == route(0)


def test_a_kept_copy_has_no_managed_fields_and_the_answer_keeps_them() -> None:
    """What no plan reads is not held for every run going: about half of a route."""
    answer = route(10)
    answer["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
    written = WrittenObjects()
    written.keep(KEY, answer)
    assert written.get(KEY) == route(10)
    assert "managedFields" in answer["metadata"]  # the caller's object is not changed


class RouteKube:
    """An HTTPRoute (JSON patches applied as the API server would) and Services, Deployments
    that exist; every request recorded as (verb, resource)."""

    def __init__(self) -> None:
        self.route: dict[str, Any] = {
            "metadata": {"name": "checkout", "namespace": "shop", "resourceVersion": "1"},
            "spec": {
                "rules": [
                    {
                        "name": "main",
                        "backendRefs": [
                            {"name": "checkout-blue", "port": 80, "weight": 100},
                            {"name": "checkout-green", "port": 80, "weight": 0},
                        ],
                    }
                ]
            },
        }
        self.requests: list[tuple[str, str]] = []

    async def get(self, group: str, version: str, plural: str, ns: str, name: str) -> Any:
        self.requests.append(("get", plural))
        if plural == "httproutes":
            return copy.deepcopy(self.route)
        ready = {"replicas": 4, "availableReplicas": 4}
        return {"metadata": {"name": name, "namespace": ns, "generation": 1}, "status": ready}

    async def patch(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.requests.append(("patch", args[2]))
        if args[2] != "httproutes":
            ready = {"replicas": 4, "availableReplicas": 4}
            return {"metadata": {"name": args[4], "generation": 2}, "status": ready}
        self.route = jsonpatch.apply_patch(self.route, args[5])  # a failed test op raises
        meta = self.route["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        return copy.deepcopy(self.route)


async def test_a_run_s_end_keeps_no_copy_of_the_route_it_restored() -> None:
    """A finished run's route would otherwise stay in memory for good (up to the limit); a
    later run of the same Migration starts from its own checks' read anyway."""
    kube = RouteKube()
    router = GatewayAPIRouter(cast(Kube, kube))
    spec = raw(
        blue={"deployment": "checkout-blue", "service": "checkout-blue"},
        green={"deployment": "checkout-green", "service": "checkout-green"},
        traffic={"router": "gatewayapi", "gatewayAPI": {"httpRoute": "checkout", "rule": "main"}},
        gates=[],
    )
    target = Target("shop", "checkout", "uid-1", parse_spec(spec))
    assert await router.preflight(target) == []
    await router.set_weight(target, 20, 4)
    await router.set_weight(target, 50, 4)
    # The checks' read, then each weight planned from the copy the last answer left.
    assert [verb for verb, plural in kube.requests if plural == "httproutes"] == [
        "get",
        "patch",
        "patch",
    ]

    await router.restore(target, 4, scale_down_green=True)
    kube.requests.clear()
    await router.set_weight(target, 20, 4)
    assert next(verb for verb, plural in kube.requests if plural == "httproutes") == "get"
