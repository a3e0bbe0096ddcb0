"""A starved operator never rolls back a healthy green (issue #16): every write it makes takes
seconds (a fault proxy between it and the kube-apiserver), longer than the runs' progress
deadline, and its watches keep breaking. Runs slow down; none rolls back, none doubles or skips a
step. Asserts outcomes only: how slow the runs get is the benchmarks' business.

The deadline's accounting itself (from the weight being in place, on a current observation) is
proven in tests/unit/test_deadline.py: here green becomes ready quickly, so this end-to-end run
passed before that change too; it guards the whole shell (retries, re-listed watches, intent-first
status writes) under starvation, which no unit test covers."""

from __future__ import annotations

import time

from devtools.controlplane import ControlPlane
from tests.integration.harness import OperatorProcess, apply_text, new_namespace
from tests.support.controlplane import operator_kubeconfig

from .support import (
    TERMINAL,
    Scenario,
    app_manifest,
    list_json,
    migration_manifest,
    replica_patches,
    sequence_anomalies,
    traffic_anomalies,
)

WEIGHTS = [25, 50, 100]
# Shorter than one write (below): every step outlives its deadline if counted from the decision.
DEADLINE = "2s"
SLOW = {"write_latency": 2.5, "read_latency": 0.5, "watch_drop_after": 3.0}


def test_a_starved_operator_never_rolls_back_a_healthy_green(cluster: ControlPlane) -> None:
    namespace = new_namespace(cluster, "starved")
    spec = {"steps": [{"setWeight": w} for w in WEIGHTS], "progressDeadline": DEADLINE}
    runs = [Scenario("healthy", f"s{i}", spec, "Succeeded", WEIGHTS) for i in range(3)]
    since = cluster.stats()["last_seq"]
    with cluster.fault_proxy() as proxy:
        kubeconfig = operator_kubeconfig(
            cluster, namespace, cluster.workdir / "operators", server=proxy.url
        )
        proxy.set_faults(**SLOW)
        operator = OperatorProcess(cluster, namespace, kubeconfig=kubeconfig).start()
        try:
            for run in runs:
                apply_text(cluster, namespace, app_manifest(run.name))
                apply_text(cluster, namespace, migration_manifest(run.name, run.name, run.spec))
            phases: dict[str, str] = {}
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                phases = {
                    m["metadata"]["name"]: str((m.get("status") or {}).get("phase"))
                    for m in list_json(cluster, namespace, "mig")
                }
                if len(phases) == len(runs) and all(p in TERMINAL for p in phases.values()):
                    break
                time.sleep(1.0)
        finally:
            proxy.set_faults()
            operator.stop()
    assert phases == {run.name: "Succeeded" for run in runs}, phases
    entries = cluster.requests(since=since)
    deployments = {d["metadata"]["name"]: d for d in list_json(cluster, namespace, "deployments")}
    for run in runs:
        patches = replica_patches(entries, namespace, run.name)
        assert sequence_anomalies(patches, run) == [], (run.name, patches)
        assert traffic_anomalies(deployments, run, run.name) == []
