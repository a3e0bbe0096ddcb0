from __future__ import annotations

from typing import Any

import pytest

from cutover.api import (
    ErrorPolicy,
    Migration,
    NoDataPolicy,
    Router,
    SpecInvalid,
    parse_spec,
    parse_status,
)

from .specs import GATE, gate, raw


def test_the_spec_from_the_issue_parses_with_every_field_typed() -> None:
    spec = parse_spec(raw())
    assert spec.traffic.router is Router.replicas
    assert spec.weights == [10, 50, 100]
    assert spec.steps[1].pause is not None and spec.steps[1].pause.duration == "2m"
    assert spec.steps[3].pause is not None and spec.steps[3].pause.duration is None
    only = spec.gates[0]
    assert only.failure_limit == 1 and only.inconclusive_limit == 2
    assert only.on_no_data is NoDataPolicy.inconclusive
    assert only.on_error is ErrorPolicy.pause


def test_defaults_match_the_documented_ones() -> None:
    minimal = raw(
        gates=[{k: v for k, v in GATE.items() if k in ("name", "prometheus", "threshold")}]
    )
    del minimal["rollback"], minimal["progressDeadline"], minimal["paused"]
    spec = parse_spec(minimal)
    assert spec.rollback.automatic is True and spec.rollback.scale_down_green is True
    assert spec.progress_deadline == "10m" and spec.bake == "0s" and spec.paused is False
    only = spec.gates[0]
    assert (only.interval, only.failure_limit, only.inconclusive_limit) == ("30s", 0, 0)
    assert only.consecutive_error_limit == 4


INVALID: list[tuple[str, dict[str, Any], str]] = [
    (
        "weights decrease",
        {"steps": [{"setWeight": 50}, {"setWeight": 10}, {"setWeight": 100}]},
        "spec.steps[1].setWeight: 10 is lower than the previous weight 50",
    ),
    ("weight above 100", {"steps": [{"setWeight": 150}]}, "spec.steps[0].setWeight"),
    (
        "weight below 0",
        {"steps": [{"setWeight": -5}, {"setWeight": 100}]},
        "spec.steps[0].setWeight",
    ),
    (
        "last weight not 100",
        {"steps": [{"setWeight": 10}, {"setWeight": 50}]},
        "last setWeight must be 100",
    ),
    ("empty steps", {"steps": []}, "spec.steps"),
    (
        "negative pause",
        {"steps": [{"pause": {"duration": "-1m"}}, {"setWeight": 100}]},
        "spec.steps[0].pause.duration",
    ),
    (
        "step with both kinds",
        {"steps": [{"setWeight": 100, "pause": {}}]},
        "spec.steps[0]: a step has exactly one of setWeight, pause or setMirror",
    ),
    (
        "gate with neither min nor max",
        {"gates": [gate(threshold={})]},
        "spec.gates[0].threshold: a threshold needs min, max or both",
    ),
    ("unknown router", {"traffic": {"router": "linkerd"}}, "spec.traffic.router"),
    (
        "router block missing",
        {"traffic": {"router": "gatewayapi"}},
        "spec.traffic: router 'gatewayapi' needs the 'gatewayAPI' field",
    ),
    (
        "service router without a service",
        {"traffic": {"router": "service"}},
        "router 'service' needs the 'service' field",
    ),
    (
        "duplicate gate names",
        {"gates": [GATE, GATE]},
        "spec.gates[1].name: 'error-rate' is used twice",
    ),
    ("unparseable duration", {"progressDeadline": "ten minutes"}, "spec.progressDeadline"),
    ("unparseable gate interval", {"gates": [gate(interval="30")]}, "spec.gates[0].interval"),
    ("unknown field", {"stepz": []}, "spec.stepz: unknown field 'stepz' (did you mean steps?)"),
    ("same deployment twice", {"green": {"deployment": "checkout-blue"}}, "same Deployment"),
    (
        "service router with a partial weight",
        {"traffic": {"router": "service", "service": "checkout"}},
        "steps[0].setWeight 10: the service router switches all traffic at once",
    ),
]


@pytest.mark.parametrize(("case", "change", "expected"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_specs_are_rejected_with_the_field_path(
    case: str, change: dict[str, Any], expected: str
) -> None:
    with pytest.raises(SpecInvalid) as caught:
        parse_spec(raw(**change))
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("2m", 120), ("1h30m", 5400), ("500ms", 0.5), ("0", 0)]
)
def test_go_style_durations_are_accepted(text: str, seconds: float) -> None:
    from cutover.durations import parse_duration

    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "m", "1x", "-5s", "1m 30s", "s30"])
def test_malformed_durations_are_refused(text: str) -> None:
    from cutover.durations import DurationError, parse_duration

    with pytest.raises(DurationError):
        parse_duration(text)


def test_a_whole_manifest_is_checked_from_its_root() -> None:
    manifest = {"apiVersion": "cutover.io/v1alpha1", "kind": "Migration", "spec": raw(steps=[])}
    with pytest.raises(SpecInvalid) as caught:
        Migration.from_manifest(manifest)
    assert caught.value.problems[0].startswith("spec.steps:")


def test_a_status_written_by_someone_else_keeps_our_fields_and_drops_theirs() -> None:
    status = parse_status({"phase": "Paused", "weight": 50, "kopf": {"progress": {}}})
    assert status.phase.value == "Paused" and status.weight == 50
