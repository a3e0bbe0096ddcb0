"""Gate templates through the real operator on the real control plane: a Migration whose gates
come from a GateTemplate and a ClusterGateTemplate (examples/templates, asking a real local HTTP
server) runs end to end; a template edited mid-run does not change that run; a missing template
or a wrong arg fails the run before any traffic moves, and a new spec resolves again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.controlplane import ControlPlane
from tests.support.controlplane import forbidden_requests
from tests.support.json_server import Answer, JsonServer, json_server

from .gates_support import gate_record, migration_manifest, start_app
from .harness import (
    OperatorProcess,
    apply,
    apply_text,
    get,
    new_namespace,
    replicas,
    wait_for,
    wait_phase,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "templates"
EXAMPLE_HOST = "http://health.monitoring:8080"
TERMINAL = ("Succeeded", "RolledBack", "Failed")


@pytest.fixture(scope="module")
def shared_namespace(cluster: ControlPlane) -> str:
    return new_namespace(cluster, "templates")


@pytest.fixture(scope="module")
def audit_start(cluster: ControlPlane) -> int:
    return int(cluster.stats()["last_seq"])


@pytest.fixture(scope="module")
def shared_operator(
    cluster: ControlPlane, shared_namespace: str, audit_start: int
) -> Iterator[OperatorProcess]:
    """One operator for the module (the chart's RBAC: templates are only read)."""
    process = OperatorProcess(cluster, shared_namespace).start()
    yield process
    process.stop()


@pytest.fixture
def health() -> Iterator[JsonServer]:
    with json_server() as server:
        yield server


def example_templates(server: JsonServer) -> list[dict[str, Any]]:
    """examples/templates/templates.yaml asking ``server``, checked every second."""
    documents = list(yaml.safe_load_all((EXAMPLE / "templates.yaml").read_text()))
    for document in documents:
        gate = document["spec"]["gate"]
        gate["web"]["url"] = gate["web"]["url"].replace(EXAMPLE_HOST, server.url)
        gate["interval"] = "1s"
    return documents


def apply_documents(cluster: ControlPlane, namespace: str, documents: list[dict[str, Any]]) -> None:
    apply_text(cluster, namespace, "\n---\n".join(json.dumps(d) for d in documents))


def resolved(status: dict[str, Any], gate: str) -> dict[str, Any]:
    found = [r for r in status.get("resolvedGates", []) if r["gate"]["name"] == gate]
    assert found, f"no resolved gate {gate} in {status.get('resolvedGates')}"
    return dict(found[0])


def requests_to(server: JsonServer, prefix: str) -> int:
    return sum(1 for r in server.received if r.path.startswith(prefix))


def test_gates_from_both_kinds_of_template_run_and_a_mid_run_edit_changes_nothing(
    cluster: ControlPlane,
    shared_namespace: str,
    shared_operator: OperatorProcess,
    health: JsonServer,
) -> None:
    namespace = shared_namespace
    errors_path = f"/errors/{namespace}/checkout-green"
    health.answer(errors_path, Answer({"data": {"errorRate": 0.01}}))
    health.answer(f"/latency/{namespace}/checkout-green", Answer({"data": {"seconds": 0.2}}))
    templates = example_templates(health)
    apply_documents(cluster, namespace, templates)
    try:
        apply(cluster, namespace, ROOT / "examples" / "replicas" / "app.yaml")
        apply(cluster, namespace, EXAMPLE / "migration.yaml")

        held = wait_phase(cluster, namespace, "checkout", "Paused", *TERMINAL)["status"]
        assert (held["phase"], held["reason"], held["weight"]) == ("Paused", "PauseStep", 50), held
        errors = resolved(held, "errors")
        assert errors["templateRef"] == {"name": "http-errors", "kind": "GateTemplate"}
        assert errors["generation"] == 1 and errors["uid"]
        assert errors["gate"]["web"]["args"] == {"route": "checkout", "window": "1m"}
        latency = resolved(held, "latency")
        assert latency["templateRef"]["kind"] == "ClusterGateTemplate"
        assert latency["gate"]["dryRun"] is True
        asked = [r.path for r in health.received if r.path.startswith(errors_path)]
        assert f"{errors_path}?route=checkout&window=1m" in asked, asked

        # The template now fails everything and asks elsewhere: the run must not notice.
        edited = templates[0]
        edited["spec"]["gate"]["threshold"] = {"max": 0.001}
        edited["spec"]["gate"]["web"]["url"] = health.url + "/elsewhere"
        apply_documents(cluster, namespace, [edited])
        template = get(cluster, namespace, "gatetemplates.cutover.io", "http-errors")
        assert template["metadata"]["generation"] == 2
        before = gate_record(held, "errors")["passed"]
        wait_for(
            lambda: gate_record(get_status(cluster, namespace), "errors")["passed"] >= before + 3,
            timeout=30,
            what="three more checks of the errors gate after the edit",
        )
        cluster.kubectl(
            "annotate", "-n", namespace, "migration/checkout", "cutover.io/request=promote:p1"
        )
        final = wait_phase(cluster, namespace, "checkout", *TERMINAL)["status"]

        assert final["phase"] == "Succeeded", final
        assert replicas(cluster, namespace, "checkout-green") == 4
        record = gate_record(final, "errors")
        assert record["failed"] == 0 and record["lastValue"] == 0.01, record
        assert resolved(final, "errors")["generation"] == 1
        assert requests_to(health, "/elsewhere") == 0
        assert gate_record(final, "latency")["dryRun"] is True
    finally:
        # Cluster-scoped: it outlives the namespace.
        cluster.kubectl("delete", "clustergatetemplate", "p99-latency", "--ignore-not-found")


def get_status(cluster: ControlPlane, namespace: str) -> dict[str, Any]:
    return dict(get(cluster, namespace, "migrations.cutover.io", "checkout").get("status") or {})


def test_a_missing_template_or_a_wrong_arg_moves_no_traffic_and_a_new_spec_resolves_again(
    cluster: ControlPlane,
    shared_namespace: str,
    shared_operator: OperatorProcess,
    health: JsonServer,
) -> None:
    namespace = shared_namespace
    health.answer(f"/ok/{namespace}", Answer({"value": 1}))
    template = {
        "apiVersion": "cutover.io/v1alpha1",
        "kind": "GateTemplate",
        "metadata": {"name": "up"},
        "spec": {
            "args": [{"name": "where"}],
            "gate": {
                "interval": "1s",
                "web": {"url": health.url + "/{{args.where}}/{{namespace}}", "jsonPath": "$.value"},
                "threshold": {"min": 1},
            },
        },
    }
    apply_documents(cluster, namespace, [template])
    gates = [
        {"name": "missing", "templateRef": {"name": "not-there"}},
        {"name": "typo", "templateRef": {"name": "up"}, "args": {"wehre": "ok"}},
    ]
    start_app(cluster, namespace, "cart", "cart", gates)

    failed = wait_phase(cluster, namespace, "cart", *TERMINAL)["status"]

    assert (failed["phase"], failed["reason"]) == ("Failed", "GateTemplateUnresolved"), failed
    invalid = next(c for c in failed["conditions"] if c["type"] == "InvalidSpec")
    assert invalid["status"] == "True" and invalid["reason"] == "GateTemplateUnresolved"
    assert (
        f"spec.gates[0] (missing): GateTemplate 'not-there' not found in namespace '{namespace}'"
        in invalid["message"]
    )
    assert (
        "spec.gates[1] (typo): GateTemplate 'up' has no arg 'wehre' (its args: where)"
        in (invalid["message"])
    )
    assert "GateTemplate 'up' needs arg 'where'" in invalid["message"]
    assert failed["weight"] == 0 and replicas(cluster, namespace, "cart-green") == 0
    assert health.received == []

    # A new generation of the spec resolves again: the template is found and the run goes.
    fixed = [{"name": "typo", "templateRef": {"name": "up"}, "args": {"where": "ok"}}]
    apply_text(cluster, namespace, migration_manifest("cart", "cart", fixed))
    final = wait_phase(cluster, namespace, "cart", "Succeeded", "RolledBack", timeout=60)["status"]

    assert final["phase"] == "Succeeded", final
    assert resolved(final, "typo")["gate"]["web"]["args"] == {"where": "ok"}
    assert gate_record(final, "typo")["passed"] >= 1


def test_the_operator_reads_templates_from_watches_within_the_charts_rbac(
    cluster: ControlPlane, shared_namespace: str, shared_operator: OperatorProcess, audit_start: int
) -> None:
    operator = f"system:serviceaccount:{shared_namespace}:"
    mine = [e for e in cluster.reads(audit_start) if str(e.get("user") or "").startswith(operator)]
    for resource in ("gatetemplates", "clustergatetemplates"):
        verbs = {e["verb"] for e in mine if e["resource"] == resource and e["code"] < 400}
        # Kopf's watch-stream starts with a list; the audit log records a watch only once it
        # ends (minutes later), so the list is what shows the store is fed by a watch.
        assert "list" in verbs, (resource, verbs)
    # Not a read per check (the gates were checked dozens of times): at most a preflight's
    # one GET for a template the store did not hold yet (here: the missing one).
    gets = [e for e in mine if e["verb"] == "get" and "gatetemplates" in str(e["resource"])]
    assert len(gets) <= 4, gets
    assert forbidden_requests(cluster, operator, audit_start) == []
