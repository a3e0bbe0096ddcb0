"""The scale benchmarks at their smallest size (``--smoke``) on the session's control plane.

Each asserts what a user of the operator would notice, from the kube-apiserver's audit log
(the operator's ServiceAccount only): every Migration finishes with exactly the replica writes
it needs, the operator's requests per step stay within the budget docs/performance.md sets, an
idle operator sends nothing, the client-side limiter holds, a gate queries Prometheus once per
interval, and the chart's RBAC never refuses the operator. Timings are the benchmarks' own
measurements and are not asserted: a 2-core CI machine is no benchmark rig.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devtools.controlplane import ControlPlane
from tests.support.benchrun import run_bench_smoke
from tests.support.prometheus import find_prometheus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

psutil = pytest.importorskip("psutil", reason="the benchmarks sample processes with psutil")


def run_bench(script: str, tmp_path: Path, plane: ControlPlane, *args: str) -> dict[str, Any]:
    output = tmp_path / f"{script}.json"
    run_bench_smoke(script, output, plane, 400, *args)
    result: dict[str, Any] = json.loads(output.read_text())
    assert result["smoke"] is True
    return result


def test_concurrency_smoke(tmp_path: Path, control_plane: ControlPlane) -> None:
    result = run_bench("concurrency", tmp_path, control_plane)
    run = result["runs"][0]
    assert run["succeeded"] == run["migrations"] == 5
    assert run["rbac_denied"] == []
    # Every Migration wrote exactly the ideal replica sequence: no step missed or done twice.
    assert run["runs_with_wrong_replica_sequence"] == 0
    assert run["missed_writes"] == run["doubled_writes"] == 0
    # Two timed pauses each: both ended, none before it was due (latency = the next step's
    # write minus the pause's due time). How promptly is the benchmark's measurement.
    latency = run["step_latency_seconds"]
    assert latency["n"] == 10
    assert 0 <= latency["min"] <= latency["median"] <= latency["p99"] <= latency["max"], latency
    # Each pause lasted its 1 s from the status write that started it, as the API server saw it.
    assert run["pauses_cut_short"] == 0
    assert run["operator_reconcile_errors_logged"] == 0, run
    budget = run["budget_per_weight_step"]
    assert 0 < run["operator_writes_per_weight_step"] <= budget["writes"], run
    assert run["operator_reads_per_weight_step"] <= budget["reads"], run
    assert set(run["cpu_cores"]) == {"operator", "kube-apiserver", "etcd"}
    # Where in the run the operator's RSS peaked: a window every 5 s, its top the run's peak.
    series = run["operator_rss_series_mib"]
    assert [at for at, _ in series] == sorted({at for at, _ in series}) and len(series) >= 2
    assert max(mib for _, mib in series) == round(run["operator_rss_max_mib"], 1)
    # Each step after a pause split into the operator's and the API server's share: nothing
    # in it negative (the audit log's receipt precedes its acknowledgement).
    parts = run["step_latency_breakdown_seconds"]
    assert parts["operator_due_to_intent_sent"]["min"] >= 0
    assert set(parts) == {
        "operator_due_to_intent_sent",
        "server_intent",
        "operator_intent_to_patch_sent",
        "server_patch",
    }
    for name in ("server_intent", "operator_intent_to_patch_sent", "server_patch"):
        assert parts[name]["n"] == 10 and parts[name]["min"] >= 0, (name, parts[name])


@pytest.mark.usefixtures("third_party_crds")
def test_concurrency_smoke_with_a_weight_router(
    tmp_path: Path, control_plane: ControlPlane
) -> None:
    """The same Migrations through Gateway API routes: green scaled up once, then exactly the
    three weights as route writes, the route retired and blue scaled down."""
    result = run_bench("concurrency", tmp_path, control_plane, "--router", "gatewayapi")
    run = result["runs"][0]
    assert run["router"] == "gatewayapi"
    assert run["succeeded"] == run["migrations"] == 5
    assert run["rbac_denied"] == []
    assert run["runs_with_wrong_replica_sequence"] == 0
    assert run["missed_writes"] == run["doubled_writes"] == 0
    assert run["step_latency_seconds"]["n"] == 10
    assert run["operator_reconcile_errors_logged"] == 0, run
    # Route writes carry the weights, within the same budget per weight step.
    assert 0 < run["operator_writes_per_weight_step"] <= run["budget_per_weight_step"]["writes"]
    # Every start split into where it waited, from the operator's requests in the audit log.
    start = run["start_breakdown_seconds"]
    assert len(start) == 5 and all(part["n"] == 5 for part in start.values()), start
    assert start["3_server_intent"]["min"] >= 0 and start["5_server_router_write"]["min"] >= 0


def test_concurrency_smoke_as_a_default_install_with_admission_webhooks(
    tmp_path: Path, control_plane: ControlPlane
) -> None:
    """``--admission``: the chart's webhooks registered and served, as a default install runs.
    The mutating webhook put the finalizer on at creation, so the operator never PATCHed a
    Migration's metadata for it (without webhooks, Kopf sends one per start)."""
    result = run_bench("concurrency", tmp_path, control_plane, "--admission")
    run = result["runs"][0]
    assert run["admission_webhooks"] is True
    assert run["succeeded"] == run["migrations"] == 5
    assert run["rbac_denied"] == []
    assert run["missed_writes"] == run["doubled_writes"] == 0
    assert run["operator_reconcile_errors_logged"] == 0, run
    requests = run["requests_by_verb_resource"]
    assert requests.get("patch migrations/status", 0) > 0, requests
    assert "patch migrations" not in requests, requests


