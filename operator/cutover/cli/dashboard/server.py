"""The dashboard's HTTP server: pages, their Server-Sent Events, the static files and (only with
``--allow-actions``) the manual requests.

It listens on loopback by default and acts with the user's own kubeconfig, so two guards keep
other origins out: a request must name this server in its Host header (no DNS rebinding), and an
action must carry the page's random token in a header (a cross-site form cannot set one).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from cutover.cli.client import CliError, Cluster
from cutover.cli.dashboard.feed import Feed, Problem, problem_of
from cutover.cli.dashboard.history import Key
from cutover.cli.dashboard.pages import (
    ACTIONS,
    Detail,
    Parts,
    detail_body,
    detail_parts,
    detail_path,
    layout,
    overview_body,
    overview_parts,
)
from cutover.cli.requests import send_request
from cutover.core.observations import RequestVerb

log = logging.getLogger("cutover.dashboard")

STATIC = Path(__file__).resolve().parent / "static"
TOKEN_HEADER = "X-Cutover-Token"
# A detail page also shows Events and the Deployments, which change without the Migration doing
# so: read them again at least this often while someone looks.
_DETAIL_REFRESH = 3.0
_KEEPALIVE = 15.0
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
_CSP = (
    "default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:;"
    # Bars and the report's colours are inline style attributes.
    " style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'none'"
)


@dataclass(frozen=True)
class Settings:
    address: str
    port: int
    allow_actions: bool


@dataclass(frozen=True)
class Around:
    """A Migration's Events and Deployments as last read, and for which of its versions."""

    events: list[dict[str, Any]] | None
    deployments: dict[str, dict[str, Any] | None] | None
    version: int | None
    at: float  # time.monotonic()


def _now() -> datetime:
    return datetime.now(UTC)


