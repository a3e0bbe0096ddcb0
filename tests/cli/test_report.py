"""The status report as a pure function of recorded Migration objects (no cluster)."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cutover.api import GateStatus, HistoryEntry, MigrationStatus, Phase
from cutover.cli.render import console, report_renderable
from cutover.cli.report import OverallStatus, Report, Risk, RollbackState, build_report

FIXTURES = Path(__file__).parent / "fixtures"


def _load(name: str) -> tuple[dict[str, Any], datetime]:
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    return data["object"], datetime.fromisoformat(data["now"])


def _report(name: str) -> Report:
    obj, now = _load(name)
    return build_report(obj, now)


def _report_of(status: MigrationStatus) -> Report:
    """The report of a Migration with no spec and only ``status``."""
    meta = {"name": "orders", "namespace": "shop"}
    obj = {"metadata": meta, "spec": {}, "status": status.to_dict()}
    return build_report(obj, now=datetime(2026, 1, 1, tzinfo=UTC))


def test_in_progress_with_gates() -> None:
    report = _report("in_progress")
    assert report.status is OverallStatus.in_progress
    assert (report.step, report.total_steps) == (2, 5)
    assert report.progress_percent == 20
    assert report.weight == 10
    gate = report.gates[0]
    assert (gate.name, gate.value, gate.verdict, gate.threshold) == (
        "error-rate",
        0.008,
        "Passed",
        "<= 0.01",
    )
    assert gate.passed == 2 and gate.failed == 0
    # 0.008 against max 0.01 leaves a 20 % margin: close, not yet alarming.
    assert report.risk.level is Risk.medium
    assert any("timed pause of 2m ends at 00:02:30Z" in s for s in report.next_steps)
    assert any(s.startswith("next gate check at") for s in report.next_steps)
    assert report.rollback.state is RollbackState.available
    assert report.issues == []


def test_paused_on_indefinite_pause() -> None:
    report = _report("paused")
    assert report.status is OverallStatus.paused
    assert (report.step, report.total_steps, report.progress_percent) == (4, 5, 60)
    assert report.next_steps[0].startswith("waiting for `cutover promote`")
    assert report.risk.level is Risk.low
    assert report.rollback.state is RollbackState.available


def test_rolled_back_with_reason() -> None:
    report = _report("rolled_back")
    assert report.status is OverallStatus.rolled_back
    assert report.weight == 0
    assert report.risk.level is Risk.high
    assert report.rollback.state is RollbackState.not_available
    # The breach and the rollback it caused are one issue, said once (issue 14: "each twice").
    assert [i.kind for i in report.issues] == ["gate failed"]
    assert "value 0.05 is above max 0.01" in report.issues[0].message
    assert "cutover retry" in report.next_steps[0]


def test_succeeded() -> None:
    report = _report("succeeded")
    assert report.status is OverallStatus.completed
    assert report.progress_percent == 100
    assert (report.step, report.total_steps) == (5, 5)
    assert report.rollback.state is RollbackState.not_available
    assert "retired" in report.rollback.reason
    assert report.risk.level is Risk.low
    assert report.terminal


def test_failed_invalid_spec() -> None:
    report = _report("failed_invalid")
    assert report.status is OverallStatus.failed
    assert report.spec_problems and "weights must not decrease" in report.spec_problems[0]
    assert [i.kind for i in report.issues] == ["invalid spec"]
    assert report.rollback.state is RollbackState.not_available
    assert "fix the spec" in report.next_steps[0]


def test_rollback_available_false_from_a_newer_operator() -> None:
    obj, now = _load("in_progress")
    obj = copy.deepcopy(obj)
    obj["status"]["rollbackAvailable"] = False
    report = build_report(obj, now)
    assert report.rollback.state is RollbackState.not_available
    obj["status"]["rollbackUnavailableReason"] = "blue was deleted"
    assert build_report(obj, now).rollback.reason == "blue was deleted"


@pytest.mark.parametrize(
    ("value", "level"), [(0.001, Risk.low), (0.008, Risk.medium), (0.0095, Risk.high)]
)
def test_risk_follows_the_margin(value: float, level: Risk) -> None:
    obj, now = _load("in_progress")
    obj = copy.deepcopy(obj)
    obj["status"]["gates"][0]["lastValue"] = value
    assert build_report(obj, now).risk.level is level


def test_failed_checks_are_high_risk_even_when_the_value_recovered() -> None:
    obj, now = _load("in_progress")
    obj = copy.deepcopy(obj)
    obj["status"]["gates"][0].update(lastValue=0.0, failed=1)
    assert build_report(obj, now).risk.level is Risk.high


def test_bare_object_without_status() -> None:
    obj, now = _load("in_progress")
    obj = {k: v for k, v in obj.items() if k != "status"}
    report = build_report(obj, now)
    assert report.phase == "Pending" and report.status is OverallStatus.in_progress
    assert report.gates[0].outcome == "Pending"


def test_json_round_trip() -> None:
    report = _report("rolled_back")
    data = json.loads(json.dumps(report.to_data()))
    assert data["status"] == "ROLLED_BACK"
    assert data["risk"]["level"] == "HIGH"
    assert data["rollback"]["state"] == "NOT_AVAILABLE"
    assert data["gates"][0]["failed"] == 2
    assert Report.model_validate(data) == report


@pytest.mark.parametrize("name", ["in_progress", "paused", "rolled_back", "succeeded"])
def test_rich_rendering_mentions_the_essentials(name: str) -> None:
    report = _report(name)
    out = console()
    with out.capture() as captured:
        out.print(report_renderable(report))
    text = captured.get()
    assert report.status.value in text
    assert f"{report.step} of {report.total_steps}" in text
    assert f"{report.progress_percent}%" in text


def test_issues_belong_to_the_current_run_not_to_earlier_ones() -> None:

    t = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        (Phase.progressing, 0, 10, "Started", "started"),
        (Phase.rolling_back, 1, 10, "GateFailed", "gate error-rate breached: rolling back"),
        (Phase.pending, 0, 0, "Retried", "retry requested"),
        (Phase.progressing, 0, 10, "Started", "started again"),
    ]
    history = [
        HistoryEntry(time=t, phase=phase, step=step, weight=weight, reason=reason, message=message)
        for phase, step, weight, reason, message in rows
    ]
    status = MigrationStatus(phase=Phase.progressing, weight=10, history=history)
    obj = {
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {},
        "status": status.to_dict(),
    }
    report = build_report(obj, now=t)
    assert [i.message for i in report.issues] == []


@pytest.mark.parametrize(
    ("message", "advice"),
    [
        ("Service shop/checkout not found", "create what the message says is missing"),
        ("spec.gates[0].prometheus.query: PromQL syntax: oops", "fix the spec (`cutover lint"),
    ],
)
def test_the_next_step_after_a_failed_preflight_fits_its_cause(message: str, advice: str) -> None:

    status = MigrationStatus(phase=Phase.failed, reason="PreflightFailed", message=message)
    report = _report_of(status)
    assert report.next_steps[0].startswith(advice), report.next_steps


@pytest.mark.parametrize("name", ["in_progress", "rolled_back", "paused", "succeeded"])
def test_the_report_fits_80_columns_and_wraps_under_its_labels(name: str) -> None:
    import io

    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=80, highlight=False, soft_wrap=False).print(
        report_renderable(_report(name))
    )
    lines = buffer.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80, [line for line in lines if len(line) > 80]
    assert "…" not in buffer.getvalue()  # nothing cut to fit
    section = None
    for line in lines:
        if line in ("Spec problems:", "Issues:", "Next Steps:"):
            section = line
        elif section is not None and not line.startswith("  - "):
            assert line.startswith("    "), (section, line)  # wraps under its item's text


def test_a_run_rolling_back_says_so_not_in_progress() -> None:

    status = MigrationStatus(phase=Phase.rolling_back, weight=10, message="gate failed")
    report = _report_of(status)
    assert report.status is OverallStatus.rolling_back
    assert report.to_data()["status"] == "ROLLING_BACK"


def test_risk_never_claims_checks_that_did_not_run() -> None:

    obj, now = _load("in_progress")
    failed_preflight = MigrationStatus(
        phase=Phase.failed,
        reason="PreflightFailed",
        message="spec.gates[0].prometheus.query: PromQL syntax: oops",
        gates=[GateStatus(name="error-rate")],
    )
    report = build_report({**obj, "status": failed_preflight.to_dict()}, now)
    assert report.risk.level is Risk.low
    assert report.risk.reasons == ["no gate checked yet; no traffic on green"]


def test_tasks_key_metrics_and_versions_follow_the_seeds_report() -> None:
    obj, now = _load("rolled_back")
    deployments = {
        "checkout-blue": {
            "spec": {"replicas": 4, "template": {"spec": {"containers": [{"image": "shop:1.4"}]}}},
            "status": {"readyReplicas": 4},
        },
        "checkout-green": None,
    }
    report = build_report(obj, now, deployments=deployments)
    states = [t.state.value for t in report.tasks]
    assert states == ["stopped", "upcoming", "upcoming", "upcoming", "upcoming"]
    assert report.tasks[0].issues and "gate failed" in report.tasks[0].issues[0]
    assert "error-rate: 0.05 (<= 0.01)" in report.key_metrics
    assert report.key_metrics[-1] == "issues encountered: 1"
    blue, green = report.sides
    assert (blue.role, blue.ready, blue.replicas, blue.image) == ("blue", 4, 4, "shop:1.4")
    assert (green.role, green.note) == ("green", "not found")
    text = _render(report)
    assert re.search(r"✗ +1 setWeight 10", text) and re.search(r"⏳ +2 pause 2m", text)
    assert "blue checkout-blue: 4/4 ready, image shop:1.4" in text

    progressing = _report("in_progress")
    assert [t.state.value for t in progressing.tasks][:3] == [
        "completed",
        "in progress",
        "upcoming",
    ]
    unreadable = build_report(*_load("in_progress"), deployments=None)
    assert unreadable.sides == []


def _render(report: Report) -> str:
    import io

    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=100, highlight=False).print(report_renderable(report))
    return buffer.getvalue()


def test_the_report_reads_with_the_seeds_labels_in_the_seeds_order() -> None:
    import io

    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=80, highlight=False).print(report_renderable(_report("in_progress")))
    labels = [line.split("  ")[0] for line in buffer.getvalue().splitlines() if line[:1].isalpha()]
    seed_order = [
        "Migration Status",
        "Start Time",
        "Current Phase",
        "Overall Progress",
        "Risk Assessment",
        "Rollback Status",
        "Key Metrics:",
        "Next Steps:",
    ]
    assert [label for label in labels if label in seed_order] == seed_order, labels


def test_a_run_that_mirrors_says_green_gets_copies_until_the_next_weight_step() -> None:
    obj, now = _load("in_progress")
    obj = copy.deepcopy(obj)
    obj["status"]["mirror"] = 50
    report = build_report(obj, now)
    assert (
        "green gets copies of 50% of requests (answers thrown away) until the next setWeight step"
        in report.next_steps
    )
    assert not any("copies" in s for s in _report("in_progress").next_steps)
