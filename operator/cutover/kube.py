"""The only module of the operator that talks to the Kubernetes API.

The official ``kubernetes`` client builds each request (URL, auth headers, refreshed tokens) and
``cutover.kubehttp`` sends it with aiohttp on the event loop: a slow API server holds a coroutine,
never Kopf's watches or the other Migrations, and no thread. Everything is plain JSON (``dict``),
never the client's generated models, so custom resources, Deployments and Services go through the
same few generic calls.

Failures are classified once, here: temporary ones (5xx, 429, connection errors, timeouts) are
retried with a bounded exponential backoff; everything else raises at once as a ``KubeError``
subclass so that callers can tell "not there" from "not allowed" from "someone else wrote first".
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import json
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal
from urllib.parse import quote

import kubernetes.client
import kubernetes.client.rest
import kubernetes.config

from . import __version__, metrics
from .environment import ConfigurationError
from .kubehttp import HttpTransport, Response
from .urgency import Urgency, UrgentSlots

log = logging.getLogger("cutover.kube")

PatchType = Literal["merge", "strategic", "json"]
# What managedFields call the operator's writes.
FIELD_MANAGER = "cutover"
OnRequest = Callable[[str, str, int], None]

_PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}
_BACKOFF_BASE = 0.2
_BACKOFF_CAP = 5.0
# A server asking for a long pause is still not allowed to park a reconcile for minutes.
_RETRY_AFTER_CAP = 10.0
_EVENT_MESSAGE_LIMIT = 1024
# Requests in flight at once (one connection each). Throughput is this over the API server's
# latency: 8 capped the operator at ~100 requests/s with ~70 ms per request, below the default
# QPS, and 200 Migrations starting together queued ~8 s behind each other; 32 still queued 1,000
# starts ~7 s for a connection (docs/performance.md, "Where a step waits").
MAX_IN_FLIGHT = 64
USER_AGENT = f"{FIELD_MANAGER}/{__version__}"
# The code reported to ``on_request`` when no HTTP response arrived (connection error, timeout).
NO_RESPONSE = 0


class KubeError(Exception):
    """A failed API call. The message names the request and object, never a Secret's contents."""

    def __init__(self, message: str, *, status: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class NotFound(KubeError):
    pass


class Forbidden(KubeError):
    pass


class Conflict(KubeError):
    """409: the object changed since it was read (or already exists); re-read, then decide."""


class RateLimiter:
    """Token bucket: ``burst`` requests at once, then ``qps`` per second on average.

    ``qps <= 0`` disables limiting. ``clock`` and ``sleep`` are injectable so tests need no
    wall-clock timing.
    """

    def __init__(
        self,
        qps: float = 20,
        burst: int = 40,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.qps = qps
        self.burst = max(burst, 1)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.burst)
        self._updated = clock()
        # Waiters queue on the lock so that they are served in arrival order.
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(now - self._updated, 0.0)
        self._updated = now
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.qps)

    async def acquire(self) -> None:
        if self.qps <= 0:
            return
        async with self._lock:
            self._refill()
            if self._tokens < 1:
                await self._sleep((1 - self._tokens) / self.qps)
                self._refill()
            # Taken unconditionally after the wait: re-checking could spin on float rounding
            # (0.999... tokens); the tiny debt is paid by the next refill.
            self._tokens -= 1


def _now() -> datetime:
    return datetime.now(UTC)


def event_body(
    involved: Mapping[str, Any], type_: str, reason: str, message: str, now: datetime
) -> dict[str, Any]:
    """The core/v1 Event the operator posts about ``involved`` (a reference or a whole object)."""
    meta = involved.get("metadata")
    if isinstance(meta, Mapping):
        ref = {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        }
    else:
        ref = {k: involved.get(k) for k in ("apiVersion", "kind", "name", "namespace", "uid")}
    ref = {k: v for k, v in ref.items() if v}
    namespace = str(ref.get("namespace") or "default")
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "generateName": f"{str(ref.get('name') or 'cutover')[:200]}.",
            "namespace": namespace,
        },
        "involvedObject": ref,
        "type": type_,
        "reason": reason,
        "message": message[:_EVENT_MESSAGE_LIMIT],
        "source": {"component": "cutover"},
        "reportingComponent": "cutover",
        "reportingInstance": "cutover",
        # A real API server refuses an Event with eventTime but no action (the emulator took
        # it): "action: Required value".
        "action": "Reconcile",
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "count": 1,
    }


