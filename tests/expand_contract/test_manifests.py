"""The expand-contract example's manifests: hooks wired to the SQL, ConfigMap equal to the files.

Schema validity of every example (CRD and Kubernetes) is checked in tests/unit/test_crd.py.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "expand-contract"

HOOK_FILES = {
    ("preShift", "expand-schema"): "expand.sql",
    ("afterStep", "reconcile-data"): "reconcile.sql",
    ("postPromotion", "contract-schema"): "contract.sql",
    ("onRollback", "undo-expand"): "undo-expand.sql",
}


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLE / name).read_text()) if d]


def only(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in docs if d["kind"] == kind and name in (None, d.get("metadata", {}).get("name"))
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


APP = documents("app.yaml")
MIGRATION = only(documents("migration.yaml"), "Migration")
HOOKS: dict[str, list[dict[str, Any]]] = MIGRATION["spec"]["hooks"]
JOBS = [
    pytest.param(phase, hook, id=f"{phase}/{hook['name']}")
    for phase, hooks in HOOKS.items()
    for hook in hooks
]


def test_the_configmap_holds_exactly_the_sql_files() -> None:
    data = only(APP, "ConfigMap", "orders-migrations")["data"]
    files = {p.name: p.read_text() for p in sorted((EXAMPLE / "sql").glob("*.sql"))}
    assert sorted(data) == sorted(files)
    for name, text in files.items():
        assert data[name] == text, f"{name}: the ConfigMap copy differs from sql/{name}"


def test_the_four_hooks_run_the_four_files() -> None:
    wired = {(phase, h["name"]): h for phase, hooks in HOOKS.items() for h in hooks}
    assert sorted(wired) == sorted(HOOK_FILES)
    for key, sql in HOOK_FILES.items():
        (container,) = wired[key]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        argv = [*container.get("command", []), *container.get("args", [])]
        assert argv[argv.index("-f") + 1] == f"/sql/{sql}"
    # Only the contract is a point of no return.
    assert {k for k, h in wired.items() if h.get("irreversible")} == {
        ("postPromotion", "contract-schema")
    }


@pytest.mark.parametrize(("phase", "hook"), JOBS)
def test_every_hook_job_runs_psql_from_the_postgres_image(phase: str, hook: dict[str, Any]) -> None:
    assert "configMapRef" not in hook
    job = hook["jobTemplate"]["spec"]
    as_job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"}, "spec": job}
    kubernetes_validate.validate(as_job, "1.30.0", strict=True)
    assert job["backoffLimit"] == 0  # retries are the hook's, each a new Job
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert re.fullmatch(
        r"(docker\.io/(library/)?)?postgres:16(\.\d+)?(@sha256:[0-9a-f]{64})?", container["image"]
    )
    argv = [*container.get("command", []), *container.get("args", [])]
    assert argv[0] == "psql"
    assert "ON_ERROR_STOP=1" in [value for flag, value in itertools.pairwise(argv) if flag == "-v"]
    assert argv[1] == "$(DATABASE_URL)"  # expanded by the kubelet from env, no shell needed

    # The SQL comes from the ConfigMap, mounted where -f looks.
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == "/sql"
    (volume,) = (v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == "orders-migrations"
    script = argv[argv.index("-f") + 1].removeprefix("/sql/")
    assert script in only(APP, "ConfigMap", "orders-migrations")["data"]

    # DATABASE_URL comes from the Secret the app uses.
    env = {e["name"]: e for e in container["env"]}
    ref = env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref["key"] in only(APP, "Secret", ref["name"])["stringData"]


def test_the_migration_shifts_orders_with_a_gate_and_a_bake() -> None:
    spec = MIGRATION["spec"]
    assert spec["traffic"] == {"router": "replicas", "service": "orders"}
    assert spec["steps"] == [
        {"setWeight": 10},
        {"pause": {"duration": "2m"}},
        {"setWeight": 50},
        {"pause": {"duration": "5m"}},
        {"setWeight": 100},
    ]
    assert spec["bake"] == "10m"
    errors, data = spec["gates"]
    assert "5.." in errors["prometheus"]["query"] and errors["threshold"] == {"max": 0.01}
    # The data check as a gate: its DSN is the Secret the app and the hooks use.
    assert data["sql"]["dsn"] == {"name": "orders-db", "key": "DATABASE_URL"}
    assert data["threshold"] == {"max": 0}


def test_the_service_selects_both_versions_which_share_the_database() -> None:
    selector = only(APP, "Service", MIGRATION["spec"]["traffic"]["service"])["spec"]["selector"]
    for side in ("blue", "green"):
        deployment = only(APP, "Deployment", MIGRATION["spec"][side]["deployment"])
        pod = deployment["spec"]["template"]
        assert selector.items() <= pod["metadata"]["labels"].items()
        (container,) = pod["spec"]["containers"]
        (env,) = (e for e in container["env"] if e["name"] == "DATABASE_URL")
        assert env["valueFrom"]["secretKeyRef"] == {"name": "orders-db", "key": "DATABASE_URL"}
    url = only(APP, "Secret", "orders-db")["stringData"]["DATABASE_URL"]
    assert url.startswith("postgresql://") and "FAKE-PASSWORD" in url
