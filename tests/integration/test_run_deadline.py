"""spec.deadline end to end: the example's run, held at 50 % with nobody promoting it, rolls back
on its own when its deadline passes, and says why (phase, condition, Event)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.controlplane import ControlPlane

from .gates_support import condition, events
from .harness import OperatorProcess, apply, replicas, wait_for, wait_phase

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
REPLICAS = Path(__file__).resolve().parents[2] / "examples" / "replicas"


def test_a_run_nobody_promotes_rolls_back_at_its_deadline(
    cluster: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    apply(cluster, namespace, REPLICAS / "app.yaml")
    apply(cluster, namespace, REPLICAS / "migration-deadline.yaml")
    held = wait_phase(cluster, namespace, "checkout", "Paused", "RolledBack", timeout=30)["status"]
    assert (held["phase"], held["reason"], held["weight"]) == ("Paused", "PauseStep", 50), held
    assert replicas(cluster, namespace, "checkout-green") == 2

    final = wait_phase(cluster, namespace, "checkout", "RolledBack", "Succeeded", timeout=60)
    status = final["status"]
    assert status["phase"] == "RolledBack", status
    rolled_back = condition(status, "RolledBack")
    assert rolled_back["reason"] == "RunDeadlineExceeded", rolled_back
    assert "passed its deadline of 20s (spec.deadline)" in rolled_back["message"]
    wait_for(lambda: replicas(cluster, namespace, "checkout-green") == 0, timeout=30)
    assert replicas(cluster, namespace, "checkout-blue") == 4
    warnings = [
        e for e in events(cluster, namespace, "checkout") if e["reason"] == "RunDeadlineExceeded"
    ]
    assert len(warnings) == 1 and warnings[0]["type"] == "Warning", warnings
