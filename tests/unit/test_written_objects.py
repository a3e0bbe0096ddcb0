"""Planning a route's write from the copy our last write returned (routers/base.py): no read when
the copy is current, a read when it is not, and never a loop on a copy of a deleted route."""

from __future__ import annotations

from typing import Any, cast

import pytest

from cutover.kube import Kube, KubeError
from cutover.routers.base import TrafficRouterError, WrittenObjects, json_patch_converge

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
