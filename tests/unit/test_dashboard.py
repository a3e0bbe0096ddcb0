"""``cutover dashboard`` without a cluster or a browser: what it remembers of a run, what its plots
draw, and what its pages say (and escape), from recorded Migration objects."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from cutover.cli.client import CliError
from cutover.cli.dashboard.feed import problem_of
from cutover.cli.dashboard.history import GatePoint, Histories, WeightPoint
from cutover.cli.dashboard.pages import Detail, detail_parts, overview_parts
from cutover.cli.dashboard.plot import gate_plot, weight_plot

FIXTURES = Path(__file__).resolve().parents[1] / "cli" / "fixtures"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def recorded(name: str) -> tuple[dict[str, Any], datetime]:
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    return data["object"], datetime.fromisoformat(data["now"])


def detail(obj: dict[str, Any] | None, now: datetime, **changes: Any) -> Detail:
    histories = Histories()
    track = histories.observe(obj, now) if obj is not None else None
    fields: dict[str, Any] = {
        "namespace": "shop",
        "name": "checkout",
        "obj": obj,
        "track": track,
        "events": [],
        "events_read": True,
        "deployments": None,
        "problem": None,
        "actions": False,
        "now": now,
    }
    return Detail(**(fields | changes))


# --- history ---------------------------------------------------------------------------------


def test_a_run_is_seeded_with_the_weights_and_gate_values_its_status_holds() -> None:
    obj, now = recorded("paused")
    track = Histories().observe(obj, now)
    assert track is not None
    assert [(p.time - T0, p.weight) for p in track.weights] == [
        (timedelta(0), 0),
        (timedelta(0), 10),
        (timedelta(minutes=2, seconds=30), 50),
    ]
    assert track.gates["error-rate"] == [GatePoint(T0 + timedelta(minutes=3), 0.0, None, 0.01)]


def test_later_changes_add_points_and_a_new_run_starts_a_new_history() -> None:
    obj, now = recorded("in_progress")
    histories = Histories()
    histories.observe(obj, now)
    later = copy.deepcopy(obj)
    later["status"]["weight"] = 30
    later["status"]["gates"][0].update(lastValue=0.004, lastEvaluatedAt="2026-01-01T00:01:10Z")
    track = histories.observe(later, now + timedelta(seconds=10))
    assert track is not None
    assert track.weights[-1] == WeightPoint(now + timedelta(seconds=10), 30)
    assert [p.value for p in track.gates["error-rate"]] == [0.008, 0.004]
    # Seeing the same object again adds nothing.
    assert histories.observe(later, now + timedelta(seconds=20)) is track
    assert len(track.weights) == 3 and len(track.gates["error-rate"]) == 2

    retried = copy.deepcopy(later)
    retried["status"].update(runId="2-1", weight=0, history=[], gates=[])
    fresh = histories.observe(retried, now + timedelta(seconds=30))
    assert fresh is not None and fresh is not track and fresh.gates == {}
    assert [p.weight for p in fresh.weights] == [0]


def test_a_ratio_gate_records_the_bound_its_baseline_gave_at_each_check() -> None:
    obj, now = recorded("in_progress")
    obj["spec"]["gates"][0].pop("threshold")
    obj["spec"]["gates"][0]["compare"] = {
        "baseline": "blue_query",
        "maxIncrease": 0.5,
        "tolerance": 0.001,
    }
    obj["status"]["gates"][0]["lastBaseline"] = 0.01
    track = Histories().observe(obj, now)
    assert track is not None
    point = track.gates["error-rate"][0]
    assert point.low is None
    assert point.high == pytest.approx(0.01 * 1.5 + 0.001)


# --- plots -----------------------------------------------------------------------------------


def test_the_weight_plot_holds_each_weight_until_the_next_and_the_last_until_now() -> None:
    points = [WeightPoint(T0, 0), WeightPoint(T0 + timedelta(seconds=50), 50)]
    svg = weight_plot(points, T0, T0 + timedelta(seconds=100))
    path = svg.split('class="weight" d="')[1].split('"')[0]
    # Starts at 0 % on the left, steps up to 50 % halfway, runs to the right edge.
    assert path.startswith("M48.0 144.0 ")
    assert path.endswith("H628.0")
    assert " V78.0" in path and "now 50%" in svg


def test_the_gate_plot_draws_values_bounds_and_checks_without_data() -> None:
    points = [
        GatePoint(T0, 0.004, None, 0.01),
        GatePoint(T0 + timedelta(seconds=10), None, None, 0.01),
        GatePoint(T0 + timedelta(seconds=20), 0.02, None, 0.01),
    ]
    svg = gate_plot("error-rate", points, T0, T0 + timedelta(seconds=30))
    assert svg.count('<circle class="value"') == 2
    assert svg.count('class="nodata"') == 1
    assert 'class="bound high"' in svg and 'class="bound low"' not in svg
    assert "latest 0.02" in svg


# --- pages -----------------------------------------------------------------------------------


def test_the_detail_page_shows_a_rollback_and_its_reason() -> None:
    obj, now = recorded("rolled_back")
    parts = detail_parts(detail(obj, now))
    assert 'class="problem rollback-reason"' in parts["summary"]
    assert "value 0.05 is above max 0.01" in parts["summary"]
    assert "Rolled back" in parts["summary"]
    assert "Migration Status" in parts["report"] and "ROLLED_BACK" in parts["report"]


def test_actions_appear_only_when_allowed_and_only_those_the_operator_would_take() -> None:
    obj, now = recorded("paused")  # Paused by a user: resume and abort make sense, pause not
    assert detail_parts(detail(obj, now))["actions"] == ""
    actions = detail_parts(detail(obj, now, actions=True))["actions"]
    enabled = {
        verb
        for verb in ("promote", "pause", "resume", "abort", "retry")
        if f'data-verb="{verb}"' in actions
        and "disabled" not in actions.split(f'data-verb="{verb}"')[1].split(">")[0]
    }
    assert enabled == {"promote", "resume", "abort"}
    assert "all traffic will return to blue" in actions  # abort's confirmation says what happens


def test_whatever_the_cluster_holds_is_escaped() -> None:
    obj, now = recorded("in_progress")
    obj["status"]["message"] = '<script>alert("x")</script>'
    obj["status"]["gates"][0]["lastMessage"] = "<img src=x onerror=alert(1)>"
    events = [{"type": "Normal", "reason": "Started", "message": "<b>hi</b>", "count": 1}]
    parts = detail_parts(detail(obj, now, events=events, actions=True))
    page = "".join(parts.values())
    assert "<script>" not in page and "<img" not in page and "<b>hi" not in page
    assert "&lt;script&gt;" in parts["summary"]


def test_a_missing_migration_and_unreadable_events_are_said_plainly() -> None:
    obj, now = recorded("in_progress")
    assert "does not exist" in detail_parts(detail(None, now))["summary"]
    hidden = detail_parts(detail(obj, now, events=None))["events"]
    assert "not readable" in hidden
    assert "Reading Events" in detail_parts(detail(obj, now, events_read=False))["events"]


def test_a_user_who_may_not_list_gets_the_reason_and_what_to_ask_for() -> None:
    error = CliError("forbidden: you may not list migrations in namespace shop (RBAC)", 1, 403)
    problem = problem_of(error, False, "shop")
    parts = overview_parts([], problem, "namespace shop", "failing", T0)
    assert "Not allowed to list Migrations" in parts["notice"]
    assert (
        "ask for get, list and watch on migrations.cutover.io in namespace shop"
        in (parts["notice"])
    )
    assert parts["migrations"] == ""
    unreachable = problem_of(CliError("cannot reach the cluster", 4), True, "shop")
    assert not unreachable.forbidden and "ask for" not in unreachable.message


def test_the_overview_lists_phase_step_weight_and_rollback() -> None:
    rolled, now = recorded("rolled_back")
    running, _ = recorded("in_progress")
    running["metadata"]["name"] = "cart"
    html = overview_parts([rolled, running], None, "namespace shop", "watching", now)["migrations"]
    rows = html.split("<tr data-migration=")[1:]
    assert [r.split('"')[1] for r in rows] == ["shop/cart", "shop/checkout"]
    assert "Progressing" in rows[0] and '<span class="weight">10%</span>' in rows[0]
    assert "2 of 5" in rows[0] and "pause 2m" in rows[0]
    assert "RolledBack" in rows[1] and "not available" in rows[1]


def test_a_templated_gate_is_drawn_with_the_bounds_its_run_resolved() -> None:
    from cutover.api import parse_spec
    from cutover.core.templates import TemplateObject, resolve

    examples = Path(__file__).resolve().parents[2] / "examples" / "templates"
    migration = yaml.safe_load((examples / "migration.yaml").read_text())
    template = next(yaml.safe_load_all((examples / "templates.yaml").read_text()))
    record = resolve(
        parse_spec(migration["spec"]).gates[0], TemplateObject.from_body(template), "default", 0
    )
    migration["metadata"]["namespace"] = "default"
    checked = {"lastValue": 0.045, "lastEvaluatedAt": "2026-01-01T00:01:00Z"}
    migration["status"] = {
        "phase": "Paused",
        "weight": 50,
        "gates": [{"name": "errors", **checked}, {"name": "latency", **checked}],
        "resolvedGates": [record.to_dict()],
    }
    track = Histories().observe(migration, T0 + timedelta(minutes=2))
    assert track is not None
    assert track.gates["errors"][0].high == 0.05  # from the template
    assert track.gates["latency"][0].high is None  # not resolved: no bound guessed
