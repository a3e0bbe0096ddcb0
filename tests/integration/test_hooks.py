"""Hook Jobs through the real operator and the cluster's Job controller."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from devtools.controlplane import ControlPlane
from tests.support.controlplane import decide_job, wait_for
from tests.support.manifests import migration_body
from tests.support.patches import replicas_patched

from .gates_support import condition
from .harness import (
    ROOT,
    OperatorProcess,
    apply,
    apply_text,
    migration,
    replicas,
    wait_phase,
    writes,
)

pytestmark = pytest.mark.integration
APP = ROOT / "examples" / "replicas" / "app.yaml"


@pytest.fixture
def namespace_prefix() -> str:
    return "hk"


def job(outcome: str | None, after: float = 0.3) -> dict[str, Any]:
    """A Job template whose pod kwok ends as ``outcome`` after ``after`` seconds of running (or
    holds running until the test decides, if None): the Job controller does the rest."""
    annotations = {
        "hook.cutover.test/outcome": outcome or "hold",
        "hook.cutover.test/delay": f"{int(after * 1000)}ms",
    }
    return {
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "psql",
                            "image": "postgres:16",
                            "command": ["psql", "-c", "select 1"],
                        }
                    ],
                },
            },
        },
    }


def hook(name: str, outcome: str | None, **fields: Any) -> dict[str, Any]:
    """A hook whose Job ends as ``outcome`` (see :func:`job`)."""
    return {"name": name, **fields, "jobTemplate": job(outcome)}


@pytest.fixture
def start(cluster: ControlPlane, namespace: str) -> Callable[..., None]:
    """Applies the example app (``checkout``, blue at 4) and the ``orders`` Migration with the
    hooks it is given by kind (``start(preShift=[...], bake="1s")``)."""

    def apply_orders(bake: str | None = None, **hooks: list[dict[str, Any]]) -> None:
        apply(cluster, namespace, APP)
        spec = {
            "steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}, {"setWeight": 100}],
            "hooks": hooks,
            **({"bake": bake} if bake else {}),
        }
        apply_text(cluster, namespace, yaml.safe_dump(migration_body("orders", "checkout", spec)))

    return apply_orders


def rolled_back(cluster: ControlPlane, namespace: str) -> dict[str, Any]:
    """``orders`` once it ends; it must have rolled back."""
    obj = wait_phase(cluster, namespace, "orders", "RolledBack", "Failed", timeout=60)
    assert obj["status"]["phase"] == "RolledBack", obj["status"]
    return obj


def timeline(cluster: ControlPlane, namespace: str) -> list[str]:
    """Job creations and replica writes, in the order the cluster received them."""
    out = []
    for entry in writes(cluster, namespace):
        body = entry.get("body") or {}
        if entry["resource"] == "jobs" and entry["method"] == "POST":
            out.append(f"job {body['metadata']['labels']['cutover.io/hook']}")
        elif entry["resource"] == "deployments" and entry["method"] == "PATCH":
            count = replicas_patched(entry.get("body"))
            if count is not None:
                out.append(f"{entry['name'].removeprefix('checkout-')}={count}")
    return out


def jobs(cluster: ControlPlane, namespace: str) -> dict[str, str]:
    """The namespace's Jobs now: name -> uid."""
    listed = json.loads(cluster.kubectl("get", "-n", namespace, "jobs", "-o", "json").stdout)
    return {j["metadata"]["name"]: j["metadata"]["uid"] for j in listed["items"]}


def jobs_created(cluster: ControlPlane, namespace: str) -> list[str]:
    return [
        e["body"]["metadata"]["name"]
        for e in writes(cluster, namespace, "jobs")
        if e["method"] == "POST"
    ]


def test_hooks_run_in_order_around_traffic_writes(
    cluster: ControlPlane, namespace: str, operator: OperatorProcess, start: Callable[..., None]
) -> None:
    start(
        preShift=[hook("expand", "succeed")],
        afterStep=[hook("check", "succeed")],
        postPromotion=[hook("contract", "succeed", irreversible=True)],
        onRollback=[hook("undo", "succeed")],
        bake="1s",
    )
    obj = wait_phase(
        cluster, namespace, "orders", "Succeeded", "RolledBack", "Failed", "Paused", timeout=60
    )
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert timeline(cluster, namespace) == [
        "job expand",
        "green=2",
        "blue=2",
        "job check",
        "green=4",
        "blue=0",
        "job check",
        "job contract",
    ]
    runs = obj["status"]["hooks"]
    assert [(r["name"], r["state"]) for r in runs] == [
        ("expand", "Succeeded"),
        ("check", "Succeeded"),
        ("check", "Succeeded"),
        ("contract", "Succeeded"),
    ]
    assert obj["status"]["rollbackAvailable"] is False
    created = cluster.kubectl("get", "-n", namespace, "jobs", "-o", "json").stdout
    assert '"cutover.io/migration": "orders"' in created
    assert '"kind": "Migration"' in created  # owner reference: Jobs go with the Migration


