"""The Job controller: outcomes via the admin API (process and in-process) and annotations."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client

from cutover.sandbox import SandboxCluster
from cutover.sandbox.process import SandboxProcess
from tests.sandbox.helpers import wait_for


def _job(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "hook", "image": "busybox", "command": ["true"]}],
                }
            }
        },
    }


def _finished(batch: Any, name: str) -> Any:
    job = batch.read_namespaced_job(name, "default")
    return job if job.status and (job.status.succeeded or job.status.failed) else None


def test_job_outcomes_via_admin_api(sandbox: SandboxProcess, api: Any) -> None:
    batch = client.BatchV1Api(api)
    batch.create_namespaced_job("default", _job("ok"))
    batch.create_namespaced_job("default", _job("bad"))
    active = wait_for(
        lambda: (
            (j := batch.read_namespaced_job("ok", "default")).status and j.status.active == 1 and j
        )
    )
    assert active.status.start_time is not None
    time.sleep(0.3)
    assert _finished(batch, "ok") is None  # no outcome until someone decides it
    sandbox.set_job_outcome("default", "ok", "succeed")
    sandbox.set_job_outcome("default", "bad", "fail")
    ok = wait_for(lambda: _finished(batch, "ok"))
    bad = wait_for(lambda: _finished(batch, "bad"))
    assert ok.status.succeeded == 1 and not ok.status.active and ok.status.completion_time
    assert [(c.type, c.status) for c in ok.status.conditions] == [("Complete", "True")]
    assert bad.status.failed == 1
    assert [(c.type, c.status) for c in bad.status.conditions] == [("Failed", "True")]
    assert "succeeded" in sandbox.job_log("default", "ok")
    result = sandbox.kubectl("wait", "--for=condition=Complete", "job/ok", "--timeout=5s")
    assert "condition met" in result.stdout


def test_job_outcome_by_annotation(sandbox: SandboxProcess, api: Any) -> None:
    batch = client.BatchV1Api(api)
    started = time.monotonic()
    batch.create_namespaced_job(
        "default",
        _job("auto", {"sandbox.cutover.io/outcome": "fail", "sandbox.cutover.io/after": "0.5"}),
    )
    job = wait_for(lambda: _finished(batch, "auto"))
    assert time.monotonic() - started >= 0.5
    assert job.status.failed == 1


async def test_in_process_outcome_before_creation(cluster: SandboxCluster) -> None:
    import asyncio

    cluster.set_job_outcome("default", "early", "succeed")  # decided before the Job exists
    rt = cluster.registry.lookup("batch", "v1", "jobs")
    assert rt is not None
    cluster.store.create(rt, "default", _job("early"))
    for _ in range(100):
        status = cluster.store.get(rt, "default", "early").get("status") or {}
        if status.get("succeeded"):
            break
        await asyncio.sleep(0.02)
    assert status["succeeded"] == 1 and status["startTime"]