def test_api_economy_smoke(tmp_path: Path, control_plane: ControlPlane) -> None:
    result = run_bench("api_economy", tmp_path, control_plane)
    assert result["rbac_denied"] == []
    steps = result["steps"]
    budget = steps["budget_per_weight_step"]
    assert 0 < steps["writes_per_step"] <= budget["writes"], steps
    assert steps["reads_per_step"] <= budget["reads"], steps
    # One more weight step (runs of 4 minus runs of 3): the status intent and two Deployment
    # PATCHes, planned from the watch-fed index. A write refused because the index lagged is
    # planned again from reads: tolerated once or twice in the run, not at every step.
    added, goal = steps["added_steps"], steps["goal_per_added_step"]
    assert added["writes_per_added_step"] <= goal["writes"] + 0.5, added
    assert added["reads_per_added_step"] <= goal["reads"] + 1, added
    rollback = result["rollback"]
    assert rollback["final_phases"] == ["RolledBack"]
    assert 0 < rollback["writes_per_rollback"] <= 10, rollback
    gate_rollback = result["gate_rollback"]
    assert gate_rollback["final_phases"] == ["RolledBack"]
    assert 0 < gate_rollback["writes_per_rollback_without_events"] <= 5, gate_rollback
    # The passing checks before the failure were seen and their status writes counted.
    assert gate_rollback["passing_checks"] > 0, gate_rollback
    assert gate_rollback["writes_per_passing_check"] > 0, gate_rollback
    # Terminal or paused indefinitely: the operator asks the API server nothing.
    idle = result["idle"]
    assert idle["requests_per_second"] == 0, idle
    limiter = result["limiter"]
    assert limiter["holds"] is True, limiter
    assert limiter["operator_requests"] > 0


def test_memory_smoke(tmp_path: Path, control_plane: ControlPlane) -> None:
    """Measured as a default install runs: the webhooks served (their certificate from the
    CA's child process), through a restart too."""
    result = run_bench("memory", tmp_path, control_plane, "--admission")
    assert result["settings"]["admission"] is True
    assert result["rbac_denied"] == []
    # Within the chart's memory request (128Mi), idle and with 5 active Migrations.
    assert 0 < result["rss_idle_0_mib"] < 128, result
    assert result["rss_active_mib"] < 128, result
    assert result["cpu_idle_fraction_of_core"] < 0.05, result
    # Promoted from their indefinite pause, all 5 finished; kept, they are measured too.
    assert result["phases_when_finished"]["Succeeded"] == 5, result
    assert result["rss_finished_kept_mib"] < 128, result
    assert 0 < result["rss_restarted_among_finished_mib"] < 128, result
    soak = result["soak"]
    assert soak["cycles"] == 6
    assert soak["rss_end_mib"] < 128, soak


def test_listing_smoke(tmp_path: Path, control_plane: ControlPlane) -> None:
    """The operator started among 40 Deployments with each page size: it runs and is read."""
    result = run_bench("listing", tmp_path, control_plane)
    assert result["rbac_denied"] == []
    assert result["deployments"] == 40
    for label in ("pages", "one_response"):
        (reading,) = result["readings"][label]
        assert 0 < reading["rss_mib"] < 128, (label, reading)


def test_gate_cost_smoke(tmp_path: Path, control_plane: ControlPlane) -> None:
    if find_prometheus() is None:
        pytest.skip("prometheus binary not installed")
    result = run_bench("gate_cost", tmp_path, control_plane)
    assert result["rbac_denied"] == []
    assert result["phases"] == ["Progressing"], result  # held in a 10 m timed pause
    # At most one query per gate per interval (cost; a slow machine can only make it fewer),
    # and every gate was checked in the window. Checks a loaded machine delays are the
    # benchmark's figure to read, not a claim here.
    per_interval = result["queries_per_gate_per_interval"]
    assert per_interval["min"] > 0 and per_interval["max"] <= 1.2, per_interval
    assert result["unattributed_queries"] == 0
    assert result["proxy_count"] > 0


def test_write_cost_smoke(tmp_path: Path, control_plane: ControlPlane) -> None:
    """The writes are measured on the status the operator itself wrote in a run's first pause
    (not a made-up one), and every kind of write was accepted by the API server."""
    result = run_bench("write_cost", tmp_path, control_plane)
    assert result["rbac_denied"] == []
    status = result["status"]
    assert (status["weight"], status["currentStepIndex"], status["phase"]) == (
        10,
        1,
        "Progressing",
    )
    assert {c["type"] for c in status["conditions"]} >= {"Ready", "Progressing", "Stalled"}
    assert result["status_bytes"] > 1000
    kinds = {"status", "status_bare", "route", "replicas", "event", "read"}
    assert set(result["median_per_write"]) == set(result["rounds"]) == kinds
    for kind in kinds:
        (reading,) = result["rounds"][kind]
        assert reading["round_trip_ms"] > 0, (kind, reading)


def test_shards_smoke(tmp_path: Path, control_plane: ControlPlane) -> None:
    """Three shard processes: every Migration started and held, each process holding exactly
    its own shard's (its cutover_migrations gauge), none another's."""
    result = run_bench("shards", tmp_path, control_plane)
    assert result["phases"] == {"Paused": 30}, result
    shards = result["per_shard"]
    assert sum(s["its_migrations"] for s in shards) == 30
    for shard in shards:
        assert shard["migrations_reported"] == {"Paused": shard["its_migrations"]}, shard
    assert result["each_shard_holds_only_its_own"] is True