class Dashboard:
    def __init__(self, cluster: Cluster, feed: Feed, settings: Settings) -> None:
        self.cluster = cluster
        self.feed = feed
        self.settings = settings
        self.token = secrets.token_urlsafe(24)
        self._around: dict[Key, Around] = {}
        self._reading: set[Key] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # --- assembling pages ---------------------------------------------------------------------

    def _overview(self) -> Parts:
        feed = self.feed
        return overview_parts(
            list(feed.objects.values()), feed.problem, feed.where, feed.mode.value, _now()
        )

    async def _detail(self, namespace: str, name: str) -> Parts:
        feed = self.feed
        key = (namespace, name)
        obj = feed.objects.get(key)
        around = self._around_of(key) if obj is not None else None
        detail = Detail(
            namespace=namespace,
            name=name,
            obj=obj,
            track=feed.histories.get(key),
            events=around.events if around else None,
            events_read=around is not None,
            deployments=around.deployments if around else None,
            problem=feed.problem,
            actions=self.settings.allow_actions,
            now=_now(),
        )
        return detail_parts(detail)

    def _around_of(self, key: Key) -> Around | None:
        """What was last read around the Migration; starts a new read when that is stale (the
        Migration changed since, or it is older than _DETAIL_REFRESH) without waiting for it:
        a slow API server never holds back the status on the page."""
        found = self._around.get(key)
        stale = (
            found is None
            or found.version != self.feed.versions.get(key)
            or time.monotonic() - found.at > _DETAIL_REFRESH
        )
        if stale and key not in self._reading:
            self._reading.add(key)
            task = asyncio.create_task(self._read(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return found

    async def _read(self, key: Key) -> None:
        try:
            obj = self.feed.objects.get(key)
            version = self.feed.versions.get(key)
            if obj is None:
                return
            events, deployments = await asyncio.to_thread(self._read_around, key[0], obj)
            before = self._around.get(key)
            self._around[key] = Around(events, deployments, version, time.monotonic())
            if before is None or (before.events, before.deployments) != (events, deployments):
                self.feed.touch()
        finally:
            self._reading.discard(key)

    def _read_around(
        self, namespace: str, obj: dict[str, Any]
    ) -> tuple[list[dict[str, Any]] | None, dict[str, dict[str, Any] | None] | None]:
        """The Migration's Events and its blue and green Deployments (None: not readable)."""
        cluster = self.cluster.in_namespace(namespace)
        name = str(obj["metadata"]["name"])
        spec = obj.get("spec") or {}
        sides = [
            str(ref.get("deployment"))
            for ref in (spec.get("blue") or {}, spec.get("green") or {})
            if ref.get("deployment")
        ]
        try:
            events = cluster.events(name)
        except CliError:
            events = None
        try:
            deployments = cluster.deployments(sides) if sides else None
        except CliError:
            deployments = None
        return events, deployments

    # --- handlers -----------------------------------------------------------------------------

    async def overview(self, request: web.Request) -> web.Response:
        page = layout(
            "Migrations",
            overview_body(self._overview()),
            stream="/stream",
            token=self.token,
            actions=self.settings.allow_actions,
        )
        return web.Response(text=page, content_type="text/html")

    async def detail(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        parts = await self._detail(namespace, name)
        page = layout(
            f"{namespace}/{name}",
            detail_body(namespace, name, parts, self.settings.allow_actions),
            stream=f"/stream{detail_path(namespace, name)}",
            token=self.token,
            actions=self.settings.allow_actions,
            crumbs=' <span class="crumb">/ Migration</span>',
        )
        return web.Response(text=page, content_type="text/html")

    async def _events(
        self, request: web.Request, render: Callable[[], Awaitable[Parts]], refresh: float
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        sent: Parts = {}
        seen = -1
        quiet = 0.0
        with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
            while True:
                seen = self.feed.version
                parts = await render()
                # Only what changed: the page keeps its scroll and what is selected elsewhere.
                changed = {k: v for k, v in parts.items() if sent.get(k) != v}
                if changed or not sent:
                    data = json.dumps(changed or parts)
                    await response.write(f"event: parts\ndata: {data}\n\n".encode())
                    sent, quiet = parts, 0.0
                if not await self.feed.wait(seen, refresh):
                    quiet += refresh
                    if quiet >= _KEEPALIVE:
                        await response.write(b": keepalive\n\n")
                        quiet = 0.0
        return response

    async def overview_stream(self, request: web.Request) -> web.StreamResponse:
        async def render() -> Parts:
            return self._overview()

        # Relative times are not shown on the overview: only a change redraws it.
        return await self._events(request, render, _KEEPALIVE)

    async def detail_stream(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        return await self._events(request, lambda: self._detail(namespace, name), _DETAIL_REFRESH)

    async def act(self, request: web.Request) -> web.Response:
        if not self.settings.allow_actions:
            return _answer(403, "actions are off: start the dashboard with --allow-actions")
        if not secrets.compare_digest(request.headers.get(TOKEN_HEADER, ""), self.token):
            return _answer(403, "missing or wrong page token: reload the page")
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        try:
            verb = RequestVerb(request.match_info["verb"])
        except ValueError:
            verb = None
        if verb not in ACTIONS:
            return _answer(404, f"unknown action {request.match_info['verb']!r}")
        assert verb is not None
        cluster = self.cluster.in_namespace(namespace)
        try:
            sent = await asyncio.to_thread(send_request, cluster, verb, name)
        except CliError as error:
            log.info("%s of %s/%s refused: %s", verb.value, namespace, name, error.message)
            return _answer(409 if error.http_status is None else 502, error.message)
        log.info("requested %s of %s/%s (%s)", verb.value, namespace, name, sent.value)
        note = f" (replaced the unhandled request {sent.replaced})" if sent.replaced else ""
        return _answer(200, f"{verb.value} requested: {sent.effect}{note}", value=sent.value)

    # --- the application ----------------------------------------------------------------------

    def _hosts(self) -> set[str] | None:
        address = self.settings.address
        if address in ("0.0.0.0", "::", ""):
            return None  # listening everywhere: the person chose to be reachable by any name
        port = self.settings.port
        names = {address, f"[{address}]"} | (_LOOPBACK if address in _LOOPBACK else set())
        return {f"{n}:{port}" for n in names} | names

    def app(self) -> web.Application:
        hosts = self._hosts()

        @web.middleware
        async def guard(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            if hosts is not None and request.host not in hosts:
                return _answer(421, f"this dashboard does not answer for host {request.host!r}")
            response = await handler(request)
            response.headers.setdefault("Content-Security-Policy", _CSP)
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "no-referrer")
            return response

        app = web.Application(middlewares=[guard])
        app.router.add_get("/", self.overview)
        app.router.add_get("/migrations/{namespace}/{name}", self.detail)
        app.router.add_get("/stream", self.overview_stream)
        app.router.add_get("/stream/migrations/{namespace}/{name}", self.detail_stream)
        app.router.add_post("/act/{namespace}/{name}/{verb}", self.act)
        app.router.add_static("/static/", STATIC, show_index=False)

        async def feed_context(_: web.Application) -> AsyncIterator[None]:
            self.feed.start()
            # Loading the client's API modules takes seconds on a slow machine: not on the
            # first page's time.
            warm = asyncio.create_task(asyncio.to_thread(self.cluster.warm_up))
            yield
            self.feed.stop()
            warm.cancel()

        app.cleanup_ctx.append(feed_context)
        return app


def _answer(status: int, message: str, **extra: str) -> web.Response:
    return web.json_response({"ok": status == 200, "message": message, **extra}, status=status)


def check_access(cluster: Cluster, all_namespaces: bool) -> Problem | None:
    """One list before serving, so the terminal says at once what the page would."""
    try:
        cluster.snapshot(all_namespaces)
    except CliError as error:
        return problem_of(error, all_namespaces, cluster.namespace)
    return None


def serve(cluster: Cluster, watcher: Cluster, all_namespaces: bool, settings: Settings) -> None:
    """Serve until interrupted (Ctrl-C); ``watcher`` (a connection of its own) feeds the pages."""
    dashboard = Dashboard(cluster, Feed(watcher, all_namespaces), settings)
    web.run_app(
        dashboard.app(),
        host=settings.address,
        port=settings.port,
        print=None,
        shutdown_timeout=1.0,
        handle_signals=True,
    )
