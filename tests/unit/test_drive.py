"""The daemon loop (Reconciler.drive): a reconcile that crashes on a defect is retried soon, with
a back-off, instead of stalling the run for Kopf's default daemon back-off of 60 s; one the API
server keeps failing backs off to a minute, so an operator cut off from it does not spin."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from typing import Any, cast

import pytest

from cutover import reconciler as reconciler_module
from cutover.api import MigrationStatus
from cutover.gatecheck import GateChecker
from cutover.kube import Kube, KubeError
from cutover.reconciler import Context, Outcome, Reconciler

from .specs import raw
from .stop import Stop


class NoKube:
    async def get(self, *args: Any) -> None:
        return None

    async def list(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return []


async def test_crashed_reconciles_are_retried_with_a_back_off_that_success_resets(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    context = Context(kube=cast(Kube, NoKube()), gates=cast(Any, None))
    reconciler = Reconciler(context, "shop", "checkout", "uid-1")
    stopped = Stop()
    # What each reconcile does in turn: crash (a defect), crash, succeed, fail on the API
    # twice, crash again: failures of either kind in a row back off together.
    script: list[Exception | None] = [
        ValueError("list.remove(x): x not in list"),
        ValueError("again"),
        None,
        KubeError("get deployments: 503", status=503),
        KubeError("get deployments: connection refused", status=None),
        ValueError("once more"),
    ]
    delays: list[float | None] = []

    async def reconcile(*args: Any, **kwargs: Any) -> Outcome:
        error = script.pop(0)
        if error is not None:
            raise error
        return Outcome(MigrationStatus(), 30.0, False)

    async def sleep(stopped_: Any, wake: asyncio.Event, delay: float | None) -> None:
        delays.append(delay)
        if not script:
            stopped.event.set()

    monkeypatch.setattr(reconciler, "reconcile", reconcile)
    monkeypatch.setattr(reconciler_module, "sleep", sleep)
    with caplog.at_level(logging.ERROR, logger="cutover.reconciler"):
        await reconciler.drive(stopped, {"spec": raw()}, lambda ns, name: None, lambda ns, name: {})

    assert delays == [5.0, 10.0, 30.0, 5.0, 10.0, 20.0]
    crashes = [r for r in caplog.records if r.getMessage() == "reconcile crashed"]
    assert len(crashes) == 3 and all(r.exc_info for r in crashes)


async def test_an_api_server_that_stays_away_is_retried_at_most_once_a_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    context = Context(kube=cast(Kube, NoKube()), gates=cast(Any, None))
    reconciler = Reconciler(context, "shop", "checkout", "uid-1")
    stopped = Stop()
    delays: list[float | None] = []

    async def reconcile(*args: Any, **kwargs: Any) -> Outcome:
        raise KubeError("get deployments: connection refused", status=None)

    async def sleep(stopped_: Any, wake: asyncio.Event, delay: float | None) -> None:
        delays.append(delay)
        if len(delays) == 8:
            stopped.event.set()

    monkeypatch.setattr(reconciler, "reconcile", reconcile)
    monkeypatch.setattr(reconciler_module, "sleep", sleep)
    await reconciler.drive(stopped, {"spec": raw()}, lambda ns, name: None, lambda ns, name: {})

    assert delays == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0, 60.0]


async def test_the_status_a_reconcile_decided_from_is_not_kept_while_the_daemon_sleeps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A daemon sleeps most of its life; what it holds then is held once per Migration the
    process carries (a parsed status is ~20 KiB: 1,000 Migrations, 20 MB)."""
    context = Context(kube=cast(Kube, NoKube()), gates=cast(Any, None))
    reconciler = Reconciler(context, "shop", "checkout", "uid-1")
    stopped = Stop()
    decided: list[weakref.ref[MigrationStatus]] = []
    alive_while_asleep: list[bool] = []

    async def reconcile(*args: Any, **kwargs: Any) -> Outcome:
        status = MigrationStatus()
        decided.append(weakref.ref(status))
        return Outcome(status, 30.0, False)

    async def sleep(stopped_: Any, wake: asyncio.Event, delay: float | None) -> None:
        gc.collect()
        alive_while_asleep.append(decided[-1]() is not None)
        stopped.event.set()

    monkeypatch.setattr(reconciler, "reconcile", reconcile)
    monkeypatch.setattr(reconciler_module, "sleep", sleep)
    await reconciler.drive(stopped, {"spec": raw()}, lambda ns, name: None, lambda ns, name: {})

    assert alive_while_asleep == [False]


async def test_a_daemon_asleep_with_nothing_due_ends_when_told_to_stop_and_leaves_no_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    context = Context(kube=cast(Kube, NoKube()), gates=cast(Any, None))
    reconciler = Reconciler(context, "shop", "checkout", "uid-1")
    stopped = Stop()
    reconciled = asyncio.Event()

    async def reconcile(*args: Any, **kwargs: Any) -> Outcome:
        reconciled.set()
        return Outcome(MigrationStatus(), None, False)  # nothing due: sleep until woken

    monkeypatch.setattr(reconciler, "reconcile", reconcile)
    before = asyncio.all_tasks()
    daemon = asyncio.ensure_future(
        reconciler.drive(stopped, {"spec": raw()}, lambda ns, name: None, lambda ns, name: {})
    )
    await asyncio.wait_for(reconciled.wait(), timeout=10)
    await asyncio.sleep(0)
    assert not daemon.done()

    stopped.event.set()
    await asyncio.wait_for(daemon, timeout=10)
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == before


