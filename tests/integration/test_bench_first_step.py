"""The first-step benchmark runs at its smallest size, so it cannot rot (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_first_step_bench_smoke(tmp_path: Path) -> None:
    output = tmp_path / "first_step.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "first_step.py"), "--smoke", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(output.read_text())
    assert result["succeeded"] == 1
    assert result["create_to_first_step_seconds"]["median"] > 0
    assert result["requests_by_verb_resource"]["patch deployments"] >= 3
