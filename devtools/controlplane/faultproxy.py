"""A reverse proxy between one client (the operator under test) and the real kube-apiserver that
injects the faults a busy or failing cluster produces: 5xx, 409, 429 with Retry-After, slow
answers, watch streams cut mid-way and 410 Gone on watches.

It serves TLS with the control plane's own serving certificate, so the client's kubeconfig differs
from a direct one only by its port. Faults are off until ``set_faults``; every injected fault is
recorded (the kube-apiserver never sees those requests, so its audit log cannot count them).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
import re
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

# How often a watch stream with no cut due looks again at the faults (they may change).
_FAULTS_RECHECK = 0.5
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_RESOURCE = re.compile(
    r"^/(?:api/v1|apis/[^/]+/[^/]+)(?:/namespaces/(?P<ns>[^/]+))?/(?P<resource>[^/?]+)"
)
_HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}
)


@dataclass
class Faults:
    """Probabilities in [0, 1] per write request, checked in the order listed, plus delays."""

    error_rate: float = 0.0  # 500 or 503
    conflict_rate: float = 0.0  # 409 Conflict
    throttle_rate: float = 0.0  # 429 Too Many Requests with Retry-After
    retry_after: int = 1
    write_latency: float = 0.0  # seconds added to every write
    write_latency_path: str | None = None  # a regex: only writes whose path it finds are delayed
    read_latency: float = 0.0  # seconds added to every read (watches: before the stream opens)
    watch_drop_after: float | None = None  # cut every watch stream after N seconds
    watch_gone_rate: float = 0.0  # answer a watch with a 410 Gone ERROR event
    watch_gone_every: int = 0  # and, deterministically, every Nth watch resumed from a version
    resources: list[str] | None = None  # only these plurals; None means all
    script: list[int] = field(default_factory=list)  # exact statuses for the next writes
    seed: int = 0

    @property
    def enabled(self) -> bool:
        return any(
            (
                self.error_rate,
                self.conflict_rate,
                self.throttle_rate,
                self.write_latency,
                self.read_latency,
                self.watch_drop_after,
                self.watch_gone_rate,
                self.watch_gone_every,
                self.script,
            )
        )


@dataclass
class Injected:
    time: float
    method: str
    path: str
    resource: str | None
    namespace: str | None
    status: int  # 0 for a cut watch stream


def _status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


_REASONS = {
    500: ("InternalError", "injected: internal error"),
    503: ("ServiceUnavailable", "injected: the server is currently unable to handle the request"),
    409: ("Conflict", "injected: the object has been modified; please apply your changes"),
    429: ("TooManyRequests", "injected: too many requests, please try again later"),
}


class FaultProxy:
    """Runs in a background thread with its own event loop; start/stop from synchronous tests."""

    def __init__(
        self, upstream: str, ca_file: Path, cert_file: Path, key_file: Path, port: int = 0
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self._ca_file = ca_file
        self._cert_file = cert_file
        self._key_file = key_file
        self._port = port
        self.faults = Faults()
        self.injected: list[Injected] = []
        self._resumed_watches = 0
        self._random = random.Random(0)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ready = threading.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    # --- control -------------------------------------------------------------------------------

    def set_faults(self, **settings: Any) -> Faults:
        known = {f.name for f in dataclasses.fields(Faults)}
        unknown = set(settings) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        with self._lock:
            self.faults = Faults(**settings)
            self._random = random.Random(self.faults.seed)
            self._resumed_watches = 0
        return self.faults

    def injected_since(self, since: float = 0.0) -> list[Injected]:
        with self._lock:
            return [i for i in self.injected if i.time >= since]

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("the fault proxy did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        with contextlib.suppress(Exception):
            future.result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- server --------------------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        loop.run_until_complete(self._startup())
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _startup(self) -> None:
        client_ssl = ssl.create_default_context(cafile=str(self._ca_file))
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=client_ssl, limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ssl.load_cert_chain(str(self._cert_file), str(self._key_file))
        site = web.TCPSite(self._runner, "127.0.0.1", self._port, ssl_context=server_ssl)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def _shutdown(self) -> None:
        # Open watch streams would hold the cleanup for its whole grace period: end them first.
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def _record(
        self, request: web.Request, resource: str | None, ns: str | None, code: int
    ) -> None:
        with self._lock:
            self.injected.append(
                Injected(time.time(), request.method, request.path, resource, ns, code)
            )

    def _decide_write(self, resource: str | None) -> int | None:
        with self._lock:
            f = self.faults
            if f.script:
                return f.script.pop(0)
            if f.resources is not None and resource not in f.resources:
                return None
            draw = self._random.random()
            if draw < f.error_rate:
                return 500 if self._random.random() < 0.5 else 503
            if draw < f.error_rate + f.conflict_rate:
                return 409
            if draw < f.error_rate + f.conflict_rate + f.throttle_rate:
                return 429
            return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        match = _RESOURCE.match(request.path)
        resource = match.group("resource") if match else None
        namespace = match.group("ns") if match else None
        # A namespaced path's "resource" group is the namespace list itself for /namespaces/x.
        if match and resource == "namespaces":
            resource, namespace = "namespaces", None
        watching = request.query.get("watch") in ("true", "1") or "/watch/" in request.path
        faults = self.faults
        in_scope = faults.resources is None or resource in faults.resources
        if request.method in _WRITES:
            if (
                faults.write_latency
                and in_scope
                and (
                    faults.write_latency_path is None
                    or re.search(faults.write_latency_path, request.path)
                )
            ):
                await asyncio.sleep(faults.write_latency)
            status = self._decide_write(resource)
            if status is not None:
                self._record(request, resource, namespace, status)
                reason, message = _REASONS.get(status, ("InternalError", "injected"))
                headers = {"Retry-After": str(faults.retry_after)} if status == 429 else {}
                return web.json_response(
                    _status_body(status, reason, message), status=status, headers=headers
                )
        elif faults.read_latency and in_scope:
            await asyncio.sleep(faults.read_latency)
        resuming = request.query.get("resourceVersion") not in (None, "", "0")
        if (
            watching
            and in_scope
            and resuming
            and (faults.watch_gone_rate or faults.watch_gone_every)
        ):
            with self._lock:
                self._resumed_watches += 1
                gone = self._random.random() < faults.watch_gone_rate or (
                    faults.watch_gone_every > 0
                    and self._resumed_watches % faults.watch_gone_every == 0
                )
            if gone:
                self._record(request, resource, namespace, 410)
                return web.Response(
                    status=200,
                    content_type="application/json",
                    text=json.dumps(
                        {
                            "type": "ERROR",
                            "object": _status_body(
                                410, "Expired", "injected: too old resource version"
                            ),
                        }
                    )
                    + "\n",
                )
        return await self._forward(request, watching and in_scope, resource, namespace)

    async def _forward(
        self, request: web.Request, may_cut: bool, resource: str | None, namespace: str | None
    ) -> web.StreamResponse:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        body = await request.read() if request.can_read_body else None
        url = f"{self.upstream}{request.rel_url}"
        try:
            upstream = await self._session.request(
                request.method, url, headers=headers, data=body, allow_redirects=False
            )
        except aiohttp.ClientError as error:
            return web.json_response(
                _status_body(503, "ServiceUnavailable", f"proxy: upstream unreachable: {error}"),
                status=503,
            )
        async with upstream:
            response = web.StreamResponse(status=upstream.status)
            for key, value in upstream.headers.items():
                if key.lower() not in _HOP_HEADERS:
                    response.headers[key] = value
            if "Content-Encoding" in upstream.headers:
                response.headers["Content-Encoding"] = upstream.headers["Content-Encoding"]
            try:
                await response.prepare(request)
            except (ConnectionResetError, aiohttp.ClientError):
                return response  # the client went away
            opened = time.monotonic()
            try:
                while True:
                    # Read each time: faults turned on after a watch opened cut it too (a test
                    # sets them once the operator is up, and a fast run may never open another).
                    drop_after = self.faults.watch_drop_after if may_cut else None
                    if drop_after:
                        timeout: float | None = max(opened + drop_after - time.monotonic(), 0)
                    else:
                        timeout = _FAULTS_RECHECK if may_cut else None
                    try:
                        chunk = await asyncio.wait_for(upstream.content.readany(), timeout)
                    except TimeoutError:
                        if not drop_after:
                            continue
                        self._record(request, resource, namespace, 0)
                        break
                    if not chunk:
                        break
                    await response.write(chunk)
            except (ConnectionResetError, aiohttp.ClientError):
                pass
            with contextlib.suppress(ConnectionResetError, RuntimeError, aiohttp.ClientError):
                await response.write_eof()
            return response
