"""The operator's metrics, read back the way Prometheus reads them: scrape text, then parse.

The registry is module-level (one per process, as in production), so every test uses a Migration
name of its own and compares before/after values instead of absolute ones where series are shared.
"""

from __future__ import annotations

import math
import urllib.request
import uuid

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cutover import __version__, metrics

Labels = dict[str, str]


def scrape() -> dict[str, list[tuple[Labels, float]]]:
    """Sample name -> [(labels, value)], from the exposition text."""
    samples: dict[str, list[tuple[Labels, float]]] = {}
    for family in text_string_to_metric_families(generate_latest(metrics.REGISTRY).decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def value(name: str, **labels: str) -> float | None:
    for found, sample_value in scrape().get(name, []):
        if found == labels:
            return sample_value
    return None


def phase_count(phase: str) -> float:
    found = value("cutover_migrations", phase=phase)
    assert found is not None, f"no cutover_migrations series for phase {phase}"
    return found


@pytest.fixture
def mig() -> str:
    return f"m-{uuid.uuid4().hex[:8]}"


def test_names_follow_prometheus_conventions() -> None:
    families = list(text_string_to_metric_families(generate_latest(metrics.REGISTRY).decode()))
    by_name = {f.name: f for f in families}
    for family in families:
        assert family.name.startswith("cutover_"), family.name
        assert family.documentation, f"{family.name} has no help text"
    # The parser strips `_total` from counter family names; the samples keep it.
    for counter in ("cutover_gate_checks", "cutover_rollbacks", "cutover_reconcile_errors"):
        assert by_name[counter].type == "counter"
    assert by_name["cutover_step_duration_seconds"].type == "histogram"
    assert by_name["cutover_migrations"].type == "gauge"


def test_every_phase_has_a_series_from_the_start() -> None:
    for phase in metrics.PHASES:
        assert value("cutover_migrations", phase=phase) is not None


def test_build_info_names_the_version() -> None:
    assert value("cutover_build_info", version=__version__) == 1.0


def test_phase_gauge_follows_a_migration_through_its_life(mig: str) -> None:
    before = {phase: phase_count(phase) for phase in metrics.PHASES}

    metrics.observe_migration("ns", mig, "Pending", 0)
    assert phase_count("Pending") == before["Pending"] + 1

    metrics.observe_migration("ns", mig, "Progressing", 25)
    metrics.observe_migration("ns", mig, "Progressing", 50)  # same phase: counted once
    assert phase_count("Pending") == before["Pending"]
    assert phase_count("Progressing") == before["Progressing"] + 1
    assert value("cutover_migration_green_weight_percent", namespace="ns", migration=mig) == 50

    metrics.observe_migration("ns", mig, "Succeeded", 100)
    assert phase_count("Progressing") == before["Progressing"]
    assert phase_count("Succeeded") == before["Succeeded"] + 1

    metrics.forget_migration("ns", mig)
    assert {phase: phase_count(phase) for phase in metrics.PHASES} == before
    assert value("cutover_migration_green_weight_percent", namespace="ns", migration=mig) is None


def test_same_name_in_two_namespaces_counts_twice(mig: str) -> None:
    before = phase_count("Paused")
    metrics.observe_migration("a", mig, "Paused", 10)
    metrics.observe_migration("b", mig, "Paused", 10)
    assert phase_count("Paused") == before + 2
    metrics.forget_migration("a", mig)
    metrics.forget_migration("b", mig)
    assert phase_count("Paused") == before


def test_forgetting_an_unknown_migration_is_harmless(mig: str) -> None:
    before = {phase: phase_count(phase) for phase in metrics.PHASES}
    metrics.forget_migration("ns", mig)
    assert {phase: phase_count(phase) for phase in metrics.PHASES} == before


def test_gate_checks_and_values(mig: str) -> None:
    metrics.observe_gate("ns", mig, "error-rate", 0.002, "Passed", dry_run=False)
    metrics.observe_gate("ns", mig, "error-rate", 0.05, "Failed", dry_run=False)
    metrics.observe_gate("ns", mig, "error-rate", 0.001, "Passed", dry_run=False)
    labels = {"namespace": "ns", "migration": mig, "gate": "error-rate", "dry_run": "false"}
    assert value("cutover_gate_value", **labels) == 0.001
    assert value("cutover_gate_checks_total", **labels, verdict="Passed") == 2
    assert value("cutover_gate_checks_total", **labels, verdict="Failed") == 1

    metrics.observe_gate("ns", mig, "error-rate", None, "Inconclusive", dry_run=False)
    no_data = value("cutover_gate_value", **labels)
    assert no_data is not None and math.isnan(no_data)

    metrics.forget_migration("ns", mig)
    assert value("cutover_gate_value", **labels) is None
    assert value("cutover_gate_checks_total", **labels, verdict="Passed") is None


def test_a_dry_run_gate_is_labelled_apart_from_an_armed_one(mig: str) -> None:
    metrics.observe_gate("ns", mig, "error-rate", 0.002, "Passed", dry_run=False)
    metrics.observe_gate("ns", mig, "p99-trial", 0.4, "Failed", dry_run=True)
    trial = {"namespace": "ns", "migration": mig, "gate": "p99-trial"}
    assert value("cutover_gate_checks_total", **trial, dry_run="true", verdict="Failed") == 1
    assert value("cutover_gate_checks_total", **trial, dry_run="false", verdict="Failed") is None
    assert value("cutover_gate_value", **trial, dry_run="true") == 0.4
    armed = {"namespace": "ns", "migration": mig, "gate": "error-rate"}
    assert value("cutover_gate_checks_total", **armed, dry_run="false", verdict="Passed") == 1

    # Armed by a spec change: one value series for the gate, the old counts kept as counts.
    metrics.observe_gate("ns", mig, "p99-trial", 0.1, "Passed", dry_run=False)
    assert value("cutover_gate_value", **trial, dry_run="true") is None
    assert value("cutover_gate_value", **trial, dry_run="false") == 0.1
    assert value("cutover_gate_checks_total", **trial, dry_run="true", verdict="Failed") == 1

    metrics.forget_migration("ns", mig)
    assert value("cutover_gate_checks_total", **trial, dry_run="true", verdict="Failed") is None
    assert value("cutover_gate_checks_total", **trial, dry_run="false", verdict="Passed") is None


def test_rollbacks_are_counted_by_reason(mig: str) -> None:
    metrics.count_rollback("ns", mig, "GateFailed")
    metrics.count_rollback("ns", mig, "GateFailed")
    metrics.count_rollback("ns", mig, "ProgressDeadlineExceeded")
    assert value("cutover_rollbacks_total", namespace="ns", migration=mig, reason="GateFailed") == 2
    metrics.forget_migration("ns", mig)
    assert (
        value("cutover_rollbacks_total", namespace="ns", migration=mig, reason="GateFailed") is None
    )


def test_step_duration_histogram_spans_seconds_to_hours() -> None:
    buckets = metrics.STEP_DURATION_BUCKETS
    assert buckets[0] <= 1 and 3600 in buckets and buckets[-1] == math.inf

    def counts() -> dict[str, float]:
        return {labels["le"]: v for labels, v in scrape()["cutover_step_duration_seconds_bucket"]}

    before = counts()
    before_sum = value("cutover_step_duration_seconds_sum") or 0.0
    metrics.observe_step_duration(42.0)
    metrics.observe_step_duration(5400.0)
    after = counts()
    assert after["30.0"] == before["30.0"]
    assert after["60.0"] == before["60.0"] + 1
    assert after["7200.0"] == before["7200.0"] + 2
    assert after["+Inf"] == before["+Inf"] + 2
    assert value("cutover_step_duration_seconds_sum") == pytest.approx(before_sum + 5442.0)


def test_reconcile_errors_and_api_requests() -> None:
    before = value("cutover_reconcile_errors_total", kind="router") or 0.0
    metrics.count_reconcile_error("router")
    assert value("cutover_reconcile_errors_total", kind="router") == before + 1

    labels = {"verb": "patch", "resource": "migrations/status"}
    before_ok = value("cutover_api_requests_total", **labels, code="200") or 0.0
    metrics.count_api_request("patch", "migrations/status", 200)
    metrics.count_api_request("patch", "migrations/status", "200")  # int and str are one series
    metrics.count_api_request("patch", "migrations/status", 409)
    assert value("cutover_api_requests_total", **labels, code="200") == before_ok + 2
    assert value("cutover_api_requests_total", **labels, code="409") is not None

    before_error = value("cutover_api_requests_total", verb="get", resource="pods", code="error")
    metrics.count_api_request("get", "pods", 0)  # the kube client's "no response"
    after_error = value("cutover_api_requests_total", verb="get", resource="pods", code="error")
    assert after_error == (before_error or 0.0) + 1


def test_the_http_server_serves_the_registry() -> None:
    server, thread = metrics.start_metrics_server(0, addr="127.0.0.1")
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
        assert "cutover_build_info" in body
        # Our own registry: none of the default process/platform collectors.
        assert "python_info" not in body
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
