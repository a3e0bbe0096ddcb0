"""A simulated cluster for driving the decision engine with a fake clock, as the reconciler does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cutover.api import MigrationSpec, MigrationStatus, Shift, SpecInvalid
from cutover.core.autoscaling import Autoscaler
from cutover.core.gates import Reading
from cutover.core.machine import (
    Action,
    CreatePreview,
    Decision,
    DeletePreview,
    DeploymentState,
    EmitEvent,
    HoldBlue,
    JobState,
    Observations,
    PrepareGreen,
    Request,
    RequestVerb,
    RestoreBlue,
    RetireBlue,
    RunHook,
    SetMirror,
    SetWeight,
    StopJob,
    decide,
    gates_due,
)
from cutover.core.plan import replica_split

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ReadingFn = Callable[[str, datetime], Reading]


def healthy(_gate: str, _now: datetime) -> Reading:
    return Reading.of(0.0)


@dataclass
class Sim:
    spec: MigrationSpec | SpecInvalid
    blue: int = 4
    green: int = 0
    ready_delay: float = 0.0  # seconds before scaled pods become available
    readings: ReadingFn = healthy
    generation: int = 1
    green_exists: bool = True
    blue_exists: bool = True
    preflight_errors: tuple[str, ...] = ()
    now: datetime = T0
    status: MigrationStatus = field(default_factory=MigrationStatus)
    weight_in_cluster: int = 0
    mirror_in_cluster: int = 0
    autoscalers: tuple[Autoscaler, ...] = ()
    actions: list[Action] = field(default_factory=list)
    weight_writes: list[int] = field(default_factory=list)
    request: Request | None = None
    # Hook outcomes by hook name: "succeed", "fail" or "hang"; a Job finishes after job_delay.
    hook_outcomes: dict[str, str] = field(default_factory=dict)
    job_delay: float = 5.0
    jobs_created: list[str] = field(default_factory=list)
    jobs_deleted: list[str] = field(default_factory=list)
    # Blue kept at full size with no traffic (the rollback window).
    held: bool = False
    # Preview Services in place (spec.preview).
    previews: set[str] = field(default_factory=set)
    _job_started: dict[str, datetime] = field(default_factory=dict)
    _scaled_at: datetime = T0
    _requests: int = 0

    def jobs(self) -> dict[str, JobState]:
        states = {}
        for name, started in self._job_started.items():
            hook = (
                next(h for h in self.hook_outcomes if f"-{h}" in name)
                if any(f"-{h}" in name for h in self.hook_outcomes)
                else None
            )
            outcome = self.hook_outcomes.get(hook, "succeed") if hook else "succeed"
            done = (self.now - started).total_seconds() >= self.job_delay
            states[name] = JobState(
                succeeded=done and outcome == "succeed",
                failed=done and outcome == "fail",
                message="exit code 3: 2 rows missing in target" if outcome == "fail" else "",
            )
        return states

    def observe(self, acted: tuple[Action, ...] = ()) -> Observations:
        available = self.ready_delay <= (self.now - self._scaled_at).total_seconds()
        spec = self.spec if isinstance(self.spec, MigrationSpec) else None
        due = gates_due(spec, self.status, self.now) if spec else []
        return Observations(
            generation=self.generation,
            blue=DeploymentState(self.blue, self.blue) if self.blue_exists else None,
            green=DeploymentState(self.green, self.green if available else 0)
            if self.green_exists
            else None,
            router_weight=self.weight_in_cluster,
            router_mirror=self.mirror_in_cluster,
            autoscalers=self.autoscalers,
            readings={g.name: self.readings(g.name, self.now) for g in due},
            request=self.request,
            preflight_errors=self.preflight_errors,
            acted=acted,
            jobs=self.jobs(),
            migration="orders",
        )

    def act(self, action: Action) -> None:
        self.actions.append(action)
        if isinstance(action, SetWeight):
            self.weight_writes.append(action.weight)
            by_pods = (
                not isinstance(self.spec, MigrationSpec)
                or self.spec.traffic.router.capabilities.shift is Shift.pods
            )
            if by_pods:
                self.blue, self.green = replica_split(action.total_replicas, action.weight)
            self.weight_in_cluster = action.weight
            self._scaled_at = self.now
        elif isinstance(action, SetMirror):
            self.mirror_in_cluster = action.percent
        elif isinstance(action, RestoreBlue):
            self.held = False
            self.weight_writes.append(0)
            self.weight_in_cluster = 0
            self.mirror_in_cluster = 0
            self.blue = action.total_replicas
            if action.scale_down_green:
                self.green = 0
        elif isinstance(action, PrepareGreen):
            self.green = action.total_replicas
            self._scaled_at = self.now
        elif isinstance(action, HoldBlue):
            self.blue = action.total_replicas
            self.held = True
        elif isinstance(action, RetireBlue):
            self.blue = 0
            self.held = False
        elif isinstance(action, RunHook):
            if action.job not in self._job_started:
                self.jobs_created.append(action.job)
                self._job_started[action.job] = self.now
        elif isinstance(action, StopJob):
            self.jobs_deleted.append(action.job)
            self._job_started.pop(action.job, None)
        elif isinstance(action, CreatePreview):
            self.previews.add(action.service)
        elif isinstance(action, DeletePreview):
            self.previews.discard(action.service)

    def reconcile(self) -> Decision:
        """One wake-up: decide and act until no more actions, as the reconciler does."""
        decision = decide(self.spec, self.status, self.observe(), self.now)
        for _ in range(4):
            self.status = decision.status
            self.request = (
                None
                if self.request and self.request.id == decision.status.last_request
                else self.request
            )
            real = [a for a in decision.actions if not isinstance(a, EmitEvent)]
            for action in decision.actions:
                self.act(action)
            if not real:
                break
            decision = decide(self.spec, self.status, self.observe(tuple(real)), self.now)
        self.status = decision.status
        return decision

    def ask(self, verb: RequestVerb) -> Decision:
        self._requests += 1
        self.request = Request(id=f"req-{self._requests}", verb=verb)
        return self.reconcile()

    def run(self, until: Callable[[Sim], bool], limit: float = 3600, tick: float = 0.5) -> Decision:
        """Reconcile at every wake-up the engine asks for until ``until`` holds."""
        decision = self.reconcile()
        deadline = self.now + timedelta(seconds=limit)
        while not until(self) and self.now < deadline:
            wait = decision.requeue_after if decision.requeue_after is not None else tick
            self.now += timedelta(seconds=max(wait, 0.05))
            decision = self.reconcile()
        return decision

    def order(self) -> list[str]:
        """Traffic writes and hook starts, in the order the engine asked for them."""
        out: list[str] = []
        for action in self.actions:
            if isinstance(action, SetWeight):
                out.append(f"weight {action.weight}")
            elif isinstance(action, SetMirror):
                out.append(f"mirror {action.percent}")
            elif isinstance(action, RunHook) and (not out or out[-1] != f"hook {action.hook}"):
                out.append(f"hook {action.hook}")
            elif isinstance(action, RestoreBlue):
                out.append("restore")
            elif isinstance(action, RetireBlue):
                out.append("retire")
            elif isinstance(action, HoldBlue):
                out.append("hold")
        return out

    @property
    def events(self) -> list[EmitEvent]:
        return [a for a in self.actions if isinstance(a, EmitEvent)]
