"""The sandbox cluster: HTTP routing of the Kubernetes API on top of kmock's emulator.

kmock's `KubernetesEmulator` is kept as the HTTP-facing handler (served by `kmock.Server`) and
its `resources` registry feeds discovery, but its request dispatch is replaced: kmock matches
every request against its reaction DSL and keeps the full request history, which degrades
linearly with traffic. Here, `SandboxEmulator.__call__` routes straight to `SandboxCluster`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from kmock import KubernetesError

from cutover.sandbox import patching, protobuf
from cutover.sandbox.controllers import DeploymentController, JobController
from cutover.sandbox.discovery import ResourceRegistry, ResourceType
from cutover.sandbox.errors import api_error, bad_request, render_error, status_body
from cutover.sandbox.faults import FaultInjector
from cutover.sandbox.kubeconfig import write_kubeconfig
from cutover.sandbox.requestlog import RequestInfo, RequestLog
from cutover.sandbox.selectors import Predicate, parse_field_selector, parse_label_selector
from cutover.sandbox.store import Event, ObjectStore, Watcher
from cutover.sandbox.tables import render_table, wants_table

logger = logging.getLogger(__name__)

Dispatch = Callable[[aiohttp.web.BaseRequest], Awaitable[aiohttp.web.StreamResponse]]

SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-cutover-sandbox",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-12-11T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}
DEFAULT_WATCH_TIMEOUT = 1800.0
BOOKMARK_INTERVAL = 5.0
_NAMESPACE_SUBRESOURCES = ("status", "finalize")


@attrs.define(kw_only=True, eq=False)
class SandboxEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the DSL dispatch short-circuited to the sandbox's router."""

    dispatch: Dispatch | None = None

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        assert self.dispatch is not None
        return await self.dispatch(raw_request)


@attrs.frozen
class ApiPath:
    group: str
    version: str
    namespace: str | None = None
    plural: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_api_path(path: str) -> ApiPath | None:
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return ApiPath(group, version)
    if (
        rest[0] == "namespaces"
        and len(rest) >= 2
        and (len(rest) == 2 or (len(rest) == 3 and rest[2] in _NAMESPACE_SUBRESOURCES))
    ):
        # The Namespace objects themselves, not a namespaced collection.
        return ApiPath(
            group, version, None, "namespaces", rest[1], rest[2] if len(rest) == 3 else None
        )
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    return ApiPath(
        group,
        version,
        namespace,
        rest[0],
        rest[1] if len(rest) > 1 else None,
        "/".join(rest[2:]) or None,
    )


def _verb(method: str, api: ApiPath | None, query: dict[str, str]) -> str:
    if api is None or api.plural is None:
        return method.lower()
    watch = query.get("watch") in ("true", "1")
    if method == "GET":
        return "watch" if watch else ("get" if api.name else "list")
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if api.name else "deletecollection"
    return method.lower()


