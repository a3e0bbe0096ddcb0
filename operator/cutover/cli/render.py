"""Rich renderings of reports, lists and plans for people; machines get ``-o json|yaml``."""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO, cast

import yaml
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cutover.cli.plan import Plan
from cutover.cli.report import (
    OverallStatus,
    Report,
    Risk,
    RollbackState,
    Side,
    TaskState,
)
from cutover.durations import format_duration

_STATUS_STYLE = {
    OverallStatus.in_progress: "bold cyan",
    OverallStatus.rolling_back: "bold red",
    OverallStatus.completed: "bold green",
    OverallStatus.rolled_back: "bold yellow",
    OverallStatus.paused: "bold magenta",
    OverallStatus.failed: "bold red",
}
_RISK_STYLE = {Risk.low: "green", Risk.medium: "yellow", Risk.high: "bold red"}


class _LineTrimmer(io.TextIOBase):
    """Rich pads lines to the table width; in a file or a pipe that is trailing whitespace."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._pending = ""

    def write(self, text: str) -> int:
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            self._stream.write(line.rstrip() + "\n")
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._stream.write(self._pending.rstrip())
            self._pending = ""
        self._stream.flush()

    def isatty(self) -> bool:
        return False


def console(stderr: bool = False) -> Console:
    # Rich sizes to the terminal or COLUMNS; piped without COLUMNS it would squeeze tables into 80.
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    width = None if os.environ.get("COLUMNS") or tty else 120
    if tty:
        return Console(stderr=stderr, width=width, highlight=False, soft_wrap=False)
    trimmed = cast(TextIO, _LineTrimmer(stream))
    return Console(file=trimmed, width=width, highlight=False, soft_wrap=False)


def dump(data: Any, output: str) -> str:
    if output == "json":
        return json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    # allow_unicode: "→" stays an arrow instead of "\u2192".
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def progress_bar(percent: int, width: int = 30) -> Text:
    # Characters rather than rich's ProgressBar: it must read the same without colours (CI logs).
    done = round(width * percent / 100)
    bar = Text("█" * done, style="green")
    bar.append("░" * (width - done), style="dim")
    bar.append(f" {percent}%")
    return bar


def report_renderable(report: Report) -> RenderableType:
    status = Text(report.status.value, style=_STATUS_STYLE[report.status])
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("Migration", f"{report.namespace}/{report.name}")
    head.add_row("Migration Status", status)
    phase = report.phase + (f" ({report.reason})" if report.reason else "")
    head.add_row("State", escape(phase))
    if report.message:
        head.add_row("Message", escape(report.message))
    head.add_row("Start Time", _time(report.started_at))
    if report.completed_at:
        head.add_row("End Time", _time(report.completed_at))
    head.add_row(
        "Current Phase",
        f"{report.step} of {report.total_steps} ({escape(report.step_description)})",
    )
    head.add_row("Overall Progress", progress_bar(report.progress_percent))
    head.add_row(
        "Traffic",
        f"green {escape(report.green)} {report.weight}% / blue {escape(report.blue)}"
        f" {100 - report.weight}%",
    )
    risk = Text(report.risk.level.value, style=_RISK_STYLE[report.risk.level])
    risk.append(f"  {'; '.join(report.risk.reasons)}", style="")
    head.add_row("Risk Assessment", risk)
    rollback_style = "green" if report.rollback.state is RollbackState.available else "yellow"
    rollback = Text(report.rollback.state.value, style=rollback_style)
    rollback.append(f"  {report.rollback.reason}", style="")
    head.add_row("Rollback Status", rollback)
    parts: list[RenderableType] = [head]
    if report.gates:
        # The four counts share one column so that the table fits 80 columns; long names and
        # thresholds wrap instead of being cut.
        gates = Table(title="Gates", title_justify="left", expand=False)
        for column in ("Gate", "Value", "Threshold", "Verdict", "Outcome"):
            gates.add_column(column, overflow="fold")
        gates.add_column("Checks P/F/I/E", justify="right", no_wrap=True)
        for g in report.gates:
            verdict_style = {"Passed": "green", "Failed": "red"}.get(g.verdict or "", "yellow")
            gates.add_row(
                f"{g.name} (dry run)" if g.dry_run else g.name,
                _number(g.value),
                g.threshold,
                Text(g.verdict or "-", style=verdict_style if g.verdict else ""),
                g.outcome,
                f"{g.passed}/{g.failed}/{g.inconclusive}/{g.errors}",
            )
        parts.append(gates)
    if report.sides:
        parts.append(Text("Versions:", style="bold"))
        parts.append(_bullets(_side_text(side) for side in report.sides))
    if report.tasks:
        parts.append(Text("Tasks:", style="bold"))
        parts.append(_tasks(report))
    if report.key_metrics:
        parts.append(Text("Key Metrics:", style="bold"))
        parts.append(_bullets(report.key_metrics))
    if report.spec_problems:
        parts.append(Text("Spec problems:", style="bold red"))
        parts.append(_bullets(report.spec_problems))
    if report.issues:
        parts.append(Text("Issues:", style="bold"))
        parts.append(_bullets(f"{_time(i.time)} {i.kind}: {i.message}" for i in report.issues))
    parts.append(Text("Next Steps:", style="bold"))
    parts.append(_bullets(report.next_steps))
    return Group(*parts)


_TASK_MARKS = {
    TaskState.done: "✓",
    TaskState.running: "🔄",
    TaskState.stopped: "✗",
    TaskState.upcoming: "⏳",
}


def _tasks(report: Report) -> Table:
    grid = Table.grid()
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for task in report.tasks:
        grid.add_row(f"  {_TASK_MARKS[task.state]} ", f"{task.step} {task.description}")
        for issue in task.issues:
            grid.add_row("", Text(f"⚠️  {issue}"))
    return grid


def _side_text(side: Side) -> str:
    if side.note is not None:
        return f"{side.role} {side.deployment}: {side.note}"
    image = f", image {side.image}" if side.image else ""
    return f"{side.role} {side.deployment}: {side.ready}/{side.replicas} ready{image}"


def _bullets(items: Iterable[str]) -> Table:
    """A list whose long items wrap under their own text, not under the dash."""
    grid = Table.grid()
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for item in items:
        grid.add_row("  - ", Text(item))
    return grid


def _age(created: str | None, now: datetime) -> str:
    if not created:
        return "-"
    try:
        then = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return "-"
    return format_duration(max((now - then).total_seconds(), 0))


def list_rows(items: Sequence[Mapping[str, Any]], now: datetime) -> list[dict[str, Any]]:
    rows = []
    for item in items:
        metadata = item.get("metadata") or {}
        status = item.get("status") or {}
        steps = len((item.get("spec") or {}).get("steps") or [])
        index = int(status.get("currentStepIndex") or 0)
        rows.append(
            {
                "namespace": metadata.get("namespace", ""),
                "name": metadata.get("name", ""),
                "phase": status.get("phase") or "Pending",
                "step": f"{min(index + 1, steps)}/{steps}" if steps else "-",
                "weight": int(status.get("weight") or 0),
                "age": _age(metadata.get("creationTimestamp"), now),
            }
        )
    return rows


def list_table(rows: Sequence[Mapping[str, Any]], all_namespaces: bool) -> Table:
    table = Table(box=None, pad_edge=False)
    columns = ["NAMESPACE"] if all_namespaces else []
    columns += ["NAME", "PHASE", "STEP", "WEIGHT", "AGE"]
    for column in columns:
        table.add_column(column, justify="right" if column == "WEIGHT" else "left")
    for row in rows:
        cells = [row["namespace"]] if all_namespaces else []
        cells += [row["name"], row["phase"], row["step"], f"{row['weight']}%", row["age"]]
        table.add_row(*(escape(str(c)) for c in cells))
    return table


def plan_renderable(plan: Plan) -> RenderableType:
    title = (
        f"Migration {plan.namespace}/{plan.name}: {plan.blue} -> {plan.green}"
        f" (router {plan.router})"
    )
    steps = Table(title=escape(title), title_justify="left")
    for column in ("Step", "Kind", "Weight", "Hold", "Gates", "Rollback here"):
        steps.add_column(column, justify="right" if column in ("Step", "Weight") else "left")
    for row in plan.rows:
        steps.add_row(
            str(row.step) if row.step else "-",
            row.kind,
            f"{row.weight}% + {row.mirror}% mirrored" if row.mirror else f"{row.weight}%",
            row.hold,
            ", ".join(row.gates) or "-",
            row.rollback,
        )
    parts: list[RenderableType] = [steps]
    if plan.gates:
        gates = Table(title="Gates (queries after substitution)", title_justify="left")
        gates.add_column("Gate")
        gates.add_column("Passes when")
        gates.add_column("Query", overflow="fold")
        for gate in plan.gates:
            query = gate.query + (f"\nbaseline: {gate.baseline}" if gate.baseline else "")
            name = gate.name + (f"\nfrom {gate.template}" if gate.template else "")
            gates.add_row(escape(name), gate.threshold, escape(query))
        parts.append(gates)
    if plan.preview is not None:
        parts.append(Text(f"Preview: {plan.preview}"))
    parts.append(Text(f"Minimum duration: {plan.minimum}"))
    if plan.bake != "0s":
        parts.append(Text(f"Bake at 100%: {plan.bake}"))
    parts.append(Text(f"On rollback: {plan.rollback_note}"))
    parts.append(Text(f"After success: {plan.after_success}"))
    if plan.point_of_no_return:
        parts.append(Text(f"Point of no return: {plan.point_of_no_return}"))
    if plan.change is not None:
        parts.append(Text(f"Applying it now: {plan.change}"))
    return Group(*parts)
