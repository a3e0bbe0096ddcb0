"""Runs one of ``bench/`` at its smallest size (``--smoke``) on a test session's control plane."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from devtools.controlplane import ControlPlane

ROOT = Path(__file__).resolve().parents[2]


def run_bench_smoke(
    script: str, output: Path, plane: ControlPlane, timeout: float, *args: str
) -> subprocess.CompletedProcess[str]:
    """``bench/<script>.py --smoke [args]`` writing its JSON to ``output``; it must exit 0."""
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / f"{script}.py"),
            "--smoke",
            "--output",
            str(output),
            "--cluster-dir",
            str(plane.root),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done
