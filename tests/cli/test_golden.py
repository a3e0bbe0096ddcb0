"""Golden output of the offline commands; ``UPDATE_GOLDEN=1 pytest tests/cli`` rewrites them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cutover.cli import app

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
CASES = {
    "replicas": "examples/replicas/migration.yaml",
    "window": "examples/replicas/migration-window.yaml",
    "service": "examples/service/migration.yaml",
    "preview": "examples/service/migration-preview.yaml",
    "gated": "tests/cli/manifests/gated.yaml",
    "broken": "tests/cli/manifests/broken.yaml",
}
EXIT = {"broken": 1}


def _run(*args: str) -> tuple[int, str, str]:
    # A fixed width and no colour so that the output is the same on every machine.
    env = {"COLUMNS": "120", "NO_COLOR": "1", "TERM": "dumb", "CUTOVER_DEBUG": None}
    result = CliRunner(env=env).invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run with UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs: run with UPDATE_GOLDEN=1 if intended"


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    # File names appear in the output, so they must be the same relative paths everywhere.
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("case", CASES)
def test_plan(case: str) -> None:
    code, out, err = _run("plan", "-f", CASES[case])
    assert code == EXIT.get(case, 0)
    _check(f"plan-{case}.txt", out + (f"--- stderr\n{err}" if err else ""))


@pytest.mark.parametrize("case", CASES)
def test_lint(case: str) -> None:
    code, out, err = _run("lint", "-f", CASES[case])
    assert code == EXIT.get(case, 0)
    assert err == ""
    _check(f"lint-{case}.txt", out)


def test_lint_names_template_errors_by_path() -> None:
    _, out, _ = _run("lint", "-f", CASES["broken"])
    assert (
        "spec.gates[0].prometheus.query: unknown template variable(s): args.window, podname" in out
    )
    assert "spec.gates[1].compare.baseline: unknown template variable(s): bleu" in out


def test_plan_json() -> None:
    import json

    code, out, _ = _run("plan", "-f", CASES["gated"], "-o", "json")
    assert code == 0
    (plan,) = json.loads(out)
    assert [r["hold"] for r in plan["rows"]][3] == "until promoted"
    assert 'namespace="shop"' in plan["gates"][0]["query"] and "[2m]" in plan["gates"][0]["query"]
    assert plan["gates"][1]["baseline"].endswith('deployment="checkout-blue"}[1m]))')


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lint", "-f", "does-not-exist.yaml"], "error: cannot read does-not-exist.yaml"),
        (["plan", "-f", "README.md"], "is not valid YAML"),
        (["plan", "-f", "examples/replicas/app.yaml"], "no Migration found"),
    ],
)
def test_bad_files_are_one_line_errors(args: list[str], message: str) -> None:
    code, out, err = _run(*args)
    assert code == 1
    assert message in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in out + err


def test_version() -> None:
    code, out, _ = _run("version")
    assert code == 0 and out.startswith("cutover ")


GATED = "tests/cli/manifests/gated.yaml"


def _edited(tmp_path: Path, manifest: str, old: str, new: str) -> Path:
    """A copy of ``manifest`` (repo-relative) with its first ``old`` (which must be there) made
    ``new``."""
    text = (ROOT / manifest).read_text()
    assert old in text
    edited = tmp_path / Path(manifest).name
    edited.write_text(text.replace(old, new, 1))
    return edited


def test_lint_and_plan_refuse_a_promql_syntax_error(tmp_path: Path) -> None:
    good = '"{{green}}"}[1m]))\n'
    broken = _edited(tmp_path, GATED, good, '"{{green}}"}[1m])\n')  # one ")" short
    code, out, _ = _run("lint", "-f", str(broken))
    assert code == 1
    assert "spec.gates[1].prometheus.query: PromQL syntax: unclosed left parenthesis" in out
    code, _, err = _run("plan", "-f", str(broken))
    assert code == 1 and "PromQL syntax" in err


def test_lint_suggests_what_was_meant(tmp_path: Path) -> None:
    typo = _edited(tmp_path, "examples/replicas/migration.yaml", "setWeight: 25", "setWieght: 25")
    code, out, _ = _run("lint", "-f", str(typo))
    assert code == 1
    assert "unknown field 'setWieght' (did you mean setWeight?)" in out


def test_lint_says_a_bare_number_duration_needs_a_unit(tmp_path: Path) -> None:
    bare = _edited(tmp_path, GATED, "interval: 30s", "interval: 30")
    code, out, _ = _run("lint", "-f", str(bare))
    assert code == 1 and "a duration needs a unit, e.g. 30s" in out


def test_a_yaml_error_names_its_line_and_column(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: Migration\nspec:\n  steps: [1,\n  blue: x\n")
    code, _, err = _run("lint", "-f", str(broken))
    assert code == 1
    assert "is not valid YAML: line 5, column 1: expected ',' or ']'" in err


def test_piped_output_has_no_trailing_padding_and_yaml_keeps_arrows() -> None:
    _, out, _ = _run("plan", "-f", CASES["gated"])
    padded = [line for line in out.splitlines() if line != line.rstrip()]
    assert padded == []
    _, out, _ = _run("plan", "-f", CASES["replicas"], "-o", "yaml")
    assert "green 25 % → 0 %" in out and "\\u2192" not in out
