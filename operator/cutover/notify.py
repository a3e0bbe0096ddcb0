"""Sending notifications in the background, so that a slow or dead receiver never holds up a run.

The reconciler hands over what ``core.notifications`` derived from a status write; this module
queues one delivery per (notification, notifier that wants it) and returns at once. Deliveries
to the same notifier of the same Migration go out one at a time, in the order they were made
(a receiver sees Progressing before Succeeded); different notifiers and Migrations do not wait
for each other. A failed attempt (no connection, a timeout, HTTP 408/425/429/5xx, a Secret not
readable yet) is retried with exponential backoff and jitter, up to a number of attempts; any
other answer, or a refusal by the outbound policy, fails the delivery at once. The queue is
bounded: a delivery that does not fit is dropped. Every outcome is counted in
``cutover_notifications_total{kind, outcome}``.

Requests go through :func:`cutover.providers.http.gate_session` with the operator's outbound
policy (``CUTOVER_GATE_ALLOWED_HOSTS``, the always-denied addresses), like gate queries. The URL
and the signing key never appear in logs, status or Events: a URL may be a Secret (Slack's are)
and logs name the notifier instead.

Delivery is at-least-once while the operator runs (a receiver that answered but whose answer
was lost gets the notification again; the body's ``id`` is stable for deduplication) and
best-effort across restarts: the queue lives in memory, so a crash between a status write and
its notifications' delivery loses them (a restarted operator does not derive them again, as the
status it reads already holds the change).

The operator's default notifiers come from ``CUTOVER_NOTIFY_DEFAULT`` (a JSON list shaped like
``spec.notify``); their Secrets are read in the operator's own namespace (``CUTOVER_NAMESPACE``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum

import requests
from pydantic import TypeAdapter, ValidationError

from cutover import environment, metrics
from cutover.api import Notifier, NotifierKind, SecretKeyRef, describe_errors, unique_notifiers
from cutover.core.notifications import (
    SIGNATURE_HEADER,
    Notification,
    effective_notifiers,
    encode,
    sign,
    slack_body,
    wanted,
    webhook_body,
)
from cutover.durations import parse_duration
from cutover.egress import EgressPolicy, EgressRefused, parse_target
from cutover.kube import USER_AGENT, Kube, KubeError
from cutover.providers.http import gate_session

__all__ = [
    "Backoff",
    "Delivery",
    "DeliveryQueue",
    "GiveUp",
    "Outcome",
    "Retry",
    "Sender",
    "load_defaults",
]

log = logging.getLogger("cutover.notify")
# urllib3 logs each request line (with the path) at DEBUG, which `kopf run --verbose` shows; a
# Slack webhook's path is its secret.
logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)

DEFAULT_ENV = "CUTOVER_NOTIFY_DEFAULT"
NAMESPACE_ENV = "CUTOVER_NAMESPACE"
ATTEMPTS_ENV = "CUTOVER_NOTIFY_ATTEMPTS"
BACKOFF_ENV = "CUTOVER_NOTIFY_BACKOFF"
QUEUE_ENV = "CUTOVER_NOTIFY_QUEUE"
_RETRYABLE_STATUS = frozenset({408, 425, 429})
_WORKERS = 4


class Outcome(StrEnum):
    delivered = "delivered"
    failed = "failed"  # given up: a permanent refusal, or every attempt failed
    retried = "retried"  # one attempt failed; another follows
    dropped = "dropped"  # the queue was full


class Retry(Exception):
    """An attempt failed in a way the next one may not (the message holds no URL or key)."""


class GiveUp(Exception):
    """An attempt failed in a way every other one would (the message holds no URL or key)."""


@dataclass(frozen=True)
class Delivery:
    notifier: Notifier
    notification: Notification
    # Where the notifier's Secrets live: the Migration's namespace, or the operator's for a
    # default notifier (None: not known, so a default notifier cannot read Secrets).
    secrets_namespace: str | None

    @property
    def lane(self) -> tuple[str, str, str]:
        subject = self.notification.subject
        return subject.namespace, subject.name, self.notifier.name

    def describe(self) -> dict[str, object]:
        """What logs may say about this delivery: never the URL."""
        subject = self.notification.subject
        return {
            "namespace": subject.namespace,
            "migration": subject.name,
            "notifier": self.notifier.name,
            "kind": self.notifier.kind.value,
            "event": self.notification.kind.value,
            "id": self.notification.id,
        }


@dataclass(frozen=True)
class Backoff:
    attempts: int = 10
    first: float = 1.0  # the delay before the first retry; each retry doubles it
    cap: float = 60.0

    def delay(self, retry: int, jitter: Callable[[float, float], float]) -> float:
        """Before retry number ``retry`` (0 first): half the exponential delay, plus up to the
        other half at random, so receivers that come back are not hit by every operator at once."""
        ceiling = min(self.cap, self.first * 2**retry)
        return jitter(ceiling / 2, ceiling)


Post = Callable[[Delivery], Awaitable[None]]


class DeliveryQueue:
    """A bounded set of per-notifier lanes, each drained by one task, in order."""

    def __init__(
        self,
        post: Post,
        *,
        backoff: Backoff = Backoff(),
        capacity: int = 1000,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self._post = post
        self._backoff = backoff
        self._capacity = capacity
        self._sleep = sleep
        self._jitter = jitter
        self._lanes: dict[tuple[str, str, str], deque[Delivery]] = {}
        self._tasks: dict[tuple[str, str, str], asyncio.Task[None]] = {}
        self._pending = 0

    @property
    def pending(self) -> int:
        return self._pending

    def submit(self, delivery: Delivery) -> bool:
        """Queue ``delivery`` (never waits); False when the queue is full and it was dropped."""
        if self._pending >= self._capacity:
            metrics.count_notification(delivery.notifier.kind.value, Outcome.dropped)
            log.warning("notification dropped: queue full", extra=delivery.describe())
            return False
        key = delivery.lane
        self._lanes.setdefault(key, deque()).append(delivery)
        self._pending += 1
        if key not in self._tasks:
            self._tasks[key] = asyncio.get_running_loop().create_task(self._drain(key))
        return True

    async def join(self) -> None:
        """Until every queued delivery is done (tests, and a graceful stop)."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()

    async def _drain(self, key: tuple[str, str, str]) -> None:
        lane = self._lanes[key]
        try:
            while lane:
                delivery = lane[0]
                try:
                    await self._deliver(delivery)
                finally:
                    lane.popleft()
                    self._pending -= 1
        finally:
            # No await between the last emptiness check and here: nothing can be added unseen.
            del self._tasks[key]
            del self._lanes[key]

    async def _deliver(self, delivery: Delivery) -> None:
        kind = delivery.notifier.kind.value
        for attempt in range(self._backoff.attempts):
            try:
                await self._post(delivery)
            except GiveUp as error:
                metrics.count_notification(kind, Outcome.failed)
                log.warning(
                    "notification failed", extra={**delivery.describe(), "error": str(error)}
                )
                return
            except Retry as error:
                if attempt + 1 == self._backoff.attempts:
                    metrics.count_notification(kind, Outcome.failed)
                    detail = {**delivery.describe(), "error": str(error), "attempts": attempt + 1}
                    log.warning("notification failed after retries", extra=detail)
                    return
                delay = self._backoff.delay(attempt, self._jitter)
                metrics.count_notification(kind, Outcome.retried)
                detail = {**delivery.describe(), "error": str(error), "retry_in": round(delay, 2)}
                log.info("notification attempt failed", extra=detail)
                await self._sleep(delay)
            except Exception as error:
                # A bug in building or sending must not kill the lane's later deliveries.
                metrics.count_notification(kind, Outcome.failed)
                detail = {**delivery.describe(), "error": type(error).__name__}
                log.exception("notification crashed", extra=detail)
                return
            else:
                metrics.count_notification(kind, Outcome.delivered)
                log.info("notification delivered", extra=delivery.describe())
                return


