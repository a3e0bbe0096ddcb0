"""Gate templates resolve to gates (core/templates.py): args placed by the query-variable
mechanism, missing, unknown and undeclared args, invalid templates, and a run keeping the gate
recorded at its preflight."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from cutover.api import (
    ConditionType,
    Gate,
    GateTemplateKind,
    GateTemplateRef,
    MigrationStatus,
    Phase,
    SpecInvalid,
    parse_spec,
)
from cutover.core import templates
from cutover.core.machine import EmitEvent, Observations, Reason, decide
from cutover.core.observations import DeploymentState
from cutover.core.templates import TemplateObject, Unresolved
from cutover.gatecheck import gate_request
from tests.unit.specs import ISSUE_SPEC

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TEMPLATE_SPEC: dict[str, Any] = {
    "args": [{"name": "service"}, {"name": "path", "value": "errors"}],
    "gate": {
        "interval": "10s",
        "failureLimit": 2,
        "web": {
            "url": "http://health.monitoring/{{args.path}}/{{namespace}}/{{args.service}}",
            "jsonPath": "$.rate",
        },
        "threshold": {"max": 0.05},
    },
}


def template(spec: dict[str, Any] | None = None, generation: int = 3) -> TemplateObject:
    return TemplateObject(uid="u-1", generation=generation, spec=spec or TEMPLATE_SPEC)


def templated_gate(**fields: Any) -> Gate:
    return Gate.model_validate({"name": "errors", "templateRef": {"name": "web-errors"}, **fields})


def resolve(gate: Gate, found: TemplateObject | None = None) -> Gate:
    return templates.resolve(gate, found or template(), "shop", 0).gate


def problems(gate: Gate, found: TemplateObject | None) -> list[str]:
    with pytest.raises(Unresolved) as raised:
        templates.resolve(gate, found, "shop", 0)
    return raised.value.problems


def test_args_reach_the_provider_block_and_render_like_a_gates_own() -> None:
    spec = parse_spec(
        {**ISSUE_SPEC, "gates": [templated_gate(args={"service": "checkout"}).to_dict()]}
    )
    gate = resolve(spec.gates[0])

    request = gate_request(spec, "shop", "checkout", gate)

    assert request.query.endswith("http://health.monitoring/errors/shop/checkout")
    assert gate.name == "errors" and gate.interval == "10s" and gate.failure_limit == 2
    assert gate.template_ref is None


def test_a_given_arg_wins_over_the_templates_default() -> None:
    gate = resolve(templated_gate(args={"service": "checkout", "path": "5xx"}))

    assert gate.source.args == {"service": "checkout", "path": "5xx"}


def test_the_record_keeps_the_templates_uid_and_generation() -> None:
    record = templates.resolve(
        templated_gate(args={"service": "a"}), template(generation=7), "shop", 0
    )

    assert (record.uid, record.generation) == ("u-1", 7)
    assert record.template_ref == GateTemplateRef(name="web-errors")


@pytest.mark.parametrize(
    ("mine", "theirs", "dry_run"),
    [(False, False, False), (True, False, True), (False, True, True), (True, True, True)],
)
def test_either_side_can_make_the_gate_a_dry_run(mine: bool, theirs: bool, dry_run: bool) -> None:
    spec = copy.deepcopy(TEMPLATE_SPEC)
    spec["gate"]["dryRun"] = theirs

    gate = resolve(templated_gate(args={"service": "a"}, dryRun=mine), template(spec))

    assert gate.dry_run is dry_run


def test_a_missing_template_is_named_with_its_namespace() -> None:
    assert problems(templated_gate(args={"service": "a"}), None) == [
        "spec.gates[0] (errors): GateTemplate 'web-errors' not found in namespace 'shop'"
    ]


def test_a_missing_cluster_template_has_no_namespace() -> None:
    gate = templated_gate(
        templateRef={"name": "web-errors", "kind": "ClusterGateTemplate"}, args={"service": "a"}
    )

    assert problems(gate, None) == [
        "spec.gates[0] (errors): ClusterGateTemplate 'web-errors' not found"
    ]


def test_a_missing_arg_without_default_is_named() -> None:
    assert problems(templated_gate(), template()) == [
        "spec.gates[0] (errors): GateTemplate 'web-errors' needs arg 'service': give it in args"
    ]


def test_an_unknown_arg_is_named_with_the_templates_args() -> None:
    found = problems(templated_gate(args={"service": "a", "sevrice": "b"}), template())

    assert found == [
        "spec.gates[0] (errors): GateTemplate 'web-errors' has no arg 'sevrice'"
        " (its args: path, service)"
    ]


def test_a_placeholder_the_template_does_not_declare_is_its_authors_mistake() -> None:
    spec = copy.deepcopy(TEMPLATE_SPEC)
    spec["gate"]["web"]["url"] += "?env={{args.env}}&x={{args.own}}"
    spec["gate"]["web"]["args"] = {"own": "1"}

    found = problems(templated_gate(args={"service": "a"}), template(spec))

    assert found == [
        "spec.gates[0] (errors): GateTemplate 'web-errors' uses {{args.env}} but does not"
        " declare it in spec.args"
    ]


def test_a_template_whose_spec_does_not_parse_is_invalid() -> None:
    spec = copy.deepcopy(TEMPLATE_SPEC)
    spec["gate"]["intreval"] = "5s"

    (found,) = problems(templated_gate(args={"service": "a"}), template(spec))

    assert found.startswith("spec.gates[0] (errors): GateTemplate 'web-errors' is invalid:")
    assert "intreval" in found


def test_a_template_resolving_to_an_invalid_gate_says_why() -> None:
    spec = copy.deepcopy(TEMPLATE_SPEC)
    del spec["gate"]["threshold"]

    (found,) = problems(templated_gate(args={"service": "a"}), template(spec))

    assert found.startswith(
        "spec.gates[0] (errors): GateTemplate 'web-errors' resolves to an invalid gate:"
    )
    assert "exactly one of threshold or compare" in found


def test_resolve_all_reports_every_gate_and_keeps_the_good_ones() -> None:
    spec = parse_spec(
        {
            **ISSUE_SPEC,
            "gates": [
                {"name": "good", "templateRef": {"name": "t"}, "args": {"service": "a"}},
                {"name": "bad", "templateRef": {"name": "t"}},
                {"name": "gone", "templateRef": {"name": "x", "kind": "ClusterGateTemplate"}},
            ],
        }
    )
    found = {GateTemplateRef(name="t"): template()}

    resolved, reported = templates.resolve_all(spec, found, "shop")

    assert [r.gate.name for r in resolved] == ["good"]
    assert reported == [
        "spec.gates[1] (bad): GateTemplate 't' needs arg 'service': give it in args",
        "spec.gates[2] (gone): ClusterGateTemplate 'x' not found",
    ]
    assert templates.refs(spec) == [
        GateTemplateRef(name="t"),
        GateTemplateRef(name="x", kind=GateTemplateKind.cluster_gate_template),
    ]


def test_apply_puts_the_recorded_gate_in_place_and_keeps_inline_gates() -> None:
    inline = ISSUE_SPEC["gates"][0]
    spec = parse_spec(
        {
            **ISSUE_SPEC,
            "gates": [inline, templated_gate(args={"service": "a"}).to_dict()],
        }
    )
    record = templates.resolve(spec.gates[1], template(), "shop", 1)

    applied, missing = templates.apply(spec, [record])

    assert missing == []
    assert [g.name for g in applied.gates] == [inline["name"], "errors"]
    assert applied.gates[1] == record.gate and applied.gates[0] == spec.gates[0]


def test_apply_leaves_out_a_templated_gate_without_a_record_and_says_so() -> None:
    spec = parse_spec({**ISSUE_SPEC, "gates": [templated_gate(args={"service": "a"}).to_dict()]})
    other = templates.resolve(
        templated_gate(templateRef={"name": "other"}, args={"service": "a"}), template(), "shop", 0
    )

    applied, missing = templates.apply(spec, [other])

    assert applied.gates == []
    assert missing == [
        "spec.gates[0] (errors): GateTemplate 'web-errors' was not resolved for this run"
    ]


def test_a_gate_with_templateref_may_not_set_what_the_template_says() -> None:
    with pytest.raises(
        ValueError, match="takes interval, threshold from GateTemplate 'web-errors'"
    ):
        templated_gate(interval="5s", threshold={"max": 1})


def test_args_without_templateref_are_refused() -> None:
    gate = copy.deepcopy(ISSUE_SPEC["gates"][0])
    with pytest.raises(SpecInvalid, match="args go with templateRef"):
        parse_spec({**ISSUE_SPEC, "gates": [{**gate, "args": {"a": "b"}}]})


def test_template_problems_fail_the_run_before_any_traffic_moves() -> None:
    spec = parse_spec({**ISSUE_SPEC, "gates": [templated_gate().to_dict()]})
    ready = DeploymentState(replicas=2, available=2)
    problem = "spec.gates[0] (errors): GateTemplate 'web-errors' needs arg 'service'"
    observations = Observations(generation=1, blue=ready, green=ready, template_problems=(problem,))

    decision = decide(spec, MigrationStatus(), observations, NOW)

    assert decision.status.phase is Phase.failed
    assert decision.status.reason == Reason.gate_template_unresolved
    assert all(isinstance(a, EmitEvent) for a in decision.actions)
    assert decision.status.weight == 0 and decision.status.run_id is None
    invalid = decision.status.condition(ConditionType.invalid_spec)
    assert invalid is not None and invalid.status == "True"
    assert invalid.reason == "GateTemplateUnresolved" and invalid.message == problem
