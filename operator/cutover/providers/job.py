"""The ``job`` provider: a Kubernetes Job built from the gate's template is the measurement.

Result mapping (Argo Rollouts' job metric):

* the Job completed -> the value 1;
* the Job failed (a pod failed past ``backoffLimit``, or it ran past the gate's ``timeout``) ->
  the value 0, with the Job controller's reason and the last log lines as the message;
* the Job is still running -> :class:`NotYet`: no verdict, the gate looks again soon;
* the API server refusing to create or read the Job -> :class:`ProviderError`.

One Job per check. Its name is derived from the Migration, the run, the gate and the number of
the check, which only changes once a verdict is recorded: a restarted operator finds the Job it
created instead of starting a second one. Jobs are owned by the Migration (deleted with it) and
removed ``ttlAfterFinished`` after they finish.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from cutover.api import Gate, JobQuery, SecretKeyRef
from cutover.core.hooks import job_name
from cutover.durations import parse_duration
from cutover.hookjobs import job_manifest, observe_job, with_log_tails
from cutover.kube import Conflict, Kube, KubeError

from .base import GateCheck, GateRequest, NotYet, ProviderError

__all__ = ["GATE_LABEL", "JobSource", "gate_job_name"]

log = logging.getLogger("cutover.gates")

# Marks a gate's Jobs (and tells them apart from hook Jobs, which carry cutover.io/hook).
GATE_LABEL = "cutover.io/gate"


def gate_job_name(check: GateCheck) -> str:
    """Deterministic: the same check of the same run always names the same Job."""
    return job_name(check.migration, check.run_id, f"gate-{check.gate}", check.evaluation, 1)


def _block(gate: Gate) -> JobQuery:
    if gate.job is None:
        raise ValueError(f"gate {gate.name!r} has no job block")
    return gate.job


class JobSource:
    """The ``job:`` block of a gate: a JobTemplateSpec, a timeout and how long Jobs are kept."""

    kind = "job"
    checks_query = False

    def templates(self, gate: Gate) -> list[tuple[str, str]]:
        return []

    def request(self, gate: Gate, rendered: Mapping[str, str]) -> GateRequest:
        # No address: the Job runs in the cluster, where the operator's outbound policy has
        # no say (the author could create that Job as well).
        return GateRequest(query=f"job {gate.name}")

    def syntax_problem(self, field: str, text: str) -> str | None:
        return None

    def secret_refs(self, gate: Gate) -> list[tuple[str, SecretKeyRef]]:
        return []

    def client_options(self, gate: Gate, secrets: Mapping[str, str]) -> dict[str, Any]:
        return {}

    def describe(self, gate: Gate, request: GateRequest) -> str:
        block = _block(gate)
        containers = (
            ((block.job_template.get("spec") or {}).get("template") or {}).get("spec") or {}
        ).get("containers") or []
        images = ", ".join(str(c.get("image", "?")) for c in containers if isinstance(c, dict))
        return (
            f"a Job ({images or 'no containers'}) per check: success is 1, failure 0;"
            f" timeout {block.timeout}"
        )

    async def measure_in_cluster(
        self, kube: Kube, gate: Gate, check: GateCheck
    ) -> tuple[float, str]:
        block = _block(gate)
        name = gate_job_name(check)
        try:
            job = await kube.get("batch", "v1", "jobs", check.namespace, name)
            if job is None:
                job = await self._create(kube, block, check, name)
        except KubeError as error:
            raise ProviderError(f"Job {name}: {error}", error_type="kubernetes") from None
        labels = (job.get("metadata") or {}).get("labels") or {}
        if labels.get(GATE_LABEL) != check.gate:
            raise ProviderError(
                f"a Job named {name} exists and is not gate {check.gate}'s", error_type="conflict"
            )
        state = observe_job(job.get("status") or {})
        if not (state.succeeded or state.failed):
            raise NotYet(f"Job {name} is running")
        # One log read per finished Job: its verdict is recorded now and the name moves on.
        tails = await with_log_tails(kube, check.namespace, {name: state}, {name})
        detail = tails[name].message
        if state.succeeded:
            log.info("gate job succeeded", extra={"gate": check.gate, "job": name})
            return 1.0, f"Job {name} succeeded"
        log.info("gate job failed", extra={"gate": check.gate, "job": name})
        return 0.0, f"Job {name} failed: {detail}" if detail else f"Job {name} failed"

    async def _create(
        self, kube: Kube, block: JobQuery, check: GateCheck, name: str
    ) -> dict[str, Any]:
        body = job_manifest(
            name,
            check.namespace,
            block.job_template,
            {GATE_LABEL: check.gate},
            (check.migration, check.uid),
            parse_duration(block.timeout),
            ttl_seconds=int(parse_duration(block.ttl_after_finished)),
        )
        try:
            created = await kube.create("batch", "v1", "jobs", check.namespace, body)
            log.info("gate job created", extra={"gate": check.gate, "job": name})
            return created
        except Conflict:  # created between our read and now (another check of the same run)
            found = await kube.get("batch", "v1", "jobs", check.namespace, name)
            return found or body
