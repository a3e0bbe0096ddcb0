"""Observe -> decide -> act -> record, for one Migration.

The reconciler is the imperative shell around ``core.machine.decide``. It reads what it needs
(Deployments from Kopf's watch-fed index, the router's weight only when its memory could be
stale), asks ``decide``, performs the actions through the router, and writes the status once,
through the ``/status`` subresource, only when it changed. It keeps no state of its own between
wake-ups except a flag saying whether it has read the cluster since it (re)started.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from cutover import api, metrics
from cutover.api import (
    REQUEST_ANNOTATION,
    TERMINAL_PHASES,
    HookState,
    MigrationSpec,
    MigrationStatus,
    Phase,
    SpecInvalid,
    StatusCorrupt,
)
from cutover.core import claims, deletion
from cutover.core.machine import (
    Action,
    Decision,
    DeploymentState,
    EmitEvent,
    JobState,
    Observations,
    PrepareGreen,
    Request,
    RequestVerb,
    RestoreBlue,
    RetireBlue,
    RunHook,
    SetWeight,
    StopJob,
    decide,
    gates_due,
)
from cutover.gatecheck import GateChecker, summarize
from cutover.hookjobs import HookJobs
from cutover.kube import Kube, KubeError
from cutover.routers import router_for
from cutover.routers.base import Target, TrafficRouter, TrafficRouterError

log = logging.getLogger("cutover.reconciler")
Clock = Callable[[], datetime]
DeploymentLookup = Callable[[str, str], DeploymentState | None]
JobLookup = Callable[[str, str], Mapping[str, JobState]]  # (namespace, migration) -> jobs

# Decide/act rounds per wake-up: e.g. rollback -> confirm, or weight -> ready -> next weight.
_ROUNDS = 4
_ERROR_RETRY = 5.0
_LOG_LINES = 10
_LOG_CHARS = 2000


def utcnow() -> datetime:
    return datetime.now(UTC)


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


@dataclass
class Context:
    """What every reconciler shares: clients and the clock."""

    kube: Kube
    gates: GateChecker
    clock: Clock = utcnow
    routers: dict[str, TrafficRouter] = field(default_factory=dict)

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
    def __init__(self, ctx: Context, namespace: str, name: str, uid: str) -> None:
        self.ctx = ctx
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self._cluster_read = False  # has the router's weight been read since (re)start?
        # The status this reconciler last wrote. The watch may deliver our own write after the
        # next wake-up; deciding from the older status in the body would start a step twice.
        # Only the operator writes status, so what we wrote is never older than the body's.
        self._written: dict[str, Any] | None = None

    async def reconcile(
        self,
        body: Mapping[str, Any],
        deployments: DeploymentLookup,
        jobs: JobLookup | None = None,
    ) -> Outcome:
        metadata = body.get("metadata", {})
        generation = int(metadata.get("generation") or 1)
        raw_status = self._written or {k: v for k, v in (body.get("status") or {}).items()}
        try:
            status = api.parse_status(raw_status)
        except StatusCorrupt as error:
            log.error("status cannot be read", extra=self._log({"problems": error.problems}))
            return Outcome(MigrationStatus(), None, False)
        try:
            spec: MigrationSpec | SpecInvalid = api.parse_spec(body.get("spec") or {})
        except SpecInvalid as error:
            spec = error
        request = parse_request(metadata.get("annotations") or {})
        now = self.ctx.clock()

        if isinstance(spec, SpecInvalid):
            decision = decide(spec, status, Observations(generation=generation), now)
            return await self._record(body, status, status, [decision])

        try:
            router = self.ctx.router(spec)
        except (TrafficRouterError, ValueError) as error:
            invalid = SpecInvalid([f"spec.traffic.router: {error}"])
            decision = decide(invalid, status, Observations(generation=generation), now)
            return await self._record(body, status, status, [decision])
        target = Target(self.namespace, self.name, self.uid, spec)

        preflight: tuple[str, ...] = ()
        if self._may_start(status, generation, request):
            preflight = tuple(await self._preflight(router, target))

        router_weight: int | None = None
        if not self._cluster_read and status.phase not in TERMINAL_PHASES:
            router_weight = await self._read_weight(router, target)
            self._cluster_read = router_weight is not None

        due = gates_due(spec, status, now)
        readings = await self.ctx.gates.measure(spec, self.namespace, self.name, due, now)
        if readings:
            log.info("gates measured", extra=self._log({"readings": summarize(readings)}))

        job_states = await self._with_logs(jobs(self.namespace, self.name) if jobs else {}, status)

        def observe(weight: int | None, acted: tuple[Action, ...] = ()) -> Observations:
            return Observations(
                generation=generation,
                blue=deployments(self.namespace, spec.blue.deployment),
                green=deployments(self.namespace, spec.green.deployment),
                router_weight=weight,
                readings=readings,
                request=request,
                preflight_errors=preflight,
                acted=acted,
                jobs=job_states,
                migration=self.name,
            )

        decisions: list[Decision] = []
        current = written = status
        observations = observe(router_weight)
        for round_ in range(_ROUNDS):
            # Each round after the first follows writes that took time: a pause or deadline
            # started now must not start at the wake-up's instant (it would end early).
            decision = decide(spec, current, observations, now if round_ == 0 else self.ctx.clock())
            decisions.append(decision)
            current = decision.status
            moves = [a for a in decision.actions if not isinstance(a, EmitEvent)]
            if not moves:
                break
            # Intent first: a crash after the router write must not find a status that asks
            # for the previous step's weight (that would move traffic backwards on restart).
            await self._write_status(body, written, current)
            written = current
            try:
                weight = await self._act(router, target, moves)
            except (KubeError, TrafficRouterError) as error:
                return await self._action_failed(body, status, written, decisions, error)
            # Readings and the request are consumed: the next round only confirms the writes.
            readings = {}
            observations = observe(weight, tuple(moves))
        return await self._record(body, status, written, decisions)

    async def on_delete(self, body: Mapping[str, Any]) -> None:
        """Acts on what the core says a deletion does (core/deletion.py). KubeError and
        TrafficRouterError propagate: the caller retries before the Migration may go."""
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
                await self.ctx.kube.emit_event(involved, action.type, action.reason, action.message)
        log.info("deleted", extra=self._log({"actions": [repr(a) for a in actions]}))

    # --- observing ---

    @staticmethod
    def _may_start(status: MigrationStatus, generation: int, request: Request | None) -> bool:
        if status.phase is Phase.pending:
            return True
        if status.observed_generation not in (None, generation):
            return True
        return (
            request is not None
            and request.verb is RequestVerb.retry
            and request.id != status.last_request
        )

    async def _preflight(self, router: TrafficRouter, target: Target) -> list[str]:
        problems = await self._claims(target.spec)
        problems += list(await router.preflight(target))
        problems += await self.ctx.gates.preflight(target.spec, self.namespace, self.name)
        return problems

    async def _claims(self, spec: MigrationSpec) -> list[str]:
        """Deployments another Migration drives (the rule: core/claims.py)."""
        listed = await self.ctx.kube.list(api.GROUP, api.VERSION, api.PLURAL, self.namespace)
        return claims.conflicts(
            self.uid,
            self.name,
            self.namespace,
            (spec.blue.deployment, spec.green.deployment),
            (_claimant(other) for other in listed),
        )

    async def _read_weight(self, router: TrafficRouter, target: Target) -> int | None:
        try:
            return await router.get_weight(target)
        except (KubeError, TrafficRouterError) as error:
            log.warning("cannot read weight", extra=self._log({"error": str(error)}))
            return None

    async def _with_logs(
        self, jobs: Mapping[str, JobState], status: MigrationStatus
    ) -> dict[str, JobState]:
        """Adds the last log lines of hook Jobs that just finished, for status and Events.

        Only Jobs the status still shows running are read: each log is fetched once.
        """
        result = dict(jobs)
        running = {r.job for r in status.hooks if r.state is HookState.running}
        for name, state in jobs.items():
            if name not in running or not (state.succeeded or state.failed):
                continue
            tail = await self._log_tail(name)
            if tail:
                message = f"{state.message}; last log lines: {tail}" if state.message else tail
                result[name] = replace(state, message=message[-_LOG_CHARS:])
        return result

    async def _log_tail(self, job: str) -> str:
        try:
            pods = await self.ctx.kube.list(
                "", "v1", "pods", self.namespace, label_selector=f"job-name={job}"
            )
            if not pods:
                return ""
            newest = max(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp", ""))
            pod = (newest.get("metadata") or {}).get("name", "")
            text = await self.ctx.kube.pod_log_tail(self.namespace, pod, lines=_LOG_LINES)
        except KubeError as error:
            log.info("hook log not read", extra=self._log({"job": job, "error": str(error)}))
            return ""
        return " | ".join(line for line in text.splitlines() if line.strip())

    # --- acting ---

    async def _act(
        self, router: TrafficRouter, target: Target, moves: Sequence[Action]
    ) -> int | None:
        """Performs the actions in order; returns the weight the router reports afterwards."""
        hook_jobs = HookJobs(self.ctx.kube, target, self.uid)
        for action in moves:
            if isinstance(action, RunHook):
                await hook_jobs.run(action)
                continue
            if isinstance(action, StopJob):
                await hook_jobs.stop(action.job)
                continue
            if isinstance(action, PrepareGreen):
                await router.prepare(target, action.total_replicas)
            elif isinstance(action, SetWeight):
                await router.set_weight(target, action.weight, action.total_replicas)
            elif isinstance(action, RestoreBlue):
                await router.restore(target, action.total_replicas, action.scale_down_green)
            elif isinstance(action, RetireBlue):
                await router.retire_blue(target, action.total_replicas)
            log.info("acted", extra=self._log({"action": repr(action)}))
        self._cluster_read = True
        return await router.get_weight(target)

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
            await self.ctx.kube.emit_event(self._involved(body), "Warning", "RouterError", message)
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
                    await self.ctx.kube.emit_event(
                        involved, action.type, action.reason, action.message
                    )
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
        return True

    async def _clear_request(self, body: Mapping[str, Any], status: MigrationStatus) -> None:
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        raw = annotations.get(REQUEST_ANNOTATION)
        if raw is None:
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


def _claimant(obj: Mapping[str, Any]) -> claims.Claimant:
    meta = obj.get("metadata") or {}
    raw_phase = str((obj.get("status") or {}).get("phase") or Phase.pending.value)
    try:
        phase = Phase(raw_phase)
    except ValueError:
        phase = Phase.pending  # a phase this version does not know claims as little as Pending
    try:
        spec = api.parse_spec(obj.get("spec") or {})
        deployments: frozenset[str] | None = frozenset(
            {spec.blue.deployment, spec.green.deployment}
        )
    except SpecInvalid:
        deployments = None
    return claims.Claimant(
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        created=str(meta.get("creationTimestamp") or ""),
        deleting=bool(meta.get("deletionTimestamp")),
        phase=phase,
        deployments=deployments,
    )
