"""The ``job`` and ``sql`` gate providers through the real operator: a gate's Job run by the
cluster's Job controller (kwok ends its pod as the template says), and a gate query answered by
a real PostgreSQL on loopback with its DSN read from a Secret."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from devtools.controlplane import ControlPlane
from tests.expand_contract.conftest import db, postgres, psql  # noqa: F401 (fixtures)

from .gates_support import condition, events, gate_record, start_app
from .harness import OperatorProcess, apply_text, replicas, wait_phase, writes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]
TERMINAL = ("Succeeded", "RolledBack", "Failed")
# One step keeps these tests short: the gate is checked (and must pass) at weight 100.
ONE_STEP = [{"setWeight": 100}]
PASSWORD = "gate-db-password-7f3a"


@pytest.fixture
def namespace_prefix() -> str:
    return "jsgate"


def job_gate(outcome: str) -> dict[str, Any]:
    """A job gate whose pod kwok ends as ``outcome`` (devtools/controlplane/stages)."""
    annotations = {"hook.cutover.test/outcome": outcome, "hook.cutover.test/delay": "300ms"}
    template = {
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "smoke", "image": "curlimages/curl:8", "command": ["true"]}
                    ],
                },
            },
        }
    }
    return {
        "name": "smoke",
        "interval": "1s",
        "job": {"jobTemplate": template, "timeout": "1m", "ttlAfterFinished": "10m"},
        "threshold": {"min": 1},
    }


def gate_jobs(cluster: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    listed = cluster.kubectl("get", "-n", namespace, "jobs", "-l", "cutover.io/gate", "-o", "json")
    items: list[dict[str, Any]] = json.loads(listed.stdout)["items"]
    return items


@pytest.mark.usefixtures("operator")
def test_a_job_gate_whose_jobs_succeed_lets_the_run_succeed(
    cluster: ControlPlane, namespace: str
) -> None:
    start_app(cluster, namespace, "shop", "shop", [job_gate("succeed")], ONE_STEP)

    final = wait_phase(cluster, namespace, "shop", *TERMINAL, timeout=120)["status"]

    assert final["phase"] == "Succeeded", final
    assert replicas(cluster, namespace, "shop-green") == 2
    record = gate_record(final, "smoke")
    assert record["passed"] >= 1 and record["failed"] == 0 and record["lastValue"] == 1, record
    jobs = gate_jobs(cluster, namespace)
    # One Job per recorded check, none created twice: every check has its own name.
    created = [e["name"] for e in writes(cluster, namespace, "jobs") if e["method"] == "POST"]
    assert len(created) == len(set(created)) == len(jobs) >= record["passed"], created
    for job in jobs:
        owner = job["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"]) == ("Migration", "shop"), job["metadata"]
        assert job["spec"]["ttlSecondsAfterFinished"] == 600
        assert job["spec"]["activeDeadlineSeconds"] == 60
        assert job["metadata"]["labels"]["cutover.io/gate"] == "smoke"


@pytest.mark.usefixtures("operator")
def test_a_job_gate_whose_job_fails_rolls_back_with_the_jobs_reason(
    cluster: ControlPlane, namespace: str
) -> None:
    start_app(cluster, namespace, "shop", "shop", [job_gate("fail")], ONE_STEP)

    final = wait_phase(cluster, namespace, "shop", *TERMINAL, timeout=120)["status"]

    assert final["phase"] == "RolledBack", final
    assert replicas(cluster, namespace, "shop-green") == 0
    assert replicas(cluster, namespace, "shop-blue") == 2
    record = gate_record(final, "smoke")
    assert record["failed"] == 1 and record["lastValue"] == 0, record
    rolled = condition(final, "RolledBack")
    assert "gate smoke" in rolled["message"], rolled
    assert "value 0 is below min 1: Job shop-" in rolled["message"], rolled
    assert "failed: BackoffLimitExceeded" in rolled["message"], rolled


def dsn_secret(cluster: ControlPlane, namespace: str, url: str) -> str:
    dsn = url.replace("postgresql://cutover_test@", f"postgresql://cutover_test:{PASSWORD}@")
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "orders-db"},
        "data": {"DATABASE_URL": base64.b64encode(dsn.encode()).decode()},
    }
    apply_text(cluster, namespace, json.dumps(secret))
    return dsn


def test_an_sql_gate_reading_a_real_postgresql_lets_the_run_succeed_without_showing_the_dsn(
    cluster: ControlPlane,
    namespace: str,
    operator: OperatorProcess,
    db: str,  # noqa: F811 (the fixture imported above)
) -> None:
    psql(db, "-c", "CREATE TABLE orders (id int PRIMARY KEY, migrated bool NOT NULL)")
    psql(db, "-c", "INSERT INTO orders SELECT g, true FROM generate_series(1, 50) g")
    dsn = dsn_secret(cluster, namespace, db)
    gate = {
        "name": "unmigrated-rows",
        "interval": "1s",
        "sql": {
            "dsn": {"name": "orders-db", "key": "DATABASE_URL"},
            "query": "SELECT count(*) FILTER (WHERE NOT migrated) FROM orders"
            " WHERE '{{green}}' = 'shop-green'",
            "timeout": "5s",
        },
        "threshold": {"max": 0},
    }
    start_app(cluster, namespace, "shop", "shop", [gate], ONE_STEP)

    final = wait_phase(cluster, namespace, "shop", *TERMINAL, timeout=120)["status"]

    assert final["phase"] == "Succeeded", final
    record = gate_record(final, "unmigrated-rows")
    assert record["passed"] >= 1 and record["lastValue"] == 0, record
    shown = {
        "operator log": operator.log(),
        "events": json.dumps(events(cluster, namespace)),
        "status": json.dumps(final),
    }
    for where, text in shown.items():
        assert dsn not in text and PASSWORD not in text, f"the DSN leaked into the {where}"
