"""Who wakes whom: each Migration's daemon sleeps on one event, set by whatever it waits for.

A change to the Migration wakes its own daemon; a change to a Deployment wakes only the daemons
of the Migrations that use that Deployment now, instead of every waiting Migration polling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Protocol

DeploymentKey = tuple[str, str]  # (namespace, name)


class Stopped(Protocol):
    """What Kopf hands a daemon to say it must end (``kopf.DaemonStopped``)."""

    def __bool__(self) -> bool: ...

    def wait(self) -> Awaitable[object]: ...


class Wakeups:
    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._watchers: dict[DeploymentKey, set[str]] = {}
        self._watched: dict[str, set[DeploymentKey]] = {}

    def event(self, uid: str) -> asyncio.Event:
        return self._events.setdefault(uid, asyncio.Event())

    def driving(self, uid: str) -> bool:
        """Whether a daemon runs for ``uid`` (between its ``event`` and its ``forget``)."""
        return uid in self._events

    def wake(self, uid: str) -> None:
        event = self._events.get(uid)
        if event is not None:
            event.set()

    def wake_users_of(self, key: DeploymentKey) -> None:
        for uid in self._watchers.get(key, ()):
            self.wake(uid)

    def watch(self, uid: str, keys: Iterable[DeploymentKey]) -> None:
        """From now on ``uid`` uses exactly these Deployments (a spec may name new ones)."""
        wanted = set(keys)
        before = self._watched.get(uid, set())
        for key in before - wanted:
            self._unwatch(uid, key)
        for key in wanted - before:
            self._watchers.setdefault(key, set()).add(uid)
        self._watched[uid] = wanted

    def forget(self, uid: str) -> None:
        for key in self._watched.pop(uid, set()):
            self._unwatch(uid, key)
        self._events.pop(uid, None)

    def _unwatch(self, uid: str, key: DeploymentKey) -> None:
        uids = self._watchers.get(key)
        if uids is not None:
            uids.discard(uid)
            if not uids:
                del self._watchers[key]


async def sleep(stopped: Stopped, wake: asyncio.Event, delay: float | None) -> None:
    """Until ``delay`` passes or ``wake`` is set, whichever comes first; a daemon that must stop
    has its ``wake`` set by ``wake_on_stop``. Waits in the caller's own task: a sleeping daemon
    costs no task of its own, once per Migration the process carries."""
    if stopped:
        return
    try:
        async with asyncio.timeout(delay):
            await wake.wait()
    except TimeoutError:
        pass


async def wake_on_stop(stopped: Stopped, wake: asyncio.Event) -> None:
    """Sets ``wake`` once Kopf says the daemon must end, so that its sleep ends too."""
    await stopped.wait()
    wake.set()
