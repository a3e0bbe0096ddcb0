"""Hooks: the Jobs a stage (preShift, afterStep, postPromotion, onRollback) runs one after
another, with retries and timeouts, and whether the stage is done, running or failed.

A hook's Job name is deterministic (``job_name``), so a restarted operator finds the Job it
created instead of creating another; an irreversible hook sets the point of no return.
"""

from __future__ import annotations

import enum
import hashlib

from cutover.api import Hook, HookRun, HookStage, HookState, MigrationSpec
from cutover.core.actions import RunHook, StopJob
from cutover.core.runstate import RunState
from cutover.core.transitions import Event, Reason
from cutover.durations import parse_duration

# How often a running hook's Job is looked at when nothing else wakes the Migration sooner.
_HOOK_POLL = 2.0


class StageResult(enum.StrEnum):
    """Where the hooks of one stage (preShift, afterStep, ...) stand."""

    done = "done"  # every hook succeeded
    running = "running"  # one is running or was just started
    failed = "failed"  # one failed with no retries left


class HookRunner(RunState):
    def _stage_ok(self, spec: MigrationSpec, stage: HookStage, step: int | None) -> bool:
        """True once every hook of the stage succeeded; a failure stops the run like a gate."""
        state, problem = self._run_stage(spec, stage, step)
        if state is StageResult.failed:
            event = Event.hook_failed if spec.rollback.automatic else Event.hook_failed_hold
            self._fire(event, problem)
        return state is StageResult.done

    def _run_stage(
        self, spec: MigrationSpec, stage: HookStage, step: int | None
    ) -> tuple[StageResult, str]:
        """Where the stage's hooks stand, and why one failed; they run one after another."""
        for hook in spec.hooks.of(stage):
            while True:
                runs = [
                    r
                    for r in self.s.hooks
                    if r.stage is stage and r.name == hook.name and r.step == step
                ]
                last = runs[-1] if runs else None
                if last is None:
                    self._start_hook(hook, stage, step, attempt=1)
                    return StageResult.running, ""
                if last.state is HookState.succeeded:
                    break
                if last.state is HookState.failed:
                    if last.attempt <= hook.retries:
                        self._start_hook(hook, stage, step, attempt=last.attempt + 1)
                        return StageResult.running, ""
                    return StageResult.failed, (
                        f"hook {hook.name} ({stage.value}) failed after {last.attempt}"
                        f" attempt(s): {last.message}"
                    )
                if not self._observe_hook(hook, last):
                    return StageResult.running, ""
        return StageResult.done, ""

    def _observe_hook(self, hook: Hook, run: HookRun) -> bool:
        """Updates a running hook from its Job; True when it finished (either way)."""
        job = self.obs.jobs.get(run.job)
        timed_out = (self.now - run.started_at).total_seconds() > parse_duration(hook.timeout)
        if job is not None and job.succeeded:
            run.state = HookState.succeeded
            run.finished_at = self.now
            run.message = job.message
            self._event(
                "Normal", Reason.hook_succeeded, f"hook {hook.name}: Job {run.job} succeeded"
            )
            return True
        if (job is not None and job.failed) or timed_out:
            run.state = HookState.failed
            run.finished_at = self.now
            if job is not None and job.failed:
                run.message = job.message or "Job failed"
            else:
                run.message = f"timed out after {hook.timeout}"
                self.actions.append(StopJob(run.job))
            self._event(
                "Warning",
                Reason.hook_failed,
                f"hook {hook.name}: Job {run.job} (attempt {run.attempt} of"
                f" {hook.retries + 1}) failed: {run.message}",
            )
            return True
        if job is None and not self._created_in_this_wake_up(run.job):
            # Not seen yet (or deleted by someone): creating it again is a no-op if it exists.
            self.actions.append(self._run_action(hook, run))
        return False

    def _created_in_this_wake_up(self, job: str) -> bool:
        """Created by a round before this one: the watch has not shown it yet, and asking
        again would be refused (it exists) and would take every round of the wake-up."""
        return job in self.obs.jobs_created

    def _start_hook(self, hook: Hook, stage: HookStage, step: int | None, attempt: int) -> None:
        assert self.s.run_id is not None
        run = HookRun(
            name=hook.name,
            stage=stage,
            step=step,
            attempt=attempt,
            job=job_name(self.obs.migration, self.s.run_id, hook.name, step, attempt),
            started_at=self.now,
        )
        self.s.hooks.append(run)
        if hook.irreversible and not self.s.point_of_no_return:
            self.s.point_of_no_return = (
                f"irreversible hook {hook.name} started at {self.now.isoformat(timespec='seconds')}"
            )
            self._history(Reason.rollback_disabled, self.s.point_of_no_return)
            self._event("Warning", Reason.rollback_disabled, self.s.point_of_no_return)
        self._history(Reason.hook_started, f"hook {hook.name} ({stage.value}): Job {run.job}")
        self.actions.append(self._run_action(hook, run))

    @staticmethod
    def _run_action(hook: Hook, run: HookRun) -> RunHook:
        return RunHook(
            stage=run.stage,
            hook=hook.name,
            job=run.job,
            step=run.step,
            attempt=run.attempt,
            timeout_seconds=parse_duration(hook.timeout),
        )

    def _hook_wake(self, spec: MigrationSpec) -> float | None:
        running = [r for r in self.s.hooks if r.state is HookState.running]
        if not running:
            return None
        timeouts = {
            h.name: parse_duration(h.timeout) for stage in HookStage for h in spec.hooks.of(stage)
        }
        left = [
            timeouts.get(r.name, 0.0) - (self.now - r.started_at).total_seconds() for r in running
        ]
        return max(min([_HOOK_POLL, *left]), 0.0)


def job_name(migration: str, run_id: str, hook: str, step: int | None, attempt: int) -> str:
    """Deterministic, so a restart finds the Job it created instead of creating another."""
    parts = [migration, run_id, hook]
    if step is not None:
        parts.append(f"s{step}")
    if attempt > 1:
        parts.append(f"a{attempt}")
    name = "-".join(parts).lower()
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in name).strip("-")
    if len(name) > 63:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[:54].rstrip('-')}-{digest}"
    return name