def _resource_path(
    group: str,
    version: str,
    plural: str,
    namespace: str | None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    path = f"/api/{version}" if group == "" else f"/apis/{group}/{version}"
    if namespace is not None:
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{plural}"
    if name is not None:
        path += f"/{quote(name, safe='')}"
    if subresource is not None:
        path += f"/{subresource}"
    return path


def _describe(plural: str, namespace: str | None, name: str | None) -> str:
    if name is None:
        return f"{plural} in {namespace}" if namespace else plural
    return f"{plural} {namespace}/{name}" if namespace else f"{plural} {name}"


def _status_message(data: bytes) -> tuple[str, str]:
    """(reason, message) of an API ``Status`` body; the raw text is never echoed."""
    try:
        body = json.loads(data)
    except ValueError:
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    return str(body.get("reason") or ""), str(body.get("message") or "")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    raw = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if raw is None:
        return None
    try:
        return min(max(float(raw), 0.0), _RETRY_AFTER_CAP)
    except ValueError:
        return None  # an HTTP date: rare from the API server; fall back to the backoff


# Reviews that only ask the API server a question: checks, though sent as a POST.
_ASKING = frozenset({"subjectaccessreviews", "selfsubjectaccessreviews"})


def _urgency(method: str, plural: str) -> Urgency:
    if plural == "events":
        return Urgency.notes
    if method == "GET" or plural in _ASKING:
        return Urgency.checks
    return Urgency.progress


def _backoff(attempt: int) -> float:
    """Full jitter: spreads the retries of many reconciles that failed together."""
    return random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt))


def _transport_for(configuration: Any, timeout: float, connections: int) -> HttpTransport:
    """The TLS the official client would use (CA, client certificate, host name checks)."""
    context: ssl.SSLContext | None = None
    if str(configuration.host).startswith("https"):
        context = ssl.create_default_context(
            cafile=configuration.ssl_ca_cert or None,
            cadata=getattr(configuration, "ca_cert_data", None) or None,
        )
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
        if not configuration.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif configuration.assert_hostname is False:
            context.check_hostname = False
    server_hostname = configuration.tls_server_name or (
        configuration.assert_hostname if isinstance(configuration.assert_hostname, str) else None
    )
    proxy = configuration.proxy or None
    if proxy and kubernetes.client.rest.should_bypass_proxies(
        str(configuration.host), configuration.no_proxy or ""
    ):
        proxy = None
    return HttpTransport(
        ssl_context=context,
        server_hostname=server_hostname or None,
        proxy=proxy,
        proxy_headers=configuration.proxy_headers or None,
        timeout=timeout,
        connections=connections,
    )


