"""``cutover compat`` and the SQL checks of ``cutover lint`` on the expand-contract example and
on mutated copies of it: exit codes, the lines a CI log shows, and the JSON report."""

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
DROP = "ALTER TABLE orders DROP COLUMN IF EXISTS customer_name"


def run(*args: str) -> tuple[int, str, str]:
    env = {"COLUMNS": "120", "NO_COLOR": "1", "TERM": "dumb", "CUTOVER_DEBUG": None}
    result = CliRunner(env=env).invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def line_of(path: Path, text: str) -> int:
    """The 1-based line of ``path`` holding ``text`` (exactly one)."""
    hits = [n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line]
    assert len(hits) == 1, f"{text!r} is on lines {hits} of {path}"
    return hits[0]


@pytest.fixture
def example(tmp_path: Path) -> Path:
    copy = tmp_path / "expand-contract"
    shutil.copytree(EXAMPLE, copy)
    return copy


def edit_hooks(example: Path, change: Any) -> None:
    """Rewrite the copy's Migration after ``change(hooks)`` edits its spec.hooks in place."""
    path = example / "migration.yaml"
    migration = yaml.safe_load(path.read_text())
    change(migration["spec"]["hooks"])
    path.write_text(yaml.safe_dump(migration, sort_keys=False))


def test_the_example_passes_compat_and_lint_as_it_is() -> None:
    code, out, err = run("compat", "-f", str(EXAMPLE))
    assert code == 0, out + err
    assert "0 errors" in out.splitlines()[-1]
    code, out, err = run("lint", "-f", str(EXAMPLE))
    assert code == 0, out + err
    assert f"{EXAMPLE / 'migration.yaml'}: Migration orders: valid" in out
    assert ": error:" not in out


