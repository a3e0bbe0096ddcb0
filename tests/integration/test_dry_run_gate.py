"""A dry-run gate on the real control plane: checked against a real Prometheus, recorded in
status and in the operator's /metrics (``dry_run="true"``), but its failures neither hold a step
nor roll the run back."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools.controlplane import ControlPlane
from tests.support.admission import free_port
from tests.support.exporter import TrafficExporter
from tests.support.fixtures import prometheus, prometheus_server, traffic_exporter
from tests.support.prometheus import PrometheusServer

from .gates_support import GREEN_ERROR_RATIO, gate, gate_record, series, start_app
from .harness import OperatorProcess, replicas, wait_phase

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
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def operator(
    cluster: ControlPlane,
    namespace: str,
    chart_values: dict[str, Any] | None,
    metrics_port: int,
) -> Iterator[OperatorProcess]:
    """The real operator, serving its /metrics on ``metrics_port`` as the chart makes it do."""
    env = {"CUTOVER_METRICS_PORT": str(metrics_port)}
    process = OperatorProcess(cluster, namespace, env=env, chart_values=chart_values).start()
    yield process
    process.stop()


def gate_checks(port: int, namespace: str) -> dict[tuple[str, str, str], float]:
    """(gate, dry_run, verdict) -> cutover_gate_checks_total of ``namespace``, as scraped."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.labels["gate"], s.labels["dry_run"], s.labels["verdict"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "cutover_gate_checks_total" and s.labels.get("namespace") == namespace
    }


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
    cluster: ControlPlane, namespace: str, prometheus: PrometheusServer, metrics_port: int
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

    # The same verdicts in /metrics, told apart by dry_run: the trial's failures are there for a
    # dashboard, and an alert on dry_run="false" failures stays quiet for a run that succeeded.
    checks = gate_checks(metrics_port, namespace)
    assert checks.get(("strict-trial", "true", "Failed"), 0) >= 1, checks
    assert ("strict-trial", "false", "Failed") not in checks, checks
    assert checks.get(("error-rate", "false", "Passed"), 0) >= 1, checks
    assert not any(dry == "true" for gate_name, dry, _ in checks if gate_name == "error-rate")
