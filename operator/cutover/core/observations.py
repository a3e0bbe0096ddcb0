"""What ``decide`` reads: the cluster as the shell observed it, and the manual request to handle.

Plain frozen data, built by the shell (reconciler.py) and by the simulator in tests.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cutover.core import gates as gate_rules
from cutover.core.actions import Action
from cutover.core.autoscaling import Autoscaler


class RequestVerb(enum.StrEnum):
    promote = "promote"
    promote_full = "promote-full"
    pause = "pause"
    resume = "resume"
    abort = "abort"
    retry = "retry"
    undo = "undo"  # in the rollback window after success: all traffic back on blue


@dataclass(frozen=True)
class Request:
    """A manual request (from ``cutover promote`` etc.); ``id`` makes it act once only."""

    id: str
    verb: RequestVerb


@dataclass(frozen=True)
class DeploymentState:
    replicas: int  # spec.replicas
    available: int  # status.availableReplicas
    # The size a router saved before its first write: after a crash between a router write and
    # the status write, spec.replicas is no longer the size the run started from.
    original_replicas: int | None = None
    # What a router needs to write without reading the Deployment first (routers/base.py
    # ``Objects.known``): the spec's generation the watch saw (0 unknown: the router reads), the
    # operator's own ``cutover.io/`` annotations, the pod template's labels and the selector.
    generation: int = 0
    annotations: Mapping[str, str] = field(default_factory=dict)
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    selector: Mapping[str, Any] = field(default_factory=dict)

    @property
    def size_before_run(self) -> int:
        return self.original_replicas if self.original_replicas is not None else self.replicas


@dataclass(frozen=True)
class JobState:
    """A hook's Job as the cluster reports it."""

    succeeded: bool = False
    failed: bool = False
    message: str = ""  # e.g. the Job's Failed condition message and the pod log's last lines


@dataclass(frozen=True)
class StepWrite:
    """When the API server acknowledged the status write that started a step, as the process
    that wrote it saw it. ``step_started_at`` (what that write carried) says which step: a
    pause counts from the acknowledgement, so a write that took seconds under load does not
    shorten it."""

    step_started_at: datetime
    acknowledged_at: datetime


@dataclass(frozen=True)
class Observations:
    generation: int
    blue: DeploymentState | None = None  # None: the Deployment does not exist
    green: DeploymentState | None = None
    router_weight: int | None = None  # what the router reads from the cluster; None: cannot tell
    router_mirror: int | None = None  # the percent mirrored to green, read alike; None: not read
    readings: Mapping[str, gate_rules.Reading] = field(default_factory=dict)
    request: Request | None = None
    preflight_errors: tuple[str, ...] = ()  # e.g. a PromQL syntax error found before starting
    # HorizontalPodAutoscalers scaling blue or green, read with the preflight checks.
    autoscalers: tuple[Autoscaler, ...] = ()
    # What the spec asks that its author may not do (SubjectAccessReviews): checked first, alone.
    forbidden: tuple[str, ...] = ()
    # Gates whose template is missing, invalid or given the wrong args: checked before anything.
    template_problems: tuple[str, ...] = ()
    # Actions of the previous decision that the router acknowledged in this same wake-up.
    acted: tuple[Action, ...] = ()
    jobs: Mapping[str, JobState] = field(default_factory=dict)  # hook Jobs by name
    # Hook Jobs created by this wake-up's earlier rounds, which the watch may not show yet.
    jobs_created: frozenset[str] = frozenset()
    migration: str = "migration"  # the Migration's name, for hook Job names
    # This process's write that started the current step; None after a restart (a pause then
    # counts from stepStartedAt, the decision, at most that write's latency earlier).
    step_write: StepWrite | None = None
