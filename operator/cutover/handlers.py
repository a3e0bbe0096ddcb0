"""The Kopf layer: decorators only, delegating to the reconciler.

Run with ``kopf run -m cutover.handlers --all-namespaces`` (or ``--namespace NS``).

Each active Migration gets one async daemon that sleeps until the decision engine says something
is due (a gate check, the end of a pause) or until something it waits for changes. Terminal
Migrations match no daemon filter, so they cost no task at all; a retry request or a new spec
wakes them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

import kopf

from cutover import api, environment, kopfsettings, metrics
from cutover.heap import HeapTrimmer, shrink_tls_read_buffers, tune_collector
from cutover.reconciler import (
    MUTATE_ID,
    VALIDATE_ID,
    ConfigurationError,
    Context,
    Reconciler,
    configure_scaleout,
    needs_attention,
    review_mutate,
    review_validate,
    shed_settled_body,
    webhooks_enabled,
)

log = logging.getLogger("cutover.handlers")


class NoDiffBase(kopf.DiffBaseStorage):
    """Kopf keeps the last handled spec to tell creations, updates and resumes apart, for
    on.create/on.update/on.resume handlers; there are none here (the daemon reads the whole body
    on every wake-up, and on.delete is told by the deletion timestamp). Kopf's default would
    PATCH an annotation after each creation and each change of spec or annotations (a request
    such as ``cutover abort``): a write per run and per request that nothing reads. Every object
    reads as already handled instead, and nothing is stored.

    The essence is empty, not built: Kopf's build deep-copies the whole body (status included),
    and ran twice per event of every watched resource, Deployments and Jobs too, only to find no
    difference (≈ 8 % of the operator's CPU with 200 Migrations starting at once)."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return kopf.BodyEssence()

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


class QuietWatchHandlers(logging.Filter):
    """Drops Kopf's "Handler 'x' succeeded." for the watch handlers below. Kopf logs it at INFO
    for every call, and they are called for every event of every Deployment, Job and HPA the
    operator can see: a log line per pod movement in the cluster, and CPU spent formatting it.
    Their failures are still logged."""

    def __init__(self, handler_ids: Iterable[str]) -> None:
        super().__init__()
        self._lines = frozenset(f"Handler {handler_id!r} succeeded." for handler_id in handler_ids)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self._lines


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    shrink_tls_read_buffers()
    # A real API server prunes status fields the CRD does not declare: keep Kopf's own
    # bookkeeping in annotations instead of status.kopf.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="cutover.io")
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.persistence.finalizer = api.FINALIZER
    settings.posting.enabled = False  # our own Events, one per phase change, not per log line
    logging.getLogger("kopf.objects").addFilter(QuietWatchHandlers(_WATCH_HANDLERS))
    try:
        kopfsettings.apply_environment(settings, os.environ)
        shard = configure_scaleout(settings, os.environ)
        metrics_port = environment.port(os.environ, "CUTOVER_METRICS_PORT")
        context = Context.from_environment()
    except ConfigurationError as error:
        raise kopf.PermanentError(str(error)) from None
    # Installed for one namespace, the operator may not list namespaces; Kopf would retry that
    # listing for about a minute before it falls back to the named namespace. Ask once instead.
    cluster_wide = await context.may_list_namespaces()
    if not cluster_wide:
        settings.scanning.disabled = True
        log.info("namespaced install: namespace and CRD scanning off (CRDs must exist at start)")
    memo.context = context
    # Opt-in (CUTOVER_WEBHOOK_PORT): an operator that registers no webhook must serve none.
    server = await context.start_webhooks()
    if server is not None:
        settings.admission.server = server
    await context.start_shard(shard, cluster_wide)
    if metrics_port is not None:
        metrics.start_metrics_server(metrics_port)
    memo.heap_trimmer = HeapTrimmer.for_this_process()
    memo.heap_trimmer.start()
    tune_collector()


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    context: Context = memo.context
    trimmer: HeapTrimmer | None = memo.get("heap_trimmer")  # not when the start-up failed
    if trimmer is not None:
        await trimmer.stop()
    await context.stop_shard()
    await context.stop_webhooks()
    await context.close()


# What the daemons read of other objects comes from these watches, kept in the Context's stores
# (reconciler.Stores; not @kopf.index, whose start-up cost is quadratic: stores.py). Handlers
# are async so each update runs on the event loop, before anything that reads it.


@kopf.on.event("apps", "v1", "deployments")
async def deployments(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A Deployment changed (e.g. green became ready): the store first, then the Migrations that
    use it wake up and read it. An event that changes nothing they can see (most of the
    controller's status updates while pods start) wakes nobody: at 1,000 Migrations those
    wake-ups were most of the operator's CPU."""
    context: Context = memo.context
    changed = context.stores.deployments.apply(type, body)
    shed_stored_body(body)
    if changed:
        context.wakeups.wake_users_of((body.metadata.namespace or "", body.metadata.name or ""))


@kopf.on.event("batch", "v1", "jobs")
async def hook_jobs(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Hook Jobs (labelled with their Migration), from the watch: polling a Job costs nothing."""
    memo.context.stores.hook_jobs.apply(type, body)
    shed_stored_body(body)


@kopf.on.event(api.GROUP, api.VERSION, api.GateTemplateKind.gate_template.plural)
async def gate_templates(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """GateTemplates: a run's preflight reads them from the watch."""
    memo.context.stores.gate_templates.apply(type, body)


@kopf.on.event(api.GROUP, api.VERSION, api.GateTemplateKind.cluster_gate_template.plural)
async def cluster_gate_templates(
    type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    memo.context.stores.cluster_gate_templates.apply(type, body)


@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers")
async def autoscalers(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """HPAs, by the Deployment they scale: finding one costs nothing."""
    memo.context.stores.autoscalers.apply(type, body)
    shed_stored_body(body)


def _needs_daemon(body: kopf.Body, **_: Any) -> bool:
    return needs_attention(body)


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
async def poke(type: str | None, body: kopf.Body, uid: str, memo: kopf.Memo, **_: Any) -> None:
    """Any change to a Migration is recorded for the claims check of the others, and wakes its
    daemon early (spec, annotations, deletion)."""
    context: Context = memo.context
    shed_managed_fields(body)
    context.stores.migrations.apply(type, body)
    context.wakeups.wake(uid)
    # A running daemon may still read the body (its last reconcile under way).
    if not context.wakeups.driving(uid):
        shed_settled_body(body)


def shed_managed_fields(body: kopf.Body) -> None:
    """Kopf keeps a Migration's latest body for as long as its daemon runs, and any object's
    latest event while that object's worker waits for the next
    (``kopfsettings.WORKER_IDLE_SECONDS``; Kopf's default of 5 s kept hundreds of Deployments'
    at once while 1,000 runs stepped). Their managedFields are about half of such a body in
    memory (~21 of a Migration's 41 KiB), and nothing in this operator reads them.

    The body Kopf passes to a handler is a view of the very dict it keeps (the event its worker
    holds; ``DaemonsMemory.live_fresh_body``), so dropping the field here drops it there."""
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("managedFields", None)


def shed_stored_body(body: kopf.Body) -> None:
    """Once its store has taken what it needs, an event of a Deployment, a hook Job or an HPA
    keeps only its metadata, without managedFields. Kopf's worker for the object holds its
    latest event for seconds after the handler (``settings.queueing.idle_timeout``), so a
    watch's initial listing had every Deployment's whole body alive at once: started among
    2,000 Deployments, Python's allocator grew to twice its size and kept the pages it had
    taken, as a process keeps the highest it reached. Nothing reads the rest: this is the only
    handler of these kinds, and Kopf's own steps after it read the metadata only."""
    shed_managed_fields(body)
    for section in ("spec", "status"):
        content = body.get(section)
        if isinstance(content, dict):
            content.clear()


def _handler_id(fn: Callable[..., object]) -> str:
    """Kopf names a handler by its function's qualified name."""
    return fn.__qualname__


_WATCH_HANDLERS = tuple(
    _handler_id(fn)
    for fn in (deployments, hook_jobs, gate_templates, cluster_gate_templates, autoscalers, poke)
)


@kopf.daemon(
    api.GROUP,
    api.VERSION,
    api.PLURAL,
    when=_needs_daemon,
    # A daemon whose Migration turns terminal is told to stop, and ends after the reconcile
    # under way: without a backoff Kopf cancels it at once, which can land while the final
    # status PATCH is awaited, after the write but before what follows it (notifications).
    cancellation_backoff=10.0,
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
    context: Context = memo.context
    stores = context.stores
    reconciler = Reconciler(context, namespace or "", name, uid)
    await reconciler.drive(
        stopped,
        body,
        stores.deployment,
        stores.jobs,
        stores.template,
        stores.autoscalers_of,
        finalizer=api.FINALIZER,
    )
    # Stopped because the run settled: the body Kopf keeps no longer needs its spec or status.
    shed_settled_body(body)


@kopf.on.delete(api.GROUP, api.VERSION, api.PLURAL)
async def restore_on_delete(
    body: kopf.Body, namespace: str | None, name: str, uid: str, memo: kopf.Memo, **kwargs: Any
) -> None:
    """A Migration deleted mid-run: the core decides (core/deletion.py), the reconciler acts;
    the Migration goes only once that is done."""
    context: Context = memo.context
    reconciler = Reconciler(context, namespace or "", name, uid)
    try:
        await reconciler.on_delete(body, context.stores.autoscalers_of)
    except Reconciler.RETRYABLE as error:
        raise kopf.TemporaryError(f"cannot restore traffic to blue: {error}", delay=5) from error
    metrics.forget_migration(namespace or "", name)


# Registered only when this process serves webhooks: Kopf refuses to run admission handlers
# without a server, and most operators (e.g. the tests') must not answer for the cluster.
if webhooks_enabled():

    @kopf.on.validate(api.GROUP, api.VERSION, api.PLURAL, id=VALIDATE_ID)
    def validate(userinfo: kopf.UserInfo, body: kopf.Body, **kwargs: Any) -> None:
        """A bad spec or a forged author annotation is refused at `kubectl apply`."""
        # operation and old are Kopf kwargs its WebhookFn protocol does not list.
        review_validate(kwargs["operation"], userinfo, kwargs.get("old"), body)

    @kopf.on.mutate(api.GROUP, api.VERSION, api.PLURAL, id=MUTATE_ID)
    def mutate(userinfo: kopf.UserInfo, body: kopf.Body, patch: kopf.Patch, **kwargs: Any) -> None:
        """Records who created or last changed the spec (cutover.io/author)."""
        review_mutate(kwargs["operation"], userinfo, kwargs.get("old"), body, patch)
