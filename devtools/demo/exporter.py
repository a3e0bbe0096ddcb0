"""A controllable ``prometheus_client`` exporter that simulates HTTP traffic per deployment.

Used by ``python -m devtools.demo`` (the traffic simulator drives it) and by the tests, which
import it through ``tests.support.exporter``.

Exposes, on ``127.0.0.1:<free port>/metrics`` from its own ``CollectorRegistry``:

* ``http_requests_total{deployment, code}`` -- counter, ``code`` is ``"200"`` or ``"500"``;
* ``http_request_duration_seconds{deployment}`` -- histogram.

A background thread advances the counters every ``tick_seconds`` (0.1 s) at each
deployment's configured requests-per-second and error ratio (fractional requests carry over,
so the long-run rates are exact).  Both ``code`` series exist as soon as a deployment is
``set``, so ratio queries have a denominator and a numerator from the start.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

__all__ = ["DeploymentTraffic", "TrafficExporter"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class DeploymentTraffic:
    """The simulated traffic of one deployment and bookkeeping about changes."""

    rps: float
    error_ratio: float
    latency_seconds: float
    # when ``set`` last changed error_ratio: (time.monotonic(), time.time())
    error_ratio_changed_at: tuple[float, float] | None = None
    requests_total: int = 0
    errors_total: int = 0
    _carry_requests: float = field(default=0.0, repr=False)
    _carry_errors: float = field(default=0.0, repr=False)


class TrafficExporter:
    """Serve simulated traffic metrics; ``set`` changes them, ``stop`` shuts down."""

    def __init__(self, *, tick_seconds: float = 0.1, host: str = "127.0.0.1") -> None:
        self.tick_seconds = tick_seconds
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "http_requests_total",
            "Simulated HTTP requests.",
            ["deployment", "code"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "http_request_duration_seconds",
            "Simulated HTTP request latency.",
            ["deployment"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._lock = threading.Lock()
        self._deployments: dict[str, DeploymentTraffic] = {}
        self._stopped = threading.Event()
        server: Any
        server, self._server_thread = start_http_server(0, addr=host, registry=self.registry)
        self._server = server
        self.host = host
        self.port: int = server.server_port
        self._ticker = threading.Thread(target=self._run, name="traffic-exporter", daemon=True)
        self._last_tick = time.monotonic()
        self._ticker.start()

    @property
    def target(self) -> str:
        """``host:port``, as used in a Prometheus scrape target list."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"

    def set(
        self,
        deployment: str,
        rps: float = 100.0,
        error_ratio: float = 0.0,
        latency_seconds: float = 0.05,
    ) -> DeploymentTraffic:
        """Create or update ``deployment``'s simulated traffic; returns its state object."""
        if rps < 0:
            raise ValueError("rps must be >= 0")
        if not 0.0 <= error_ratio <= 1.0:
            raise ValueError("error_ratio must be within [0, 1]")
        if latency_seconds < 0:
            raise ValueError("latency_seconds must be >= 0")
        with self._lock:
            state = self._deployments.get(deployment)
            now = (time.monotonic(), time.time())
            if state is None:
                state = DeploymentTraffic(rps, error_ratio, latency_seconds, now)
                self._deployments[deployment] = state
                # make both series exist immediately (value 0)
                self._requests.labels(deployment=deployment, code="200")
                self._requests.labels(deployment=deployment, code="500")
                self._duration.labels(deployment=deployment)
            else:
                if state.error_ratio != error_ratio:
                    state.error_ratio_changed_at = now
                state.rps = rps
                state.error_ratio = error_ratio
                state.latency_seconds = latency_seconds
            return state

    def get(self, deployment: str) -> DeploymentTraffic:
        with self._lock:
            return self._deployments[deployment]

    def error_ratio_changed_at(self, deployment: str) -> tuple[float, float] | None:
        """``(monotonic, wall)`` time of the last error-ratio change made by ``set``."""
        with self._lock:
            state = self._deployments.get(deployment)
            return None if state is None else state.error_ratio_changed_at

    def _advance(self, elapsed: float) -> None:
        with self._lock:
            for name, state in self._deployments.items():
                wanted = state.rps * elapsed + state._carry_requests
                count = int(wanted)
                state._carry_requests = wanted - count
                wanted_errors = count * state.error_ratio + state._carry_errors
                errors = min(int(wanted_errors), count)
                state._carry_errors = wanted_errors - errors
                if errors:
                    self._requests.labels(deployment=name, code="500").inc(errors)
                if count - errors:
                    self._requests.labels(deployment=name, code="200").inc(count - errors)
                histogram = self._duration.labels(deployment=name)
                for _ in range(count):
                    histogram.observe(state.latency_seconds)
                state.requests_total += count
                state.errors_total += errors

    def _run(self) -> None:
        while not self._stopped.wait(self.tick_seconds):
            now = time.monotonic()
            elapsed, self._last_tick = now - self._last_tick, now
            self._advance(elapsed)

    def stop(self) -> None:
        """Stop the ticker and the HTTP server (idempotent)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._ticker.join(timeout=5)
        self._server.shutdown()
        self._server.server_close()
        self._server_thread.join(timeout=5)

    def __enter__(self) -> TrafficExporter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