def load_defaults(environ: Mapping[str, str] | None = None) -> list[Notifier]:
    """The operator's default notifiers from ``CUTOVER_NOTIFY_DEFAULT``; an invalid setting is
    logged (naming the problem) and means no defaults, never an operator that cannot start."""
    env = os.environ if environ is None else environ
    raw = (env.get(DEFAULT_ENV) or "").strip()
    if not raw:
        return []
    try:
        notifiers = _DEFAULTS.validate_python(json.loads(raw))
        return unique_notifiers(notifiers)
    except ValueError as error:
        problems = (
            describe_errors(error, root=DEFAULT_ENV)
            if isinstance(error, ValidationError)
            else [f"{DEFAULT_ENV}: {error}"]
        )
        log.error("default notifiers ignored: invalid setting", extra={"problems": problems})
        return []


_DEFAULTS = TypeAdapter(list[Notifier])


@dataclass(frozen=True)
class SenderSettings:
    """What the operator's environment says about sending notifications."""

    backoff: Backoff = Backoff()
    capacity: int = 1000  # deliveries waiting at most; past it new ones are dropped
    operator_namespace: str | None = None
    defaults: tuple[Notifier, ...] = ()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> SenderSettings:
        return cls(
            backoff=Backoff(
                attempts=environment.whole_number(
                    environ, ATTEMPTS_ENV, Backoff.attempts, minimum=1
                ),
                first=environment.number(environ, BACKOFF_ENV, Backoff.first, unit="seconds"),
            ),
            capacity=environment.whole_number(environ, QUEUE_ENV, 1000, minimum=1),
            operator_namespace=environ.get(NAMESPACE_ENV) or None,
            defaults=tuple(load_defaults(environ)),
        )


