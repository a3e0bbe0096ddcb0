"""The real operator process against the cluster cluster, driven with kubectl."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

from cutover.kopfsettings import WATCH_LIST_CHUNK
from devtools.controlplane import ControlPlane
from tests.support.controlplane import epoch
from tests.support.manifests import migration_body
from tests.support.patches import replicas_patched

from .gates_support import events
from .harness import (
    ROOT,
    OperatorProcess,
    apply,
    apply_text,
    get,
    migration,
    replicas,
    wait_for,
    wait_phase,
    writes,
)

pytestmark = pytest.mark.integration
REPLICAS = ROOT / "examples" / "replicas"
SERVICE = ROOT / "examples" / "service"


def deployment_patches(cluster: ControlPlane, namespace: str) -> list[tuple[str, int]]:
    """(deployment, replicas) for every replica change the operator wrote, in order."""
    found = []
    for entry in writes(cluster, namespace, "deployments"):
        count = replicas_patched(entry.get("body"))
        if entry["method"] == "PATCH" and count is not None:
            found.append((entry["name"], int(count)))
    return found


def status_weights(cluster: ControlPlane, namespace: str, name: str) -> list[int]:
    """Every weight the operator wrote to the Migration's status, in the order the API server
    accepted them: the run's own record, which a poller sampling the status can miss."""
    return [
        int(entry["body"]["status"]["weight"])
        for entry in writes(cluster, namespace, "migrations")
        if entry["name"] == name
        and entry["subresource"] == "status"
        and "weight" in ((entry.get("body") or {}).get("status") or {})
    ]


def green_then_blue(*greens: int, total: int = 4) -> list[tuple[str, int]]:
    """The replica patches of a clean run: each step scales green up to ``g``, then blue down
    to ``total - g``."""
    return [p for g in greens for p in (("checkout-green", g), ("checkout-blue", total - g))]


def conditions(obj: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in obj["status"]["conditions"]}


def field_managers(cluster: ControlPlane, namespace: str, kind: str, name: str) -> dict[str, str]:
    """``manager/subresource`` -> the fields that manager wrote, from the object's
    managedFields (as ``kubectl get --show-managed-fields`` shows them)."""
    obj = json.loads(
        cluster.kubectl(
            "get", "-n", namespace, kind, name, "--show-managed-fields", "-o", "json"
        ).stdout
    )
    return {
        f"{m['manager']}/{m.get('subresource', '')}": json.dumps(m.get("fieldsV1"))
        for m in obj["metadata"]["managedFields"]
    }


def test_replicas_router_moves_pods_step_by_step_to_green(
    cluster: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    apply(cluster, namespace, REPLICAS / "app.yaml")
    apply(cluster, namespace, REPLICAS / "migration.yaml")
    final = wait_phase(
        cluster, namespace, "checkout", "Succeeded", "RolledBack", "Failed", timeout=90
    )["status"]
    assert final["phase"] == "Succeeded", final
    weights = status_weights(cluster, namespace, "checkout")
    assert weights == sorted(weights) and {25, 50, 100} <= set(weights), weights

    patches = deployment_patches(cluster, namespace)
    assert patches == green_then_blue(1, 2, 4), patches
    assert replicas(cluster, namespace, "checkout-blue") == 0
    assert replicas(cluster, namespace, "checkout-green") == 4

    obj = migration(cluster, namespace, "checkout")
    assert conditions(obj)["Complete"] == ("True", "Succeeded")
    assert conditions(obj)["Ready"][0] == "True"
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    waited = cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Complete", "mig/checkout", "--timeout=10s"
    )
    assert "condition met" in waited.stdout
    table = cluster.kubectl("get", "-n", namespace, "mig").stdout
    header, row = table.splitlines()[:2]
    assert header.split()[:5] == ["NAME", "PHASE", "STEP", "WEIGHT", "AGE"]
    assert row.split()[:4] == ["checkout", "Succeeded", "5/5", "100"]

    events = cluster.kubectl("get", "-n", namespace, "events", "-o", "json").stdout
    assert "Succeeded" in events and "Started" in events
    # Every Event of the run was accepted by the API server (a refusal is logged, see kube.py).
    assert "event rejected" not in operator.log()

    # The operator's writes carry its name in managedFields (what Argo CD's
    # ignoreDifferences.managedFieldsManagers matches), not its HTTP client's.
    status_managers = field_managers(cluster, namespace, "mig", "checkout")
    assert '"f:phase"' in status_managers.get("cutover/status", ""), status_managers
    for deployment in ("checkout-blue", "checkout-green"):
        managers = field_managers(cluster, namespace, "deployment", deployment)
        assert '"f:replicas"' in managers.get("cutover/", ""), managers
        assert not any(m.startswith("OpenAPI-Generator") for m in managers), managers


