"""The Grafana dashboard shipped in integrations/grafana plots only metrics the operator exports.

Every PromQL expression in it (panels and template variables) is parsed with promql-parser, and
each metric name it selects must be a series name the operator's registry exposes: a family's
name with the suffixes the exposition gives it (``_total`` for a counter, ``_bucket``/``_count``/
``_sum`` for a histogram). A renamed metric breaks this test, not a user's board.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cutover import metrics

DASHBOARD = (
    Path(__file__).resolve().parents[2] / "integrations" / "grafana" / "cutover-dashboard.json"
)
# Grafana's own variables in a range or a selector; any valid value serves the parser.
_GRAFANA_RANGES = re.compile(
    r"\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}"
)
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def exposed_names() -> set[str]:
    """Every series name the registry exposes or would expose once its labels have values."""
    names: set[str] = set()
    for family in metrics.REGISTRY.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    # What the exposition really prints (samples of metrics with values already).
    for family in text_string_to_metric_families(generate_latest(metrics.REGISTRY).decode()):
        names.update(sample.name for sample in family.samples)
    return names


def expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and query variable."""

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels") or [])

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets") or []:
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else ""
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
            yield f"variable {variable['name']}", inner.group(1) if inner else query


def metric_names(expression: str) -> set[str]:
    parsed = promql_parser.parse(_GRAFANA_RANGES.sub("5m", expression))
    found: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            found.add(node.name)

    promql_parser.walk(parsed, visit)
    return found


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def test_every_metric_the_grafana_dashboard_plots_is_exported(dashboard: dict[str, Any]) -> None:
    exported = exposed_names()
    used: dict[str, set[str]] = {}
    for where, expression in expressions(dashboard):
        names = metric_names(expression)
        assert names, f"{where}: {expression!r} selects no metric"
        for name in names:
            used.setdefault(name, set()).add(where)
    unknown = {name: sorted(places) for name, places in used.items() if name not in exported}
    assert not unknown, f"metrics not in cutover.metrics.REGISTRY: {unknown}"


def test_the_dashboard_covers_weights_gates_verdicts_rollbacks_and_api_requests(
    dashboard: dict[str, Any],
) -> None:
    used = set().union(*(metric_names(e) for _, e in expressions(dashboard)))
    assert {
        "cutover_migration_green_weight_percent",
        "cutover_gate_value",
        "cutover_gate_checks_total",
        "cutover_rollbacks_total",
        "cutover_api_requests_total",
    } <= used


def test_a_misspelt_metric_would_be_caught() -> None:
    # The check itself: a name the registry lacks is not among the exposed names.
    assert metric_names("rate(cutover_gate_check_total[$__rate_interval])") == {
        "cutover_gate_check_total"
    }
    assert "cutover_gate_check_total" not in exposed_names()
    # A counter is exposed as <name>_total only: its bare name selects nothing in Prometheus.
    assert "cutover_gate_checks" not in exposed_names()
    assert {"cutover_gate_checks_total", "cutover_step_duration_seconds_bucket"} <= exposed_names()
