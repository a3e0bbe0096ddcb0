"""What ``decide`` returns: the actions that bring the cluster in line with the new status.

Every action is idempotent, so applying a decision twice changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from cutover.api import DeploymentRef, HookStage, MigrationStatus


@dataclass(frozen=True)
class SetWeight:
    weight: int
    total_replicas: int


@dataclass(frozen=True)
class SetMirror:
    """Copy ``percent`` of live requests to green (answers thrown away); 0 removes the mirror."""

    percent: int


@dataclass(frozen=True)
class PrepareGreen:
    """Scale green so that it can take any weight (routers that shift by weight, not pods)."""

    total_replicas: int


@dataclass(frozen=True)
class RestoreBlue:
    """All traffic back to blue in one router write, then green scaled down if asked."""

    total_replicas: int
    scale_down_green: bool


@dataclass(frozen=True)
class HoldBlue:
    """Before the rollback window: blue at full size again, kept out of traffic, so that a
    rollback is one router write with no pod to start."""

    total_replicas: int


@dataclass(frozen=True)
class RetireBlue:
    """After success: blue is no longer needed. The versions are named when the rollback window
    closes, as the spec may name the next release's by then."""

    blue: DeploymentRef | None = None
    green: DeploymentRef | None = None


@dataclass(frozen=True)
class RunHook:
    """Create the hook's Job (idempotent: the name is deterministic)."""

    stage: HookStage
    hook: str
    job: str
    step: int | None
    attempt: int
    timeout_seconds: float


@dataclass(frozen=True)
class StopJob:
    """Delete a Job that ran out of time."""

    job: str


@dataclass(frozen=True)
class CreatePreview:
    """The preview Service, selecting only green's pods and owned by the Migration (created, or
    put back in shape if it exists)."""

    service: str


@dataclass(frozen=True)
class DeletePreview:
    """The run is over: the preview Service goes (one already gone is fine)."""

    service: str


@dataclass(frozen=True)
class EmitEvent:
    type: str  # Normal | Warning
    reason: str
    message: str


Action = (
    SetWeight
    | SetMirror
    | PrepareGreen
    | RestoreBlue
    | HoldBlue
    | RetireBlue
    | RunHook
    | StopJob
    | CreatePreview
    | DeletePreview
    | EmitEvent
)


@dataclass(frozen=True)
class Decision:
    status: MigrationStatus
    actions: tuple[Action, ...]
    requeue_after: float | None  # seconds until something is due; None: only a change wakes it
