"""Observe -> decide -> act -> record, for one Migration.

The reconciler is the imperative shell around ``core.machine.decide``. It reads what it needs
(Deployments from a watch-fed store, the router's weight only when its memory could be
stale), asks ``decide``, performs the actions through the router, and writes the status once,
through the ``/status`` subresource, only when it changed. It keeps no state of its own between
wake-ups except a flag saying whether it has read the cluster since it (re)started.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING, Any, assert_never

from cutover import api, environment, metrics

if TYPE_CHECKING:
    import kopf

    from cutover.webcerts import Webhooks
from cutover.admission import (
    MUTATE_ID,
    VALIDATE_ID,
    review_mutate,
    review_validate,
)
from cutover.admission import Settings as WebhookSettings
from cutover.admission import enabled as webhooks_enabled
from cutover.api import (
    REQUEST_ANNOTATION,
    TERMINAL_PHASES,
    HookState,
    MigrationSpec,
    MigrationStatus,
    Notifier,
    Phase,
    Shift,
    SpecInvalid,
    StatusCorrupt,
)
from cutover.authority import Rights, enforced
from cutover.autoscalers import Autoscalers, autoscaler
from cutover.core import activity, claims, deletion, notifications
from cutover.core import templates as gate_templates
from cutover.core.actions import (
    Action,
    CreatePreview,
    Decision,
    DeletePreview,
    EmitEvent,
    HoldBlue,
    PrepareGreen,
    RestoreBlue,
    RetireBlue,
    RunHook,
    SetMirror,
    SetWeight,
    StopJob,
)
from cutover.core.autoscaling import Autoscaler
from cutover.core.gating import gates_due
from cutover.core.machine import decide
from cutover.core.observations import (
    DeploymentState,
    JobState,
    Observations,
    Request,
    RequestVerb,
    StepWrite,
)
from cutover.core.templates import TemplateObject
from cutover.core.transitions import Reason
from cutover.environment import ConfigurationError
from cutover.eventposts import EventPoster
from cutover.gatecheck import GateChecker, summarize
from cutover.hookjobs import HookJobs, observe_job, with_log_tails
from cutover.kube import MAX_IN_FLIGHT, Kube, KubeError
from cutover.notify import Sender, SenderSettings
from cutover.previews import Previews
from cutover.routers import router_for
from cutover.routers.base import (
    NotReady,
    Target,
    TrafficRouter,
    TrafficRouterError,
    original_replicas,
    own_annotations,
)
from cutover.scaleout import LabelSweeper, Shard
from cutover.scaleout import configure as configure_scaleout
from cutover.stores import Fetch, Lister, Store
from cutover.wakeups import Stopped, Wakeups, sleep, wake_on_stop

# What the Kopf layer uses of the shell: it imports nothing else of the package but api/metrics.
__all__ = [
    "MUTATE_ID",
    "VALIDATE_ID",
    "Autoscaler",
    "AutoscalerLookup",
    "ConfigurationError",
    "Context",
    "DeploymentState",
    "JobState",
    "Reconciler",
    "TemplateObject",
    "autoscaler",
    "configure_scaleout",
    "deployment_state",
    "needs_attention",
    "observe_job",
    "review_mutate",
    "review_validate",
    "webhooks_enabled",
]

log = logging.getLogger("cutover.reconciler")
Clock = Callable[[], datetime]
DeploymentLookup = Callable[[str, str], DeploymentState | None]
JobLookup = Callable[[str, str], Mapping[str, JobState]]  # (namespace, migration) -> jobs
# (kind, namespace ("" for a ClusterGateTemplate), name) -> the template in the watch-fed store.
TemplateLookup = Callable[[api.GateTemplateKind, str, str], TemplateObject | None]
# (namespace, deployment) -> the HPAs scaling it, from the watch-fed store.
AutoscalerLookup = Callable[[str, str], Sequence[Autoscaler]]


def _no_autoscalers(_namespace: str, _deployment: str) -> Sequence[Autoscaler]:
    return ()


# Decide/act rounds per wake-up, beyond one per step: the start (green prepared), the end (blue
# retired, then confirmed) and a spare. Weights with nothing to wait for between them (no pause,
# no gate, green ready) move a step a round. A wake-up that stopped sooner left the rest to the
# next one (its own status write's watch event), which retired blue a second time (reading the
# route and blue) when the rounds had run out just after the first.
_ROUNDS_BEYOND_STEPS = 4
# Rounds ran out with moves not yet confirmed (a decision that does not settle): go on soon, not
# after a safety net, without looping hot.
_ROUNDS_RAN_OUT_RETRY = 1.0
# Status fields that never justify a write alone: when the weight was seen in place costs one
# write per step otherwise, and a restart that loses it only restarts green's deadline clock.
_RIDES_ALONG = frozenset({"weightAcknowledgedAt"})
# Moves that need no intent written first: they move no traffic back to an earlier weight, and
# a restart after them finds a status that decides them again (repeated, they are no-ops). Blue
# is held or retired only once the last step's weight is recorded; the final status follows.
_REPEATED_FROM_STATUS = (HoldBlue, RetireBlue)
_ERROR_RETRY = 5.0
# Consecutive failed reconciles back off to this: with the API server gone, 1,000 daemons
# retrying every 5 s kept ~0.4 core busy on connection errors alone.
_RETRY_MAX = 60.0
# A safety net, as core/steps.py's readiness poll: the Deployment's change wakes us first.
_NOT_READY_RETRY = 30.0
# Also a safety net: the event of Kopf's finalizer PATCH wakes a new run's daemon first.
_FINALIZER_RECHECK = 5.0
# At a graceful stop, how long the Events still queued may take to be sent.
_EVENTS_AT_EXIT_SECONDS = 5.0


class WriteGate(StrEnum):
    """What a reconcile's wait before its first write (``Reconciler.drive``'s finalizer) found."""

    open = "Open"  # writable at once: the reads' time still stands
    opened = "Opened"  # after a wait: decide on the time it ended
    stopped = "Stopped"  # the daemon must end: write nothing


WriteGateWait = Callable[[], Awaitable[WriteGate]]


def _carries(body: Mapping[str, Any], finalizer: str) -> bool:
    return finalizer in ((body.get("metadata") or {}).get("finalizers") or ())


def utcnow() -> datetime:
    return datetime.now(UTC)


def _gave_up_on_green(before: MigrationStatus, after: MigrationStatus) -> bool:
    """The decision rolls back because green missed its progress deadline."""
    return (
        after.phase is Phase.rolling_back
        and before.phase is not Phase.rolling_back
        and after.reason == Reason.progress_deadline_exceeded
    )


def _retry_delay(failures: int) -> float:
    """After ``failures`` failed reconciles in a row: 5 s, doubling up to a minute."""
    return min(_ERROR_RETRY * 2.0 ** (failures - 1), _RETRY_MAX)


# The status fields ``needs_attention`` reads: nothing else of a status decides whether a
# Migration needs a daemon, so a settled body may be shed down to them (``shed_settled_body``).
_ATTENTION_FIELDS = ("phase", "observedGeneration", "rollbackWindowEndsAt", "preview")


def needs_attention(body: Mapping[str, Any]) -> bool:
    """Whether a Migration needs a daemon now (the rule: core/activity.py)."""
    whole = body.get("status") or {}
    status = {key: whole[key] for key in _ATTENTION_FIELDS if key in whole}
    metadata = body.get("metadata") or {}
    try:
        phase: Phase | None = Phase(str(status.get("phase")))
    except ValueError:
        phase = None
    return activity.needs_attention(
        phase,
        status.get("observedGeneration"),
        int(metadata.get("generation") or 1),
        REQUEST_ANNOTATION in (metadata.get("annotations") or {}),
        window_open=bool(status.get("rollbackWindowEndsAt")),
        preview_left=_preview_left(status.get("preview")),
    )


def shed_settled_body(body: Mapping[str, Any]) -> bool:
    """Drops, in place, a settled Migration's spec and all of its status but what
    ``needs_attention`` reads. True when it did.

    Kopf keeps the latest body of every Migration for as long as the Migration exists (kopf
    1.45: ``DaemonsMemory.live_fresh_body``, kept for any object of a kind with a daemon, and
    released only for a daemon that exited on its own, which Kopf would never start again). A
    finished run's status (its conditions, the history of every step) and its spec (gates,
    hooks with their Job templates) are most of that body, held for every finished Migration
    the cluster keeps (GitOps keeps them all). Nothing reads them there: Kopf replaces the body
    with each new event before any handler or daemon filter sees it, and the daemon filter's
    answer is the same on what is left. Not while the Migration is being deleted: the deletion
    handler reads the body Kopf keeps."""
    status = body.get("status")
    metadata = body.get("metadata") or {}
    if not isinstance(status, dict) or metadata.get("deletionTimestamp") or needs_attention(body):
        return False
    for key in [key for key in status if key not in _ATTENTION_FIELDS]:
        del status[key]
    spec = body.get("spec")
    if isinstance(spec, dict):
        spec.clear()
    return True


def _preview_left(preview: Any) -> bool:
    """A preview Service that was created (or may have been) and is not deleted yet."""
    return isinstance(preview, Mapping) and not preview.get("serviceDeleted")


def deployment_state(
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    annotations: Mapping[str, str],
    generation: int = 0,
) -> DeploymentState:
    """A Deployment as ``decide`` and the routers see it, from the watch: waiting for pods costs
    no request, and a router writes to the spec of ``generation`` without reading first."""
    template = spec.get("template") or {}
    return DeploymentState(
        replicas=int(spec.get("replicas", 1) or 0),
        available=int(status.get("availableReplicas") or 0),
        original_replicas=original_replicas(annotations),
        generation=generation,
        annotations=own_annotations(annotations),
        pod_labels=dict((template.get("metadata") or {}).get("labels") or {}),
        selector=copy.deepcopy(dict(spec.get("selector") or {})),
    )


_OBJECT_NAME = re.compile(api.OBJECT_NAME_PATTERN)


def _name_of(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _deployment_entry(obj: Mapping[str, Any]) -> dict[tuple[str, str], DeploymentState]:
    meta = obj.get("metadata") or {}
    state = deployment_state(
        obj.get("spec") or {},
        obj.get("status") or {},
        meta.get("annotations") or {},
        int(meta.get("generation") or 0),
    )
    return {_name_of(obj): state}


def _hook_job_entry(obj: Mapping[str, Any]) -> dict[tuple[str, str], tuple[str, JobState]]:
    """Hook Jobs by (namespace, migration): polling a Job costs nothing."""
    namespace, name = _name_of(obj)
    migration = ((obj.get("metadata") or {}).get("labels") or {}).get(api.MIGRATION_LABEL)
    if migration is None:
        return {}
    return {(namespace, str(migration)): (name, observe_job(obj.get("status") or {}))}


def _template_entry(obj: Mapping[str, Any]) -> dict[tuple[str, str], TemplateObject]:
    return {_name_of(obj): TemplateObject.from_body(obj)}


def _autoscaler_entry(obj: Mapping[str, Any]) -> dict[tuple[str, str], Autoscaler]:
    """HPAs by (namespace, the Deployment they scale); one that scales no Deployment, under none."""
    found = autoscaler(obj)
    return {(_name_of(obj)[0], found.deployment): found} if found is not None else {}


def _migration_entry(obj: Mapping[str, Any]) -> dict[str, claims.Claimant]:
    return {_name_of(obj)[0]: claims.claimant(obj)}


class Stores:
    """What the reconciler reads of other objects, from Kopf's watches (stores.py says why not
    Kopf's indexes). The ``@kopf.on.event`` handlers feed them; ``prime`` makes what a run reads
    complete first. The lookups are the reconciler's ``*Lookup`` callables."""

    def __init__(self, kube: Kube) -> None:
        self._kube = kube
        # The shard's selector when shards split the Migrations: the store lists what the
        # Migration watch shows, no more (what it does not show, it would never update).
        self.migration_selector: str | None = None

        def lister(group: str, version: str, plural: str, selector: str | None = None) -> Lister:
            async def listed(namespace: str | None) -> list[dict[str, Any]]:
                return await kube.list(group, version, plural, namespace, label_selector=selector)

            return listed

        self.deployments = Store(_deployment_entry, lister("apps", "v1", "deployments"))
        self.hook_jobs = Store(_hook_job_entry, lister("batch", "v1", "jobs", api.MIGRATION_LABEL))
        kinds = api.GateTemplateKind
        self.gate_templates = Store(
            _template_entry, lister(api.GROUP, api.VERSION, kinds.gate_template.plural)
        )
        self.cluster_gate_templates = Store(
            lambda obj: {_name_of(obj)[1]: TemplateObject.from_body(obj)},
            lister(api.GROUP, api.VERSION, kinds.cluster_gate_template.plural),
        )
        self.autoscalers = Store(
            _autoscaler_entry, lister("autoscaling", "v2", "horizontalpodautoscalers")
        )
        self.migrations = Store(_migration_entry, self._list_migrations)

    async def _list_migrations(self, namespace: str | None) -> list[dict[str, Any]]:
        return await self._kube.list(
            api.GROUP, api.VERSION, api.PLURAL, namespace, label_selector=self.migration_selector
        )

    async def prime(self, namespace: str, deployments: Iterable[str]) -> None:
        """Before a reconcile: blue and green known (a miss is one GET: usually the watch has
        delivered them, so this costs nothing) and the namespace's HPAs complete (a miss there
        has no key to GET by). The other lookups need nothing: a hook Job not seen yet is
        created again, a no-op (core/hooks.py), and a gate template not seen yet is read
        (``Reconciler._templates``)."""
        for name in deployments:
            if not _OBJECT_NAME.match(name):
                continue  # no such object can exist: the spec is invalid and says so
            await self.deployments.ensure((namespace, name), self._fetch(namespace, name))
        await self.autoscalers.prime(namespace)

    def deployment(self, namespace: str, name: str) -> DeploymentState | None:
        return self.deployments.first((namespace, name))

    async def reread_deployment(self, namespace: str, name: str) -> None:
        await self.deployments.refresh((namespace, name), self._fetch(namespace, name))

    def _fetch(self, namespace: str, name: str) -> Fetch:
        """One Deployment's GET, for the store to ask when the watch cannot answer."""
        return partial(self._kube.get, "apps", "v1", "deployments", namespace, name)

    def jobs(self, namespace: str, migration: str) -> dict[str, JobState]:
        return dict(self.hook_jobs.values((namespace, migration)))

    def template(
        self, kind: api.GateTemplateKind, namespace: str, name: str
    ) -> TemplateObject | None:
        if kind.namespaced:
            return self.gate_templates.first((namespace, name))
        return self.cluster_gate_templates.first(name)

    def autoscalers_of(self, namespace: str, deployment: str) -> list[Autoscaler]:
        return self.autoscalers.values((namespace, deployment))

    async def claimants(self, namespace: str) -> list[claims.Claimant]:
        """The Migrations of ``namespace``: a LIST once per process, then the watch's."""
        await self.migrations.prime(namespace)
        return self.migrations.values(namespace)


