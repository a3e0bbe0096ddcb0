"""The CI recipe in docs/compat.md, run as written: it passes on examples/expand-contract and
leaves both reports, and fails (still leaving both) once the example's contract SQL is moved into
preShift."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "compat.md"


def recipe() -> str:
    found = re.search(
        r"<!-- ci-recipe:start -->\n```sh\n(.*?)```\n<!-- ci-recipe:end -->", DOC.read_text(), re.S
    )
    assert found, "docs/compat.md has no ci-recipe block"
    return found.group(1)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A checkout-like directory with the example, and `cutover` on PATH as this source tree."""
    shutil.copytree(
        ROOT / "examples" / "expand-contract", tmp_path / "examples" / "expand-contract"
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "cutover"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m cutover.cli "$@"\n')
    shim.chmod(0o755)
    return tmp_path


def run_recipe(workspace: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{workspace / 'bin'}:{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT / "operator"),
    }
    return subprocess.run(
        ["sh", "-c", recipe()],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_recipe_passes_on_the_example_and_keeps_both_reports(workspace: Path) -> None:
    result = run_recipe(workspace)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((workspace / "reports" / "compatibility_report.json").read_text())
    assert report["summary"]["errors"] == 0 and report["summary"]["contract"] > 0
    (plan,) = json.loads((workspace / "reports" / "migration_plan.json").read_text())
    assert plan["point_of_no_return"].startswith("postPromotion hook contract-schema")
    assert plan["risk"]["level"] == "MEDIUM"


def test_the_recipe_fails_once_contract_sql_runs_in_pre_shift(workspace: Path) -> None:
    path = workspace / "examples" / "expand-contract" / "migration.yaml"
    migration = yaml.safe_load(path.read_text())
    hooks = migration["spec"]["hooks"]
    hooks["preShift"].extend(hooks.pop("postPromotion"))
    path.write_text(yaml.safe_dump(migration, sort_keys=False))
    result = run_recipe(workspace)
    assert result.returncode == 1
    assert (
        "error: contract statement in preShift hook contract-schema: it would break blue"
        in result.stdout
    )
    assert "ALTER TABLE orders DROP COLUMN IF EXISTS customer_name" in result.stdout
    # The reports are written all the same, for the pipeline's artifacts.
    report = json.loads((workspace / "reports" / "compatibility_report.json").read_text())
    errors = [f for f in report["findings"] if f["severity"] == "error"]
    assert report["summary"]["errors"] == len(errors) == 6
    (plan,) = json.loads((workspace / "reports" / "migration_plan.json").read_text())
    assert plan["risk"]["level"] == "HIGH"
