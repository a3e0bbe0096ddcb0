"""A dry-run gate on the real control plane: checked against a real Prometheus and recorded,
but its failures neither hold a step nor roll the run back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.controlplane import ControlPlane
from tests.support.exporter import TrafficExporter
from tests.support.fixtures import prometheus, prometheus_server, traffic_exporter
from tests.support.prometheus import PrometheusServer

from .gates_support import GREEN_ERROR_RATIO, gate, gate_record, series, start_app
from .harness import replicas, wait_phase

__all__ = ["prometheus", "prometheus_server", "traffic_exporter"]  # fixtures used below

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("operator"),
]


@pytest.fixture
def namespace_prefix() -> str:
    return "dryrun"


@pytest.fixture
def healthy_shop(
    traffic_exporter: TrafficExporter, prometheus: PrometheusServer, namespace: str
) -> Iterator[None]:
    names = [series(namespace, f"shop-{side}") for side in ("blue", "green")]
    for name in names:
        traffic_exporter.set(name, error_ratio=0.01, latency_seconds=0.05)
    for name in names:
        prometheus.wait_for_series(
            f'sum(rate(http_requests_total{{deployment="{name}"}}[5s])) > 0', timeout=30
        )
    yield
    for name in names:
        traffic_exporter.set(name, rps=0)


@pytest.mark.usefixtures("healthy_shop")
def test_a_failing_dry_run_gate_is_recorded_and_the_run_still_succeeds(
    cluster: ControlPlane, namespace: str, prometheus: PrometheusServer
) -> None:
    gates = [
        gate("error-rate", prometheus.url, GREEN_ERROR_RATIO, threshold={"max": 0.05}),
        # 1 % errors against a bound of 0.1 %: every check fails.
        gate(
            "strict-trial",
            prometheus.url,
            GREEN_ERROR_RATIO,
            threshold={"max": 0.001},
            dryRun=True,
            failureLimit=0,
        ),
    ]
    start_app(cluster, namespace, "shop", "shop", gates)

    final = wait_phase(cluster, namespace, "shop", "Succeeded", "RolledBack", "Failed")["status"]

    assert final["phase"] == "Succeeded", final
    assert replicas(cluster, namespace, "shop-green") == 2
    trial = gate_record(final, "strict-trial")
    assert trial["dryRun"] is True, trial
    assert trial["failed"] >= 1 and trial["lastVerdict"] == "Failed", trial
    assert trial["outcome"] == "Failed", trial
    assert gate_record(final, "error-rate").get("dryRun", False) is False