class RecordingKube(NoKube):
    """Nothing exists; every request is recorded as its verb, in order."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.patches: list[dict[str, Any]] = []

    async def get(self, *args: Any) -> None:
        self.requests.append("get")

    async def list(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        self.requests.append("list")
        return []

    async def patch(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.requests.append("patch")
        self.patches.append(args[5])
        return {}

    async def emit_event(self, *args: Any) -> None:
        self.requests.append("event")


class StartingRun:
    """A new run's daemon (both Deployments missing from the watch, so its start reads them)
    on a Migration that does not carry the operator's finalizer yet."""

    def __init__(self, metadata: dict[str, Any]) -> None:
        self.kube = RecordingKube()
        self.context = Context(kube=cast(Kube, self.kube), gates=GateChecker(cast(Kube, self.kube)))
        self.stopped = Stop()
        self.body: dict[str, Any] = {"metadata": {"generation": 1, **metadata}, "spec": raw()}
        reconciler = Reconciler(self.context, "shop", "checkout", "uid-1")
        self.daemon = asyncio.ensure_future(
            reconciler.drive(
                self.stopped,
                self.body,
                lambda ns, name: None,
                lambda ns, name: {},
                finalizer="cutover.io/finalizer",
            )
        )

    async def until_sent(self, verb: str) -> None:
        for _ in range(100):
            if verb in self.kube.requests:
                return
            await asyncio.sleep(0.05)

    def finalizer_lands(self) -> None:
        self.body["metadata"].setdefault("finalizers", []).append("cutover.io/finalizer")
        self.context.wakeups.wake("uid-1")  # the finalizer's event

    async def stop(self) -> None:
        self.stopped.event.set()
        await asyncio.wait_for(self.daemon, timeout=10)


async def test_a_new_run_reads_but_writes_nothing_until_kopfs_finalizer_is_on_its_migration() -> (
    None
):
    """Kopf spawns a new Migration's daemon in the same cycle as it sends its finalizer. A run
    that moved traffic before the finalizer landed, then deleted, would be gone at once, with no
    deletion handler to put traffic back on blue. Its reads need not wait: once the finalizer is
    on, the run writes what it decided without reading again."""
    run = StartingRun({"finalizers": ["someone.else/finalizer"]})
    for _ in range(3):  # the Migration's other events wake the daemon: still no write
        run.context.wakeups.wake("uid-1")
        await asyncio.sleep(0.05)
    assert "get" in run.kube.requests
    assert not {"patch", "event"} & set(run.kube.requests), run.kube.requests
    read = len(run.kube.requests)

    run.finalizer_lands()
    await run.until_sent("patch")
    await run.stop()
    # Both Deployments missing: the run failed its start checks, said so, and read nothing
    # more for it (its Event is posted without the run waiting for it: either may go first).
    assert sorted(run.kube.requests[read:][:2]) == ["event", "patch"], run.kube.requests


class SlowEventKube(RecordingKube):
    """Events wait until ``released``: an API server busy with every run's writes, which go
    first (urgency.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.released = asyncio.Event()

    async def emit_event(self, *args: Any) -> None:
        await self.released.wait()
        self.requests.append("event")


async def test_a_runs_status_write_and_its_daemons_end_never_wait_for_its_event() -> None:
    """Under load an Event waits behind every run's writes. A reconcile that awaited it held
    back its last status write and, once its run had succeeded, its daemon's
    end, while Kopf kept the Migration's latest event. The run's status write goes out at
    once, the daemon ends when told to, and the Event is still sent."""
    run = StartingRun({"finalizers": ["cutover.io/finalizer"]})
    kube = SlowEventKube()
    run.kube.requests, run.kube.patches = kube.requests, kube.patches
    run.context.kube = cast(Kube, kube)
    await run.until_sent("patch")
    assert "patch" in kube.requests and "event" not in kube.requests, kube.requests
    assert run.context.events.pending == 1
    await run.stop()  # returns within its 10 s timeout: the Event does not hold the daemon
    assert "event" not in kube.requests
    kube.released.set()
    await run.context.events.join(timeout=10)
    assert kube.requests.count("event") == 1 and run.context.events.pending == 0


async def test_a_run_stopped_while_waiting_for_its_finalizer_writes_nothing() -> None:
    """A Migration deleted before Kopf's finalizer landed: Kopf stops its daemon, and what the
    start had read and decided is never written."""
    run = StartingRun({})
    await run.until_sent("get")
    assert "get" in run.kube.requests  # the start's reads went ahead
    await run.stop()
    assert not {"patch", "event"} & set(run.kube.requests), run.kube.requests


async def test_a_spec_changed_while_waiting_for_the_finalizer_is_what_the_run_decides_on() -> None:
    """The start read and decided on generation 1; the spec changed before the finalizer came.
    The first write is about generation 2, not the stale decision."""
    run = StartingRun({})
    await run.until_sent("get")
    run.body["metadata"]["generation"] = 2
    run.finalizer_lands()
    await run.until_sent("patch")
    await run.stop()
    assert run.kube.patches[0]["status"]["observedGeneration"] == 2, run.kube.patches[0]


async def test_a_request_made_while_waiting_for_the_finalizer_is_read_before_the_first_write() -> (
    None
):
    """The start read the Migration before ``cutover abort`` annotated it; once the finalizer
    is on, the run reads again instead of writing what it decided without the request."""
    run = StartingRun({})
    await run.until_sent("get")
    read = len(run.kube.requests)
    run.body["metadata"]["annotations"] = {"cutover.io/request": "abort:a1"}
    run.finalizer_lands()
    await run.until_sent("patch")
    await run.stop()
    assert run.kube.requests[read] == "get", run.kube.requests  # read again before any write
    assert "patch" in run.kube.requests[read:]