def _json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> aiohttp.web.Response:
    return aiohttp.web.Response(
        body=json.dumps(body).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


class SandboxCluster:
    """A Kubernetes API server emulation for development and tests (never for production)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        deployment_ready_delay: float = 0.2,
        log_size: int = 20_000,
    ) -> None:
        self.host = host
        self.port = port
        self.emulator = SandboxEmulator(dispatch=self._dispatch)
        self.registry = ResourceRegistry(self.emulator.resources)
        self.store = ObjectStore(self.registry)
        self.log = RequestLog(maxlen=log_size)
        self.faults = FaultInjector()
        self.deployments = DeploymentController(self.store, delay=deployment_ready_delay)
        self.jobs = JobController(self.store)
        self.bookmark_interval = BOOKMARK_INTERVAL
        self._server: kmock.Server | None = None
        self._stopping = False

    # --- lifecycle & public API ----------------------------------------------------------------

    async def start(self) -> None:
        server = kmock.Server(self.emulator, host=self.host, port=self.port or None)
        await server.__aenter__()
        self._server = server

    async def stop(self) -> None:
        self._stopping = True
        # Long-lived watch handlers would otherwise hold the server's shutdown for a minute.
        self.store.close_all_watchers()
        await self.deployments.stop()
        await self.jobs.stop()
        if self._server is not None:
            server, self._server = self._server, None
            await server.__aexit__(None, None, None)

    async def __aenter__(self) -> SandboxCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the sandbox cluster is not started")
        return f"http://{self.host}:{self._server.port}"

    def write_kubeconfig(self, path: str | os.PathLike[str]) -> Path:
        return write_kubeconfig(path, self.url)

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.log.entries()

    def requests_since(self, since: int = 0) -> list[dict[str, Any]]:
        return self.log.entries(since)

    def set_job_outcome(self, namespace: str, name: str, outcome: str) -> None:
        self.jobs.set_outcome(namespace, name, outcome)

    def job_log(self, namespace: str, name: str) -> str | None:
        return self.jobs.logs.get((namespace, name))

    @property
    def deployment_ready_delay(self) -> float:
        return self.deployments.delay

    @deployment_ready_delay.setter
    def deployment_ready_delay(self, value: float) -> None:
        self.deployments.delay = value

    def stats(self) -> dict[str, Any]:
        objects: dict[str, int] = {}
        for (group, plural), _ in self.store.iter_all():
            key = f"{plural}.{group}" if group else plural
            objects[key] = objects.get(key, 0) + 1
        return {
            **self.log.stats(),
            "objects": objects,
            "resourceVersion": self.store.resource_version,
            "deployment_ready_delay": self.deployments.delay,
            "faults": self.faults.to_dict(),
        }

    # --- dispatch ------------------------------------------------------------------------------

    async def _dispatch(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        raw_body = await raw.read()
        if raw.path.startswith("/_sandbox/"):
            return await self._admin(raw, raw_body)
        query = dict(raw.query)
        api = parse_api_path(raw.path)
        content_type = raw.headers.get("Content-Type", "").split(";")[0].strip() or None
        info = RequestInfo(
            method=raw.method,
            path=raw.path,
            verb=_verb(raw.method, api, query),
            group=api.group if api else None,
            version=api.version if api else None,
            resource=api.plural if api else None,
            namespace=api.namespace if api else None,
            name=api.name if api else None,
            subresource=api.subresource if api else None,
            content_type=content_type,
        )
        body: Any = None
        try:
            body = self._parse_body(raw_body, content_type)
            if raw.method in ("POST", "PUT", "PATCH", "DELETE") and self.faults.enabled:
                await self._inject_write_fault(info)
            if api is not None and api.plural is not None and info.verb == "watch":
                return await self._watch(raw, api, query, info)
            response = self._route(raw, api, query, body)
        except KubernetesError as exc:
            headers = (
                {"Retry-After": str(exc.details.get("retryAfterSeconds"))}
                if (exc.status == 429 and isinstance(exc.details, dict))
                else None
            )
            response = _json_response(render_error(exc), exc.status, headers)
        except Exception as exc:  # a sandbox bug must surface to the client, not hang it
            logger.exception("sandbox failed on %s %s", raw.method, raw.path)
            response = _json_response(
                status_body(500, "InternalError", repr(exc), {"traceback": traceback.format_exc()}),
                500,
            )
        self.log.record(info, response.status, body)
        return response

    @staticmethod
    def _parse_body(raw_body: bytes, content_type: str | None) -> Any:
        if not raw_body:
            return None
        try:
            if content_type == patching.APPLY_PATCH:
                return yaml.safe_load(raw_body)
            if content_type == protobuf.PROTOBUF:
                return protobuf.decode_object(raw_body)
            return json.loads(raw_body)
        except (ValueError, IndexError, yaml.YAMLError) as exc:
            raise bad_request(f"cannot parse the request body: {exc}") from exc

    async def _inject_write_fault(self, info: RequestInfo) -> None:
        decision = self.faults.decide_write(info.resource)
        if decision.delay:
            await asyncio.sleep(decision.delay)
        if decision.status == 429:
            raise api_error(
                429,
                "TooManyRequests",
                "sandbox fault injection: throttled",
                {"retryAfterSeconds": decision.retry_after},
            )
        if decision.status == 409:
            raise api_error(409, "Conflict", "sandbox fault injection: conflict")
        if decision.status is not None:
            raise api_error(
                decision.status, "InternalError", "sandbox fault injection: server error"
            )

    def _resolve(self, api: ApiPath) -> ResourceType:
        assert api.plural is not None
        rt = self.registry.lookup(api.group, api.version, api.plural)
        if rt is None:
            raise api_error(404, "NotFound", "the server could not find the requested resource")
        if not rt.namespaced and api.namespace is not None:
            raise api_error(404, "NotFound", "the server could not find the requested resource")
        return rt

    def _route(
        self, raw: aiohttp.web.BaseRequest, api: ApiPath | None, query: dict[str, str], body: Any
    ) -> aiohttp.web.Response:
        method = raw.method
        if api is None:
            return self._route_misc(raw.path)
        if api.plural is None:
            doc = self.registry.resource_list(api.group, api.version)
            if doc is None or method != "GET":
                raise api_error(404, "NotFound", "the server could not find the requested resource")
            return _json_response(doc)
        rt = self._resolve(api)
        dry_run = query.get("dryRun") == "All"
        if api.name is None:
            if method == "GET":
                return self._list(raw, rt, api.namespace, query)
            if method == "POST":
                obj = self.store.create(rt, api.namespace, body, dry_run=dry_run)
                return _json_response(obj, 201)
            if method == "DELETE":
                return self._delete_collection(rt, api.namespace, query, dry_run)
            raise api_error(405, "MethodNotAllowed", f"{method} is not allowed here")
        if method == "GET":
            obj = self.store.get(rt, api.namespace, api.name)
            if api.subresource not in (None, "status"):
                raise api_error(404, "NotFound", f"subresource {api.subresource} not found")
            if wants_table(raw.headers.get("Accept", "")):
                return _json_response(render_table(rt, [obj], self.store.resource_version))
            return _json_response(obj)
        if method == "PUT":
            obj = self.store.replace(
                rt, api.namespace, api.name, body, subresource=api.subresource, dry_run=dry_run
            )
            return _json_response(obj)
        if method == "PATCH":
            content_type = raw.headers.get("Content-Type", "").split(";")[0].strip()
            existed = self.store.find(rt, api.namespace, api.name) is not None
            obj = self.store.patch(
                rt,
                api.namespace,
                api.name,
                content_type,
                body,
                subresource=api.subresource,
                dry_run=dry_run,
            )
            return _json_response(obj, 200 if existed else 201)
        if method == "DELETE":
            preconditions = (body.get("preconditions") if isinstance(body, dict) else None) or {}
            obj = self.store.delete(
                rt,
                api.namespace,
                api.name,
                dry_run=dry_run,
                precondition_uid=preconditions.get("uid"),
                precondition_rv=preconditions.get("resourceVersion"),
            )
            return _json_response(obj)
        raise api_error(405, "MethodNotAllowed", f"{method} is not allowed here")

    def _route_misc(self, path: str) -> aiohttp.web.Response:
        path = path.rstrip("/") or "/"
        if path == "/api":
            return _json_response(self.registry.api_versions())
        if path == "/apis":
            return _json_response(self.registry.api_group_list())
        if path.startswith("/apis/") and path.count("/") == 2:
            doc = self.registry.api_group(path.split("/")[2])
            if doc is not None:
                return _json_response(doc)
        if path == "/version":
            return _json_response(SERVER_VERSION)
        if path in ("/healthz", "/readyz", "/livez"):
            return aiohttp.web.Response(text="ok")
        if path == "/":
            paths = ["/api", "/api/v1", "/apis", "/healthz", "/version"]
            for rt in self.registry.all():
                if rt.group:
                    paths += [f"/apis/{rt.group}", f"/apis/{rt.group}/{rt.version}"]
            return _json_response({"paths": sorted(set(paths))})
        raise api_error(404, "NotFound", "the server could not find the requested resource")

    @staticmethod
    def _predicate(query: dict[str, str], name: str | None = None) -> Predicate:
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(query.get("fieldSelector"))
        if name is None:
            return lambda obj: labels(obj) and fields(obj)
        return lambda obj: obj["metadata"]["name"] == name and labels(obj) and fields(obj)

    def _list(
        self,
        raw: aiohttp.web.BaseRequest,
        rt: ResourceType,
        namespace: str | None,
        query: dict[str, str],
    ) -> aiohttp.web.Response:
        items = self.store.query(rt, namespace, self._predicate(query))
        rv = self.store.resource_version
        if wants_table(raw.headers.get("Accept", "")):
            return _json_response(render_table(rt, items, rv))
        # Continue tokens are never issued: the whole collection fits in one response.
        return _json_response(
            {
                "kind": rt.list_kind,
                "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": rv},
                "items": items,
            }
        )

    def _delete_collection(
        self, rt: ResourceType, namespace: str | None, query: dict[str, str], dry_run: bool
    ) -> aiohttp.web.Response:
        items = self.store.query(rt, namespace, self._predicate(query))
        deleted = [
            self.store.delete(
                rt, obj["metadata"].get("namespace"), obj["metadata"]["name"], dry_run=dry_run
            )
            for obj in items
        ]
        return _json_response(
            {
                "kind": rt.list_kind,
                "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": self.store.resource_version},
                "items": deleted,
            }
        )

    # --- watch ---------------------------------------------------------------------------------

    async def _watch(
        self, raw: aiohttp.web.BaseRequest, api: ApiPath, query: dict[str, str], info: RequestInfo
    ) -> aiohttp.web.StreamResponse:
        rt = self._resolve(api)
        predicate = self._predicate(query, api.name)
        namespace = api.namespace if rt.namespaced else None
        watcher, backlog = self.store.subscribe(
            rt, namespace, predicate, query.get("resourceVersion")
        )
        try:
            timeout = float(query.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
        except ValueError:
            timeout = DEFAULT_WATCH_TIMEOUT
        if self.faults.watch_drop_after is not None:
            timeout = min(timeout, self.faults.watch_drop_after)
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        response = aiohttp.web.StreamResponse(status=200)
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        self.log.record(info, 200, None)
        try:
            await response.prepare(raw)
            for event in backlog:
                await self._send(response, watcher, event)
            await self._stream(raw, response, watcher, rt, timeout, bookmarks)
        except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
            pass  # the client went away; nothing to report to anyone
        finally:
            self.store.unsubscribe(watcher)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
        return response

    async def _stream(
        self,
        raw: aiohttp.web.BaseRequest,
        response: aiohttp.web.StreamResponse,
        watcher: Watcher,
        rt: ResourceType,
        timeout: float,
        bookmarks: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        next_bookmark = loop.time() + self.bookmark_interval
        while not self._stopping:
            now = loop.time()
            if now >= deadline or raw.transport is None or raw.transport.is_closing():
                return
            if bookmarks and now >= next_bookmark:
                next_bookmark = now + self.bookmark_interval
                await self._write(
                    response,
                    {
                        "type": "BOOKMARK",
                        "object": {
                            "kind": rt.kind,
                            "apiVersion": rt.api_version,
                            "metadata": {"resourceVersion": self.store.resource_version},
                        },
                    },
                )
            wait = min(deadline, next_bookmark if bookmarks else deadline) - now
            try:
                event = await asyncio.wait_for(watcher.queue.get(), timeout=min(wait, 5.0))
            except TimeoutError:
                continue
            if event is None:
                return
            await self._send(response, watcher, event)

    async def _send(
        self, response: aiohttp.web.StreamResponse, watcher: Watcher, event: Event
    ) -> None:
        obj, old = event.obj, event.old
        ns = obj["metadata"].get("namespace")
        if watcher.namespace is not None and ns != watcher.namespace:
            return
        matches = watcher.predicate(obj)
        event_type = event.type
        if event_type == "MODIFIED" and old is not None:
            # Like the apiserver's watch cache: objects entering/leaving a selector are
            # reported as ADDED/DELETED to that watcher.
            matched_before = watcher.predicate(old)
            if matches and not matched_before:
                event_type = "ADDED"
            elif matched_before and not matches:
                event_type, matches = "DELETED", True
        if matches:
            await self._write(response, {"type": event_type, "object": obj})

    @staticmethod
    async def _write(response: aiohttp.web.StreamResponse, payload: dict[str, Any]) -> None:
        await response.write(json.dumps(payload).encode() + b"\n")

    # --- admin API -----------------------------------------------------------------------------

    async def _admin(self, raw: aiohttp.web.BaseRequest, raw_body: bytes) -> aiohttp.web.Response:
        parts = [part for part in raw.path.split("/") if part][1:]
        try:
            data: Any = json.loads(raw_body) if raw_body else {}
            if raw.method == "GET" and parts == ["requests"]:
                return _json_response(self.log.entries(int(raw.query.get("since", "0"))))
            if raw.method == "GET" and parts == ["stats"]:
                return _json_response(self.stats())
            if raw.method == "POST" and parts == ["reset-log"]:
                self.log.reset()
                return _json_response({"ok": True})
            if raw.method == "POST" and parts == ["config"]:
                if "deployment_ready_delay" in data:
                    self.deployments.delay = float(data["deployment_ready_delay"])
                if "bookmark_interval" in data:
                    self.bookmark_interval = float(data["bookmark_interval"])
                return _json_response(
                    {
                        "deployment_ready_delay": self.deployments.delay,
                        "bookmark_interval": self.bookmark_interval,
                    }
                )
            if parts == ["faults"]:
                if raw.method == "POST":
                    self.faults = FaultInjector.from_dict(data)
                return _json_response(self.faults.to_dict())
            if len(parts) == 3 and parts[0] == "jobs" and raw.method == "POST":
                self.set_job_outcome(parts[1], parts[2], str(data.get("outcome")))
                return _json_response({"ok": True})
            if len(parts) == 4 and parts[0] == "jobs" and parts[3] == "logs":
                text = self.job_log(parts[1], parts[2])
                if text is None:
                    return _json_response({"error": "no such job"}, 404)
                return aiohttp.web.Response(text=text)
        except (ValueError, TypeError) as exc:
            return _json_response({"error": str(exc)}, 400)
        return _json_response({"error": f"unknown admin endpoint {raw.method} {raw.path}"}, 404)
