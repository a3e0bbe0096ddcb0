"""The watch-fed stores that replaced Kopf's indexes (stores.py, reconciler.Stores): what the
watch says is found, a namespace is listed once per process before it is first read, and the
claims check of a starting Migration makes no LIST of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

import pytest

from cutover import api
from cutover.core.templates import TemplateObject
from cutover.kube import Kube, KubeError
from cutover.reconciler import Context, DeploymentState, JobState, Reconciler, Stores
from cutover.stores import Store

from .specs import raw, spec


def obj(
    name: str,
    namespace: str | None = "shop",
    *,
    uid: str | None = None,
    labels: Mapping[str, str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": uid or f"uid-{name}", "labels": dict(labels or {})}
    if namespace is not None:
        meta["namespace"] = namespace
    return {"metadata": meta, **fields}


def by_label(o: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """A test indexer: objects under (namespace, their "app" label), valued by name."""
    meta = o["metadata"]
    app = meta["labels"].get("app")
    return {(meta["namespace"], app): meta["name"]} if app else {}


class Lister:
    """What the API server would list, one namespace at a time; counts the LISTs."""

    def __init__(self, objects: list[dict[str, Any]] | None = None) -> None:
        self.objects = objects or []
        self.calls: list[str | None] = []
        self.gate: asyncio.Event | None = None  # when set up, a LIST waits for it
        self.fail = False

    async def __call__(self, namespace: str | None) -> list[dict[str, Any]]:
        self.calls.append(namespace)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise KubeError("list refused", status=503)
        return [o for o in self.objects if o["metadata"].get("namespace") == namespace]


def test_what_the_watch_adds_changes_and_deletes_is_what_a_lookup_finds() -> None:
    store: Store[tuple[str, str], str] = Store(by_label, Lister())
    store.apply(None, obj("a", labels={"app": "web"}))  # the watch's initial listing
    store.apply("ADDED", obj("b", labels={"app": "web"}))
    assert sorted(store.values(("shop", "web"))) == ["a", "b"]

    store.apply("MODIFIED", obj("a", labels={"app": "api"}))  # moved to another key
    assert store.values(("shop", "web")) == ["b"]
    assert store.first(("shop", "api")) == "a"

    store.apply("MODIFIED", obj("b"))  # no key any more: found under none
    store.apply("DELETED", obj("a", labels={"app": "api"}))
    assert store.values(("shop", "web")) == [] and store.first(("shop", "api")) is None


async def test_a_namespace_is_listed_once_for_all_its_readers_and_not_again() -> None:
    lister = Lister([obj("a", labels={"app": "web"}), obj("x", "other", labels={"app": "web"})])
    store: Store[tuple[str, str], str] = Store(by_label, lister)
    assert store.first(("shop", "web")) is None and not store.primed("shop")

    await asyncio.gather(*(store.prime("shop") for _ in range(50)))
    await store.prime("shop")

    assert lister.calls == ["shop"]
    assert store.first(("shop", "web")) == "a"
    assert store.first(("other", "web")) is None  # another namespace is not listed with it
    await store.prime("other")
    assert lister.calls == ["shop", "other"] and store.first(("other", "web")) == "x"


async def test_what_the_watch_said_during_the_list_wins_over_the_list() -> None:
    # The LIST was answered before the deletion and the change, which the watch then delivered.
    gone, changed = obj("gone", labels={"app": "web"}), obj("changed", labels={"app": "web"})
    lister = Lister([gone, changed, obj("kept", labels={"app": "web"})])
    lister.gate = asyncio.Event()
    store: Store[tuple[str, str], str] = Store(by_label, lister)
    priming = asyncio.create_task(store.prime("shop"))
    await asyncio.sleep(0)
    store.apply("DELETED", gone)
    store.apply("MODIFIED", obj("changed", labels={"app": "api"}))
    lister.gate.set()
    await priming

    assert store.values(("shop", "web")) == ["kept"]
    assert store.first(("shop", "api")) == "changed"


async def test_a_failed_list_is_tried_again_by_the_next_reader() -> None:
    lister = Lister([obj("a", labels={"app": "web"})])
    lister.fail = True
    store: Store[tuple[str, str], str] = Store(by_label, lister)
    with pytest.raises(KubeError):
        await store.prime("shop")
    assert not store.primed("shop")

    lister.fail = False
    await store.prime("shop")
    assert store.primed("shop") and store.first(("shop", "web")) == "a"
    assert lister.calls == ["shop", "shop"]


async def test_a_typed_event_says_the_watch_has_listed_its_namespace() -> None:
    lister = Lister([obj("a", labels={"app": "web"})])
    store: Store[tuple[str, str], str] = Store(by_label, lister)
    store.apply(None, obj("a", labels={"app": "web"}))  # listing: it may not be over yet
    assert not store.primed("shop")
    store.apply("ADDED", obj("b", labels={"app": "web"}))  # a watch event: the listing is over
    assert store.primed("shop") and not store.primed("other")
    await store.prime("shop")
    assert lister.calls == []


class Fetch:
    def __init__(self, answer: dict[str, Any] | None) -> None:
        self.answer = answer
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> dict[str, Any] | None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        return self.answer


async def test_a_miss_is_fetched_once_and_kept_present_or_absent() -> None:
    store: Store[tuple[str, str], str] = Store(by_label, Lister())
    found = Fetch(obj("a", labels={"app": "web"}))
    await store.ensure(("shop", "web"), found)
    await store.ensure(("shop", "web"), found)
    assert found.calls == 1 and store.first(("shop", "web")) == "a"

    missing = Fetch(None)
    await store.ensure(("shop", "api"), missing)
    await store.ensure(("shop", "api"), missing)
    assert missing.calls == 1 and store.first(("shop", "api")) is None
    store.apply("ADDED", obj("b", labels={"app": "api"}))  # created later: the watch says so
    assert store.first(("shop", "api")) == "b"

    # Deleted: known absent from the watch itself, nothing to ask.
    store.apply("DELETED", obj("b", labels={"app": "api"}))
    never = Fetch(obj("b", labels={"app": "api"}))
    await store.ensure(("shop", "api"), never)
    assert never.calls == 0 and store.first(("shop", "api")) is None


async def test_what_the_watch_said_during_a_fetch_wins_over_its_answer() -> None:
    store: Store[tuple[str, str], str] = Store(by_label, Lister())
    stale = Fetch(obj("a", labels={"app": "web"}))  # read just before the deletion
    stale.gate = asyncio.Event()
    fetching = asyncio.create_task(store.ensure(("shop", "web"), stale))
    await asyncio.sleep(0)
    store.apply("DELETED", obj("a", labels={"app": "web"}))
    stale.gate.set()
    await fetching
    assert store.first(("shop", "web")) is None

    late = Fetch(None)  # a 404 answered just before the creation the watch then delivered
    late.gate = asyncio.Event()
    fetching = asyncio.create_task(store.ensure(("shop", "api"), late))
    await asyncio.sleep(0)
    store.apply("ADDED", obj("b", labels={"app": "api"}))
    late.gate.set()
    await fetching
    assert store.first(("shop", "api")) == "b"


async def test_reads_in_flight_that_end_out_of_order_each_keep_what_the_watch_said() -> None:
    """Two fetches in flight at once (two daemons starting): the second ends first, then an
    event arrives, then the first ends. Each read must still know what the watch said during
    it, and neither may fail (this once crashed daemons, which Kopf retries only after 60 s)."""
    store: Store[tuple[str, str], str] = Store(by_label, Lister())
    first = Fetch(obj("a", labels={"app": "web"}))
    second = Fetch(obj("b", labels={"app": "api"}))
    first.gate, second.gate = asyncio.Event(), asyncio.Event()
    reading_first = asyncio.create_task(store.ensure(("shop", "web"), first))
    await asyncio.sleep(0)
    reading_second = asyncio.create_task(store.ensure(("shop", "api"), second))
    await asyncio.sleep(0)
    second.gate.set()
    await reading_second
    store.apply("DELETED", obj("a", labels={"app": "web"}))  # during the first read only
    first.gate.set()
    await reading_first
    assert store.first(("shop", "web")) is None  # the deletion wins over the older answer
    assert store.first(("shop", "api")) == "b"


class FakeKube:
    """Lists by (plural, namespace) and GETs by name; records every request."""

    def __init__(self, objects: dict[str, list[dict[str, Any]]]) -> None:
        self.objects = objects
        self.lists: list[tuple[str, str | None, str | None]] = []
        self.gets: list[tuple[str, str]] = []

    async def list(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        label_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        self.lists.append((plural, namespace, label_selector))
        return [
            o for o in self.objects.get(plural, []) if o["metadata"].get("namespace") == namespace
        ]

    async def get(
        self, group: str, version: str, plural: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        self.gets.append((plural, name))
        return next(
            (
                o
                for o in self.objects.get(plural, [])
                if (o["metadata"].get("namespace"), o["metadata"]["name"]) == (namespace, name)
            ),
            None,
        )


def deployment(name: str, replicas: int, available: int) -> dict[str, Any]:
    return obj(name, spec={"replicas": replicas}, status={"availableReplicas": available})


async def test_a_daemon_that_starts_before_the_watch_delivered_blue_still_finds_it() -> None:
    # Kopf's index held daemons back until its listing was in; the store asks for a miss.
    kube = FakeKube({"deployments": [deployment("checkout-blue", 4, 4)]})
    stores = Stores(cast(Kube, kube))
    pair = ["checkout-blue", "checkout-green"]
    assert stores.deployment("shop", "checkout-blue") is None

    await stores.prime("shop", pair)
    assert stores.deployment("shop", "checkout-blue") == DeploymentState(4, 4)
    assert stores.deployment("shop", "checkout-green") is None  # really absent

    # From then on the watch keeps them current, and prime costs nothing.
    stores.deployments.apply("MODIFIED", deployment("checkout-blue", 4, 2))
    stores.deployments.apply("ADDED", deployment("checkout-green", 1, 0))
    await stores.prime("shop", pair)
    assert stores.deployment("shop", "checkout-blue") == DeploymentState(4, 2)
    assert stores.deployment("shop", "checkout-green") == DeploymentState(1, 0)
    assert kube.gets == [("deployments", "checkout-blue"), ("deployments", "checkout-green")]
    # HPAs have no key to ask by: their namespace is listed, once.
    assert kube.lists == [("horizontalpodautoscalers", "shop", None)]


async def test_a_name_no_object_can_have_is_not_asked_for() -> None:
    kube = FakeKube({})
    await Stores(cast(Kube, kube)).prime("shop", ["../blue", "other/blue", ""])
    assert kube.gets == []


def test_hook_jobs_templates_and_autoscalers_are_found_by_their_lookups() -> None:
    stores = Stores(cast(Kube, FakeKube({})))
    labelled = {api.MIGRATION_LABEL: "orders"}
    done = {"conditions": [{"type": "Complete", "status": "True"}]}
    stores.hook_jobs.apply("ADDED", obj("orders-pre", labels=labelled, status=done))
    stores.hook_jobs.apply("ADDED", obj("orders-post", labels=labelled, status={"active": 1}))
    stores.hook_jobs.apply("ADDED", obj("unrelated", status=done))
    assert stores.jobs("shop", "orders") == {
        "orders-pre": JobState(succeeded=True, failed=False, message=""),
        "orders-post": JobState(succeeded=False, failed=False, message=""),
    }
    stores.hook_jobs.apply("DELETED", obj("orders-pre", labels=labelled))
    assert list(stores.jobs("shop", "orders")) == ["orders-post"]

    stores.gate_templates.apply("ADDED", obj("errors", spec={"a": 1}))
    stores.cluster_gate_templates.apply("ADDED", obj("latency", None, spec={"b": 2}))
    template = api.GateTemplateKind
    assert stores.template(template.gate_template, "shop", "errors") == TemplateObject(
        uid="uid-errors", generation=0, spec={"a": 1}
    )
    assert stores.template(template.cluster_gate_template, "", "latency") is not None
    assert stores.template(template.gate_template, "shop", "latency") is None

    scaling = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}
    stores.autoscalers.apply("ADDED", obj("web-hpa", spec={**scaling, "maxReplicas": 5}))
    assert [hpa.name for hpa in stores.autoscalers_of("shop", "web")] == ["web-hpa"]
    stores.autoscalers.apply("MODIFIED", obj("web-hpa", spec={"scaleTargetRef": {}}))
    assert stores.autoscalers_of("shop", "web") == []


def migration(name: str, created: str, phase: api.Phase | None = None) -> dict[str, Any]:
    body = obj(name, spec=raw(), status={"phase": phase.value} if phase else {})
    body["metadata"]["creationTimestamp"] = created
    return body


def claims_of(context: Context, name: str) -> Any:
    return Reconciler(context, "shop", name, f"uid-{name}")._claims(spec())


async def test_starting_migrations_find_conflicts_from_the_watch_without_a_list() -> None:
    kube = FakeKube({"migrations": []})
    context = Context(kube=cast(Kube, kube), gates=cast(Any, None))
    migrations = context.stores.migrations
    first = migration("first", "2026-01-01T00:00:00Z")
    migrations.apply("ADDED", first)  # created while the operator runs (handlers.poke)
    assert await claims_of(context, "first") == []

    for i in range(20):
        migrations.apply("ADDED", migration(f"m{i}", f"2026-01-02T00:00:{i:02}Z"))
    migrations.apply("MODIFIED", migration("first", "2026-01-01T00:00:00Z", api.Phase.progressing))
    assert await claims_of(context, "m0") == [  # the oldest new one: only the running run claims
        f"Deployment shop/checkout-{side} is already claimed by Migration first (Progressing)"
        for side in ("blue", "green")
    ]
    # The first one ends and is deleted: the watch says so, and the next start is free.
    migrations.apply("DELETED", first)
    assert await claims_of(context, "m0") == []
    assert len(await claims_of(context, "m1")) == 2  # m0 is older and Pending
    assert kube.lists == []


async def test_after_a_restart_the_namespace_is_listed_once_for_all_starts() -> None:
    # Only the watch's initial listing so far: it may not be over, so the first check LISTs.
    running = migration("running", "2026-01-01T00:00:00Z", api.Phase.progressing)
    waiting = [migration(f"m{i}", f"2026-01-02T00:00:{i:02}Z") for i in range(10)]
    kube = FakeKube({"migrations": [running, *waiting]})
    context = Context(kube=cast(Kube, kube), gates=cast(Any, None))
    for body in waiting:
        context.stores.migrations.apply(None, body)
    results = await asyncio.gather(*(claims_of(context, f"m{i}") for i in range(10)))
    # Each sees the running one the LIST found (and, after m0, the older Pending ones).
    for i, problems in enumerate(results):
        assert len(problems) == 2 * (i + 1), problems
        assert any("Migration running (Progressing)" in p for p in problems), problems
    assert kube.lists == [("migrations", "shop", None)]


async def test_a_shard_lists_only_the_migrations_its_watch_shows() -> None:
    kube = FakeKube({"migrations": []})
    stores = Stores(cast(Kube, kube))
    stores.migration_selector = "cutover.io/shard=2"
    await stores.claimants("shop")
    assert kube.lists == [("migrations", "shop", "cutover.io/shard=2")]


def test_only_a_deployment_change_its_readers_can_see_wakes_them() -> None:
    """The Deployment handler wakes a Migration only when ``apply`` says the store changed: the
    controller's many status updates while pods start must not each cost a reconcile, and a
    change that matters (a pod available, a new size, a deletion) must never be missed."""
    deployments = Stores(cast(Kube, None)).deployments

    def green(replicas: int, available: int, ready: int, generation: int = 1) -> dict[str, Any]:
        return obj(
            "checkout-green",
            metadata_generation=generation,
            spec={"replicas": replicas, "selector": {"matchLabels": {"app": "checkout"}}},
            status={"availableReplicas": available, "readyReplicas": ready, "replicas": replicas},
        )

    def event(kind: str, body: dict[str, Any]) -> bool:
        body["metadata"]["generation"] = body.pop("metadata_generation")
        return deployments.apply(kind, body)

    assert event("ADDED", green(0, 0, 0))
    assert event("MODIFIED", green(2, 0, 0, generation=2))  # scaled up: a new size
    assert not event("MODIFIED", green(2, 0, 1, generation=2))  # a pod ready, not yet available
    assert not event("MODIFIED", green(2, 0, 1, generation=2))  # the same, once more
    assert event("MODIFIED", green(2, 1, 1, generation=2))  # a pod available
    assert event("DELETED", green(2, 1, 1, generation=2))
    assert deployments.first(("shop", "checkout-green")) is None
