"""The first-step benchmark, at its smallest size on the session's control plane: the operator's
requests (counted from the kube-apiserver's audit log, its ServiceAccount only) stay within the
budget docs/performance.md sets, and the chart's RBAC lets it do all of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devtools.controlplane import ControlPlane
from tests.support.benchrun import run_bench_smoke

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def test_first_step_bench_smoke(tmp_path: Path, control_plane: ControlPlane) -> None:
    output = tmp_path / "first_step.json"
    run_bench_smoke("first_step", output, control_plane, timeout=200)
    result = json.loads(output.read_text())
    assert result["migrations"] == result["succeeded"] == 1
    assert result["rbac_denied"] == []
    assert result["operator_errors_logged"] == 0
    # One Migration, one latency: the summary describes exactly it. Its size is the benchmark's
    # measurement (docs/performance.md); here only its sign is a claim: the first replica write
    # came after the Migration was created.
    latency = result["create_to_first_step_seconds"]
    assert latency["n"] == 1, latency
    assert 0 < latency["min"] == latency["median"] == latency["max"], latency
    # Created while the operator runs, a Migration starts from what the watches delivered: its
    # blue and green are not read before the first write (two GETs each before issue 16).
    assert result["deployment_reads_before_first_write"]["max"] == 0, result
    # 25 % -> 50 % -> 100 %: the per-step figures are the totals over those 3 weight steps.
    assert result["weight_steps"] == 3, result
    assert result["operator_writes_per_weight_step"] == pytest.approx(result["operator_writes"] / 3)
    assert result["operator_reads_per_weight_step"] == pytest.approx(result["operator_reads"] / 3)
    counts = result["requests_by_verb_resource"]
    # Blue 4 -> 3 -> 2 -> 0 while green 0 -> 1 -> 2 -> 4: at least one PATCH per weight step.
    assert counts.get("patch deployments", 0) >= 3, counts
    assert counts.get("patch migrations/status", 0) >= 3, counts
    budget = result["budget_per_weight_step"]  # bench/_common.py, from docs/performance.md
    assert 0 < result["operator_writes_per_weight_step"] <= budget["writes"], counts
    assert result["operator_reads_per_weight_step"] <= budget["reads"], counts
    # Only the operator is counted: the benchmark created the Migration, not the operator.
    assert "create migrations" not in counts, counts