def test_service_router_switches_the_selector_once_green_is_ready(
    cluster: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    apply(cluster, namespace, SERVICE / "app.yaml")
    apply(cluster, namespace, SERVICE / "migration.yaml")
    wait_phase(cluster, namespace, "checkout-bg", "Succeeded", "RolledBack", "Failed", timeout=60)
    obj = migration(cluster, namespace, "checkout-bg")
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    service = get(cluster, namespace, "service", "checkout")
    assert service["spec"]["selector"] == {"app": "checkout", "version": "green"}
    assert "cutover.io/original" not in (service["metadata"].get("annotations") or {})
    assert replicas(cluster, namespace, "checkout-green") == 4
    assert replicas(cluster, namespace, "checkout-blue") == 0
    selector_writes = [
        e
        for e in writes(cluster, namespace, "services")
        if e["method"] == "PATCH" and "selector" in (e.get("body") or {}).get("spec", {})
    ]
    assert len(selector_writes) == 1
    cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Complete", "mig/checkout-bg", "--timeout=5s"
    )


def slow_manifest(first_pause: str = "4s", **spec: Any) -> str:
    """``checkout`` through 25/50/75/100 % with timed pauses (``first_pause``, 4s, 2s)."""
    steps = [
        {"setWeight": 25},
        {"pause": {"duration": first_pause}},
        {"setWeight": 50},
        {"pause": {"duration": "4s"}},
        {"setWeight": 75},
        {"pause": {"duration": "2s"}},
        {"setWeight": 100},
    ]
    return json.dumps(migration_body("checkout", "checkout", {"steps": steps, **spec}))


SLOW = slow_manifest()


def start_slow(cluster: ControlPlane, namespace: str, manifest: str = SLOW) -> None:
    """The replicas example's app and the ``checkout`` Migration (by default :data:`SLOW`)."""
    apply(cluster, namespace, REPLICAS / "app.yaml")
    apply_text(cluster, namespace, manifest)


def slow_run_at_50(cluster: ControlPlane, namespace: str) -> None:
    """:data:`SLOW` started and holding at 50 % (its long pause)."""
    start_slow(cluster, namespace)
    wait_for(
        lambda: (migration(cluster, namespace, "checkout").get("status") or {}).get("weight") == 50,
        timeout=30,
    )


@pytest.mark.parametrize("moment", ["mid-pause", "right-after-a-write"])
def test_sigkill_at_any_moment_neither_repeats_nor_skips_a_step(
    cluster: ControlPlane, namespace: str, operator: OperatorProcess, moment: str
) -> None:
    start_slow(cluster, namespace)
    kills = 0
    for target_step in (1, 3):
        if moment == "mid-pause":
            wait_for(
                lambda s=target_step: (
                    (migration(cluster, namespace, "checkout").get("status") or {}).get(
                        "currentStepIndex"
                    )
                    == s
                ),
                timeout=30,
            )
            time.sleep(1.0)
        else:
            seen = len(deployment_patches(cluster, namespace))
            wait_for(
                lambda n=seen: len(deployment_patches(cluster, namespace)) > n,
                timeout=30,
                interval=0.01,
            )
        operator.kill()
        kills += 1
        operator.start()
    obj = wait_phase(
        cluster, namespace, "checkout", "Succeeded", "RolledBack", "Failed", timeout=90
    )
    assert obj["status"]["phase"] == "Succeeded"
    assert kills == 2 and operator.starts == 3
    patches = deployment_patches(cluster, namespace)
    assert patches == green_then_blue(1, 2, 3, 4), patches
    started = [h["step"] for h in obj["status"]["history"] if h["reason"] == "StepStarted"]
    assert started == sorted(set(started)), obj["status"]["history"]
    assert started == [1, 2, 3, 4, 5, 6, 7]


