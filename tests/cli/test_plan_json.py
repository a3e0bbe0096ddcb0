"""``cutover plan -o json`` as the migration plan CI keeps: phases with durations, gates and hooks,
the point of no return, rollback availability per phase, and the risk assessment."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cutover.cli import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "expand-contract"
GATED = ROOT / "tests" / "cli" / "manifests" / "gated.yaml"


def plan_of(*files: Path) -> dict[str, Any]:
    args = ["plan", "-o", "json"]
    for file in files:
        args += ["-f", str(file)]
    result = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"}).invoke(app, args)
    assert result.exit_code == 0, result.stdout + result.stderr
    (plan,) = json.loads(result.stdout)
    assert isinstance(plan, dict)
    return plan


def risks(plan: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {r["risk"]: r for r in plan["risk"]["risks"]}


def variant(tmp_path: Path, base: Path, change: Any) -> Path:
    """A copy of the Migration in ``base`` after ``change(spec)`` edits its spec in place."""
    docs = [d for d in yaml.safe_load_all(base.read_text()) if d]
    for doc in docs:
        if doc.get("kind") == "Migration":
            change(doc["spec"])
    path = tmp_path / base.name
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def test_the_example_plan_has_its_phases_in_order_with_rollback_per_phase() -> None:
    plan = plan_of(EXAMPLE)
    phases = plan["phases"]
    assert [p["name"] for p in phases] == [
        "preShift",
        "step 1: setWeight 10",
        "step 2: pause",
        "step 3: setWeight 50",
        "step 4: pause",
        "step 5: setWeight 100",
        "bake",
        "postPromotion",
        "complete",
    ]
    rollback = {p["name"]: p["rollback_available"] for p in phases}
    assert [n for n, available in rollback.items() if not available] == [
        "postPromotion",
        "complete",
    ]
    assert plan["point_of_no_return"] == (
        "postPromotion hook contract-schema starts (irreversible: true)"
    )
    by_name = {p["name"]: p for p in phases}
    assert by_name["step 2: pause"]["duration"] == "2m"
    assert by_name["bake"]["min_seconds"] == 600 and by_name["bake"]["gates"] == [
        "error-rate",
        "data-in-sync",
    ]
    # preShift: expand-schema, 15m timeout, one retry: at most 30m.
    assert by_name["preShift"]["max_seconds"] == 1800
    (expand,) = by_name["preShift"]["hooks"]
    assert expand["name"] == "expand-schema" and set(expand["sql"]) == {"expand"}
    # afterStep hooks run after each non-zero setWeight, not after pauses.
    assert [h["name"] for h in by_name["step 1: setWeight 10"]["hooks"]] == ["reconcile-data"]
    assert by_name["step 2: pause"]["hooks"] == []
    (contract,) = by_name["postPromotion"]["hooks"]
    assert contract["irreversible"] is True and contract["sql"]["contract"] == 6


def test_the_example_is_a_medium_risk_for_its_contract_and_its_lock() -> None:
    plan = plan_of(EXAMPLE)
    assert plan["risk"]["level"] == "MEDIUM"
    found = risks(plan)
    assert set(found) == {"contract SQL at the point of no return", "locking SQL"}
    final = found["contract SQL at the point of no return"]
    assert final["reason"].startswith("contract-schema (6 statements, first at ")
    assert final["mitigation"]


def test_the_plan_keeps_its_schedule_rows_and_gates() -> None:
    plan = plan_of(GATED)
    assert [r["hold"] for r in plan["rows"]][3] == "until promoted"
    by_name = {p["name"]: p for p in plan["phases"]}
    assert by_name["step 4: pause"]["max_seconds"] is None
    assert by_name["step 4: pause"]["duration"] == "until promoted"
    assert plan["point_of_no_return"] == "the run succeeds and checkout-blue is retired"
    assert plan["risk"]["level"] == "LOW" and plan["risk"]["risks"] == []


def test_no_gates_is_a_high_risk(tmp_path: Path) -> None:
    plan = plan_of(variant(tmp_path, GATED, lambda spec: spec.pop("gates")))
    assert plan["risk"]["level"] == "HIGH"
    assert "add gates" in risks(plan)["no gates"]["mitigation"]


def test_a_gate_that_passes_on_no_data_is_a_medium_risk(tmp_path: Path) -> None:
    def passes(spec: dict[str, Any]) -> None:
        spec["gates"][0]["onNoData"] = "pass"

    plan = plan_of(variant(tmp_path, GATED, passes))
    assert plan["risk"]["level"] == "MEDIUM"
    assert risks(plan)["gates that pass on no data"]["reason"].startswith("error-rate:")


def test_an_irreversible_step_without_a_bake_is_a_high_risk(tmp_path: Path) -> None:
    copy = tmp_path / "example"
    shutil.copytree(EXAMPLE, copy)
    variant(copy, EXAMPLE / "migration.yaml", lambda spec: spec.update(bake="0s"))
    plan = plan_of(copy)
    assert plan["risk"]["level"] == "HIGH"
    found = risks(plan)["irreversible step without a bake"]
    assert found["reason"].startswith("contract-schema runs right after weight 100")
    assert "spec.bake" in found["mitigation"]


def test_contract_sql_while_blue_serves_is_a_high_risk(tmp_path: Path) -> None:
    copy = tmp_path / "example"
    shutil.copytree(EXAMPLE, copy)

    def move(spec: dict[str, Any]) -> None:
        spec["hooks"]["preShift"].extend(spec["hooks"].pop("postPromotion"))

    variant(copy, EXAMPLE / "migration.yaml", move)
    plan = plan_of(copy)
    assert plan["risk"]["level"] == "HIGH"
    assert "contract-schema" in risks(plan)["contract SQL while blue serves"]["reason"]
    assert plan["point_of_no_return"] == "the run succeeds and orders-blue is retired"


def test_sql_that_was_not_found_is_named_as_a_risk() -> None:
    plan = plan_of(EXAMPLE / "migration.yaml")
    found = risks(plan)["SQL not checked"]
    assert found["level"] == "LOW" and "ConfigMap orders-migrations" in found["reason"]


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_both_machine_formats_hold_the_risk_levels(output: str) -> None:
    result = CliRunner().invoke(app, ["plan", "-f", str(EXAMPLE), "-o", output])
    assert result.exit_code == 0
    loaded = json.loads(result.stdout) if output == "json" else yaml.safe_load(result.stdout)
    assert loaded[0]["risk"]["level"] == "MEDIUM"


def test_the_plan_shows_where_green_is_mirrored_and_where_the_mirror_ends() -> None:
    plan = plan_of(ROOT / "examples" / "istio" / "migration-mirror.yaml")
    assert [(r["kind"], r["weight"], r["mirror"]) for r in plan["rows"]] == [
        ("setMirror", 0, 50),
        ("pause", 0, 50),
        ("setWeight", 20, 0),
        ("pause", 20, 0),
        ("setWeight", 100, 0),
    ]
    assert plan["rows"][1]["rollback"] == "mirror of 50 % removed; all traffic is on blue"
    assert [p["name"] for p in plan["phases"]][1:3] == ["step 1: setMirror 50", "step 2: pause"]


def test_the_plan_table_draws_the_mirror_next_to_the_weight() -> None:
    env = {"COLUMNS": "160", "NO_COLOR": "1", "TERM": "dumb"}
    path = ROOT / "examples" / "gatewayapi" / "migration-mirror.yaml"
    result = CliRunner(env=env).invoke(app, ["plan", "-f", str(path)])
    assert result.exit_code == 0, result.stdout
    rows = [line for line in result.stdout.splitlines() if "setMirror" in line]
    assert len(rows) == 1 and "0% + 25% mirrored" in rows[0]


WINDOW = ROOT / "examples" / "replicas" / "migration-window.yaml"


def test_the_rollback_window_is_a_phase_after_success_that_can_still_roll_back() -> None:
    plan = plan_of(WINDOW)
    names = [p["name"] for p in plan["phases"]]
    assert names[-3:] == ["postPromotion", "rollbackWindow", "complete"]
    window = plan["phases"][-2]
    assert (window["duration"], window["min_seconds"], window["rollback_available"]) == (
        "10m",
        600.0,
        True,
    )
    assert "`cutover undo` or a failed gate puts all traffic back on it" in window["rollback"]
    assert plan["point_of_no_return"] == (
        "the rollback window closes (10m after success) and checkout-blue is retired"
    )
    assert plan["after_success"].startswith("checkout-blue is kept at full size for 10m")


def test_no_rollback_window_opens_past_an_irreversible_hook(tmp_path: Path) -> None:
    hook = {
        "name": "contract",
        "irreversible": True,
        "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}},
    }
    path = variant(tmp_path, WINDOW, lambda spec: spec.update(hooks={"postPromotion": [hook]}))
    plan = plan_of(path)
    window = next(p for p in plan["phases"] if p["name"] == "rollbackWindow")
    assert (window["duration"], window["rollback_available"]) == ("0s", False)
    assert "no window opens past the point of no return (contract" in window["rollback"]
    assert "no rollback window opens past the point of no return" in plan["after_success"]
