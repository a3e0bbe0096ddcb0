"""The breach-to-rollback benchmark, one run on the session's control plane: a green that starts
failing loses its traffic within the bound docs/performance.md gives (scrape interval + rate
window + gate interval, plus slack), and the rollback's router write is in the audit log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.controlplane import ControlPlane
from tests.support.prometheus import find_prometheus

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SCRAPE, WINDOW, INTERVAL, SLACK = 1.0, 5.0, 1.0, 3.0


def test_breach_bench_smoke(tmp_path: Path, control_plane: ControlPlane) -> None:
    if find_prometheus() is None:
        pytest.skip("prometheus binary not installed")
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "breach_to_rollback.py"),
            "--smoke",
            "--output",
            str(tmp_path),
            "--cluster-dir",
            str(control_plane.root),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("run 1/1: detection") for line in lines), result.stdout
    report = json.loads(next(tmp_path.glob("breach_to_rollback-*.json")).read_text())
    assert report["rbac_denied"] == []
    (run,) = report["runs"]
    assert run["failed_value"] > 0.05  # the gate saw the breach
    assert run["detection"] > 0 and 0 < run["reaction"] < 2.0, run
    assert run["total"] < SCRAPE + WINDOW + INTERVAL + SLACK, run
