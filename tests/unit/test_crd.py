from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from jsonschema import Draft7Validator

from cutover.api import GateTemplateKind, GateTemplateManifest
from cutover.crd import crd, crd_yaml, crds, template_crd
from cutover.docgen import state_machine_markdown
from tests.crdschema import CRD_PATH, schema, validator
from tests.support.manifests import migration

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_crd_is_what_the_models_generate() -> None:
    assert CRD_PATH.read_text() == crd_yaml(), "crds/ drifted: run `make crds`"


@pytest.mark.parametrize("kind", ["Migration", "GateTemplate", "ClusterGateTemplate"])
def test_every_committed_crd_is_what_the_models_generate(kind: str) -> None:
    (path,) = [
        ROOT / "crds" / name
        for name, body in crds().items()
        if body["spec"]["names"]["kind"] == kind
    ]
    assert path.read_text() == crd_yaml(kind), f"{path.name} drifted: run `make crds`"


def test_crds_holds_exactly_the_generated_files() -> None:
    assert sorted(p.name for p in (ROOT / "crds").glob("*.yaml")) == sorted(crds())


def test_the_template_crds_pass_kubernetes_validation_and_differ_only_in_scope() -> None:
    namespaced = template_crd(GateTemplateKind.gate_template)
    cluster = template_crd(GateTemplateKind.cluster_gate_template)
    for body in (namespaced, cluster):
        kubernetes_validate.validate(body, "1.30.0", strict=True)
    assert namespaced["spec"]["scope"] == "Namespaced"
    assert cluster["spec"]["scope"] == "Cluster"
    schemas = [
        b["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        for b in (namespaced, cluster)
    ]
    assert schemas[0] == schemas[1]
    assert "name" not in schemas[0]["properties"]["gate"]["properties"]
    assert "templateRef" not in schemas[0]["properties"]["gate"]["properties"]


def test_the_state_machine_page_is_what_the_table_generates() -> None:
    page = ROOT / "docs" / "state-machine.md"
    assert page.read_text() == state_machine_markdown(), "docs drifted: run `make docs`"


def test_the_crd_passes_kubernetes_validation() -> None:
    kubernetes_validate.validate(crd(), "1.30.0", strict=True)


def walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.get("properties", {}).items():
            found += walk(value, f"{path}.{key}")
        if "items" in node:
            found += walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            found += walk(node["additionalProperties"], f"{path}{{}}")
    return found


def test_the_schema_is_structural() -> None:
    openapi = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    text = yaml.safe_dump(openapi)
    for forbidden in ("$ref", "$defs", "anyOf", "oneOf", "allOf", "const:"):
        assert forbidden not in text
    for path, node in walk(openapi):
        preserve = node.get("x-kubernetes-preserve-unknown-fields")
        assert "type" in node or preserve, f"{path} has no type"


def test_only_job_templates_preserve_unknown_fields() -> None:
    # A JobTemplateSpec is Kubernetes' own schema: the API server validates the Job on create.
    openapi = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    preserving = [p for p, n in walk(openapi) if n.get("x-kubernetes-preserve-unknown-fields")]
    stages = ("preShift", "afterStep", "postPromotion", "onRollback")
    hooks = [f".spec.hooks.{stage}[].jobTemplate" for stage in stages]
    # A job gate's template, in the spec and where a run records the gates a template resolved to.
    gates = [".spec.gates[].job.jobTemplate", ".status.resolvedGates[].gate.job.jobTemplate"]
    assert sorted(preserving) == sorted([*gates, *hooks])


def test_kubectl_explain_has_descriptions_for_every_spec_field() -> None:
    spec = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    fields = [(p, n) for p, n in walk(spec, "spec") if p != "spec" and not p.endswith(("[]", "{}"))]
    missing = [p for p, n in fields if not n.get("description")]
    assert missing == []


def test_printer_columns_and_names() -> None:
    version = crd()["spec"]["versions"][0]
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names == ["Phase", "Step", "Weight", "Age", "Window", "Message"]
    assert version["subresources"] == {"status": {}}
    assert crd()["spec"]["names"]["shortNames"] == ["mig"]
    assert crd()["spec"]["names"]["categories"] == ["all"]


EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))
NOT_BUILT_IN = {"gateway.networking.k8s.io", "networking.istio.io"}


def migrations_in(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return [d for d in docs if d.get("kind") == "Migration"]


@pytest.mark.parametrize("path", EXAMPLES, ids=[str(p.relative_to(ROOT)) for p in EXAMPLES])
def test_every_example_is_valid(path: Path) -> None:
    from cutover.api import Migration

    for document in yaml.safe_load_all(path.read_text()):
        if not document:
            continue
        if document.get("kind") == "Migration":
            errors = sorted(validator().iter_errors(document), key=str)
            assert not errors, [e.message for e in errors]
            Migration.from_manifest(document)
        elif document.get("kind") in ("GateTemplate", "ClusterGateTemplate"):
            template = template_crd(GateTemplateKind(document["kind"]))
            errors = sorted(Draft7Validator(schema(template)).iter_errors(document), key=str)
            assert not errors, [e.message for e in errors]
            GateTemplateManifest.model_validate(document)
        elif document["apiVersion"].split("/")[0] in NOT_BUILT_IN:
            # kubernetes-validate knows only built-in kinds; the router tests apply these to
            # the real control plane with the upstream CRDs (devtools/controlplane/versions.env).
            assert document["kind"] in ("HTTPRoute", "VirtualService", "DestinationRule")
        else:
            kubernetes_validate.validate(document, "1.30.0", strict=True)


def test_the_schema_rejects_what_a_real_api_server_would() -> None:
    bad = migration(
        "x",
        {
            "blue": {"deployment": "a"},
            "green": {"deployment": "b"},
            "traffic": {"router": "linkerd"},
            "steps": [{"setWeight": 150}],
        },
    )
    messages = [e.message for e in validator().iter_errors(bad)]
    assert any("linkerd" in m for m in messages)
    assert any("150" in m for m in messages)
