"""Prometheus metrics of the operator, on a registry of their own.

A private ``REGISTRY`` rather than prometheus_client's global one: the scrape shows only what
Cutover defines (no metrics that an imported library happens to register), and tests can read it
without interference.

The reconciler reports facts, not deltas: ``observe_migration`` is called with a Migration's
current phase and weight after every status write, and this module works out which per-phase
counts change. That keeps the gauges right however often the same status is reported (a
restarted operator re-reports every Migration) and leaves the reconciler one call per change.

Per-Migration series are removed by ``forget_migration`` so that deleted Migrations do not pile
up as stale series; a Migration re-created under the same name starts its counters from zero,
which ``rate()`` and ``increase()`` treat as an ordinary counter reset.
"""

from __future__ import annotations

import contextlib
import math
import threading
import wsgiref.simple_server
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from cutover import __version__

__all__ = [
    "REGISTRY",
    "STEP_DURATION_BUCKETS",
    "count_api_request",
    "count_event_rejected",
    "count_notification",
    "count_reconcile_error",
    "count_rollback",
    "forget_migration",
    "observe_gate",
    "observe_migration",
    "observe_step_duration",
    "start_metrics_server",
]

REGISTRY = CollectorRegistry(auto_describe=True)

# Phase names as written in status.phase (api.Phase values). Spelled out here so that every phase
# has a series from the first scrape (a missing series and a zero look different to alerts), and
# so that this module needs nothing from the API models.
PHASES: tuple[str, ...] = (
    "Pending",
    "Progressing",
    "Paused",
    "RollingBack",
    "RolledBack",
    "Succeeded",
    "Failed",
)

# Steps range from a few seconds (a setWeight waiting for pods) to hours (a long bake or a pause
# waiting for a person), so the buckets grow roughly geometrically up to a day.
STEP_DURATION_BUCKETS: tuple[float, ...] = (
    1.0,
    5.0,
    15.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    43200.0,
    86400.0,
    math.inf,
)

MIGRATIONS = Gauge(
    "cutover_migrations",
    "Number of Migrations known to this operator, by phase.",
    ["phase"],
    registry=REGISTRY,
)
GREEN_WEIGHT = Gauge(
    "cutover_migration_green_weight_percent",
    "Share of traffic sent to the green version, in percent.",
    ["namespace", "migration"],
    registry=REGISTRY,
)
# `dry_run` ("true"/"false") tells a dry-run gate's verdicts, which never stop a run, from an
# armed gate's: an alert on Failed checks can exclude them, a dashboard can show how a trial gate
# would have judged. One more label with two values: at most twice the gate series, and only
# while a gate is switched between the two.
GATE_VALUE = Gauge(
    "cutover_gate_value",
    "Value returned by the last check of a gate (NaN when it returned no data).",
    ["namespace", "migration", "gate", "dry_run"],
    registry=REGISTRY,
)
# prometheus_client appends the `_total` suffix to counters in the exposition.
GATE_CHECKS = Counter(
    "cutover_gate_checks",
    'Gate checks, by verdict (Passed, Failed, Inconclusive, Error); dry_run="true" for a'
    " dry-run gate, whose verdicts never pause or roll back a run.",
    ["namespace", "migration", "gate", "dry_run", "verdict"],
    registry=REGISTRY,
)
ROLLBACKS = Counter(
    "cutover_rollbacks",
    "Rollbacks started, by reason.",
    ["namespace", "migration", "reason"],
    registry=REGISTRY,
)
STEP_DURATION = Histogram(
    "cutover_step_duration_seconds",
    "Time spent in a step before moving to the next one.",
    buckets=STEP_DURATION_BUCKETS,
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "cutover_reconcile_errors",
    "Reconciliations that failed and will be retried, by kind of failure.",
    ["kind"],
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "cutover_api_requests",
    "Requests to the Kubernetes API made by the operator's client, by verb, resource and code.",
    ["verb", "resource", "code"],
    registry=REGISTRY,
)
EVENTS_REJECTED = Counter(
    "cutover_events_rejected",
    "Events the operator could not post, by the Event's reason and the API server's HTTP status.",
    ["reason", "code"],
    registry=REGISTRY,
)
NOTIFICATIONS = Counter(
    "cutover_notifications",
    "Notification deliveries, by notifier kind (webhook, slack) and outcome (delivered, failed:"
    " gave up; retried: an attempt failed and another follows; dropped: the queue was full).",
    ["kind", "outcome"],
    registry=REGISTRY,
)
# Spelled out so that every series exists from the first scrape (alerts on a failure rate need
# the zero before the first failure).
NOTIFIER_KINDS: tuple[str, ...] = ("webhook", "slack")
NOTIFICATION_OUTCOMES: tuple[str, ...] = ("delivered", "failed", "retried", "dropped")
BUILD_INFO = Gauge(
    "cutover_build_info",
    "Always 1; the version label says which build of the operator is running.",
    ["version"],
    registry=REGISTRY,
)
BUILD_INFO.labels(version=__version__).set(1)

for _phase in PHASES:
    MIGRATIONS.labels(phase=_phase).set(0)
for _kind in NOTIFIER_KINDS:
    for _outcome in NOTIFICATION_OUTCOMES:
        NOTIFICATIONS.labels(kind=_kind, outcome=_outcome)

_Key = tuple[str, str]

