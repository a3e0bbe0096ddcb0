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


async def test_a_new_run_does_nothing_until_kopfs_finalizer_is_on_its_migration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kopf spawns a new Migration's daemon in the same cycle as it sends its finalizer. A run
    that moved traffic before the finalizer landed, then deleted, would be gone at once, with no
    deletion handler to put traffic back on blue."""
    context = Context(kube=cast(Kube, NoKube()), gates=cast(Any, None))
    reconciler = Reconciler(context, "shop", "checkout", "uid-1")
    stopped = Stop()
    body: dict[str, Any] = {"metadata": {"finalizers": ["someone.else/finalizer"]}, "spec": raw()}
    reconciled = asyncio.Event()

    async def reconcile(*args: Any, **kwargs: Any) -> Outcome:
        reconciled.set()
        return Outcome(MigrationStatus(), None, False)

    monkeypatch.setattr(reconciler, "reconcile", reconcile)
    daemon = asyncio.ensure_future(
        reconciler.drive(
            stopped,
            body,
            lambda ns, name: None,
            lambda ns, name: {},
            finalizer="cutover.io/finalizer",
        )
    )
    for _ in range(3):  # the Migration's other events wake the daemon: still nothing
        context.wakeups.wake("uid-1")
        await asyncio.sleep(0.05)
    assert not reconciled.is_set()

    body["metadata"]["finalizers"].append("cutover.io/finalizer")  # Kopf's live copy
    context.wakeups.wake("uid-1")  # the finalizer's event
    await asyncio.wait_for(reconciled.wait(), timeout=10)
    stopped.event.set()
    await asyncio.wait_for(daemon, timeout=10)
