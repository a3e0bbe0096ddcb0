"""`cutover lint` and `cutover plan` with gates from templates: resolved when the templates are
given (-f or --template-file), a note (an error only with --require-templates) when not, and
the operator's resolution problems when they do not resolve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cutover.api import parse_spec
from cutover.cli import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "templates"
MIGRATION = str(EXAMPLE / "migration.yaml")
TEMPLATES = str(EXAMPLE / "templates.yaml")


def run(*args: str) -> tuple[int, str, str]:
    env = {"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", "CUTOVER_DEBUG": None}
    result = CliRunner(env=env).invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_lint_offline_notes_each_templated_gate_and_passes() -> None:
    code, out, _ = run("lint", "-f", MIGRATION)

    assert code == 0, out
    assert "Migration checkout: valid" in out
    assert (
        "note: spec.gates[0] (errors): the gate comes from GateTemplate 'http-errors', which"
        " cannot be resolved offline" in out
    )
    assert "note: spec.gates[1] (latency): the gate comes from ClusterGateTemplate" in out


def test_lint_fails_on_an_unresolved_template_when_asked_to_resolve() -> None:
    code, out, _ = run("lint", "-f", MIGRATION, "--require-templates")

    assert code == 1
    assert "spec.gates[0] (errors): the gate comes from GateTemplate 'http-errors'" in out
    assert "note:" not in out


def test_lint_resolves_templates_given_in_the_same_directory() -> None:
    code, out, _ = run("lint", "-f", str(EXAMPLE), "--require-templates")

    assert code == 0, out
    assert "note:" not in out and "valid" in out


def test_lint_names_a_missing_and_an_unknown_arg(tmp_path: Path) -> None:
    migration = yaml.safe_load(Path(MIGRATION).read_text())
    migration["spec"]["gates"][0]["args"] = {"rout": "checkout"}
    path = tmp_path / "migration.yaml"
    path.write_text(yaml.safe_dump(migration))

    code, out, _ = run("lint", "-f", str(path), "--template-file", TEMPLATES)

    assert code == 1
    assert "GateTemplate 'http-errors' has no arg 'rout' (its args: route, window)" in out
    assert "GateTemplate 'http-errors' needs arg 'route': give it in args" in out


def test_lint_checks_the_resolved_gates_query(tmp_path: Path) -> None:
    templates = list(yaml.safe_load_all(Path(TEMPLATES).read_text()))
    templates[0]["spec"]["gate"]["web"]["jsonPath"] = "$.[oops"
    path = tmp_path / "templates.yaml"
    path.write_text(yaml.safe_dump_all(templates))

    code, out, _ = run("lint", "-f", MIGRATION, "--template-file", str(path))

    assert code == 1
    assert "spec.gates[0].web.jsonPath" in out


def test_plan_shows_the_resolved_gate_and_where_it_comes_from() -> None:
    code, out, err = run("plan", "-f", MIGRATION, "--template-file", TEMPLATES)

    assert code == 0, err
    assert "from GateTemplate 'http-errors'" in out
    assert (
        "GET http://health.monitoring:8080/errors/default/checkout-green?route=checkout"
        "&window=1m -> $.data.errorRate" in out
    )
    assert "<= 0.05" in out and "10s (gate interval)" in out


def test_plan_offline_says_a_gate_is_not_resolved() -> None:
    code, out, _ = run("plan", "-f", MIGRATION, "-o", "json")

    assert code == 0
    (plan,) = json.loads(out)
    errors = next(g for g in plan["gates"] if g["name"] == "errors")
    assert errors["template"] == "GateTemplate 'http-errors'"
    assert errors["query"].startswith("not resolved offline")


def test_status_judges_a_templated_gate_by_the_gate_its_run_recorded() -> None:
    from cutover.cli.report import build_report
    from cutover.core.templates import TemplateObject, resolve

    migration = yaml.safe_load(Path(MIGRATION).read_text())
    spec = parse_spec(migration["spec"])
    template = next(yaml.safe_load_all(Path(TEMPLATES).read_text()))
    record = resolve(spec.gates[0], TemplateObject.from_body(template), "default", 0)
    migration["status"] = {
        "phase": "Paused",
        "weight": 50,
        "gates": [{"name": "errors", "outcome": "Running", "lastValue": 0.045, "passed": 3}],
        "resolvedGates": [record.to_dict()],
    }

    gates = {g.name: g for g in build_report(migration).gates}

    assert gates["errors"].threshold == "<= 0.05"
    assert gates["errors"].margin == pytest.approx(0.1)
    # Not resolved for this run (e.g. the run failed on it): said, and no margin guessed.
    assert gates["latency"].threshold == "as ClusterGateTemplate 'p99-latency' says (not resolved)"
    assert gates["latency"].margin is None


def test_backtest_replays_a_gate_as_its_template_resolves_or_says_it_cannot() -> None:
    code, out, err = run("backtest", "-f", str(EXAMPLE), "--since", "1h")

    assert code == 0, err
    # Resolved from the template among the files: a web gate, which cannot replay.
    assert "errors  web, every 10s, <= 0.05" in out
    assert "cannot replay: web" in out

    code, out, err = run("backtest", "-f", MIGRATION, "--since", "1h")

    assert code == 0, err
    assert (
        "cannot replay: the gate comes from GateTemplate 'http-errors', which is not among the"
        " files (-f)" in out
    )


def test_backtest_refuses_a_template_given_the_wrong_args(tmp_path: Path) -> None:
    migration = yaml.safe_load(Path(MIGRATION).read_text())
    del migration["spec"]["gates"][0]["args"]
    path = tmp_path / "migration.yaml"
    path.write_text(yaml.safe_dump(migration))

    code, _, err = run("backtest", "-f", str(path), "-f", TEMPLATES, "--since", "1h")

    assert code == 1
    assert "GateTemplate 'http-errors' needs arg 'route'" in err
