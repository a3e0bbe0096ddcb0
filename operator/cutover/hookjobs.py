"""Hook Jobs: building a Job from a hook's template and creating or stopping it.

Job names come from the decision engine and are deterministic, so creating a Job that exists is
not an error: it is how a restarted operator finds the Job it already started.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Any

import yaml

from cutover import api
from cutover.api import MIGRATION_LABEL, Hook
from cutover.core.actions import RunHook
from cutover.core.observations import JobState
from cutover.kube import Conflict, Kube, KubeError
from cutover.routers.base import Target, TrafficRouterError

log = logging.getLogger("cutover.hooks")

HOOK_LABEL = "cutover.io/hook"
_LOG_LINES = 10
_LOG_CHARS = 2000
STAGE_LABEL = "cutover.io/stage"


class HookJobs:
    def __init__(self, kube: Kube, target: Target, uid: str) -> None:
        self._kube = kube
        self._target = target
        self._uid = uid

    def _hook(self, action: RunHook) -> Hook:
        for hook in self._target.spec.hooks.of(action.stage):
            if hook.name == action.hook:
                return hook
        raise TrafficRouterError(f"hook {action.hook} is no longer in spec.hooks")

    async def _template(self, hook: Hook) -> dict[str, Any]:
        if hook.job_template is not None:
            return hook.job_template
        ref = hook.config_map_ref
        assert ref is not None
        namespace = self._target.namespace
        config_map = await self._kube.get("", "v1", "configmaps", namespace, ref.name)
        text = ((config_map or {}).get("data") or {}).get(ref.key)
        if text is None:
            raise TrafficRouterError(f"ConfigMap {namespace}/{ref.name} has no key {ref.key!r}")
        template = yaml.safe_load(text)
        if not isinstance(template, dict) or not isinstance(template.get("spec"), dict):
            raise TrafficRouterError(
                f"ConfigMap {namespace}/{ref.name} key {ref.key!r} is not a Job template"
            )
        return template

    async def run(self, action: RunHook) -> None:
        hook = self._hook(action)
        template = await self._template(hook)
        body = self.job(action, template)
        try:
            await self._kube.create("batch", "v1", "jobs", self._target.namespace, body)
            log.info("hook job created", extra={"job": action.job, "hook": action.hook})
        except Conflict:
            log.info("hook job exists", extra={"job": action.job, "hook": action.hook})

    def job(self, action: RunHook, template: dict[str, Any]) -> dict[str, Any]:
        labels = {HOOK_LABEL: action.hook, STAGE_LABEL: action.stage.value}
        owner = (self._target.name, self._uid)
        return job_manifest(
            action.job, self._target.namespace, template, labels, owner, action.timeout_seconds
        )

    async def stop(self, name: str) -> None:
        await self._kube.delete(
            "batch", "v1", "jobs", self._target.namespace, name, propagation="Background"
        )
        log.info("hook job stopped", extra={"job": name})


def job_manifest(
    name: str,
    namespace: str,
    template: Mapping[str, Any],
    labels: Mapping[str, str],
    owner: tuple[str, str],
    timeout_seconds: float,
    ttl_seconds: int | None = None,
) -> dict[str, Any]:
    """A Job from a JobTemplateSpec, labelled with its Migration and owned by it (``owner``:
    name, uid), so deleting the Migration deletes its Jobs."""
    metadata = dict(template.get("metadata") or {})
    spec = dict(template["spec"])
    deadline = int(timeout_seconds) or 1
    # Kubernetes ends the Job at the timeout too, so a hung pod stops even without us.
    spec["activeDeadlineSeconds"] = min(int(spec.get("activeDeadlineSeconds", deadline)), deadline)
    if ttl_seconds is not None:
        spec["ttlSecondsAfterFinished"] = ttl_seconds
    migration, uid = owner
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                **(metadata.get("labels") or {}),
                MIGRATION_LABEL: migration,
                **labels,
            },
            "annotations": dict(metadata.get("annotations") or {}),
            "ownerReferences": [
                {
                    "apiVersion": api.API_VERSION,
                    "kind": api.KIND,
                    "name": migration,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }


def observe_job(status: Mapping[str, Any]) -> JobState:
    """A hook Job's outcome as the Job controller reports it in the Job's status."""
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return JobState(succeeded=True, failed=False, message=condition.get("message") or "")
        if condition.get("type") == "Failed":
            reason = condition.get("reason") or "Failed"
            message = f"{reason}: {condition.get('message') or ''}".strip(": ")
            return JobState(succeeded=False, failed=True, message=message)
    done = int(status.get("succeeded") or 0) > 0 and not status.get("active")
    return JobState(succeeded=done, failed=False, message="")


async def with_log_tails(
    kube: Kube, namespace: str, jobs: Mapping[str, JobState], running: Collection[str]
) -> dict[str, JobState]:
    """Adds the last log lines of hook Jobs that just finished, for status and Events.

    Only Jobs the status still shows ``running`` are read, so each log is fetched once.
    """
    result = dict(jobs)
    for name, state in jobs.items():
        if name not in running or not (state.succeeded or state.failed):
            continue
        tail = await _log_tail(kube, namespace, name)
        if tail:
            message = f"{state.message}; last log lines: {tail}" if state.message else tail
            result[name] = replace(state, message=message[-_LOG_CHARS:])
    return result


async def _log_tail(kube: Kube, namespace: str, job: str) -> str:
    try:
        pods = await kube.list("", "v1", "pods", namespace, label_selector=f"job-name={job}")
        if not pods:
            return ""
        newest = max(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp", ""))
        pod = (newest.get("metadata") or {}).get("name", "")
        text = await kube.pod_log_tail(namespace, pod, lines=_LOG_LINES)
    except KubeError as error:
        log.info(
            "hook log not read", extra={"namespace": namespace, "job": job, "error": str(error)}
        )
        return ""
    return " | ".join(line for line in text.splitlines() if line.strip())
