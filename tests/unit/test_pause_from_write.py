"""A timed pause lasts its duration from the status write that starts it (issue 16): on a loaded
API server that write is acknowledged seconds after the decision it records (stepStartedAt),
and a wake-up in between (a Deployment event) must not end the pause that much early."""

from __future__ import annotations

import asyncio
import copy
from datetime import datetime, timedelta
from typing import Any

from cutover.reconciler import Context, Outcome, Reconciler

from .test_api_economy import NS, Clock, FakeKube, context

SLOW_WRITE = timedelta(seconds=3)
PAUSE = timedelta(seconds=5)
STEPS = [{"setWeight": 10}, {"pause": {"duration": "5s"}}, {"setWeight": 100}]


class SlowStatusKube(FakeKube):
    """Every status write takes ``SLOW_WRITE`` on the operator's clock; remembers when each
    write that moved the run to another step was acknowledged."""

    def __init__(self) -> None:
        super().__init__()
        self.clock: Clock | None = None
        self.step_acknowledged: dict[int, datetime] = {}

    def status_written(self, before: dict[str, Any], after: dict[str, Any]) -> None:
        if self.clock is None:
            return
        self.clock.now += SLOW_WRITE
        index = after.get("currentStepIndex")
        if index is not None and index != before.get("currentStepIndex"):
            self.step_acknowledged.setdefault(index, self.clock.now)


def _paused_run() -> tuple[SlowStatusKube, Context, Clock, Reconciler]:
    kube = SlowStatusKube()
    kube.add_deployment("blue", 4)
    kube.add_deployment("green", 0)
    kube.add_migration("m", STEPS)
    ctx = context(kube)
    clock = ctx.clock
    assert isinstance(clock, Clock)
    kube.clock = clock
    reconciler = Reconciler(ctx, NS, "m", "uid-m")
    for _ in range(10):
        _wake(kube, reconciler)
        kube.settle()
        if _status(kube).get("currentStepIndex") == 1:
            break
    assert _status(kube).get("currentStepIndex") == 1, _status(kube)
    return kube, ctx, clock, reconciler


def _wake(kube: FakeKube, reconciler: Reconciler) -> Outcome:
    body = copy.deepcopy(kube.objects[("migrations", "m")])
    return asyncio.run(reconciler.reconcile(body, kube.index()))


def _status(kube: FakeKube) -> dict[str, Any]:
    return dict(kube.objects[("migrations", "m")]["status"])


def _step_started_at(kube: FakeKube) -> datetime:
    return datetime.fromisoformat(_status(kube)["stepStartedAt"].replace("Z", "+00:00"))


def test_a_wake_up_after_the_decision_plus_the_pause_but_before_the_write_plus_it_holds() -> None:
    kube, _ctx, clock, reconciler = _paused_run()
    written = kube.step_acknowledged[1]
    decided = _step_started_at(kube)
    assert written - decided >= SLOW_WRITE  # the status says when it was decided, not written

    # A Deployment event wakes the run after decision + pause, before write + pause.
    clock.now = decided + PAUSE + timedelta(seconds=1)
    held = _wake(kube, reconciler)
    assert held.status.current_step_index == 1, held.status.message
    assert _status(kube)["currentStepIndex"] == 1
    assert held.requeue_after is not None
    assert abs(held.requeue_after - (written + PAUSE - clock.now).total_seconds()) < 0.01

    clock.now = written + PAUSE
    done = _wake(kube, reconciler)
    assert done.status.current_step_index == 2
    assert kube.step_acknowledged[2] - written >= PAUSE


def test_a_restarted_operator_counts_the_pause_from_the_status_it_finds() -> None:
    """After a restart nothing says when that write was acknowledged: the pause counts from
    stepStartedAt, which precedes it by at most the write's latency."""
    kube, ctx, clock, _reconciler = _paused_run()
    decided = _step_started_at(kube)
    clock.now = decided + PAUSE + timedelta(seconds=1)
    restarted = Reconciler(ctx, NS, "m", "uid-m")
    outcome = _wake(kube, restarted)
    assert outcome.status.current_step_index == 2
