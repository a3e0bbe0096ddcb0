"""The replicas router planning from the watch-fed index on a real API server: no read before a
write, the Deployment controller's status updates do not refuse it, and a copy older than the
spec is refused by the API server's test ops and the write planned again from a read."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from cutover.api import Router
from cutover.core.observations import DeploymentState
from cutover.kube import Kube
from cutover.reconciler import deployment_state
from cutover.routers.base import WEIGHT_ANNOTATION, Target
from tests.routers.test_contract import BLUE, GREEN, _objects, _settled, _until_ready, _world

Index = Callable[[str, str], DeploymentState | None]


async def index_now(admin: Kube, ns: str) -> Index:
    """The index as a watch that has delivered everything up to now would hold it."""
    states: dict[str, DeploymentState] = {}
    for name in (BLUE, GREEN):
        obj = await admin.get("apps", "v1", "deployments", ns, name)
        assert obj is not None
        meta = obj["metadata"]
        states[name] = deployment_state(
            obj["spec"], obj.get("status") or {}, meta.get("annotations") or {}, meta["generation"]
        )
    return lambda _namespace, name: states.get(name)


def counting_gets(kube: Kube) -> list[tuple[Any, ...]]:
    """Records the operator client's GETs from now on."""
    gets: list[tuple[Any, ...]] = []
    real = kube.get

    async def get(*args: Any, **kwargs: Any) -> dict[str, Any] | None:
        gets.append(args)
        return await real(*args, **kwargs)

    kube.get = get  # type: ignore[method-assign]
    return gets


def split(objects: dict[str, dict[str, Any]]) -> tuple[int, int]:
    return objects["blue"]["spec"]["replicas"], objects["green"]["spec"]["replicas"]


async def test_writes_planned_from_the_index_read_nothing_and_stale_copies_are_refused(
    kube: Kube, admin: Kube, ns: str
) -> None:
    router, target = await _world(kube, admin, ns, Router.replicas, 4)
    before_run = await index_now(admin, ns)
    gets = counting_gets(kube)

    await router.set_weight(dataclasses.replace(target, deployments=before_run), 50, 4)
    assert gets == []  # planned from the index alone
    assert split(await _objects(admin, ns)) == (2, 2)

    # Pods start and stop after the write: the controller's status updates change every
    # resourceVersion but not what the plan read, so a copy from before them still serves.
    after_write = await index_now(admin, ns)
    await _settled(admin, ns)
    await router.set_weight(dataclasses.replace(target, deployments=after_write), 100, 4)
    assert gets == []
    assert split(await _objects(admin, ns)) == (0, 4)

    # A copy from before the run (blue 4, green 0, no annotations) says there is nothing to
    # restore: only a read can tell, and the rollback is planned from what is really there
    # (blue first gets a ready pod again: the router says NotReady until it has).
    await _settled(admin, ns)
    stale = Target(ns, target.name, target.uid, target.spec, deployments=before_run)
    await _until_ready(admin, ns, lambda: router.restore(stale, 4, True))
    assert gets  # blue and green were read
    now = await _objects(admin, ns)
    assert split(now) == (4, 0)
    assert WEIGHT_ANNOTATION not in (now["green"]["metadata"].get("annotations") or {})
