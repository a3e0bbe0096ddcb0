"""The Migrations the user can list, kept current by a watch, and their histories.

The Kubernetes client is synchronous, so the list-and-watch loop runs in a thread of its own and
hands every change to the event loop, where the state lives and the pages wait for changes. A
user who may list but not watch gets a list every second instead; a user who may not list sees
why on the page, and the loop keeps asking, so granting the right later is enough.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cutover.cli.client import CliError, Cluster
from cutover.cli.dashboard.history import Histories, Key

log = logging.getLogger("cutover.dashboard")

_HTTP_FORBIDDEN = 403
_HTTP_GONE = 410
_POLL_SECONDS = 1.0
_RETRY_SECONDS = 3.0
_WATCH_SECONDS = 30


class Mode(enum.StrEnum):
    starting = "starting"
    watching = "watching"
    polling = "polling (no watch permission)"
    failing = "failing"


@dataclass(frozen=True)
class Problem:
    """Why the dashboard cannot show the Migrations, in words for the page."""

    message: str
    forbidden: bool


def key_of(obj: Mapping[str, Any]) -> Key:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def forbidden_hint(all_namespaces: bool, namespace: str) -> str:
    where = "cluster-wide (a ClusterRole)" if all_namespaces else f"in namespace {namespace}"
    return (
        f"ask for get, list and watch on migrations.cutover.io {where};"
        " `kubectl auth can-i list migrations.cutover.io` checks it"
    )


def problem_of(error: CliError, all_namespaces: bool, namespace: str) -> Problem:
    forbidden = error.http_status == _HTTP_FORBIDDEN
    message = error.message
    if forbidden:
        message += f". To use the dashboard, {forbidden_hint(all_namespaces, namespace)}."
    return Problem(message=message, forbidden=forbidden)


class Feed:
    """State shared by every page: the objects, a change counter per Migration, the problem."""

    def __init__(
        self,
        cluster: Cluster,
        all_namespaces: bool,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._cluster = cluster
        self.all_namespaces = all_namespaces
        self.namespace = cluster.namespace
        self._clock = clock
        self.objects: dict[Key, dict[str, Any]] = {}
        self.histories = Histories()
        self.problem: Problem | None = None
        self.mode = Mode.starting
        self.version = 0
        self.versions: dict[Key, int] = {}
        self._changed = asyncio.Event()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def where(self) -> str:
        return "all namespaces" if self.all_namespaces else f"namespace {self.namespace}"

    # --- on the event loop ----------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="migration-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        # The thread may sit in a watch for up to _WATCH_SECONDS; it is a daemon, so it does not
        # hold the process, and it stops at its next turn.
        self._stop.set()

    async def wait(self, seen: int, timeout: float) -> bool:
        """Wait until the state moves past version ``seen``; False on timeout."""
        if self.version != seen:
            return True
        changed = self._changed
        try:
            await asyncio.wait_for(changed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def touch(self) -> None:
        """Something shown beside the Migrations changed (Events, Deployments): redraw."""
        self._bump(None)

    def _bump(self, key: Key | None) -> None:
        self.version += 1
        if key is not None:
            self.versions[key] = self.version
        # Wake everyone waiting now; later waiters wait on a fresh Event.
        self._changed.set()
        self._changed = asyncio.Event()

    def _replace(self, items: list[dict[str, Any]], mode: Mode) -> None:
        now = self._clock()
        fresh = {key_of(item): item for item in items}
        for key in set(self.objects) - set(fresh):
            self.histories.forget(key)
            self.versions[key] = self.version + 1
        for key, item in fresh.items():
            if self.objects.get(key) != item:
                self.histories.observe(item, now)
                self.versions[key] = self.version + 1
        self.objects = fresh
        self.problem = None
        self.mode = mode
        self._bump(None)

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        key = key_of(obj)
        if kind == "DELETED":
            self.objects.pop(key, None)
            self.histories.forget(key)
        else:
            self.objects[key] = obj
            self.histories.observe(obj, self._clock())
        self._bump(key)

    def _fail(self, problem: Problem) -> None:
        if problem != self.problem:
            self.problem = problem
            self.mode = Mode.failing
            self._bump(None)

    # --- in the watch thread --------------------------------------------------------------------

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _run(self) -> None:
        may_watch = True
        while not self._stop.is_set():
            try:
                items, version = self._cluster.snapshot(self.all_namespaces)
            except CliError as error:
                log.info("listing Migrations failed: %s", error.message)
                self._post(self._fail, problem_of(error, self.all_namespaces, self.namespace))
                self._stop.wait(_RETRY_SECONDS)
                continue
            self._post(self._replace, items, Mode.watching if may_watch else Mode.polling)
            if not may_watch:
                self._stop.wait(_POLL_SECONDS)
                continue
            may_watch = self._watch(version)

    def _watch(self, version: str) -> bool:
        """Follow changes from ``version`` until the watch must start over; False when RBAC
        forbids watching (the loop then polls)."""
        while not self._stop.is_set():
            try:
                for kind, obj in self._cluster.watch(self.all_namespaces, version, _WATCH_SECONDS):
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    self._post(self._apply, kind, obj)
                    if self._stop.is_set():
                        return True
            except CliError as error:
                if error.http_status == _HTTP_FORBIDDEN:
                    log.info("watching Migrations is forbidden: polling instead")
                    return False
                if error.http_status != _HTTP_GONE:
                    log.info("the watch of Migrations failed: %s", error.message)
                    self._stop.wait(_RETRY_SECONDS / 3)
                return True  # list again: a fresh version, and nothing missed in between
        return True
