"""Session-scoped pytest fixtures; import with ``from tests.support.fixtures import *``.

* ``traffic_exporter`` -- a :class:`TrafficExporter`; deployments persist for the whole
  session, so give each test its own deployment names.
* ``prometheus_server`` -- a :class:`PrometheusServer` scraping the exporter every second
  (the target is up before the fixture returns).  Skips if the binary is missing.
* ``prometheus`` -- function-scoped: the same server, guaranteed running before and after
  the test (use it in tests that stop/restart Prometheus to simulate an outage).
* ``prometheus_provider`` -- function-scoped ``PrometheusProvider`` pointed at the server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cutover.providers.prometheus import PrometheusProvider

from .exporter import TrafficExporter
from .prometheus import PrometheusServer, find_prometheus

__all__ = ["prometheus", "prometheus_provider", "prometheus_server", "traffic_exporter"]


@pytest.fixture(scope="session")
def traffic_exporter() -> Iterator[TrafficExporter]:
    exporter = TrafficExporter()
    try:
        yield exporter
    finally:
        exporter.stop()


@pytest.fixture(scope="session")
def prometheus_server(traffic_exporter: TrafficExporter) -> Iterator[PrometheusServer]:
    if find_prometheus() is None:
        pytest.skip("prometheus binary not installed (apt-get install prometheus)")
    server = PrometheusServer(targets=[traffic_exporter.target])
    try:
        server.wait_for_targets_up(timeout=30)
        yield server
    finally:
        server.close()


@pytest.fixture
def prometheus(prometheus_server: PrometheusServer) -> Iterator[PrometheusServer]:
    prometheus_server.ensure_running()
    try:
        yield prometheus_server
    finally:
        prometheus_server.ensure_running()


@pytest.fixture
def prometheus_provider(prometheus_server: PrometheusServer) -> Iterator[PrometheusProvider]:
    with PrometheusProvider(prometheus_server.url, timeout=5.0) as provider:
        yield provider