def test_a_failed_pre_shift_hook_moves_no_traffic_and_runs_on_rollback(
    cluster: ControlPlane, namespace: str, operator: OperatorProcess, start: Callable[..., None]
) -> None:
    start(preShift=[hook("expand", "fail")], onRollback=[hook("undo", "succeed")])
    obj = rolled_back(cluster, namespace)
    rolled = condition(obj["status"], "RolledBack")
    assert rolled["reason"] == "HookFailed" and "expand" in rolled["message"]
    line = timeline(cluster, namespace)
    assert line[0] == "job expand" and line[-1] == "job undo"
    assert not [x for x in line if x.startswith("green=") and x != "green=0"]
    assert replicas(cluster, namespace, "checkout-blue") == 4


def test_a_failed_after_step_hook_rolls_back_and_runs_on_rollback(
    cluster: ControlPlane, namespace: str, operator: OperatorProcess, start: Callable[..., None]
) -> None:
    start(afterStep=[hook("check", "fail")], onRollback=[hook("undo", "succeed")])
    obj = rolled_back(cluster, namespace)
    assert timeline(cluster, namespace) == [
        "green=2",
        "blue=2",
        "job check",
        "green=0",
        "blue=4",
        "job undo",
    ]
    rolled = condition(obj["status"], "RolledBack")
    assert rolled["reason"] == "HookFailed" and "check" in rolled["message"], rolled
    listed = json.loads(cluster.kubectl("get", "-n", namespace, "events", "-o", "json").stdout)
    warnings = [
        e
        for e in listed["items"]
        if e["involvedObject"]["name"] == "orders" and e["reason"] == "HookFailed"
    ]
    # The hook's own failure and the rollback it caused: both Warnings that name the hook.
    assert warnings, listed["items"]
    assert all(e["type"] == "Warning" and "check" in e["message"] for e in warnings), warnings


def test_a_restart_between_job_creation_and_completion_creates_no_second_job(
    cluster: ControlPlane, namespace: str, operator: OperatorProcess, start: Callable[..., None]
) -> None:
    start(preShift=[hook("expand", None)])
    name = wait_for(lambda: (jobs_created(cluster, namespace) or [None])[0], timeout=30)
    created = wait_for(lambda: jobs(cluster, namespace).get(name), timeout=30)
    operator.kill()
    operator.start()
    time.sleep(3)  # the restarted operator has seen the Job running
    decide_job(cluster, namespace, name, "succeed")
    obj = wait_phase(cluster, namespace, "orders", "Succeeded", "RolledBack", "Failed", timeout=60)
    assert obj["status"]["phase"] == "Succeeded"
    # The same Job, never replaced, and no other. (Counting POSTs in the audit log cannot say
    # this: a create the SIGKILL cut off mid-request is audited as 504 and must count as taking
    # effect, even when the API server was refusing it because the Job existed.)
    assert jobs(cluster, namespace) == {name: created}


def test_after_an_irreversible_hook_a_breach_pauses_and_does_not_roll_back(
    cluster: ControlPlane, namespace: str, operator: OperatorProcess, start: Callable[..., None]
) -> None:
    start(
        postPromotion=[hook("contract", None, irreversible=True)],
        onRollback=[hook("undo", "succeed")],
    )
    wait_for(
        lambda: (
            not (migration(cluster, namespace, "orders").get("status") or {}).get(
                "rollbackAvailable", True
            )
        ),
        timeout=60,
    )
    cluster.kubectl("annotate", "-n", namespace, "mig/orders", "cutover.io/request=abort:x1")
    obj = wait_phase(cluster, namespace, "orders", "Paused", "RolledBack", timeout=30)
    assert obj["status"]["phase"] == "Paused"
    assert obj["status"]["reason"] == "RollbackNotAvailable"
    assert "contract" in obj["status"]["rollbackUnavailableReason"]
    available = condition(obj["status"], "RollbackAvailable")
    assert available["status"] == "False"
    assert replicas(cluster, namespace, "checkout-green") == 4  # traffic stays on green
    assert "job undo" not in timeline(cluster, namespace)


def test_a_hook_that_runs_past_its_timeout_fails_and_its_job_is_deleted(
    cluster: ControlPlane, namespace: str, operator: OperatorProcess, start: Callable[..., None]
) -> None:
    start(afterStep=[hook("check", None, timeout="2s")])
    obj = rolled_back(cluster, namespace)
    rolled = condition(obj["status"], "RolledBack")
    assert rolled["reason"] == "HookFailed" and "check" in rolled["message"], rolled
    check = next(r for r in obj["status"]["hooks"] if r["name"] == "check")
    assert check["state"] == "Failed" and "timed out after 2s" in check["message"]
    deleted = [e for e in writes(cluster, namespace, "jobs") if e["method"] == "DELETE"]
    assert [e["name"] for e in deleted] == [check["job"]]