def parse_request(annotations: Mapping[str, str]) -> Request | None:
    """``cutover.io/request: "<verb>:<id>"``, as ``cutover promote`` and friends write it."""
    raw = annotations.get(REQUEST_ANNOTATION)
    if not raw:
        return None
    verb, _, request_id = raw.partition(":")
    try:
        return Request(id=request_id or raw, verb=RequestVerb(verb))
    except ValueError:
        return None


def _versions(
    target: Target, blue: api.DeploymentRef | None, green: api.DeploymentRef | None
) -> Target:
    """``target`` acting on the named versions (the rollback window's, once the spec names the
    next release's)."""
    spec = target.spec
    wanted = {"blue": blue or spec.blue, "green": green or spec.green}
    if wanted == {"blue": spec.blue, "green": spec.green}:
        return target
    return replace(target, spec=spec.model_copy(update=wanted))


@dataclass
class Context:
    """What every reconciler shares: clients and the clock."""

    kube: Kube
    gates: GateChecker
    clock: Clock = utcnow
    routers: dict[str, TrafficRouter] = field(default_factory=dict)
    wakeups: Wakeups = field(default_factory=Wakeups)
    # Checks hooks and gate Secrets against the author's rights (None: not checked).
    rights: Rights | None = None
    webhooks: Webhooks | None = None
    # CUTOVER_WEBHOOK_*, read with the rest of the environment (None: no webhooks served).
    webhook_settings: WebhookSettings | None = None
    label_sweeper: LabelSweeper | None = None
    # Sends what status writes make happen to the Migration's and the operator's notifiers.
    notify: Sender | None = None
    stores: Stores = field(init=False)
    events: EventPoster = field(init=False)

    def __post_init__(self) -> None:
        self.stores = Stores(self.kube)
        self.events = EventPoster(self._emit_event)

    # Looks ``kube`` up at each Event, not once: the client is the Context's field to replace.
    async def _emit_event(
        self, involved: Mapping[str, Any], type_: str, reason: str, message: str
    ) -> None:
        await self.kube.emit_event(involved, type_, reason, message)

    @classmethod
    def from_environment(cls) -> Context:
        """Clients for the cluster the operator runs in, with the rate limits it is given."""
        env = os.environ
        # The chart's defaults (values.yaml says how they were sized). Every setting is read
        # before any client is made, so a malformed one stops the start with nothing half-built.
        qps = environment.number(env, "CUTOVER_API_QPS", 100.0, unit="requests per second")
        burst = environment.whole_number(env, "CUTOVER_API_BURST", 200, minimum=1)
        in_flight = environment.whole_number(
            env, "CUTOVER_API_CONCURRENCY", MAX_IN_FLIGHT, minimum=1
        )
        enforce = enforced(env)
        notify = SenderSettings.from_environment(env)
        webhook_settings = WebhookSettings.from_environment(env)
        kube = Kube.from_environment(
            qps=qps, burst=burst, max_in_flight=in_flight, on_request=metrics.count_api_request
        )
        gates = GateChecker(kube)
        return cls(
            kube=kube,
            gates=gates,
            rights=Rights(kube, enforce=enforce),
            # The gates' outbound policy: notifications leave from the same network position.
            notify=Sender.from_settings(kube, gates.egress, notify),
            webhook_settings=webhook_settings,
        )

    async def may_list_namespaces(self) -> bool:
        """Installed for one namespace, the operator may not list namespaces (unknown: yes)."""
        try:
            return await self.kube.allowed("list", "", "namespaces")
        except KubeError as error:
            log.warning("access review failed", extra={"error": str(error)})
            return True

    async def start_webhooks(self) -> kopf.WebhookServer | None:
        """The admission webhook server when CUTOVER_WEBHOOK_PORT asks for one, its certificate
        issued and its CA published; None otherwise."""
        if self.webhook_settings is None:
            return None
        from cutover.webcerts import Webhooks  # its cryptography only where webhooks are served

        self.webhooks = Webhooks(self.webhook_settings, self.kube)
        return await self.webhooks.start()

    async def stop_webhooks(self) -> None:
        if self.webhooks is not None:
            await self.webhooks.stop()

    async def start_shard(self, shard: Shard | None, may_list_namespaces: bool) -> None:
        """Shard 0 labels the Migrations no webhook labelled (none would see them otherwise)."""
        if shard is not None:
            self.stores.migration_selector = shard.selector
        if shard is None or shard.index != 0 or self.webhooks is not None:
            return
        if not may_list_namespaces:
            log.warning("shards in a one-namespace install: unlabelled Migrations stay unseen")
            return
        self.label_sweeper = LabelSweeper(self.kube, shard, namespace=None)
        self.label_sweeper.start()

    async def stop_shard(self) -> None:
        if self.label_sweeper is not None:
            await self.label_sweeper.stop()

    async def close(self) -> None:
        # Events the last reconciles posted get a moment to reach the API server, before the
        # client they go through is closed.
        await self.events.join(timeout=_EVENTS_AT_EXIT_SECONDS)
        await self.events.close()
        if self.notify is not None:
            self.notify.close()
        self.gates.close()
        await self.kube.close()

    def router(self, spec: MigrationSpec) -> TrafficRouter:
        kind = spec.traffic.router.value
        if kind not in self.routers:
            self.routers[kind] = router_for(spec.traffic.router, self.kube)
        return self.routers[kind]


