"""The scale benchmarks run at their smallest size (``--smoke``) and report their keys.

No timing is asserted: these only keep the scripts from rotting.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.prometheus import find_prometheus

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

psutil = pytest.importorskip("psutil", reason="the benchmarks sample processes with psutil")


def run_bench(script: str, tmp_path: Path) -> dict:  # type: ignore[type-arg]
    output = tmp_path / f"{script}.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / f"{script}.py"), "--smoke", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict = json.loads(output.read_text())  # type: ignore[type-arg]
    assert result["smoke"] is True
    return result


def test_concurrency_smoke(tmp_path: Path) -> None:
    result = run_bench("concurrency", tmp_path)
    run = result["runs"][0]
    assert run["succeeded"] == run["migrations"] == 5
    for key in (
        "step_latency_seconds",
        "step_latency_from_status_write_seconds",
        "missed_writes",
        "doubled_writes",
        "operator_writes_per_weight_step",
        "operator_reads_per_weight_step",
        "cpu_cores",
    ):
        assert key in run
    assert run["step_latency_seconds"]["n"] == 10
    assert run["missed_writes"] == run["doubled_writes"] == 0
    assert "5" in result["summary"]


def test_api_economy_smoke(tmp_path: Path) -> None:
    result = run_bench("api_economy", tmp_path)
    assert result["steps"]["writes_per_step"] > 0
    assert "reads_per_step" in result["steps"]
    assert result["rollback"]["final_phases"] == ["RolledBack"]
    assert "writes_per_rollback" in result["rollback"]
    assert "requests_per_second" in result["idle"]
    for key in ("sustained_rate_after_burst", "max_requests_in_any_1s_window", "holds"):
        assert key in result["limiter"]


def test_memory_smoke(tmp_path: Path) -> None:
    result = run_bench("memory", tmp_path)
    for key in ("rss_idle_0_mib", "rss_active_mib", "cpu_idle_fraction_of_core"):
        assert key in result
    assert result["soak"]["cycles"] == 6
    assert "rss_growth_after_warmup" in result["soak"]


def test_gate_cost_smoke(tmp_path: Path) -> None:
    if find_prometheus() is None:
        pytest.skip("prometheus binary not installed")
    result = run_bench("gate_cost", tmp_path)
    for key in ("queries_per_gate_per_interval", "query_round_trip_seconds", "proxy_count"):
        assert key in result
    assert result["proxy_count"] > 0
