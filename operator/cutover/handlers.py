"""The Kopf layer: decorators only, delegating to the reconciler.

Run with ``kopf run -m cutover.handlers --all-namespaces`` (or ``--namespace NS``).

Each active Migration gets one async daemon that sleeps until the decision engine says something
is due (a gate check, the end of a pause) or until the Migration changes. Terminal Migrations
match no daemon filter, so they cost no task at all; a retry request or a new spec wakes them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import kopf

from cutover import api, metrics
from cutover.api import REQUEST_ANNOTATION, TERMINAL_PHASES
from cutover.core.machine import DeploymentState, JobState
from cutover.gatecheck import GateChecker
from cutover.hookjobs import MIGRATION_LABEL, job_state
from cutover.kube import Kube, KubeError
from cutover.reconciler import Context, Reconciler
from cutover.routers.base import ORIGINAL_ANNOTATION, TrafficRouterError

log = logging.getLogger("cutover.handlers")
_TERMINAL = {p.value for p in TERMINAL_PHASES}


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # A real API server prunes status fields the CRD does not declare: keep Kopf's own
    # bookkeeping in annotations instead of status.kopf.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="cutover.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="cutover.io", key="last-handled-configuration"
    )
    settings.persistence.finalizer = "cutover.io/finalizer"
    settings.posting.enabled = False  # our own Events, one per phase change, not per log line
    settings.watching.server_timeout = int(_env_float("CUTOVER_WATCH_TIMEOUT", 300))
    kube = Kube.from_environment(
        qps=_env_float("CUTOVER_API_QPS", 20.0),
        burst=int(_env_float("CUTOVER_API_BURST", 40)),
        on_request=metrics.count_api_request,
    )
    # Installed for one namespace, the operator may not list namespaces; Kopf would retry that
    # listing for about a minute before it falls back to the named namespace. Ask once instead.
    try:
        may_list_namespaces = await kube.allowed("list", "", "namespaces")
    except KubeError as error:  # unknown: leave Kopf's default behaviour
        log.warning("access review failed", extra={"error": str(error)})
        may_list_namespaces = True
    if not may_list_namespaces:
        settings.scanning.disabled = True
        log.info("namespaced install: namespace and CRD scanning off (CRDs must exist at start)")
    memo.context = Context(kube=kube, gates=GateChecker(kube))
    memo.pokes = {}
    memo.watchers = {}  # (namespace, deployment) -> uids of the daemons that use it
    port = os.environ.get("CUTOVER_METRICS_PORT")
    if port:
        metrics.start_metrics_server(int(port))


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    context: Context = memo.context
    context.gates.close()
    context.kube.close()


@kopf.index("apps", "v1", "deployments")
def deployments(
    namespace: str | None,
    name: str,
    spec: kopf.Spec,
    status: kopf.Status,
    annotations: Mapping[str, str],
    **_: Any,
) -> dict[tuple[str, str], DeploymentState]:
    """Readiness comes from the watch, so waiting for pods costs no API request."""
    return {
        (namespace or "", name): DeploymentState(
            replicas=int(spec.get("replicas", 1) or 0),
            available=int(status.get("availableReplicas") or 0),
            original_replicas=saved_replicas(annotations),
        )
    }


def saved_replicas(annotations: Mapping[str, str]) -> int | None:
    try:
        saved = json.loads(annotations.get(ORIGINAL_ANNOTATION, ""))
    except ValueError:
        return None
    value = saved.get("replicas") if isinstance(saved, dict) else None
    return value if isinstance(value, int) and value >= 0 else None


@kopf.index("batch", "v1", "jobs", labels={MIGRATION_LABEL: kopf.PRESENT})
def hook_jobs(
    namespace: str | None, name: str, labels: Mapping[str, str], status: kopf.Status, **_: Any
) -> dict[tuple[str, str], tuple[str, JobState]]:
    """Hook Jobs by (namespace, migration), from the watch: polling a Job costs nothing."""
    succeeded, failed, message = job_state(dict(status))
    return {
        (namespace or "", labels[MIGRATION_LABEL]): (
            name,
            JobState(succeeded=succeeded, failed=failed, message=message),
        )
    }


def _active(body: kopf.Body, **_: Any) -> bool:
    """Needs a daemon: not terminal, or asked to do something (a retry, a new spec)."""
    status = body.get("status") or {}
    if status.get("phase") not in _TERMINAL:
        return True
    if REQUEST_ANNOTATION in (body.metadata.annotations or {}):
        return True
    return status.get("observedGeneration") != body.metadata.get("generation")


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
def poke(uid: str, memo: kopf.Memo, **_: Any) -> None:
    """Any change to a Migration wakes its daemon early (spec, annotations, deletion)."""
    event = memo.pokes.get(uid)
    if event is not None:
        event.set()


@kopf.on.event("apps", "v1", "deployments")
def wake_on_deployment(namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    """A Deployment changed (e.g. green became ready): wake the Migrations that use it now,
    instead of every waiting Migration polling the index."""
    for uid in memo.watchers.get((namespace or "", name), ()):
        event = memo.pokes.get(uid)
        if event is not None:
            event.set()


def _watch_deployments(memo: kopf.Memo, uid: str, keys: set[tuple[str, str]]) -> None:
    for key in keys:
        memo.watchers.setdefault(key, set()).add(uid)


def _unwatch_deployments(memo: kopf.Memo, uid: str, keys: set[tuple[str, str]]) -> None:
    for key in keys:
        uids = memo.watchers.get(key)
        if uids is not None:
            uids.discard(uid)
            if not uids:
                del memo.watchers[key]


@kopf.daemon(
    api.GROUP,
    api.VERSION,
    api.PLURAL,
    when=_active,
    cancellation_timeout=10.0,
    initial_delay=0,
)
async def drive(
    stopped: kopf.DaemonStopped,
    body: kopf.Body,
    namespace: str | None,
    name: str,
    uid: str,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    # Kopf passes each index by its function's name; it is not in Kopf's DaemonFn protocol.
    index: kopf.Index[tuple[str, str], DeploymentState] = kwargs["deployments"]
    jobs_index: kopf.Index[tuple[str, str], tuple[str, JobState]] = kwargs["hook_jobs"]
    context: Context = memo.context
    reconciler = Reconciler(context, namespace or "", name, uid)
    wake = memo.pokes.setdefault(uid, asyncio.Event())

    def lookup(ns: str, deployment: str) -> DeploymentState | None:
        store = index.get((ns, deployment))
        return next(iter(store), None) if store is not None else None

    def jobs(ns: str, migration: str) -> dict[str, JobState]:
        return dict(jobs_index.get((ns, migration), []))

    watched: set[tuple[str, str]] = set()
    try:
        while not stopped:
            spec = body.get("spec") or {}
            names = {
                str((spec.get(role) or {}).get("deployment") or "") for role in ("blue", "green")
            }
            wanted = {(namespace or "", n) for n in names if n}
            if wanted != watched:
                _unwatch_deployments(memo, uid, watched - wanted)
                _watch_deployments(memo, uid, wanted)
                watched = wanted
            wake.clear()
            try:
                outcome = await reconciler.reconcile(body, lookup, jobs)
                delay = outcome.requeue_after
            except KubeError as error:
                log.warning("reconcile failed", extra={"migration": name, "error": str(error)})
                metrics.count_reconcile_error("api")
                delay = 5.0
            # Never return on our own: Kopf would never respawn a daemon that exited by itself.
            # A terminal Migration stops matching `_active`, and Kopf stops this daemon then.
            await _sleep(stopped, wake, delay)
    finally:
        _unwatch_deployments(memo, uid, watched)
        memo.pokes.pop(uid, None)


async def _sleep(stopped: kopf.DaemonStopped, wake: asyncio.Event, delay: float | None) -> None:
    waiter = asyncio.ensure_future(wake.wait())
    stopper = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({waiter, stopper}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        stopper.cancel()


@kopf.on.delete(api.GROUP, api.VERSION, api.PLURAL)
async def restore_on_delete(
    body: kopf.Body, namespace: str | None, name: str, uid: str, memo: kopf.Memo, **_: Any
) -> None:
    """A Migration deleted mid-run: the core decides (core/deletion.py), the reconciler acts;
    the Migration goes only once that is done."""
    reconciler = Reconciler(memo.context, namespace or "", name, uid)
    try:
        await reconciler.on_delete(body)
    except (KubeError, TrafficRouterError) as error:
        raise kopf.TemporaryError(f"cannot restore traffic to blue: {error}", delay=5) from error
    metrics.forget_migration(namespace or "", name)