def test_lint_warns_about_the_lock_the_contract_takes() -> None:
    _, out, _ = run("lint", "-f", str(EXAMPLE))
    line = line_of(EXAMPLE / "app.yaml", "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
    assert (
        f"{EXAMPLE / 'app.yaml'}:{line}: warning: locking statement in postPromotion hook"
        " contract-schema: takes ACCESS EXCLUSIVE on orders until the transaction ends"
    ) in out


def test_contract_sql_moved_into_pre_shift_fails_naming_statement_file_and_line(
    example: Path,
) -> None:
    def move(hooks: dict[str, Any]) -> None:
        hooks["preShift"].extend(hooks.pop("postPromotion"))

    edit_hooks(example, move)
    app_yaml = example / "app.yaml"
    line = line_of(app_yaml, DROP)
    for command in ("compat", "lint"):
        code, out, _ = run(command, "-f", str(example))
        assert code == 1, out
        errors = [entry for entry in out.splitlines() if f"{app_yaml}:{line}: error:" in entry]
        assert errors, out
        assert "contract statement in preShift hook contract-schema" in errors[0]
        assert "blue still serves" in errors[0]
    _, out, _ = run("lint", "-f", str(example))
    assert f"{app_yaml}:{line}: error: contract statement in preShift hook" in out
    assert out.count(": error:") == 6  # the trigger, three functions, the column, one function
    assert DROP in out


def test_a_contract_statement_added_to_the_expand_script_is_found_at_its_line(
    example: Path,
) -> None:
    app_yaml = example / "app.yaml"
    anchor = "    ALTER TABLE orders ADD COLUMN IF NOT EXISTS customer_last text;\n"
    text = app_yaml.read_text()
    assert text.count(anchor) == 1
    app_yaml.write_text(
        text.replace(anchor, anchor + "    ALTER TABLE orders RENAME COLUMN total TO amount;\n")
    )
    line = line_of(app_yaml, "RENAME COLUMN total TO amount")
    code, out, _ = run("lint", "-f", str(example))
    assert code == 1
    assert (
        f"{app_yaml}:{line}: error: contract statement in preShift hook expand-schema: it would"
        " break blue while blue still serves"
    ) in out
    assert out.count("ALTER TABLE orders RENAME COLUMN total TO amount") == 1


def test_contract_in_a_post_promotion_hook_not_marked_irreversible_is_an_error(
    example: Path,
) -> None:
    def reversible(hooks: dict[str, Any]) -> None:
        hooks["postPromotion"][0]["irreversible"] = False

    edit_hooks(example, reversible)
    code, out, _ = run("lint", "-f", str(example))
    assert code == 1
    assert "which is not marked irreversible: true" in out
    assert "point of no return" in out


def test_contract_sql_in_an_after_step_hook_is_an_error(example: Path) -> None:
    def after_step(hooks: dict[str, Any]) -> None:
        hooks["afterStep"].extend(hooks.pop("postPromotion"))

    edit_hooks(example, after_step)
    code, out, _ = run("lint", "-f", str(example))
    assert code == 1
    assert "contract statement in afterStep hook contract-schema" in out


def test_inline_sql_of_a_hook_is_checked_too(example: Path) -> None:
    def inline(hooks: dict[str, Any]) -> None:
        container = hooks["preShift"][0]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        container["command"] = ["psql", "$(DATABASE_URL)", "-c", "DROP TABLE orders"]

    edit_hooks(example, inline)
    code, out, _ = run("compat", "-f", str(example))
    assert code == 1
    assert "(Migration orders hook expand-schema (inline SQL)): contract (drop-table)" in out


def test_without_the_configmap_lint_says_the_sql_was_not_checked() -> None:
    code, out, _ = run("lint", "-f", str(EXAMPLE / "migration.yaml"))
    assert code == 0
    assert (
        "note: " + str(EXAMPLE / "migration.yaml") + ": Migration orders: preShift hook"
        " expand-schema: mounts ConfigMap orders-migrations, which is not among the manifests"
        " given with -f: its SQL was not checked"
    ) in out


def test_an_invalid_migration_is_a_note_not_a_silent_pass(example: Path) -> None:
    edit_hooks(example, lambda hooks: hooks["preShift"][0].update(retries=99))
    code, out, _ = run("compat", "-f", str(example))
    assert code == 0
    assert "Migration orders is invalid (see cutover lint): its hooks' SQL was not checked" in out
    code, out, _ = run("lint", "-f", str(example))
    assert code == 1 and "spec.hooks.preShift[0].retries" in out


def test_sql_files_can_be_judged_as_if_a_phase_ran_them() -> None:
    contract = EXAMPLE / "sql" / "contract.sql"
    code, out, _ = run("compat", str(contract))
    assert code == 0, "without a phase there is nothing to break"
    code, out, _ = run("compat", "--phase", "preShift", str(contract))
    assert code == 1
    assert f"{contract}:{line_of(contract, DROP)}: error: contract statement in preShift" in out
    code, out, _ = run(
        "compat", "--phase", "postPromotion", "--irreversible", "-o", "json", str(contract)
    )
    assert code == 0
    hooks = {json.dumps(f["hook"]) for f in json.loads(out)["findings"]}
    assert hooks == {
        json.dumps(
            {"migration": None, "stage": "postPromotion", "name": None, "irreversible": True}
        )
    }
    code, _, _ = run("compat", "--phase", "preShift", str(EXAMPLE / "sql" / "expand.sql"))
    assert code == 0


def test_the_json_report_names_statement_file_line_class_and_reason() -> None:
    code, out, _ = run("compat", "-f", str(EXAMPLE), "-o", "json")
    assert code == 0
    report = json.loads(out)
    assert report["version"] == 1
    summary = report["summary"]
    assert summary["errors"] == 0 and summary["warnings"] == 1
    assert summary["statements"] == sum(
        summary[c] for c in ("expand", "contract", "locking", "unknown")
    )
    (drop,) = [f for f in report["findings"] if f["statement"] == DROP]
    assert drop["file"] == str(EXAMPLE / "app.yaml")
    assert drop["line"] == line_of(EXAMPLE / "app.yaml", DROP)
    assert drop["origin"] == "ConfigMap orders-migrations key contract.sql"
    assert (drop["class"], drop["reason"]) == ("contract", "drop-column")
    assert drop["hook"] == {
        "migration": "orders",
        "stage": "postPromotion",
        "name": "contract-schema",
        "irreversible": True,
    }
    assert drop["severity"] is None
    expand = [f for f in report["findings"] if f["hook"]["stage"] == "preShift"]
    assert expand and {f["class"] for f in expand} == {"expand"}


def test_the_json_report_of_a_failing_run_still_lists_everything(example: Path) -> None:
    edit_hooks(example, lambda hooks: hooks["preShift"].extend(hooks.pop("postPromotion")))
    code, out, _ = run("compat", "-f", str(example), "-o", "json")
    assert code == 1
    report = json.loads(out)
    errors = [f for f in report["findings"] if f["severity"] == "error"]
    assert report["summary"]["errors"] == len(errors) == 6
    assert DROP in {f["statement"] for f in errors}


def test_a_schema_file_lets_type_changes_be_judged(tmp_path: Path) -> None:
    migration = tmp_path / "narrow.sql"
    migration.write_text("ALTER TABLE orders ALTER COLUMN status TYPE varchar(8);\n")
    code, out, _ = run("compat", "--phase", "preShift", str(migration))
    assert code == 0 and "unknown (type-unknown)" in out
    assert "warning: unclassified statement in preShift SQL (--phase)" in out
    schema = EXAMPLE / "schema" / "orders-v1.sql"  # status is text there
    code, out, _ = run("compat", "--phase", "preShift", "--schema", str(schema), str(migration))
    assert code == 1
    assert f"{migration}:1: contract (narrow-type)" in out
    assert "orders.status TEXT -> VARCHAR(8) is narrower" in out


def test_mysql_dialect_is_taken_from_the_option(tmp_path: Path) -> None:
    migration = tmp_path / "m.sql"
    migration.write_text("ALTER TABLE orders ADD COLUMN c VARCHAR(20) NULL AFTER id;\n")
    code, out, _ = run("compat", "--dialect", "mysql", "-o", "json", str(migration))
    assert code == 0
    (finding,) = json.loads(out)["findings"]
    assert finding["dialect"] == "mysql" and finding["class"] == "expand"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ([], 1, "error: nothing to check: name SQL files, or manifests with -f"),
        (["missing.sql"], 1, "error: cannot read missing.sql"),
        (["-f", "missing.yaml"], 1, "error: cannot read missing.yaml"),
        (["-f", "README.md"], 1, "is not valid YAML"),
    ],
)
def test_bad_input_is_a_one_line_error(args: list[str], code: int, message: str) -> None:
    got, out, err = run("compat", *args)
    assert got == code
    assert message in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in out + err


def test_an_unknown_phase_is_a_usage_error() -> None:
    code, _, err = run("compat", "--phase", "sometime", "x.sql")
    assert code == 2 and "sometime" in err


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
