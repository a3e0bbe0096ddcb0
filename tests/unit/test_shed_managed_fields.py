"""What Kopf keeps of each Migration for its daemon's life is the latest event's body, and of
any watched object its latest event while its worker waits: the operator drops a Migration's
managedFields (half of such a body in memory) when the event handler sees them, and all but
the metadata of another kind's event once its store has what a run reads."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any, cast

import kopf
import pytest

from cutover import handlers
from cutover.api import MIGRATION_LABEL
from cutover.handlers import shed_managed_fields
from cutover.kube import Kube
from cutover.reconciler import Stores
from cutover.wakeups import Wakeups

RAW: dict[str, Any] = {
    "apiVersion": "cutover.io/v1alpha1",
    "kind": "Migration",
    "metadata": {
        "name": "checkout",
        "namespace": "shop",
        "finalizers": ["cutover.io/finalizer"],
        "managedFields": [
            {"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {}}},
            {"manager": "kopf", "operation": "Update", "subresource": "status"},
        ],
    },
    "spec": {"blue": {"deployment": "checkout-blue"}, "green": {"deployment": "checkout-v2"}},
    "status": {"phase": "Progressing", "currentStepIndex": 1},
}


def test_the_body_kept_for_the_daemon_loses_managed_fields_and_nothing_else() -> None:
    raw = copy.deepcopy(RAW)
    seen_by_handler = kopf.Body(raw)
    kept_for_daemon = kopf.Body(raw)  # Kopf's daemon body: another view of the same dict

    shed_managed_fields(seen_by_handler)

    assert "managedFields" not in kept_for_daemon.metadata
    expected = copy.deepcopy(RAW)
    del expected["metadata"]["managedFields"]
    assert dict(kept_for_daemon) == expected
    assert list(kept_for_daemon.metadata["finalizers"]) == ["cutover.io/finalizer"]


def test_a_body_without_managed_fields_is_left_as_it_is() -> None:
    raw = copy.deepcopy(RAW)
    del raw["metadata"]["managedFields"]
    shed_managed_fields(kopf.Body(raw))
    assert raw["metadata"]["name"] == "checkout" and raw["spec"] == RAW["spec"]


def _managed(*managers: str) -> list[dict[str, Any]]:
    return [{"manager": m, "operation": "Update", "fieldsV1": {"f:status": {}}} for m in managers]


DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "checkout-blue",
        "namespace": "shop",
        "uid": "d1",
        "generation": 3,
        "managedFields": _managed("kubectl", "kube-controller-manager"),
    },
    "spec": {"replicas": 4},
    "status": {"observedGeneration": 3, "replicas": 4, "availableReplicas": 4},
}
HOOK_JOB: dict[str, Any] = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {
        "name": "checkout-expand",
        "namespace": "shop",
        "uid": "j1",
        "labels": {MIGRATION_LABEL: "checkout"},
        "managedFields": _managed("cutover", "kube-controller-manager"),
    },
    "status": {"succeeded": 1},
}
AUTOSCALER: dict[str, Any] = {
    "apiVersion": "autoscaling/v2",
    "kind": "HorizontalPodAutoscaler",
    "metadata": {
        "name": "checkout-blue",
        "namespace": "shop",
        "uid": "h1",
        "managedFields": _managed("kubectl", "kube-controller-manager"),
    },
    "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "checkout-blue"},
        "minReplicas": 2,
        "maxReplicas": 8,
    },
}


def _stored(stores: Stores, kind: str) -> tuple[object, ...]:
    """What a run reads of the object, from its store."""
    if kind == "deployment":
        state = stores.deployment("shop", "checkout-blue")
        return (state.replicas, state.available, state.generation) if state else ()
    if kind == "job":
        return tuple((name, job.succeeded) for name, job in stores.jobs("shop", "checkout").items())
    return tuple((a.name, a.min_replicas) for a in stores.autoscalers_of("shop", "checkout-blue"))


STORED = {
    "deployment": (4, 4, 3),
    "job": (("checkout-expand", True),),
    "autoscaler": (("checkout-blue", 2),),
}


@pytest.mark.parametrize(
    ("kind", "handler", "raw"),
    [
        ("deployment", handlers.deployments, DEPLOYMENT),
        ("job", handlers.hook_jobs, HOOK_JOB),
        ("autoscaler", handlers.autoscalers, AUTOSCALER),
    ],
    ids=["deployment", "hook-job", "autoscaler"],
)
async def test_watch_events_keep_only_their_metadata_once_their_store_has_them(
    kind: str, handler: Callable[..., Awaitable[None]], raw: dict[str, Any]
) -> None:
    """Kopf holds an object's latest event while the object's worker waits for the next: with
    1,000 runs stepping, hundreds of Deployments' events at once, and every Deployment's during
    a watch's initial listing."""
    stores = Stores(cast(Kube, None))  # the handlers only apply events; nothing is read
    memo = SimpleNamespace(context=SimpleNamespace(stores=stores, wakeups=Wakeups()))
    event = copy.deepcopy(raw)

    await handler(type="ADDED", body=kopf.Body(event), memo=memo)

    assert _stored(stores, kind) == STORED[kind]
    expected = copy.deepcopy(raw)
    del expected["metadata"]["managedFields"]
    assert event["metadata"] == expected["metadata"]
    assert not event.get("spec") and not event.get("status")
