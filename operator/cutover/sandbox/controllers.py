"""Tiny stand-ins for kube-controller-manager: Deployment readiness and Job outcomes.

They run as tasks on the sandbox's event loop and write through the store's `/status` path,
so every change bumps resourceVersion and reaches watchers exactly like a real controller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from kmock import KubernetesError

from cutover.sandbox.patching import MERGE_PATCH
from cutover.sandbox.store import Event, ObjectStore, now_iso

logger = logging.getLogger(__name__)

OUTCOME_ANNOTATION = "sandbox.cutover.io/outcome"
AFTER_ANNOTATION = "sandbox.cutover.io/after"
LOG_ANNOTATION = "sandbox.cutover.io/log"
OUTCOMES = ("succeed", "fail")


class _Scheduler:
    """One pending task per object key; rescheduling replaces the previous plan."""

    def __init__(self) -> None:
        self._tasks: dict[tuple[str, str, str], asyncio.Task[None]] = {}

    def schedule(self, key: tuple[str, str, str], delay: float, fn: Any, *args: Any) -> None:
        old = self._tasks.pop(key, None)
        if old is not None:
            old.cancel()

        async def run() -> None:
            await asyncio.sleep(delay)
            self._tasks.pop(key, None)
            try:
                fn(*args)
            except KubernetesError as exc:  # e.g. the object was deleted meanwhile
                logger.debug("sandbox controller write skipped: %s", exc.message)

        self._tasks[key] = asyncio.get_running_loop().create_task(run())

    def cancel(self, key: tuple[str, str, str]) -> None:
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


class DeploymentController:
    """After `delay` seconds, reports all desired replicas of a Deployment as ready."""

    def __init__(self, store: ObjectStore, delay: float = 0.2) -> None:
        self.store = store
        self.delay = delay
        self._scheduler = _Scheduler()
        store.add_listener(self._on_event)

    def _on_event(self, event: Event) -> None:
        if event.rt.group != "apps" or event.rt.plural != "deployments":
            return
        meta = event.obj["metadata"]
        key = ("deployments", meta.get("namespace", ""), meta["name"])
        if event.type == "DELETED":
            self._scheduler.cancel(key)
            return
        if self._is_current(event.obj):
            return
        self._scheduler.schedule(
            key, self.delay, self._reconcile, meta.get("namespace"), meta["name"]
        )

    @staticmethod
    def _is_current(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        replicas = (obj.get("spec") or {}).get("replicas", 1)
        return bool(
            status.get("observedGeneration") == obj["metadata"].get("generation")
            and status.get("availableReplicas", 0) == replicas
            and status.get("readyReplicas", 0) == replicas
        )

    def _reconcile(self, namespace: str, name: str) -> None:
        rt = self.store.registry.lookup("apps", "v1", "deployments")
        assert rt is not None
        obj = self.store.get(rt, namespace, name)
        replicas = (obj.get("spec") or {}).get("replicas", 1)
        now = now_iso()
        status = {
            "observedGeneration": obj["metadata"].get("generation", 1),
            "replicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "updatedReplicas": replicas,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True",
                    "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability.",
                    "lastUpdateTime": now,
                    "lastTransitionTime": now,
                },
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable",
                    "message": f'ReplicaSet "{name}" has successfully progressed.',
                    "lastUpdateTime": now,
                    "lastTransitionTime": now,
                },
            ],
        }
        self.store.patch(rt, namespace, name, MERGE_PATCH, {"status": status}, subresource="status")

    async def stop(self) -> None:
        await self._scheduler.stop()


class JobController:
    """Marks Jobs active on creation; finishes them on demand or by annotation."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._scheduler = _Scheduler()
        self._pending: dict[tuple[str, str], str] = {}
        self.logs: dict[tuple[str, str], str] = {}
        store.add_listener(self._on_event)

    def _on_event(self, event: Event) -> None:
        if event.rt.group != "batch" or event.rt.plural != "jobs":
            return
        meta = event.obj["metadata"]
        namespace, name = meta.get("namespace", ""), meta["name"]
        key = ("jobs", namespace, name)
        if event.type == "DELETED":
            self._scheduler.cancel(key)
            return
        if event.type != "ADDED":
            return
        annotations = meta.get("annotations") or {}
        self.logs[(namespace, name)] = annotations.get(
            LOG_ANNOTATION, f"sandbox: job {namespace}/{name} started\n"
        )
        self._scheduler.schedule(("jobs-start", namespace, name), 0.0, self._start, namespace, name)
        outcome = self._pending.pop((namespace, name), None) or annotations.get(OUTCOME_ANNOTATION)
        if outcome in OUTCOMES:
            try:
                after = float(annotations.get(AFTER_ANNOTATION, "0"))
            except ValueError:
                after = 0.0
            # Never finish before the start write, even with a zero delay.
            self._scheduler.schedule(key, max(after, 0.01), self._finish, namespace, name, outcome)

    def _start(self, namespace: str, name: str) -> None:
        rt = self.store.registry.lookup("batch", "v1", "jobs")
        assert rt is not None
        obj = self.store.get(rt, namespace, name)
        if (obj.get("status") or {}).get("startTime"):
            return
        self.store.patch(
            rt,
            namespace,
            name,
            MERGE_PATCH,
            {"status": {"active": 1, "startTime": now_iso()}},
            subresource="status",
        )

    def _finish(self, namespace: str, name: str, outcome: str) -> None:
        rt = self.store.registry.lookup("batch", "v1", "jobs")
        assert rt is not None
        obj = self.store.get(rt, namespace, name)
        status = obj.get("status") or {}
        if status.get("succeeded") or status.get("failed"):
            return  # a finished Job never changes its outcome
        now = now_iso()
        ok = outcome == "succeed"
        condition = {
            "type": "Complete" if ok else "Failed",
            "status": "True",
            "reason": "Completed" if ok else "BackoffLimitExceeded",
            "message": "Job completed" if ok else "Job has reached the specified backoff limit",
            "lastProbeTime": now,
            "lastTransitionTime": now,
        }
        patch: dict[str, Any] = {
            "active": None,
            "ready": 0,
            "startTime": status.get("startTime") or now,
            "conditions": [condition],
            "completionTime": now,
        }
        patch["succeeded" if ok else "failed"] = 1
        self.logs[(namespace, name)] = self.logs.get((namespace, name), "") + (
            f"sandbox: job {namespace}/{name} {'succeeded' if ok else 'failed'}\n"
        )
        self.store.patch(rt, namespace, name, MERGE_PATCH, {"status": patch}, subresource="status")

    def set_outcome(self, namespace: str, name: str, outcome: str) -> None:
        """Decide a Job's outcome now, or as soon as it is created if it does not exist yet."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
        rt = self.store.registry.lookup("batch", "v1", "jobs")
        assert rt is not None
        if self.store.find(rt, namespace, name) is None:
            self._pending[(namespace, name)] = outcome
            return
        # Deferred by a tick so the Job's own "active" status write always comes first.
        self._scheduler.schedule(
            ("jobs", namespace, name), 0.01, self._finish, namespace, name, outcome
        )

    async def stop(self) -> None:
        await self._scheduler.stop()
