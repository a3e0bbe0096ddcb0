"""The breach-to-rollback benchmark still runs end to end (no timing assertions)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.prometheus import find_prometheus

from .harness import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_breach_bench_smoke() -> None:
    if find_prometheus() is None:
        pytest.skip("prometheus binary not installed")
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "breach_to_rollback.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("run 1/1: detection") for line in lines), result.stdout
    for part in ("detection", "reaction", "total"):
        assert any(line.split()[:1] == [part] for line in lines), result.stdout
