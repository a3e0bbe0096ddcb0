"""The breach-to-rollback benchmark, one run on the session's control plane: a green that starts
failing is caught by a failing gate check and loses its traffic after it, the rollback's router
write is in the audit log, and the report's figures agree with each other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devtools.controlplane import ControlPlane
from tests.support.benchrun import run_bench_smoke
from tests.support.prometheus import find_prometheus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_breach_bench_smoke(tmp_path: Path, control_plane: ControlPlane) -> None:
    if find_prometheus() is None:
        pytest.skip("prometheus binary not installed")
    result = run_bench_smoke("breach_to_rollback", tmp_path, control_plane, timeout=280)
    lines = result.stdout.splitlines()
    assert any(line.startswith("run 1/1: detection") for line in lines), result.stdout
    report = json.loads(next(tmp_path.glob("breach_to_rollback-*.json")).read_text())
    assert report["rbac_denied"] == []
    (run,) = report["runs"]
    assert run["failed_value"] > 0.05  # the gate saw the breach
    # In that order: the breach, the gate check that failed, green's traffic gone. How long each
    # part takes is what the benchmark measures (docs/performance.md), not a claim for a loaded
    # CI machine.
    assert run["changed_at"] < run["checked_at"] < run["routed_at"], run
    for part in ("detection", "reaction", "total"):
        stats = report["summary"][part]
        assert stats["min"] == stats["median"] == stats["max"] == pytest.approx(run[part]), stats