# Handlers run on Kopf's event loop but may also run in its thread pool, and the HTTP server reads
# from its own thread: one lock keeps the per-phase counts and the bookkeeping below in step.
_lock = threading.Lock()
_phase_of: dict[_Key, str] = {}
# Label values in use per Migration, to remove exactly those series when it goes away.
_gates_of: dict[_Key, set[tuple[str, str]]] = {}
_verdicts_of: dict[_Key, set[tuple[str, str, str]]] = {}
_reasons_of: dict[_Key, set[str]] = {}


def observe_migration(namespace: str, name: str, phase: str, weight: int) -> None:
    """Record a Migration's current phase and green weight; call after every status change.

    Idempotent: reporting the same phase twice counts the Migration once.
    """
    key = (namespace, name)
    with _lock:
        previous = _phase_of.get(key)
        if previous != phase:
            if previous is not None:
                MIGRATIONS.labels(phase=previous).dec()
            MIGRATIONS.labels(phase=phase).inc()
            _phase_of[key] = phase
        GREEN_WEIGHT.labels(namespace=namespace, migration=name).set(weight)


def forget_migration(namespace: str, name: str) -> None:
    """Drop every series of a deleted Migration; unknown Migrations are ignored."""
    key = (namespace, name)
    with _lock:
        previous = _phase_of.pop(key, None)
        # Even a Migration never observed here (deleted before its first status write) may have
        # gate or rollback series, so the clean-up below runs regardless.
        if previous is not None:
            MIGRATIONS.labels(phase=previous).dec()
        _remove(GREEN_WEIGHT, [(namespace, name)])
        gates = _gates_of.pop(key, set())
        _remove(GATE_VALUE, [(namespace, name, gate, dry) for gate, dry in gates])
        verdicts = _verdicts_of.pop(key, set())
        _remove(
            GATE_CHECKS,
            [(namespace, name, gate, dry, verdict) for gate, dry, verdict in verdicts],
        )
        reasons = _reasons_of.pop(key, set())
        _remove(ROLLBACKS, [(namespace, name, reason) for reason in reasons])


def observe_gate(
    namespace: str,
    name: str,
    gate: str,
    value: float | None,
    verdict: str,
    *,
    dry_run: bool,
) -> None:
    """Record one completed check of a gate: its value (None: no data), its verdict, and
    whether the gate is a dry run (checked and recorded, never stopping the run)."""
    key = (namespace, name)
    dry = "true" if dry_run else "false"
    with _lock:
        gates = _gates_of.setdefault(key, set())
        # A gate switched to or from dry run keeps one value series, not a stale twin; its
        # counters under the old label stay, as counters do.
        for stale in [(g, d) for g, d in gates if g == gate and d != dry]:
            gates.discard(stale)
            _remove(GATE_VALUE, [(namespace, name, *stale)])
        gates.add((gate, dry))
        _verdicts_of.setdefault(key, set()).add((gate, dry, verdict))
        GATE_VALUE.labels(namespace=namespace, migration=name, gate=gate, dry_run=dry).set(
            math.nan if value is None else value
        )
        GATE_CHECKS.labels(
            namespace=namespace, migration=name, gate=gate, dry_run=dry, verdict=verdict
        ).inc()


def count_rollback(namespace: str, name: str, reason: str) -> None:
    """Count a rollback when a Migration enters RollingBack (once per rollback, not per write)."""
    with _lock:
        _reasons_of.setdefault((namespace, name), set()).add(reason)
        ROLLBACKS.labels(namespace=namespace, migration=name, reason=reason).inc()


def observe_step_duration(seconds: float) -> None:
    """Record how long a finished step lasted."""
    STEP_DURATION.observe(max(seconds, 0.0))


def count_reconcile_error(kind: str) -> None:
    """Count a failed reconciliation; ``kind`` is a short fixed word such as "api" or "router"."""
    RECONCILE_ERRORS.labels(kind=kind).inc()


def count_api_request(verb: str, resource: str, code: int | str) -> None:
    """Count one Kubernetes API request; the kube client calls this after each response.

    ``verb`` is the Kubernetes verb (get, list, watch, patch, ...), ``resource`` the plural
    resource name (e.g. "deployments", "migrations/status") and ``code`` the HTTP status; 0 (the
    kube client's "no response": connection error, timeout) is exported as ``code="error"``.
    """
    label = "error" if code in (0, "0") else str(code)
    API_REQUESTS.labels(verb=verb, resource=resource, code=label).inc()


def count_event_rejected(reason: str, code: int | None) -> None:
    """Count one Event that could not be posted; ``reason`` is the Event's (a short fixed word
    such as "GateFailed"), ``code`` the HTTP status, None (no response) as ``code="error"``."""
    EVENTS_REJECTED.labels(reason=reason, code="error" if code is None else str(code)).inc()


def count_notification(kind: str, outcome: str) -> None:
    """Count one notification delivery outcome; never labelled by URL (it may be a secret)."""
    NOTIFICATIONS.labels(kind=kind, outcome=outcome).inc()


def start_metrics_server(
    port: int, addr: str = "0.0.0.0"
) -> tuple[wsgiref.simple_server.WSGIServer, threading.Thread]:
    """Serve ``REGISTRY`` on http://addr:port/metrics from a daemon thread.

    Returns the server and its thread so that a caller (or a test) can ``shutdown()`` it.
    """
    return start_http_server(port, addr=addr, registry=REGISTRY)


def _remove(metric: Gauge | Counter, label_sets: Iterable[tuple[str, ...]]) -> None:
    for labels in label_sets:
        # A series may never have been created (e.g. a weight for a Migration that was only ever
        # seen through a gate check); removing it is then a no-op, not an error.
        with contextlib.suppress(KeyError):
            metric.remove(*labels)
