"""A finished hook Job's last log lines reach its status record (read once, from its pod)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cutover.api import HookRun, HookStage, HookState, MigrationStatus
from cutover.core.machine import JobState
from cutover.hookjobs import with_log_tails
from cutover.kube import NotFound

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class StubKube:
    def __init__(self, logs: dict[str, str]) -> None:
        self.logs = logs
        self.reads: list[str] = []

    async def list(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        label_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        job = (label_selector or "").removeprefix("job-name=")
        return [{"metadata": {"name": f"{job}-pod", "creationTimestamp": "2026-01-01T00:00:00Z"}}]

    async def pod_log_tail(self, namespace: str, pod: str, lines: int = 10) -> str:
        self.reads.append(pod)
        if pod not in self.logs:
            raise NotFound(f"pod {pod} has no log", status=404)
        return self.logs[pod]


def status_with(*jobs: str) -> MigrationStatus:
    return MigrationStatus(
        hooks=[HookRun(name=j, stage=HookStage.after_step, job=j, started_at=T0) for j in jobs]
    )


def running(status: MigrationStatus) -> set[str]:
    """The Jobs the reconciler passes: those the status still shows running."""
    return {run.job for run in status.hooks if run.state is HookState.running}


async def test_the_log_tail_of_a_job_that_just_failed_joins_its_message() -> None:
    kube = StubKube({"check-pod": "checking rows\nERROR: 2 rows missing in target\n"})
    jobs = {"check": JobState(failed=True, message="BackoffLimitExceeded")}
    result = await with_log_tails(kube, "ns", jobs, running(status_with("check")))  # type: ignore[arg-type]
    assert result["check"].message == (
        "BackoffLimitExceeded; last log lines: checking rows | ERROR: 2 rows missing in target"
    )


async def test_running_or_already_recorded_jobs_are_not_read() -> None:
    kube = StubKube({"a-pod": "x", "b-pod": "y"})
    done = status_with("a")
    done.hooks[0].state = HookState.failed
    jobs = {"a": JobState(failed=True), "b": JobState()}
    await with_log_tails(kube, "ns", jobs, running(done))  # type: ignore[arg-type]
    assert kube.reads == []


async def test_a_missing_log_leaves_the_message_as_it_was() -> None:
    jobs = {"c": JobState(succeeded=True, message="")}
    result = await with_log_tails(StubKube({}), "ns", jobs, running(status_with("c")))  # type: ignore[arg-type]
    assert result["c"].message == ""
