"""What a weight step costs in API requests (issue 16): the replicas router plans its writes from
the watch-fed Deployment index instead of reading first, a stale index costs a read and never a
wrong write, and a (re)started reconciler reads the cluster once. The counts on the real API
server: bench/api_economy.py."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cutover.api import parse_spec
from cutover.core.observations import DeploymentState
from cutover.gatecheck import GateChecker
from cutover.kube import KubeError
from cutover.reconciler import Context, Reconciler, deployment_state
from cutover.routers.base import ORIGINAL_ANNOTATION, WEIGHT_ANNOTATION, Target
from cutover.routers.replicas import ReplicasRouter
from cutover.routers.service import ServiceRouter

NS = "shop"
STEPS = [{"setWeight": 10}, {"setWeight": 50}, {"setWeight": 100}]


class FakeKube:
    """Deployments and one Migration in memory; every request recorded as (verb, resource).

    ``settle`` plays the Deployment controller (every pod asked for becomes available). JSON
    patches are applied op by op and refused with 422 when a ``test`` op fails, as the API
    server does; a change of ``spec.replicas`` is a new ``metadata.generation``.
    """

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.version = 100

    def add_deployment(self, name: str, replicas: int) -> None:
        labels = {"app": "shop", "version": name}
        self.objects[("deployments", name)] = self._bump(
            {
                "metadata": {"name": name, "namespace": NS, "annotations": {}, "generation": 1},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels}},
                },
                "status": {"availableReplicas": replicas},
            }
        )

    def add_migration(self, name: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
        body = {
            "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": 1},
            "spec": {
                "blue": {"deployment": "blue"},
                "green": {"deployment": "green"},
                "traffic": {"router": "replicas"},
                "steps": steps,
            },
            "status": {},
        }
        self.objects[("migrations", name)] = body
        return body

    def _bump(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        return obj

    def settle(self) -> None:
        """The Deployment controller's turn: every pod asked for is available (a status write,
        so a new resourceVersion the watch delivers)."""
        for (plural, _name), obj in self.objects.items():
            if (
                plural == "deployments"
                and obj["status"]["availableReplicas"] != obj["spec"]["replicas"]
            ):
                obj["status"]["availableReplicas"] = obj["spec"]["replicas"]
                self._bump(obj)

    def count(self, verb: str, resource: str | None = None) -> int:
        return sum(1 for v, r in self.requests if v == verb and resource in (None, r))

    def index(self) -> Callable[[str, str], DeploymentState | None]:
        """The watch-fed index, as if every change had been delivered already."""

        def lookup(namespace: str, name: str) -> DeploymentState | None:
            obj = self.objects.get(("deployments", name))
            if obj is None:
                return None
            meta = obj["metadata"]
            return deployment_state(
                obj["spec"], obj["status"], meta["annotations"], meta["generation"]
            )

        return lookup

    # --- the Kube methods the reconciler and the replicas router use ---

    async def get(
        self, group: str, version: str, plural: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        self.requests.append(("get", plural))
        obj = self.objects.get((plural, name))
        return copy.deepcopy(obj) if obj is not None else None

    async def list(
        self, group: str, version: str, plural: str, namespace: str | None, **_: Any
    ) -> list[dict[str, Any]]:
        self.requests.append(("list", plural))
        return [copy.deepcopy(o) for (p, _n), o in self.objects.items() if p == plural]

    async def patch(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        patch_type: str = "merge",
        subresource: str | None = None,
    ) -> dict[str, Any]:
        resource = f"{plural}/{subresource}" if subresource else plural
        self.requests.append(("patch", resource))
        obj = self.objects[(plural, name)]
        if subresource == "status":
            status = obj.setdefault("status", {})
            before = dict(status)
            for key, value in body["status"].items():
                if value is None:
                    status.pop(key, None)
                else:
                    status[key] = value
            self.status_written(before, status)
            return copy.deepcopy(obj)
        new = copy.deepcopy(obj)
        if plural == "services":
            selector = new["spec"]["selector"]
            for key, value in ((body.get("spec") or {}).get("selector") or {}).items():
                if value is None:
                    selector.pop(key, None)
                else:
                    selector[key] = value
            self.objects[(plural, name)] = new
            return copy.deepcopy(new)
        if patch_type == "json":
            for op in body:
                self._apply(new, op)
        else:
            if "replicas" in (body.get("spec") or {}):
                new["spec"]["replicas"] = body["spec"]["replicas"]
            notes = new["metadata"]["annotations"]
            for key, value in ((body.get("metadata") or {}).get("annotations") or {}).items():
                if value is None:
                    notes.pop(key, None)
                else:
                    notes[key] = value
        if new["spec"] != obj["spec"]:
            new["metadata"]["generation"] += 1
        self.objects[(plural, name)] = self._bump(new)
        return copy.deepcopy(new)

    def status_written(self, before: dict[str, Any], after: dict[str, Any]) -> None:
        """Called after each status write, with the status before and after it."""

    @staticmethod
    def _apply(obj: dict[str, Any], op: dict[str, Any]) -> None:
        *parents, last = [
            p.replace("~1", "/").replace("~0", "~") for p in op["path"][1:].split("/")
        ]
        where = obj
        for part in parents:
            where = where[part]
        if op["op"] == "test":
            if where.get(last) != op["value"]:
                raise KubeError(f"test of {op['path']} failed", status=422)
        elif op["op"] == "remove":
            del where[last]
        else:  # add, replace
            where[last] = op["value"]

    async def emit_event(self, involved: Any, type_: str, reason: str, message: str) -> None:
        self.requests.append(("create", "events"))

    def close(self) -> None:
        pass


def replicas(kube: FakeKube) -> tuple[int, int]:
    def of(name: str) -> int:
        return int(kube.objects[("deployments", name)]["spec"]["replicas"])

    return of("blue"), of("green")


def frozen_index(kube: FakeKube) -> Callable[[str, str], DeploymentState | None]:
    """The index as it is now, never updated: a watch that delivers nothing more."""
    now = kube.index()
    states = {name: now(NS, name) for name in ("blue", "green")}
    return lambda _namespace, name: states[name]


def target(kube: FakeKube, index: Callable[[str, str], DeploymentState | None] | None) -> Target:
    spec = parse_spec(kube.add_migration("m", STEPS)["spec"])
    return Target(NS, "m", "uid-m", spec, deployments=index)


@pytest.fixture
def kube() -> FakeKube:
    fake = FakeKube()
    fake.add_deployment("blue", 4)
    fake.add_deployment("green", 0)
    return fake


def test_a_weight_step_from_the_index_reads_nothing_and_writes_each_side_once(
    kube: FakeKube,
) -> None:
    router = ReplicasRouter(kube)  # type: ignore[arg-type]
    asyncio.run(router.set_weight(target(kube, kube.index()), 50, 4))
    assert replicas(kube) == (2, 2)
    assert kube.count("get") == 0
    assert kube.count("patch", "deployments") == 2
    green = kube.objects[("deployments", "green")]["metadata"]["annotations"]
    assert green[WEIGHT_ANNOTATION] == "50"
    assert ORIGINAL_ANNOTATION in green


def test_without_an_index_entry_the_router_reads_the_pair(kube: FakeKube) -> None:
    router = ReplicasRouter(kube)  # type: ignore[arg-type]
    asyncio.run(router.set_weight(target(kube, lambda ns, name: None), 50, 4))
    assert replicas(kube) == (2, 2)
    assert kube.count("get", "deployments") == 2


def test_a_stale_index_costs_a_read_not_a_wrong_write(kube: FakeKube) -> None:
    router = ReplicasRouter(kube)  # type: ignore[arg-type]
    snapshot = frozen_index(kube)
    # The index still shows blue 4 / green 0 while the cluster moved on to 50 % ...
    asyncio.run(router.set_weight(target(kube, kube.index()), 50, 4))
    kube.settle()
    asyncio.run(router.set_weight(target(kube, snapshot), 100, 4))
    # ... so the write planned from it was refused (409) and planned again from a read.
    assert replicas(kube) == (0, 4)
    assert kube.count("get", "deployments") == 2
    green = kube.objects[("deployments", "green")]["metadata"]["annotations"]
    assert green[WEIGHT_ANNOTATION] == "100"


def test_nothing_to_write_by_a_stale_index_is_checked_by_a_read(kube: FakeKube) -> None:
    router = ReplicasRouter(kube)  # type: ignore[arg-type]
    asyncio.run(router.set_weight(target(kube, kube.index()), 50, 4))
    kube.settle()
    snapshot = frozen_index(kube)
    asyncio.run(router.restore(target(kube, kube.index()), 4, True))
    kube.settle()
    assert replicas(kube) == (4, 0)
    # The index, still at 50 %, says a new 50 % needs no write: only a read can tell it does.
    asyncio.run(router.set_weight(target(kube, snapshot), 50, 4))
    assert replicas(kube) == (2, 2)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def context(kube: FakeKube) -> Context:
    return Context(kube=kube, gates=GateChecker(kube), clock=Clock())  # type: ignore[arg-type]


async def run(reconciler: Reconciler, kube: FakeKube, until: Callable[[str], bool]) -> str:
    phase = ""
    for _ in range(20):
        body = copy.deepcopy(kube.objects[("migrations", "m")])
        outcome = await reconciler.reconcile(body, kube.index())
        kube.settle()
        phase = outcome.status.phase.value
        if until(phase):
            break
    return phase


def test_a_new_run_reads_nothing_and_a_restarted_reconciler_reads_the_cluster_once(
    kube: FakeKube,
) -> None:
    kube.add_migration("m", [{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}])
    ctx = context(kube)
    reconciler = Reconciler(ctx, NS, "m", "uid-m")
    phase = asyncio.run(run(reconciler, kube, lambda p: p == "Paused"))
    assert phase == "Paused"
    assert replicas(kube)[1] > 0
    # A Migration that never started has no run to resume: nothing is read before its first
    # write, and the moves are planned from the index.
    assert kube.count("get", "deployments") == 0
    reads = kube.count("get", "deployments")
    for _ in range(3):
        body = copy.deepcopy(kube.objects[("migrations", "m")])
        asyncio.run(reconciler.reconcile(body, kube.index()))
    assert kube.count("get", "deployments") == reads

    # An operator restarted mid-run reads what is really there (blue and green) once, then no
    # more: the run's status may be behind a router write the crash interrupted.
    restarted = Reconciler(ctx, NS, "m", "uid-m")
    for _ in range(3):
        body = copy.deepcopy(kube.objects[("migrations", "m")])
        asyncio.run(restarted.reconcile(body, kube.index()))
    assert kube.count("get", "deployments") == reads + 2


def test_a_run_of_three_weight_steps_writes_a_status_intent_and_two_deployments_per_step(
    kube: FakeKube,
) -> None:
    kube.add_migration("m", STEPS)
    reconciler = Reconciler(context(kube), NS, "m", "uid-m")
    phase = asyncio.run(run(reconciler, kube, lambda p: p == "Succeeded"))
    assert phase == "Succeeded"
    assert replicas(kube) == (0, 4)
    # Three intents (the first one starting the run) and Succeeded; blue is retired without an
    # intent of its own (a restart would decide it again from the last step's status).
    assert kube.count("patch", "migrations/status") == 4
    # Two per weight step, two to retire blue (green's annotations, blue to zero).
    assert kube.count("patch", "deployments") == 8
    # Reads: none (claims list apart).
    assert kube.count("get") == 0


def test_the_controllers_status_updates_do_not_refuse_a_write_from_the_index(
    kube: FakeKube,
) -> None:
    router = ReplicasRouter(kube)  # type: ignore[arg-type]
    asyncio.run(router.set_weight(target(kube, kube.index()), 50, 4))
    snapshot = frozen_index(kube)
    kube.settle()  # pods came and went since the index's copy: status only
    asyncio.run(router.set_weight(target(kube, snapshot), 100, 4))
    assert replicas(kube) == (0, 4)
    assert kube.count("get") == 0


def test_a_scale_by_someone_else_since_the_index_copy_is_read_before_writing(
    kube: FakeKube,
) -> None:
    router = ReplicasRouter(kube)  # type: ignore[arg-type]
    snapshot = frozen_index(kube)
    blue = kube.objects[("deployments", "blue")]
    blue["spec"]["replicas"] = 6  # e.g. a person scaled blue before the run
    blue["metadata"]["generation"] += 1
    asyncio.run(router.set_weight(target(kube, snapshot), 50, 6))
    assert replicas(kube) == (3, 3)
    # The size saved for the rollback is the one really there, not the index's 4.
    notes = kube.objects[("deployments", "blue")]["metadata"]["annotations"]
    assert notes[ORIGINAL_ANNOTATION] == '{"replicas":6}'
    assert kube.count("get", "deployments") == 2


def test_a_side_a_step_leaves_alone_costs_one_read_to_confirm(kube: FakeKube) -> None:
    router = ReplicasRouter(kube)  # type: ignore[arg-type]
    asyncio.run(router.set_weight(target(kube, kube.index()), 10, 4))
    kube.settle()
    # 10 % and 20 % of 4 pods are both one green pod: only green's weight annotation changes.
    asyncio.run(router.set_weight(target(kube, kube.index()), 20, 4))
    assert replicas(kube) == (3, 1)
    assert kube.requests.count(("get", "deployments")) == 1
    assert kube.count("patch", "deployments") == 3
    green = kube.objects[("deployments", "green")]["metadata"]["annotations"]
    assert green[WEIGHT_ANNOTATION] == "20"


def test_the_service_router_switches_reading_only_the_service(kube: FakeKube) -> None:
    blue_labels = {"app": "shop", "version": "blue"}
    kube.objects[("services", "shop")] = {
        "metadata": {"name": "shop", "namespace": NS, "annotations": {}},
        "spec": {"selector": dict(blue_labels)},
    }
    kube.objects[("deployments", "green")]["spec"]["replicas"] = 4
    kube.settle()
    spec = parse_spec(
        {
            **kube.add_migration("m", [{"setWeight": 100}])["spec"],
            "traffic": {"router": "service", "service": "shop"},
        }
    )
    router = ServiceRouter(kube)  # type: ignore[arg-type]
    asyncio.run(router.set_weight(Target(NS, "m", "uid-m", spec, deployments=kube.index()), 100, 4))
    selector = kube.objects[("services", "shop")]["spec"]["selector"]
    assert selector == {"app": "shop", "version": "green"}
    assert kube.requests.count(("get", "services")) == 1
    assert kube.count("get", "deployments") == 0


def _started_with_a_lagging_watch(kube: FakeKube, green_ready: bool) -> tuple[Context, Reconciler]:
    """A run whose first step (50 %) is written; the watch delivered green's scale-up but none
    of its pods since (whether or not they are available), and the progress deadline (10 s)
    passes."""
    body = kube.add_migration("m", [{"setWeight": 50}, {"setWeight": 100}])
    body["spec"]["progressDeadline"] = "10s"
    ctx = context(kube)
    for name in ("blue", "green"):
        ctx.stores.deployments.apply("ADDED", copy.deepcopy(kube.objects[("deployments", name)]))
    reconciler = Reconciler(ctx, NS, "m", "uid-m")
    asyncio.run(reconciler.reconcile(copy.deepcopy(body), ctx.stores.deployment))
    assert replicas(kube) == (2, 2)
    scaled_up = copy.deepcopy(kube.objects[("deployments", "green")])
    assert scaled_up["status"]["availableReplicas"] == 0
    ctx.stores.deployments.apply("MODIFIED", scaled_up)
    if green_ready:
        kube.settle()
    clock = ctx.clock
    assert isinstance(clock, Clock)
    clock.now += timedelta(seconds=60)
    return ctx, reconciler


def test_a_healthy_green_an_overloaded_watch_shows_unready_is_read_before_a_rollback(
    kube: FakeKube,
) -> None:
    ctx, reconciler = _started_with_a_lagging_watch(kube, green_ready=True)
    gets = kube.count("get", "deployments")
    body = copy.deepcopy(kube.objects[("migrations", "m")])
    outcome = asyncio.run(reconciler.reconcile(body, ctx.stores.deployment))
    assert outcome.status.phase.value == "Progressing", outcome.status.message
    assert outcome.status.current_step_index == 1
    assert kube.count("get", "deployments") > gets  # the cluster was asked, not the copy
    assert replicas(kube) == (0, 4)  # and the run went on to 100 %


def test_a_green_still_unready_when_read_again_is_rolled_back(kube: FakeKube) -> None:
    ctx, reconciler = _started_with_a_lagging_watch(kube, green_ready=False)
    body = copy.deepcopy(kube.objects[("migrations", "m")])
    outcome = asyncio.run(reconciler.reconcile(body, ctx.stores.deployment))
    assert outcome.status.phase.value in ("RollingBack", "RolledBack")
    assert "progressDeadline" in (outcome.status.message or "")
    assert replicas(kube) == (4, 0)


def test_a_body_behind_the_last_status_write_repeats_no_step_and_one_that_caught_up_is_used(
    kube: FakeKube,
) -> None:
    """The watch may deliver the operator's own status write after its next wake-up: deciding
    from the older body would start the step again. Once the body shows the write, the
    reconciler decides from it and keeps no copy of its own through the sleep."""
    kube.add_migration("m", [{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}])
    reconciler = Reconciler(context(kube), NS, "m", "uid-m")
    before_start = copy.deepcopy(kube.objects[("migrations", "m")])
    phase = asyncio.run(run(reconciler, kube, lambda p: p == "Paused"))
    assert phase == "Paused"
    writes = kube.count("patch", "deployments"), kube.count("patch", "migrations/status")

    # The body from before the run started, delivered late.
    late = asyncio.run(reconciler.reconcile(before_start, kube.index()))
    assert late.status.phase.value == "Paused"
    assert (kube.count("patch", "deployments"), kube.count("patch", "migrations/status")) == writes

    current = copy.deepcopy(kube.objects[("migrations", "m")])
    caught_up = asyncio.run(reconciler.reconcile(current, kube.index()))
    assert caught_up.status.phase.value == "Paused"
    assert reconciler._written is None  # the copy the sleep would have held


class RecordingWeightRouter:
    """A weight router (its own object holds the weight: Gateway API's, Istio's, NGINX's
    shape), answering from memory and recording what it was asked."""

    def __init__(self) -> None:
        self.weight = 0
        self.calls: list[tuple[str, int | None]] = []

    async def preflight(self, target: Target) -> list[str]:
        return []

    async def prepare(self, target: Target, total_replicas: int) -> None:
        self.calls.append(("prepare", total_replicas))

    async def set_weight(self, target: Target, weight: int, total_replicas: int) -> None:
        self.calls.append(("set_weight", weight))
        self.weight = weight

    async def get_weight(self, target: Target) -> int | None:
        self.calls.append(("get_weight", None))
        return self.weight

    async def set_mirror(self, target: Target, percent: int) -> None:
        self.calls.append(("set_mirror", percent))

    async def get_mirror(self, target: Target) -> int | None:
        return None

    async def restore(self, target: Target, total_replicas: int, scale_down_green: bool) -> None:
        self.calls.append(("restore", total_replicas))
        self.weight = 0

    async def hold_blue(self, target: Target, total_replicas: int) -> None:
        self.calls.append(("hold_blue", total_replicas))

    async def retire_blue(self, target: Target) -> None:
        self.calls.append(("retire_blue", None))


def test_weights_with_nothing_between_them_go_through_in_one_wake_up(kube: FakeKube) -> None:
    """Weights with no pause or gate between them, green ready: each round of one wake-up
    writes a weight's intent and the weight, up to the end. A wake-up that stopped after a
    fixed number of rounds left the rest of the run to the next one; when it stopped just
    after retiring blue, that one wrote one more status and retired blue again (reading the
    route and blue)."""
    weights = [20, 40, 60, 80, 100]
    kube.objects[("deployments", "green")]["spec"]["replicas"] = 4
    kube.settle()
    body = kube.add_migration("m", [{"setWeight": w} for w in weights])
    body["spec"]["blue"]["service"] = "blue"
    body["spec"]["green"]["service"] = "green"
    body["spec"]["traffic"] = {"router": "gatewayapi", "gatewayAPI": {"httpRoute": "m"}}
    ctx = context(kube)
    router = RecordingWeightRouter()
    ctx.routers["gatewayapi"] = router
    reconciler = Reconciler(ctx, NS, "m", "uid-m")

    outcome = asyncio.run(reconciler.reconcile(copy.deepcopy(body), kube.index()))

    assert outcome.status.phase.value == "Succeeded", outcome.status.message
    assert router.calls == [
        ("prepare", 4),
        *(("set_weight", w) for w in weights),
        ("retire_blue", None),
    ]
    # The run's start, one intent per weight, Succeeded.
    assert kube.count("patch", "migrations/status") == 1 + len(weights) + 1
    assert kube.count("get") == 0
