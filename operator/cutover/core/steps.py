"""The steps of a run: set each step's weight, wait for green to be ready, hold timed and manual
pauses, wait for hooks and gates, then bake and succeed (core.window: blue retired, or kept for
the rollback window); and when the next step is due.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cutover.api import HookStage, MigrationSpec
from cutover.core.actions import SetMirror, SetWeight
from cutover.core.hooks import HookRunner
from cutover.core.plan import green_replicas_needed, mirror_at
from cutover.core.preview import PreviewRunner
from cutover.core.transitions import Event, Reason
from cutover.core.window import WindowKeeper
from cutover.durations import parse_duration, seconds_until_past

# Deployment changes wake a waiting Migration (handlers.deployments); this poll is only a safety
# net for a missed event. At 5 s, 1,000 Migrations waiting for green pods made ~200 reconciles
# a second, ~0.5 core, to learn nothing.
_READINESS_POLL = 30.0


class StepRunner(HookRunner, WindowKeeper, PreviewRunner):
    def _progress(self, spec: MigrationSpec) -> None:
        if not self._stage_ok(spec, HookStage.pre_shift, None):
            return
        if not self._preview_done(spec):
            return
        index = self.s.current_step_index
        finishing = index >= len(spec.steps)
        step = None if finishing else spec.steps[index]
        if finishing:
            target = 100
        elif step is not None and step.set_weight is not None:
            target = step.set_weight
        else:
            target = self.s.weight
        mirror = mirror_at(spec, index)
        # Both in one decision: a weight step after a mirror step moves and unmirrors together.
        weight_in_place = self._weight_applied(target)
        if not (self._mirror_applied(mirror) and weight_in_place):
            return
        if self.s.step_ready_at is None and not self._green_ready(spec, target, mirror):
            return
        if finishing:
            self._finish(spec)
            return
        assert step is not None
        if step.set_weight is not None:
            hooks_done = target == 0 or self._stage_ok(spec, HookStage.after_step, index)
            if hooks_done and self._gates_passed_since(spec, self.s.step_ready_at):
                self._advance_to(index + 1, f"weight {target}% held and gates passed")
            return
        if step.set_mirror is not None:
            if self._gates_passed_since(spec, self.s.step_ready_at):
                self._advance_to(index + 1, f"{mirror}% of requests mirrored to green")
            return
        assert step.pause is not None
        if step.pause.duration is None:
            self._fire(Event.pause_step, f"step {index + 1}: paused until promoted")
            return
        end = self._pause_end(step.pause.duration)
        if self.now >= end and self._gates_passed_since(spec, self.s.step_ready_at):
            self._advance_to(index + 1, f"pause of {step.pause.duration} over")

    def _weight_applied(self, target: int) -> bool:
        """Sets the weight when the status or the cluster disagree with ``target``."""
        router_weight = self.obs.router_weight
        in_cluster = router_weight is None or router_weight == target
        if self.s.weight == target and (in_cluster or self._wrote_weight()):
            if self.s.weight_acknowledged_at is None and not self._wrote_weight():
                self.s.weight_acknowledged_at = self.now
            return True
        self.actions.append(SetWeight(target, self._total()))
        self.s.weight_acknowledged_at = None
        if self.s.weight != target:
            self.s.weight = target
            self.s.step_ready_at = None
            self._history(Reason.weight_set, f"green weight set to {target}%")
        return False

    def _mirror_applied(self, target: int) -> bool:
        """Sets the mirror when the status or the cluster disagree with ``target`` percent."""
        router_mirror = self.obs.router_mirror
        in_cluster = router_mirror is None or router_mirror == target
        if self.s.mirror == target and in_cluster:
            return True
        if not any(isinstance(a, SetMirror) for a in self.actions):
            self.actions.append(SetMirror(target))
        if self.s.mirror != target:
            self.s.mirror = target
            # Green must be ready for the copies too before the step counts as in place.
            self.s.step_ready_at = None
            message = (
                f"{target}% of requests mirrored to green" if target else "mirror to green removed"
            )
            self._history(Reason.mirror_set, message)
        return False

    def _wrote_weight(self) -> bool:
        return any(isinstance(a, SetWeight) for a in self.actions)

    def _green_ready(self, spec: MigrationSpec, target: int, mirror: int) -> bool:
        green = self.obs.green
        needed = green_replicas_needed(spec, self._total(), target, mirror)
        if green is not None and green.available >= needed:
            self.s.step_ready_at = self.now
            if target > 0:
                self._schedule_first_checks(spec)
            return True
        deadline = parse_duration(spec.progress_deadline)
        # A Deployment as the watch showed it before our scale-up landed says nothing about
        # green: judge the deadline only on an observation that includes the write.
        current = green is None or green.replicas >= needed
        if (self.now - self._deadline_start()).total_seconds() > deadline and current:
            have = green.available if green is not None else 0
            self._fire(
                Event.deadline_exceeded,
                f"green {spec.green.deployment} has {have}/{needed} replicas available"
                f" {spec.progress_deadline} after its weight was in place (progressDeadline)",
            )
        return False

    def _deadline_start(self) -> datetime:
        """Green's time starts when its weight is in place, not when the step was decided: an
        operator minutes behind, or slow writes, must not count against a healthy green."""
        return self.s.weight_acknowledged_at or self.s.step_started_at or self.now

    def _pause_end(self, duration: str) -> datetime:
        """A timed pause lasts its duration from the status write that started it: the
        decision (stepStartedAt) may precede that write by seconds on a loaded API server."""
        started = self.s.step_started_at or self.now
        write = self.obs.step_write
        if write is not None and write.step_started_at == self.s.step_started_at:
            started = max(started, write.acknowledged_at)
        return started + timedelta(seconds=parse_duration(duration))

    def _advance_to(self, index: int, message: str) -> None:
        assert isinstance(self.spec, MigrationSpec)
        index = min(index, len(self.spec.steps))
        self.s.current_step_index = index
        self.s.step_started_at = self.now
        self.s.step_ready_at = None
        self.s.weight_acknowledged_at = None
        label = "finishing" if index >= len(self.spec.steps) else f"step {index + 1}"
        # History only: Events mark phase changes, so a long run does not flood `kubectl events`
        # (and each Event is an API write).
        self._history(Reason.step_started, f"{message}; {label} of {len(self.spec.steps)}")

    def _finish(self, spec: MigrationSpec) -> None:
        bake = 0.0 if self.s.full_promotion else parse_duration(spec.bake)
        ready = self.s.step_ready_at or self.now
        if bake > 0:
            if (self.now - ready).total_seconds() < bake:
                return
            if not self._gates_passed_since(spec, ready):
                return
        if not self._stage_ok(spec, HookStage.post_promotion, None):
            return
        self._succeed(spec)

    def _progress_wake(self, spec: MigrationSpec) -> float | None:
        if self.s.step_ready_at is None:
            deadline = self._deadline_start() + timedelta(
                seconds=parse_duration(spec.progress_deadline)
            )
            left = seconds_until_past(deadline, self.now)
            return min(_READINESS_POLL, max(left, 0.0))
        index = self.s.current_step_index
        if index >= len(spec.steps):
            bake = parse_duration(spec.bake)
            return max((self.s.step_ready_at - self.now).total_seconds() + bake, 0.0)
        step = spec.steps[index]
        if step.pause is not None and step.pause.duration is not None:
            return (self._pause_end(step.pause.duration) - self.now).total_seconds()
        # Otherwise the next gate check (already a candidate) is what moves the step on.
        return None