class Kube:
    """Async, rate-limited, retrying access to the API server.

    ``retries`` is the number of retries of a temporary failure after the first attempt.
    ``on_request(verb, resource, code)`` is called once per HTTP attempt (``code`` 0 when no
    response arrived), e.g. for the metrics module to count API calls.
    """

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient | None = None,
        *,
        qps: float = 20,
        burst: int = 40,
        max_in_flight: int = MAX_IN_FLIGHT,
        retries: int = 5,
        timeout: float = 10.0,
        on_request: OnRequest | None = None,
    ) -> None:
        self._owns_client = api_client is None
        self._api: Any = api_client if api_client is not None else kubernetes.client.ApiClient()
        # The API server names the field manager of a write after its User-Agent (up to the
        # first "/"): the client's default put "OpenAPI-Generator" in managedFields for every
        # field the operator owns, where `kubectl get --show-managed-fields` and Argo CD's
        # ignoreDifferences.managedFieldsManagers look for the operator's own name.
        self._api.user_agent = USER_AGENT
        self._limiter = RateLimiter(qps, burst)
        self._transport = _transport_for(self._api.configuration, timeout, max_in_flight)
        # As many as the transport has connections: a request waits here, by urgency, not in
        # the connector's first-come queue.
        self._slots = UrgentSlots(max_in_flight)
        self._retries = max(retries, 0)
        self._on_request = on_request
        # (Event reason, HTTP status) of the Events already logged as rejected at WARNING.
        self._events_rejected: set[tuple[str, int | None]] = set()
        # Overridable by tests so that backoff does not cost wall-clock time.
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    @classmethod
    def from_environment(cls, **kw: Any) -> Kube:
        """In-cluster service account config, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
        configuration = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
            source = "in-cluster"
        except kubernetes.config.ConfigException:
            try:
                kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
            except kubernetes.config.ConfigException as error:
                # Neither will appear by waiting: stop with the reason, not a retried startup.
                raise ConfigurationError(
                    "no Kubernetes configuration: not in a pod with a service account, and the "
                    f"kubeconfig (KUBECONFIG or ~/.kube/config) failed: {error}"
                ) from None
            source = "kubeconfig"
        log.info("kubernetes configuration loaded", extra={"source": source})
        kube = cls(kubernetes.client.ApiClient(configuration), **kw)
        kube._owns_client = True
        return kube

    async def close(self) -> None:
        await self._transport.aclose()
        if self._owns_client:
            self._api.close()

    # --- generic verbs -------------------------------------------------------------------------

    async def get(
        self, group: str, version: str, plural: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        """The object, or None when it does not exist. ``group`` is "" for the core group."""
        try:
            return await self._request(
                "GET",
                "get",
                plural,
                namespace,
                name,
                _resource_path(group, version, plural, namespace, name),
            )
        except NotFound:
            return None

    async def patch(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        name: str,
        body: dict[str, Any] | list[Any],
        *,
        patch_type: PatchType = "merge",
        subresource: str | None = None,
    ) -> dict[str, Any]:
        if patch_type == "json" and not isinstance(body, list):
            raise ValueError("a JSON patch is a list of operations")
        if patch_type != "json" and not isinstance(body, dict):
            raise ValueError(f"a {patch_type} patch is an object")
        # With a resourceVersion the caller asked for optimistic concurrency: a 409 means its
        # read is stale, and only the caller can decide again. Without one, a 409 is transient.
        guarded = isinstance(body, dict) and bool(
            (body.get("metadata") or {}).get("resourceVersion")
        )
        return await self._request(
            "PATCH",
            "patch",
            plural,
            namespace,
            name,
            _resource_path(group, version, plural, namespace, name, subresource),
            body=body,
            content_type=_PATCH_CONTENT_TYPES[patch_type],
            retry_conflict=not guarded,
        )

    async def create(
        self, group: str, version: str, plural: str, namespace: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        name = (body.get("metadata") or {}).get("name")
        return await self._request(
            "POST",
            "create",
            plural,
            namespace,
            name,
            _resource_path(group, version, plural, namespace),
            body=body,
            content_type="application/json",
        )

    async def delete(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str,
        name: str,
        *,
        propagation: str | None = None,
    ) -> None:
        """Deletes the object; one that is already gone is fine.

        ``propagation="Background"`` also deletes dependents (a Job's pods: the API's default
        for Jobs orphans them).
        """
        query = [("propagationPolicy", propagation)] if propagation else None
        try:
            await self._request(
                "DELETE",
                "delete",
                plural,
                namespace,
                name,
                _resource_path(group, version, plural, namespace, name),
                query=query,
            )
        except NotFound:
            return

    async def list(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        label_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        """Items of a collection; ``namespace=None`` lists across all namespaces."""
        query = [("labelSelector", label_selector)] if label_selector else []
        result = await self._request(
            "GET",
            "list",
            plural,
            namespace,
            None,
            _resource_path(group, version, plural, namespace),
            query=query,
        )
        items = result.get("items") or []
        return [item for item in items if isinstance(item, dict)]

    # --- helpers with meaning ------------------------------------------------------------------

    async def allowed(
        self, verb: str, group: str, plural: str, namespace: str | None = None
    ) -> bool:
        """Whether this identity may ``verb`` the resource (a SelfSubjectAccessReview, which every
        authenticated user may create)."""
        attributes = {"verb": verb, "group": group, "resource": plural}
        if namespace:
            attributes["namespace"] = namespace
        review = await self._request(
            "POST",
            "create",
            "selfsubjectaccessreviews",
            None,
            None,
            _resource_path("authorization.k8s.io", "v1", "selfsubjectaccessreviews", None),
            body={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attributes},
            },
            content_type="application/json",
        )
        return bool((review.get("status") or {}).get("allowed"))

    async def review(
        self,
        user: str,
        groups: Sequence[str],
        verb: str,
        group: str,
        plural: str,
        namespace: str,
        name: str | None = None,
    ) -> tuple[bool, str]:
        """Whether ``user`` (with ``groups``) may ``verb`` the resource, and the authorizer's
        reason: a SubjectAccessReview, so that the operator can act with someone else's rights
        instead of its own. Needs ``create subjectaccessreviews``."""
        attributes = {"verb": verb, "group": group, "resource": plural, "namespace": namespace}
        if name:
            attributes["name"] = name
        review = await self._request(
            "POST",
            "create",
            "subjectaccessreviews",
            None,
            None,
            _resource_path("authorization.k8s.io", "v1", "subjectaccessreviews", None),
            body={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {"user": user, "groups": list(groups), "resourceAttributes": attributes},
            },
            content_type="application/json",
        )
        status = review.get("status") or {}
        return bool(status.get("allowed")), str(status.get("reason") or "")

    async def pod_log_tail(self, namespace: str, pod: str, lines: int = 10) -> str:
        """The last lines of a pod's log (its first container), as text."""
        path = _resource_path("", "v1", "pods", namespace, pod) + "/log"
        result = await self._request(
            "GET",
            "get",
            "pods/log",
            namespace,
            pod,
            path,
            query=[("tailLines", str(lines))],
            raw=True,
        )
        return str(result.get("text", ""))

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        """One key of a Secret, base64-decoded. Errors name the Secret and key, never the value."""
        secret = await self.get("", "v1", "secrets", namespace, name)
        if secret is None:
            raise NotFound(f"Secret {namespace}/{name} not found", status=404, reason="NotFound")
        data = secret.get("data") or {}
        if key in data:
            try:
                return base64.b64decode(data[key], validate=True).decode("utf-8")
            except (binascii.Error, ValueError, TypeError):
                # `from None`: the decoding error could quote the undecodable bytes.
                raise KubeError(
                    f"Secret {namespace}/{name} key {key!r} is not valid base64-encoded UTF-8",
                    reason="Invalid",
                ) from None
        # Some API servers may hand back write-only stringData as stored.
        string_data = secret.get("stringData") or {}
        if key in string_data and isinstance(string_data[key], str):
            return str(string_data[key])
        raise KubeError(f"Secret {namespace}/{name} has no key {key!r}", reason="KeyNotFound")

    async def emit_event(
        self, involved: Mapping[str, Any], type_: str, reason: str, message: str
    ) -> None:
        """Posts a core/v1 Event about ``involved``; failures are logged, never raised.

        ``involved`` is a reference (apiVersion, kind, name, namespace, uid) or a whole object.
        """
        body = event_body(involved, type_, reason, message, _now())
        namespace = str(body["metadata"]["namespace"])
        ref = body["involvedObject"]
        try:
            await self.create("", "v1", "events", namespace, body)
        except Exception as error:  # an Event is a courtesy: it must never fail a reconcile
            status = error.status if isinstance(error, KubeError) else None
            metrics.count_event_rejected(reason, status)
            # Once per Event reason and status at WARNING (a rejected kind of Event repeats every
            # time that phase change happens), later ones at DEBUG. Status and the API's reason
            # only: the error's text may quote the Event's message or the request.
            key = (reason, status)
            first = key not in self._events_rejected
            self._events_rejected.add(key)
            log.log(
                logging.WARNING if first else logging.DEBUG,
                "event rejected",
                extra={
                    "namespace": namespace,
                    "object": ref.get("name"),
                    "event_reason": reason,
                    "code": status,
                    "api_reason": error.reason if isinstance(error, KubeError) else None,
                    "error_type": type(error).__name__,
                },
            )

    # --- transport -----------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        query: builtins.list[tuple[str, str]],
        body: Any,
        content_type: str | None,
    ) -> Response:
        """One HTTP exchange."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        # param_serialize adds the auth headers (and refreshes expiring tokens) and the host.
        method, url, headers, body, _ = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or None,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        data = None if body is None else json.dumps(body).encode()
        return await self._transport.send(method, url, headers, data)

    async def _request(
        self,
        method: str,
        verb: str,
        plural: str,
        namespace: str | None,
        name: str | None,
        path: str,
        *,
        query: builtins.list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        retry_conflict: bool = False,
        raw: bool = False,
    ) -> dict[str, Any]:
        what = _describe(plural, namespace, name)
        context = {"verb": verb, "resource": plural, "namespace": namespace, "object": name}
        attempt = 0
        urgency = _urgency(method, plural)
        while True:
            delay: float | None = None
            try:
                code, headers, data = await self._send_when_free(
                    urgency, partial(self._send, method, path, query or [], body, content_type)
                )
            except OSError as error:
                self._count(verb, plural, NO_RESPONSE)
                failure = KubeError(f"{verb} {what}: {type(error).__name__}: {error}")
            else:
                self._count(verb, plural, code)
                if 200 <= code < 300:
                    log.debug("kube request", extra={**context, "code": code, "attempt": attempt})
                    if raw:
                        return {"text": data.decode("utf-8", errors="replace")}
                    return self._parse(data, verb, what)
                reason, message = _status_message(data)
                text = f"{verb} {what}: {code} {reason or 'Error'}" + (
                    f": {message}" if message else ""
                )
                if code == 404:
                    raise NotFound(text, status=code, reason=reason or "NotFound")
                if code == 403:
                    raise Forbidden(text, status=code, reason=reason or "Forbidden")
                if code == 409 and not (retry_conflict and reason != "AlreadyExists"):
                    raise Conflict(text, status=code, reason=reason or "Conflict")
                failure = KubeError(text, status=code, reason=reason)
                if code == 429:
                    delay = _retry_after(headers)
                elif code < 500 and code != 409:
                    raise failure
            if attempt >= self._retries:
                log.warning(
                    "kube request failed",
                    extra={**context, "code": failure.status, "attempt": attempt},
                )
                raise failure
            wait = delay if delay is not None else _backoff(attempt)
            log.info(
                "kube request retried",
                extra={**context, "code": failure.status, "attempt": attempt, "delay": wait},
            )
            attempt += 1
            await self._sleep(wait)

    async def _send_when_free(
        self, urgency: Urgency, exchange: Callable[[], Awaitable[Response]]
    ) -> Response:
        """``exchange`` (a ``_send``), once a slot and a token are free."""
        await self._slots.acquire(urgency)
        try:
            await self._limiter.acquire()
            return await exchange()
        finally:
            self._slots.release()

    def _count(self, verb: str, resource: str, code: int) -> None:
        if self._on_request is None:
            return
        try:
            self._on_request(verb, resource, code)
        except Exception:  # metrics must never break an API call
            log.exception("on_request callback failed")

    @staticmethod
    def _parse(data: bytes, verb: str, what: str) -> dict[str, Any]:
        if not data:
            return {}
        try:
            parsed = json.loads(data)
        except ValueError:
            raise KubeError(f"{verb} {what}: the response is not JSON") from None
        return parsed if isinstance(parsed, dict) else {"items": parsed}