def test_the_pause_remaining_time_survives_a_restart(
    cluster: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    """Killed 3 s into a 6 s pause, the restarted operator ends the pause it found, as it was
    recorded: not earlier (the pause is not cut short, by the API server's clock) and without
    starting it over (the pause step began once, at the time the first operator recorded).
    How soon after its start a restarted operator acts is machine speed, so it is not asserted."""
    start_slow(cluster, namespace, slow_manifest(first_pause="6s"))
    status = wait_for(
        lambda: (
            (s := migration(cluster, namespace, "checkout").get("status") or {}).get(
                "currentStepIndex"
            )
            == 1
            and s.get("stepStartedAt")
            and s
        ),
        timeout=30,
    )
    pause_started = epoch(status["stepStartedAt"])
    wait_for(lambda: time.time() >= pause_started + 3, timeout=10)
    operator.kill()
    operator.start()
    wait_for(
        lambda: (
            (migration(cluster, namespace, "checkout").get("status") or {}).get(
                "currentStepIndex", 0
            )
            >= 2
        ),
        timeout=30,
    )
    after_pause = [
        e["received"]
        for e in writes(cluster, namespace, "deployments")
        if e["name"] == "checkout-green" and replicas_patched(e.get("body")) == 2
    ]
    assert after_pause, "no setWeight 50 write after the pause"
    assert after_pause[0] >= pause_started + 6, after_pause[0] - pause_started
    history = (migration(cluster, namespace, "checkout").get("status") or {})["history"]
    began = {
        step: [h for h in history if h["reason"] == "StepStarted" and h["step"] == step]
        for step in (1, 2)
    }
    assert [epoch(h["time"]) for h in began[1]] == [pause_started], history
    assert len(began[2]) == 1 and "pause of 6s over" in began[2][0]["message"], history
    assert epoch(began[2][0]["time"]) >= pause_started + 6, history


# A weight that goes down (and no Service for the replicas router to keep).
INVALID = json.dumps(
    migration_body(
        "broken",
        "checkout",
        {"traffic": {"router": "replicas"}, "steps": [{"setWeight": 50}, {"setWeight": 20}]},
    )
)


def test_an_invalid_migration_gets_invalid_spec_and_nothing_else_changes(
    cluster: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    apply(cluster, namespace, REPLICAS / "app.yaml")
    before = cluster.requests()
    since = before[-1]["seq"] if before else 0
    apply_text(cluster, namespace, INVALID)
    obj = wait_phase(cluster, namespace, "broken", "Failed", timeout=30)
    invalid = next(c for c in obj["status"]["conditions"] if c["type"] == "InvalidSpec")
    assert invalid["status"] == "True" and invalid["reason"] == "InvalidSpec"
    assert "spec.steps[1].setWeight" in invalid["message"]
    time.sleep(1)
    touched = {e["resource"] for e in writes(cluster, namespace, since=since)}
    assert touched <= {"migrations", "events"}, touched
    assert replicas(cluster, namespace, "checkout-blue") == 4
    assert replicas(cluster, namespace, "checkout-green") == 0


def test_deleting_a_migration_mid_run_restores_blue(
    cluster: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    slow_run_at_50(cluster, namespace)
    cluster.kubectl("delete", "-n", namespace, "mig/checkout", "--timeout=30s")
    assert replicas(cluster, namespace, "checkout-blue") == 4
    assert replicas(cluster, namespace, "checkout-green") == 0
    gone = cluster.kubectl("get", "-n", namespace, "mig", "checkout", check=False)
    assert gone.returncode != 0
    # The core's deletion rule (core/deletion.py) says what it did, as every decision does.
    said = [e for e in events(cluster, namespace, "checkout") if e["reason"] == "TrafficRestored"]
    assert said and "deleted mid-run with 50% on green" in said[-1]["message"], said


def test_spec_paused_holds_and_unpausing_resumes(
    cluster: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    start_slow(cluster, namespace, slow_manifest(paused=True))
    obj = wait_phase(cluster, namespace, "checkout", "Paused", timeout=30)
    assert obj["status"]["reason"] == "PausedBySpec"
    cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Paused", "mig/checkout", "--timeout=5s"
    )
    cluster.kubectl(
        "patch",
        "-n",
        namespace,
        "mig/checkout",
        "--type=merge",
        "-p",
        '{"spec": {"paused": false}}',
    )
    obj = wait_phase(cluster, namespace, "checkout", "Succeeded", timeout=60)
    assert obj["status"]["phase"] == "Succeeded"


def test_the_watches_list_in_pages(
    cluster: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    """A watch's initial listing comes in pages of ``WATCH_LIST_CHUNK``, not as one response
    holding every object of the kind at once (the operator's memory peaks with it)."""

    def lists() -> list[dict[str, Any]]:
        return [
            e
            for e in cluster.reads()
            if e["verb"] == "list"
            and e["resource"] in ("deployments", "migrations")
            and str(e["user"]).startswith(f"system:serviceaccount:{namespace}:")
        ]

    wait_for(
        lambda: {e["resource"] for e in lists()} == {"deployments", "migrations"},
        timeout=30,
        what="the operator's initial listings",
    )
    assert all(f"limit={WATCH_LIST_CHUNK}" in e["uri"] for e in lists()), lists()


def test_kubectl_wait_works_for_rolled_back(
    cluster: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    slow_run_at_50(cluster, namespace)
    cluster.kubectl("annotate", "-n", namespace, "mig/checkout", "cutover.io/request=abort:t1")
    waited = subprocess.run(
        [
            "kubectl",
            "--kubeconfig",
            cluster.kubeconfig,
            "wait",
            "-n",
            namespace,
            "--for=condition=RolledBack",
            "mig/checkout",
            "--timeout=20s",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert waited.returncode == 0, waited.stderr
    obj = migration(cluster, namespace, "checkout")
    assert conditions(obj)["RolledBack"] == ("True", "Aborted")
    assert "cutover.io/request" not in (obj["metadata"].get("annotations") or {})
    assert obj["status"]["lastRequest"] == "t1"
    assert replicas(cluster, namespace, "checkout-blue") == 4
    assert replicas(cluster, namespace, "checkout-green") == 0
