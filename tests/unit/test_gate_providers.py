"""A gate names its provider by its block: exactly one, dispatched through the registry."""

from __future__ import annotations

from typing import Any

import pytest

from cutover.api import PROVIDER_BLOCKS, SpecInvalid, parse_spec
from cutover.cli.plan import lint_problems, rendered_queries
from cutover.crd import crd
from cutover.providers import source_for

from .specs import GATE, gate, raw

WEB = {"url": "http://health.local/api/{{green}}", "jsonPath": "$.errors"}


def manifest(*gates: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "cutover.io/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": "checkout", "namespace": "shop"},
        "spec": raw(gates=list(gates)),
    }


def test_a_gate_without_a_provider_block_is_rejected() -> None:
    bare = {k: v for k, v in GATE.items() if k != "prometheus"}
    with pytest.raises(SpecInvalid, match="exactly one of prometheus, web"):
        parse_spec(raw(gates=[bare]))


def test_a_gate_with_two_provider_blocks_is_rejected() -> None:
    with pytest.raises(SpecInvalid, match="exactly one of prometheus, web"):
        parse_spec(raw(gates=[gate(web=WEB)]))


def test_a_web_gate_cannot_compare_with_blue() -> None:
    web_gate = {k: v for k, v in gate(web=WEB).items() if k not in ("prometheus", "threshold")}
    web_gate["compare"] = {"baseline": "x", "maxIncrease": 0.1}
    with pytest.raises(SpecInvalid, match="compare needs a provider"):
        parse_spec(raw(gates=[web_gate]))


def test_the_block_names_the_provider() -> None:
    spec = parse_spec(raw(gates=[GATE]))
    assert spec.gates[0].provider == "prometheus"
    assert source_for(spec.gates[0]).kind == "prometheus"
    web_gate = {k: v for k, v in gate(web=WEB, name="web").items() if k != "prometheus"}
    spec = parse_spec(raw(gates=[GATE, web_gate]))
    assert [g.provider for g in spec.gates] == ["prometheus", "web"]


def test_the_crd_says_a_gate_has_exactly_one_provider_block() -> None:
    openapi = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    gate_schema = openapi["properties"]["spec"]["properties"]["gates"]["items"]
    assert set(PROVIDER_BLOCKS) <= set(gate_schema["properties"])
    (rule,) = gate_schema["x-kubernetes-validations"]
    # A template may stand in for the provider block (templateRef).
    sources = (*PROVIDER_BLOCKS, "templateRef")
    assert rule["rule"] == " + ".join(f"(has(self.{b}) ? 1 : 0)" for b in sources) + " == 1"
    assert rule["rule"].startswith("(has(self.prometheus) ? 1 : 0) + (has(self.web) ? 1 : 0) + ")


def test_lint_and_plan_dispatch_to_the_gates_provider() -> None:
    web_gate = {k: v for k, v in gate(web=WEB, name="web").items() if k != "prometheus"}
    document = manifest(GATE, web_gate)
    assert lint_problems(document) == []
    queries = rendered_queries(document, parse_spec(document["spec"]))
    assert queries["web"] == {"query": "GET http://health.local/api/checkout-green -> $.errors"}
    assert queries["error-rate"]["query"].startswith("sum(rate(http_requests_total{")


def test_lint_names_a_bad_web_template_and_json_path() -> None:
    web = {"url": "http://health.local/{{colour}}", "jsonPath": "$.[oops"}
    web_gate = {k: v for k, v in gate(web=web, name="web").items() if k != "prometheus"}
    problems = lint_problems(manifest(web_gate))
    assert problems[0].startswith("spec.gates[0].web.url: unknown template variable(s): colour")
    assert problems[1].startswith("spec.gates[0].web.jsonPath: not a JSONPath")
