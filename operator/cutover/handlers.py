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
from collections.abc import Mapping
from typing import Any

import kopf

from cutover import api, metrics
from cutover.reconciler import (
    MUTATE_ID,
    VALIDATE_ID,
    Autoscaler,
    AutoscalerLookup,
    ConfigurationError,
    Context,
    DeploymentState,
    JobState,
    Reconciler,
    TemplateObject,
    autoscaler,
    configure_scaleout,
    deployment_state,
    needs_attention,
    observe_job,
    review_mutate,
    review_validate,
    webhooks_enabled,
)

log = logging.getLogger("cutover.handlers")


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
    settings.watching.server_timeout = int(os.environ.get("CUTOVER_WATCH_TIMEOUT") or 300)
    try:
        shard = configure_scaleout(settings, os.environ)
    except ConfigurationError as error:
        raise kopf.PermanentError(str(error)) from None
    context = Context.from_environment()
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
    port = os.environ.get("CUTOVER_METRICS_PORT")
    if port:
        metrics.start_metrics_server(int(port))


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    context: Context = memo.context
    await context.stop_shard()
    await context.stop_webhooks()
    context.close()


@kopf.index("apps", "v1", "deployments")
def deployments(
    namespace: str | None,
    name: str,
    spec: kopf.Spec,
    status: kopf.Status,
    annotations: Mapping[str, str],
    **_: Any,
) -> dict[tuple[str, str], DeploymentState]:
    return {(namespace or "", name): deployment_state(spec, status, annotations)}


@kopf.index("batch", "v1", "jobs", labels={api.MIGRATION_LABEL: kopf.PRESENT})
def hook_jobs(
    namespace: str | None, name: str, labels: Mapping[str, str], status: kopf.Status, **_: Any
) -> dict[tuple[str, str], tuple[str, JobState]]:
    """Hook Jobs by (namespace, migration), from the watch: polling a Job costs nothing."""
    return {(namespace or "", labels[api.MIGRATION_LABEL]): (name, observe_job(status))}


@kopf.index(api.GROUP, api.VERSION, api.GateTemplateKind.gate_template.plural)
def gate_templates(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], TemplateObject]:
    """GateTemplates by (namespace, name): a run's preflight reads them from the watch."""
    return {(namespace or "", name): TemplateObject.from_body(body)}


@kopf.index(api.GROUP, api.VERSION, api.GateTemplateKind.cluster_gate_template.plural)
def cluster_gate_templates(name: str, body: kopf.Body, **_: Any) -> dict[str, TemplateObject]:
    return {name: TemplateObject.from_body(body)}


@kopf.index("autoscaling", "v2", "horizontalpodautoscalers")
def autoscalers(
    namespace: str | None, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], Autoscaler]:
    """HPAs by (namespace, the Deployment they scale), from the watch: finding one costs nothing.
    An HPA that scales no Deployment (any longer) is indexed under no key."""
    found = autoscaler(body)
    return {(namespace or "", found.deployment): found} if found is not None else {}


def _autoscaler_lookup(kwargs: dict[str, Any]) -> AutoscalerLookup:
    index: kopf.Index[tuple[str, str], Autoscaler] = kwargs["autoscalers"]

    def lookup(ns: str, deployment: str) -> list[Autoscaler]:
        return list(index.get((ns, deployment), []))

    return lookup


def _needs_daemon(body: kopf.Body, **_: Any) -> bool:
    return needs_attention(body)


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
def poke(uid: str, memo: kopf.Memo, **_: Any) -> None:
    """Any change to a Migration wakes its daemon early (spec, annotations, deletion)."""
    context: Context = memo.context
    context.wakeups.wake(uid)


@kopf.on.event("apps", "v1", "deployments")
def wake_on_deployment(namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    """A Deployment changed (e.g. green became ready): wake the Migrations that use it now."""
    context: Context = memo.context
    context.wakeups.wake_users_of((namespace or "", name))


@kopf.daemon(
    api.GROUP,
    api.VERSION,
    api.PLURAL,
    when=_needs_daemon,
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
    namespaced: kopf.Index[tuple[str, str], TemplateObject] = kwargs["gate_templates"]
    cluster: kopf.Index[str, TemplateObject] = kwargs["cluster_gate_templates"]

    def lookup(ns: str, deployment: str) -> DeploymentState | None:
        store = index.get((ns, deployment))
        return next(iter(store), None) if store is not None else None

    def jobs(ns: str, migration: str) -> dict[str, JobState]:
        return dict(jobs_index.get((ns, migration), []))

    def templates(kind: api.GateTemplateKind, ns: str, template: str) -> TemplateObject | None:
        store = namespaced.get((ns, template)) if kind.namespaced else cluster.get(template)
        return next(iter(store), None) if store is not None else None

    reconciler = Reconciler(memo.context, namespace or "", name, uid)
    await reconciler.drive(stopped, body, lookup, jobs, templates, _autoscaler_lookup(kwargs))


@kopf.on.delete(api.GROUP, api.VERSION, api.PLURAL)
async def restore_on_delete(
    body: kopf.Body, namespace: str | None, name: str, uid: str, memo: kopf.Memo, **kwargs: Any
) -> None:
    """A Migration deleted mid-run: the core decides (core/deletion.py), the reconciler acts;
    the Migration goes only once that is done."""
    reconciler = Reconciler(memo.context, namespace or "", name, uid)
    try:
        await reconciler.on_delete(body, _autoscaler_lookup(kwargs))
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