class Sender:
    """Turns notifications into signed requests to each notifier that wants them."""

    def __init__(
        self,
        kube: Kube,
        egress: EgressPolicy,
        *,
        defaults: Sequence[Notifier] = (),
        operator_namespace: str | None = None,
        backoff: Backoff = Backoff(),
        capacity: int = 1000,
    ) -> None:
        self._kube = kube
        self._egress = egress
        self._defaults = tuple(defaults)
        self._operator_namespace = operator_namespace
        self._executor = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="notify")
        self.queue = DeliveryQueue(self._post, backoff=backoff, capacity=capacity)

    @classmethod
    def from_settings(cls, kube: Kube, egress: EgressPolicy, settings: SenderSettings) -> Sender:
        if settings.defaults:
            names = [n.name for n in settings.defaults]
            log.info("default notifiers", extra={"notifiers": names})
        return cls(
            kube,
            egress,
            defaults=settings.defaults,
            operator_namespace=settings.operator_namespace,
            backoff=settings.backoff,
            capacity=settings.capacity,
        )

    def submit(self, own: Sequence[Notifier], notifications: Sequence[Notification]) -> None:
        """Queue the deliveries ``notifications`` make; returns at once."""
        if not notifications:
            return
        mine = {n.name for n in own}
        for notifier in effective_notifiers(self._defaults, own):
            namespace = (
                notifications[0].subject.namespace
                if notifier.name in mine
                else self._operator_namespace
            )
            for notification in wanted(notifier, notifications):
                self.queue.submit(Delivery(notifier, notification, namespace))

    def close(self) -> None:
        self.queue.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _secret(self, delivery: Delivery, field: str, ref: SecretKeyRef) -> str:
        if delivery.secrets_namespace is None:
            raise GiveUp(
                f"{field}: a default notifier's Secret is read in the operator's namespace,"
                f" and {NAMESPACE_ENV} is not set"
            )
        try:
            return await self._kube.read_secret_key(delivery.secrets_namespace, ref.name, ref.key)
        except KubeError as error:  # names the Secret and key, never the value
            raise Retry(f"{field}: {error}") from None

    async def _post(self, delivery: Delivery) -> None:
        notifier = delivery.notifier
        url = notifier.url
        if notifier.url_from is not None:
            url = await self._secret(delivery, "urlFrom", notifier.url_from)
        assert url is not None
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if notifier.kind is NotifierKind.slack:
            payload = encode(slack_body(delivery.notification))
        else:
            payload = encode(webhook_body(delivery.notification))
            headers["X-Cutover-Event"] = delivery.notification.kind.value
            headers["X-Cutover-Delivery"] = delivery.notification.id
            if notifier.signing_key is not None:
                key = await self._secret(delivery, "signingKey", notifier.signing_key)
                headers[SIGNATURE_HEADER] = sign(key.encode(), payload)
        try:
            self._egress.check_name(parse_target(url))
        except EgressRefused as refusal:
            raise GiveUp(f"refused by the outbound policy ({refusal.reason.value})") from None
        timeout = parse_duration(notifier.timeout)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._send, url, payload, headers, timeout)

    def _send(self, url: str, payload: bytes, headers: dict[str, str], timeout: float) -> None:
        """One POST (blocking, in the pool); raises Retry or GiveUp unless it got a 2xx."""
        with gate_session(self._egress) as session:
            try:
                # No redirects: the signed body and a Secret's URL go where they were sent only.
                with session.post(
                    url,
                    data=payload,
                    headers=headers,
                    timeout=timeout,
                    allow_redirects=False,
                    stream=True,
                ) as response:
                    status = response.status_code
            except EgressRefused as refusal:
                raise GiveUp(f"refused by the outbound policy ({refusal.reason.value})") from None
            except requests.Timeout:
                raise Retry(f"no answer within {timeout:g}s") from None
            except requests.ConnectionError as error:
                cause = "connection refused" if "refused" in str(error) else "connection failed"
                raise Retry(cause) from None
            except requests.RequestException as error:
                raise Retry(f"request failed: {type(error).__name__}") from None
        if 200 <= status < 300:
            return
        if status in _RETRYABLE_STATUS or status >= 500:
            raise Retry(f"HTTP {status}")
        raise GiveUp(f"HTTP {status}")