@dataclass
class Outcome:
    status: MigrationStatus
    requeue_after: float | None
    wrote_status: bool


class Reconciler:
    # Failures worth retrying: the API server or a router object said no, for now.
    RETRYABLE = (KubeError, TrafficRouterError)

    def __init__(self, ctx: Context, namespace: str, name: str, uid: str) -> None:
        self.ctx = ctx
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self._cluster_read = False  # has the router's weight been read since (re)start?
        self._autoscalers: AutoscalerLookup = _no_autoscalers
        # The status this reconciler last wrote. The watch may deliver our own write after the
        # next wake-up; deciding from the older status in the body would start a step twice.
        # Only the operator writes status, so what we wrote is never older than the body's.
        self._written: dict[str, Any] | None = None
        self._notifiers: list[Notifier] = []  # the spec's that may be used, as last parsed
        self._notifiers_allowed: tuple[int, str] | None = None  # (generation, author) checked
        # The request annotation this reconciler removed: the watch may deliver a body that
        # still carries it after the removal, and removing it again would be a refused write.
        self._cleared: str | None = None
        # When the API server acknowledged this process's status write that started the
        # current step: the pause it starts counts from then (``Observations.step_write``).
        self._step_write: StepWrite | None = None

    async def drive(
        self,
        stopped: Stopped,
        body: Mapping[str, Any],
        deployments: DeploymentLookup,
        jobs: JobLookup,
        templates: TemplateLookup | None = None,
        autoscalers: AutoscalerLookup | None = None,
        *,
        finalizer: str | None = None,
    ) -> None:
        """Reconciles whenever something this Migration waits for happens, until Kopf stops it.

        Never returns on its own: Kopf would never respawn a daemon that exited by itself. A
        terminal Migration stops needing attention, and Kopf stops this daemon then.

        ``finalizer``: nothing is written until the Migration carries it. Kopf spawns the daemon
        in the same cycle as it sends its finalizer; a Migration deleted before that lands is
        gone at once, and no deletion handler would put back traffic a first step had moved.
        The start's reads (its checks, the route) go ahead meanwhile: at 1,000 Migrations
        created together the finalizer's round trip took seconds.
        """
        wakeups = self.ctx.wakeups
        wake = wakeups.event(self.uid)
        failures = 0  # consecutive crashed reconciles, for their back-off
        stop_watch = asyncio.ensure_future(wake_on_stop(stopped, wake))

        async def until_writable() -> WriteGate:
            waited = False
            # The Migration's next event (Kopf's finalizer PATCH) wakes us: body is Kopf's
            # live copy, so a check after clearing the wake-up misses none.
            while finalizer is not None and not _carries(body, finalizer) and not stopped:
                wake.clear()
                if not _carries(body, finalizer):
                    log.debug("waiting for the finalizer", extra=self._log({}))
                    waited = True
                    await sleep(stopped, wake, _FINALIZER_RECHECK)
            if stopped:
                return WriteGate.stopped
            return WriteGate.opened if waited else WriteGate.open

        try:
            while not stopped:
                spec = body.get("spec") or {}
                names = {
                    str((spec.get(role) or {}).get("deployment") or "")
                    for role in ("blue", "green")
                }
                wakeups.watch(self.uid, {(self.namespace, n) for n in names if n})
                wake.clear()
                try:
                    await self.ctx.stores.prime(self.namespace, names)
                    # Only the delay is kept: the parsed status would stay alive through the
                    # sleep, ~20 KiB for each Migration the process carries.
                    delay = (
                        await self.reconcile(
                            body,
                            deployments,
                            jobs,
                            templates,
                            autoscalers,
                            until_writable=until_writable,
                        )
                    ).requeue_after
                    failures = 0
                except KubeError as error:
                    log.warning("reconcile failed", extra=self._log({"error": str(error)}))
                    metrics.count_reconcile_error("api")
                    failures += 1
                    delay = _retry_delay(failures)
                except Exception:
                    # A defect, not the cluster: said loudly, and tried again soon. Left to Kopf,
                    # the daemon would wait its default back-off (60 s) with the run stalled.
                    log.exception("reconcile crashed", extra=self._log({}))
                    metrics.count_reconcile_error("internal")
                    failures += 1
                    delay = _retry_delay(failures)
                await sleep(stopped, wake, delay)
        finally:
            stop_watch.cancel()
            wakeups.forget(self.uid)

    async def reconcile(
        self,
        body: Mapping[str, Any],
        deployments: DeploymentLookup,
        jobs: JobLookup | None = None,
        templates: TemplateLookup | None = None,
        autoscalers: AutoscalerLookup | None = None,
        *,
        until_writable: WriteGateWait | None = None,
    ) -> Outcome:
        """``until_writable``: awaited after the reads, before the first write."""
        self._autoscalers = autoscalers or _no_autoscalers
        metadata = body.get("metadata", {})
        generation = int(metadata.get("generation") or 1)
        observed = {k: v for k, v in (body.get("status") or {}).items()}
        if self._written is not None and self._written == observed:
            # The watch has delivered the last write: the body says the same from now on, and
            # the copy would only be held through the sleep (~16 KiB per Migration).
            self._written = None
        raw_status = self._written or observed
        try:
            status = api.parse_status(raw_status)
        except StatusCorrupt as error:
            log.error("status cannot be read", extra=self._log({"problems": error.problems}))
            return Outcome(MigrationStatus(), None, False)
        try:
            spec: MigrationSpec | SpecInvalid = api.parse_spec(body.get("spec") or {})
        except SpecInvalid as error:
            spec = error
        # An invalid spec still tells the operator's default notifiers that the run failed.
        self._notifiers = (
            await self._allowed_notifiers(spec, generation, metadata.get("annotations") or {})
            if isinstance(spec, MigrationSpec)
            else []
        )
        request = parse_request(metadata.get("annotations") or {})
        now = self.ctx.clock()

        starting = activity.may_start(status, generation, request)
        prepared = status
        template_problems: tuple[str, ...] = ()
        if isinstance(spec, MigrationSpec):
            if starting:
                # This run's gates: resolved now, recorded with the decision, fixed for the run
                # (a spec without templated gates drops the last run's records).
                found = await self._templates(spec, templates)
                records, problems = gate_templates.resolve_all(spec, found, self.namespace)
                if records != status.resolved_gates:
                    prepared = status.model_copy(deep=True)
                    prepared.resolved_gates = records
                template_problems = tuple(problems)
            spec = self._with_resolved_gates(spec, prepared)

        if isinstance(spec, SpecInvalid):
            return await self._record_invalid(
                body, status, spec, generation, request, now, until_writable
            )

        try:
            router = self.ctx.router(spec)
        except (TrafficRouterError, ValueError) as error:
            invalid = SpecInvalid([f"spec.traffic.router: {error}"])
            return await self._record_invalid(
                body, status, invalid, generation, request, now, until_writable
            )
        # The routers plan their writes from the same watch-fed index (no read before a write).
        target = Target(self.namespace, self.name, self.uid, spec, deployments=deployments)

        preflight: tuple[str, ...] = ()
        forbidden: tuple[str, ...] = ()
        scalers: tuple[Autoscaler, ...] = ()
        if starting and not template_problems:
            annotations = metadata.get("annotations") or {}
            forbidden, preflight = await self._preflight(router, target, annotations)
            scalers = tuple(
                hpa
                for ref in (spec.blue, spec.green)
                for hpa in self._autoscalers(self.namespace, ref.deployment)
            )

        router_weight: int | None = None
        router_mirror: int | None = None
        if not self._cluster_read and not raw_status and request is None:
            # Never started: there is no run to resume, and the first step sets the weight
            # whatever the cluster says, so reading the route first only delays that write
            # (and costs two GETs per Migration when many are created at once).
            self._cluster_read = True
        if not self._cluster_read and status.phase not in TERMINAL_PHASES:
            router_weight = await self._read_weight(router, target)
            self._cluster_read = router_weight is not None
            if any(step.set_mirror is not None for step in spec.steps):
                router_mirror = await self._read_mirror(router, target)

        due = gates_due(spec, status, now)
        readings = await self.ctx.gates.measure(
            spec, self.namespace, self.name, due, now, status=status, uid=self.uid
        )
        if readings:
            log.info("gates measured", extra=self._log({"readings": summarize(readings)}))

        running = {r.job for r in status.hooks if r.state is HookState.running}
        observed_jobs = jobs(self.namespace, self.name) if jobs else {}
        job_states = await with_log_tails(self.ctx.kube, self.namespace, observed_jobs, running)

        def observe(
            weight: int | None, acted: tuple[Action, ...] = (), mirror: int | None = None
        ) -> Observations:
            return Observations(
                generation=generation,
                blue=deployments(self.namespace, spec.blue.deployment),
                green=deployments(self.namespace, spec.green.deployment),
                router_weight=weight,
                router_mirror=mirror,
                readings=readings,
                request=request,
                preflight_errors=preflight,
                autoscalers=scalers,
                forbidden=forbidden,
                template_problems=template_problems,
                acted=acted,
                jobs=job_states,
                # Every decision so far was carried out: one that failed ended the wake-up.
                jobs_created=frozenset(
                    a.job for d in decisions for a in d.actions if isinstance(a, RunHook)
                ),
                migration=self.name,
                step_write=self._step_write,
            )

        writable_at = await self._writable(body, generation, request, now, until_writable)
        if writable_at is None:
            return Outcome(status, 0.0, False)
        now = writable_at
        decisions: list[Decision] = []
        current, written = prepared, status
        confirmed = False  # green read again before a progress-deadline rollback
        observations = observe(router_weight, mirror=router_mirror)
        for round_ in range(len(spec.steps) + _ROUNDS_BEYOND_STEPS):
            # Each round after the first follows writes that took time: a pause or deadline
            # started now must not start at the wake-up's instant (it would end early).
            decision = decide(spec, current, observations, now if round_ == 0 else self.ctx.clock())
            if _gave_up_on_green(current, decision.status) and not confirmed:
                # Rolling back a green that may be healthy, on a copy an overloaded watch may
                # not have updated: read green once and decide again on what is really there.
                confirmed = True
                await self.ctx.stores.reread_deployment(self.namespace, spec.green.deployment)
                observations = replace(
                    observations, green=deployments(self.namespace, spec.green.deployment)
                )
                decision = decide(spec, current, observations, self.ctx.clock())
            decisions.append(decision)
            current = decision.status
            moves = [a for a in decision.actions if not isinstance(a, EmitEvent)]
            if not moves:
                break
            # Intent first: a crash after the router write must not find a status that asks
            # for the previous step's weight (that would move traffic backwards on restart).
            # Moves the status already written leads to again need no intent of their own
            # (unless the decision announces something: a retry would announce it twice).
            announces = len(moves) < len(decision.actions)
            if announces or not all(isinstance(m, _REPEATED_FROM_STATUS) for m in moves):
                await self._write_status(body, written, current)
                written = current
            try:
                weight = await self._act(router, target, moves)
            except NotReady as waiting:
                # The safe half of the move is done and the rest waits for pods: expected, so
                # no error message, Event or status write; a Deployment change wakes us.
                log.info("waiting for pods", extra=self._log({"why": str(waiting)}))
                self._cluster_read = False
                outcome = await self._record(body, status, written, decisions, final=written)
                return Outcome(written, _NOT_READY_RETRY, outcome.wrote_status)
            except (KubeError, TrafficRouterError) as error:
                return await self._action_failed(body, status, written, decisions, error)
            # Readings and the request are consumed: the next round only confirms the writes.
            readings = {}
            observations = observe(weight, tuple(moves))
        else:
            outcome = await self._record(body, status, written, decisions)
            log.warning("rounds ran out", extra=self._log({"rounds": len(decisions)}))
            return replace(outcome, requeue_after=_ROUNDS_RAN_OUT_RETRY)
        return await self._record(body, status, written, decisions)

    async def _record_invalid(
        self,
        body: Mapping[str, Any],
        status: MigrationStatus,
        invalid: SpecInvalid,
        generation: int,
        request: Request | None,
        now: datetime,
        until_writable: WriteGateWait | None,
    ) -> Outcome:
        """A spec the run cannot go on with, decided on and recorded once this reconcile may
        write."""
        writable_at = await self._writable(body, generation, request, now, until_writable)
        if writable_at is None:
            return Outcome(status, 0.0, False)
        decision = decide(invalid, status, Observations(generation=generation), writable_at)
        return await self._record(body, status, status, [decision])

    async def _writable(
        self,
        body: Mapping[str, Any],
        generation: int,
        request: Request | None,
        now: datetime,
        until_writable: WriteGateWait | None,
    ) -> datetime | None:
        """The time to decide at, once this reconcile may write; None: write nothing, either
        because the daemon must end or because the spec or the manual request changed while it
        waited (what was read is decided again, with the change)."""
        gate = WriteGate.open if until_writable is None else await until_writable()
        if gate is WriteGate.stopped:
            return None
        if gate is WriteGate.open:
            return now
        metadata = body.get("metadata") or {}
        changed = int(metadata.get("generation") or 1) != generation or (
            parse_request(metadata.get("annotations") or {}) != request
        )
        return None if changed else self.ctx.clock()

    async def on_delete(
        self, body: Mapping[str, Any], autoscalers: AutoscalerLookup | None = None
    ) -> None:
        """Acts on what the core says a deletion does (core/deletion.py). KubeError and
        TrafficRouterError propagate: the caller retries before the Migration may go."""
        await self.ctx.stores.prime(self.namespace, ())
        self._autoscalers = autoscalers or _no_autoscalers
        try:
            status = api.parse_status(body.get("status") or {})
        except StatusCorrupt as error:
            log.error("status cannot be read", extra=self._log({"problems": error.problems}))
            return
        try:
            spec: MigrationSpec | SpecInvalid = api.parse_spec(body.get("spec") or {})
        except SpecInvalid as error:
            spec = error
        actions = deletion.on_delete(spec, status)
        moves = [a for a in actions if not isinstance(a, EmitEvent)]
        if moves and isinstance(spec, MigrationSpec):
            target = Target(self.namespace, self.name, self.uid, spec)
            await self._act(self.ctx.router(spec), target, moves)
        involved = self._involved(body)
        for action in actions:
            if isinstance(action, EmitEvent):
                self.ctx.events.post(involved, action.type, action.reason, action.message)
        log.info("deleted", extra=self._log({"actions": [repr(a) for a in actions]}))

    # --- observing ---

    async def _templates(
        self, spec: MigrationSpec, lookup: TemplateLookup | None
    ) -> dict[api.GateTemplateRef, TemplateObject | None]:
        """The templates ``spec``'s gates name, from the watch's index; a miss is asked of the
        API server once (the watch may not have delivered a template created a moment ago)."""
        found: dict[api.GateTemplateRef, TemplateObject | None] = {}
        for ref in gate_templates.refs(spec):
            namespace = self.namespace if ref.kind.namespaced else None
            known = lookup(ref.kind, namespace or "", ref.name) if lookup is not None else None
            if known is None:
                raw = await self.ctx.kube.get(
                    api.GROUP, api.VERSION, ref.kind.plural, namespace, ref.name
                )
                known = TemplateObject.from_body(raw) if raw is not None else None
            found[ref] = known
        return found

    def _with_resolved_gates(
        self, spec: MigrationSpec, status: MigrationStatus
    ) -> MigrationSpec | SpecInvalid:
        """The spec with each templated gate replaced by the gate resolved for this run."""
        resolved, missing = gate_templates.apply(spec, status.resolved_gates)
        if missing and status.phase in (Phase.progressing, Phase.paused):
            # The run would check gates it has none for: hold it on an invalid spec instead.
            log.warning("templated gates without a record", extra=self._log({"gates": missing}))
            return SpecInvalid(missing)
        return resolved

    async def _preflight(
        self, router: TrafficRouter, target: Target, annotations: Mapping[str, str]
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(what the author may not do, other problems): either stops the run before it starts."""
        if self.ctx.rights is not None:
            # First, and alone when it refuses: the gate checks below read the very Secrets
            # the author may not read.
            forbidden = await self.ctx.rights.problems(target.spec, self.namespace, annotations)
            if forbidden:
                return tuple(forbidden), ()
        problems = await self._claims(target.spec)
        problems += list(await router.preflight(target))
        problems += await Previews(self.ctx.kube).preflight(target)
        problems += await self.ctx.gates.preflight(target.spec, self.namespace, self.name)
        return (), tuple(problems)

    async def _allowed_notifiers(
        self, spec: MigrationSpec, generation: int, annotations: Mapping[str, str]
    ) -> list[Notifier]:
        """The spec's notifiers, less those naming Secrets its author may not read. Checked here,
        not only in preflight: a spec changed during a rollback or after success tells its
        notifiers without a new preflight, and a Secret's URL or key must not serve an author
        who cannot read it. A check that passed holds for this generation and author."""
        rights = self.ctx.rights
        secret_free = [n for n in spec.notify if not n.secret_refs()]
        if rights is None or len(secret_free) == len(spec.notify):
            return spec.notify
        key = (generation, str(annotations.get(api.AUTHOR_ANNOTATION) or ""))
        if self._notifiers_allowed == key:
            return spec.notify
        # Only what the notifiers need: the gates and hooks are preflight's to check.
        only_notify = spec.model_copy(update={"gates": [], "hooks": api.Hooks()})
        try:
            problems = await rights.problems(only_notify, self.namespace, annotations)
        except KubeError as error:
            problems = [str(error)]
        if problems:
            log.warning("notifiers with Secrets not used", extra=self._log({"why": problems}))
            return secret_free
        self._notifiers_allowed = key
        return spec.notify

    async def _claims(self, spec: MigrationSpec) -> list[str]:
        """Deployments another Migration drives (the rule: core/claims.py), from the watch: a
        LIST per start made starting N Migrations cost N LISTs of N."""
        return claims.conflicts(
            self.uid,
            self.name,
            self.namespace,
            (spec.blue.deployment, spec.green.deployment),
            await self.ctx.stores.claimants(self.namespace),
        )

    async def _read_weight(self, router: TrafficRouter, target: Target) -> int | None:
        return await self._read("weight", router.get_weight(target))

    async def _read_mirror(self, router: TrafficRouter, target: Target) -> int | None:
        return await self._read("mirror", router.get_mirror(target))

    async def _read(self, what: str, reading: Awaitable[int | None]) -> int | None:
        """What the router reads from the cluster; None (cannot tell) when the read fails."""
        try:
            return await reading
        except (KubeError, TrafficRouterError) as error:
            log.warning(f"cannot read {what}", extra=self._log({"error": str(error)}))
            return None

    # --- acting ---

    async def _act(
        self, router: TrafficRouter, target: Target, moves: Sequence[Action]
    ) -> int | None:
        """Performs the actions in order; returns the weight they leave in place (None: they
        did not move traffic). A router move that returns has done all it was asked (each is
        idempotent and raises otherwise), so its weight needs no read to be known."""
        hook_jobs = HookJobs(self.ctx.kube, target, self.uid)
        ns = target.namespace
        autoscalers = Autoscalers(self.ctx.kube)
        # Only routers that size green once share it with an HPA (core/autoscaling.py); the
        # index names green's HPAs, so without one this costs no request.
        shares = target.spec.traffic.router.capabilities.shift is not Shift.pods
        green_hpas = (
            [hpa.name for hpa in self._autoscalers(ns, target.spec.green.deployment)]
            if shares
            else []
        )
        weight: int | None = None
        for action in moves:
            match action:
                case RunHook():
                    await hook_jobs.run(action)
                case StopJob():
                    await hook_jobs.stop(action.job)
                case PrepareGreen():
                    # The HPA's floor first: green scaled to a size its HPA would undo is a fight.
                    await autoscalers.pin_green(ns, green_hpas, action.total_replicas)
                    await router.prepare(target, action.total_replicas)
                case SetWeight():
                    # Again here (idempotent): a restart or a failed write may have lost it.
                    await autoscalers.pin_green(ns, green_hpas, action.total_replicas)
                    await router.set_weight(target, action.weight, action.total_replicas)
                    weight = action.weight
                case SetMirror():
                    await router.set_mirror(target, action.percent)
                case RestoreBlue():
                    await router.restore(target, action.total_replicas, action.scale_down_green)
                    await autoscalers.release(ns, green_hpas)
                    weight = 0
                case HoldBlue():
                    await router.hold_blue(target, action.total_replicas)
                    weight = 100  # blue at full size, still out of traffic
                case RetireBlue():
                    await router.retire_blue(_versions(target, action.blue, action.green))
                    await autoscalers.release(ns, green_hpas)
                    weight = 100
                case CreatePreview():
                    await Previews(self.ctx.kube).create(target, action.service)
                case DeletePreview():
                    await Previews(self.ctx.kube).delete(target, action.service)
                case EmitEvent():
                    continue  # recorded with the status, not performed
                case _:
                    assert_never(action)
            log.info("acted", extra=self._log({"action": repr(action)}))
        if weight is not None:
            self._cluster_read = True
        return weight

    async def _action_failed(
        self,
        body: Mapping[str, Any],
        original: MigrationStatus,
        written: MigrationStatus,
        decisions: list[Decision],
        error: Exception,
    ) -> Outcome:
        """Keeps the intent already written, says what failed, and retries later."""
        message = f"traffic router error: {error}"
        log.warning("action failed", extra=self._log({"error": str(error)}))
        metrics.count_reconcile_error("router")
        self._cluster_read = False
        if written.message != message and original.message != message:
            self.ctx.events.post(self._involved(body), "Warning", "RouterError", message)
        failed = written.model_copy(deep=True)
        failed.message = message
        outcome = await self._record(body, original, written, decisions, final=failed)
        return Outcome(failed, _ERROR_RETRY, outcome.wrote_status)

    # --- recording ---

    async def _record(
        self,
        body: Mapping[str, Any],
        original: MigrationStatus,
        written: MigrationStatus,
        decisions: list[Decision],
        final: MigrationStatus | None = None,
    ) -> Outcome:
        involved = self._involved(body)
        for decision in decisions:
            for action in decision.actions:
                if isinstance(action, EmitEvent):
                    self.ctx.events.post(involved, action.type, action.reason, action.message)
        status = final if final is not None else decisions[-1].status
        wrote = await self._write_status(body, written, status)
        await self._clear_request(body, status)
        self._count(original, status)
        return Outcome(status, decisions[-1].requeue_after, wrote or written is not original)

    def _count(self, before: MigrationStatus, after: MigrationStatus) -> None:
        metrics.observe_migration(self.namespace, self.name, after.phase.value, after.weight)
        if after.phase is Phase.rolling_back and before.phase is not Phase.rolling_back:
            metrics.count_rollback(self.namespace, self.name, after.reason or "Unknown")
        old = {g.name: g for g in before.gates}
        for record in after.gates:
            previous = old.get(record.name)
            if record.last_evaluated_at and (
                previous is None or previous.last_evaluated_at != record.last_evaluated_at
            ):
                metrics.observe_gate(
                    self.namespace,
                    self.name,
                    record.name,
                    record.last_value,
                    record.last_verdict.value if record.last_verdict else "Unknown",
                    dry_run=record.dry_run,
                )
        if (
            before.step_started_at is not None
            and after.step_started_at != before.step_started_at
            and after.current_step_index != before.current_step_index
        ):
            metrics.observe_step_duration(
                (self.ctx.clock() - before.step_started_at).total_seconds()
            )

    async def _write_status(
        self, body: Mapping[str, Any], before: MigrationStatus, after: MigrationStatus
    ) -> bool:
        old = before.to_dict()
        new = after.to_dict()
        if old == new:
            return False
        changed = {key for key in old.keys() | new.keys() if old.get(key) != new.get(key)}
        if changed <= _RIDES_ALONG:
            # Not worth a write of its own: kept here (the next decision reads it) and persisted
            # with the next write, as every write sends the whole status.
            self._written = new
            return False
        # A merge patch only removes what it names with null; fields that became empty go too.
        patch: dict[str, Any] = dict(new)
        for key in old:
            if key not in new:
                patch[key] = None
        await self.ctx.kube.patch(
            api.GROUP,
            api.VERSION,
            api.PLURAL,
            self.namespace,
            self.name,
            {"status": patch},
            patch_type="merge",
            subresource="status",
        )
        self._written = new
        if after.step_started_at is not None and (after.run_id, after.current_step_index) != (
            before.run_id,
            before.current_step_index,
        ):
            self._step_write = StepWrite(after.step_started_at, self.ctx.clock())
        self._notify(body, before, after)
        return True

    def _notify(
        self, body: Mapping[str, Any], before: MigrationStatus, after: MigrationStatus
    ) -> None:
        """Hands what this status write made happen to the sender. Only after the write: a
        notification never announces a change the cluster has not recorded."""
        sender = self.ctx.notify
        if sender is None:
            return
        generation = int((body.get("metadata") or {}).get("generation") or 1)
        subject = notifications.Subject(self.namespace, self.name, self.uid, generation)
        try:
            events = notifications.derive(before, after, subject, self.ctx.clock())
            sender.submit(self._notifiers, events)
        except Exception as error:  # telling people must never stop the run
            log.exception("notifications not sent", extra=self._log({"error": repr(error)}))

    async def _clear_request(self, body: Mapping[str, Any], status: MigrationStatus) -> None:
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        raw = annotations.get(REQUEST_ANNOTATION)
        if raw is None or raw == self._cleared:
            return
        request = parse_request(annotations)
        handled = request is not None and request.id == status.last_request
        if request is not None and not handled:
            return
        if request is None:
            log.warning("unknown request dropped", extra=self._log({"request": raw}))
        path = "/metadata/annotations/" + REQUEST_ANNOTATION.replace("~", "~0").replace("/", "~1")
        # test-then-remove: a newer request written meanwhile by the CLI must survive.
        try:
            await self.ctx.kube.patch(
                api.GROUP,
                api.VERSION,
                api.PLURAL,
                self.namespace,
                self.name,
                [{"op": "test", "path": path, "value": raw}, {"op": "remove", "path": path}],
                patch_type="json",
            )
            self._cleared = raw
        except KubeError as error:
            log.info("request annotation not cleared", extra=self._log({"error": str(error)}))

    def _involved(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "name": self.name,
            "namespace": self.namespace,
            "uid": self.uid,
        }

    def _log(self, extra: dict[str, Any]) -> dict[str, Any]:
        return {"namespace": self.namespace, "migration": self.name, **extra}
