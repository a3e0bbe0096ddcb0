"""The dashboard's HTML: whole pages for a first load, and the same parts by id for the live
updates (the page script swaps each part's inner HTML). Pure functions of the data they get;
everything shown is escaped here.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any
from urllib.parse import quote

from rich.console import Console

from cutover import api
from cutover.cli import requests
from cutover.cli.dashboard.feed import Problem
from cutover.cli.dashboard.history import Track
from cutover.cli.dashboard.plot import gate_plot, weight_plot
from cutover.cli.render import report_renderable
from cutover.cli.report import Report, RollbackState, TaskState, build_report, current_run
from cutover.core.observations import RequestVerb

Parts = dict[str, str]

# The buttons, in the order a person reads them; promote --full stays a CLI-only decision.
ACTIONS: tuple[RequestVerb, ...] = (
    RequestVerb.promote,
    RequestVerb.pause,
    RequestVerb.resume,
    RequestVerb.abort,
    RequestVerb.retry,
)


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _time(value: datetime | str | None) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return _e(value)
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def detail_path(namespace: str, name: str) -> str:
    return f"/migrations/{quote(namespace, safe='')}/{quote(name, safe='')}"


def layout(
    title: str, body: str, *, stream: str, token: str, actions: bool, crumbs: str = ""
) -> str:
    """A whole page; ``stream`` is the Server-Sent Events URL its parts come from."""
    mode = "actions enabled" if actions else "read-only"
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="cutover-token" content="{_e(token)}">'
        f"<title>{_e(title)} · cutover dashboard</title>"
        '<link rel="stylesheet" href="/static/dashboard.css">'
        '<script src="/static/dashboard.js" defer></script>'
        f'</head><body data-stream="{_e(stream)}">'
        '<header><a class="brand" href="/">cutover dashboard</a>'
        f"{crumbs}"
        f'<span class="mode">{mode}</span>'
        '<span id="live" class="live off" title="updates pushed by the server">connecting</span>'
        f"</header><main>{body}</main></body></html>\n"
    )


def _section(part: str, title: str, html: str) -> str:
    return f'<section><h2>{_e(title)}</h2><div id="{part}">{html}</div></section>'


# --- overview -------------------------------------------------------------------------------


def notice(problem: Problem | None, where: str, mode: str) -> str:
    if problem is None:
        return f'<p class="muted">Migrations in {_e(where)}; {_e(mode)}.</p>'
    kind = "forbidden" if problem.forbidden else "error"
    title = "Not allowed to list Migrations" if problem.forbidden else "Cannot read Migrations"
    return (
        f'<div class="problem {kind}" role="alert"><strong>{title}</strong>'
        f'<p>{_e(problem.message)}</p><p class="muted">The dashboard keeps trying.</p></div>'
    )


def _report(obj: Mapping[str, Any], now: datetime) -> Report | str:
    try:
        return build_report(obj, now=now)
    except api.SpecInvalid as error:  # a status this version cannot read
        return str(error)


def _phase_badge(phase: str, reason: str | None) -> str:
    text = phase + (f" ({reason})" if reason else "")
    return f'<span class="phase {_e(phase.lower())}">{_e(text)}</span>'


def _rollback(report: Report) -> str:
    available = report.rollback.state is RollbackState.available
    css = "yes" if available else "no"
    label = "available" if available else "not available"
    return f'<span class="rollback {css}" title="{_e(report.rollback.reason)}">{label}</span>'


def _bar(weight: int) -> str:
    return (
        f'<span class="bar" title="green {weight}%"><span style="width:{weight}%"></span></span>'
        f' <span class="weight">{weight}%</span>'
    )


def overview_rows(objects: Sequence[Mapping[str, Any]], now: datetime) -> str:
    if not objects:
        return '<p class="empty">No Migrations found.</p>'
    rows = []
    for obj in sorted(objects, key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"])):
        namespace = str(obj["metadata"]["namespace"])
        name = str(obj["metadata"]["name"])
        link = f'<a href="{_e(detail_path(namespace, name))}">{_e(name)}</a>'
        report = _report(obj, now)
        if isinstance(report, str):
            rows.append(
                f'<tr data-migration="{_e(namespace)}/{_e(name)}"><td>{_e(namespace)}</td>'
                f'<td>{link}</td><td colspan="4" class="bad">{_e(report)}</td></tr>'
            )
            continue
        step = (
            f"{report.step} of {report.total_steps}"
            f' <span class="muted">{_e(report.step_description)}</span>'
        )
        rows.append(
            f'<tr data-migration="{_e(namespace)}/{_e(name)}"><td>{_e(namespace)}</td>'
            f"<td>{link}</td><td>{_phase_badge(report.phase, report.reason)}</td>"
            f"<td>{step}</td><td>{_bar(report.weight)}</td><td>{_rollback(report)}</td></tr>"
        )
    return (
        '<table class="migrations"><thead><tr><th>Namespace</th><th>Migration</th>'
        "<th>Phase</th><th>Step</th><th>Green weight</th><th>Rollback</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def overview_parts(
    objects: Sequence[Mapping[str, Any]],
    problem: Problem | None,
    where: str,
    mode: str,
    now: datetime,
) -> Parts:
    return {
        "notice": notice(problem, where, mode),
        "migrations": "" if problem is not None else overview_rows(objects, now),
    }


def overview_body(parts: Parts) -> str:
    return (
        "<h1>Migrations</h1>"
        f'<div id="notice">{parts["notice"]}</div>'
        f'<div id="migrations">{parts["migrations"]}</div>'
    )


# --- detail ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Detail:
    """Everything the detail page shows about one Migration at one moment."""

    namespace: str
    name: str
    obj: Mapping[str, Any] | None  # None: not (or no longer) there
    track: Track | None
    events: list[dict[str, Any]] | None  # None: not readable (or not read yet)
    events_read: bool
    deployments: Mapping[str, Mapping[str, Any] | None] | None
    problem: Problem | None
    actions: bool
    now: datetime


DETAIL_PARTS = (
    ("summary", None),
    ("actions", None),
    ("timeline", "Steps"),
    ("plots", "Weight and gates over time"),
    ("gates", "Gates"),
    ("hooks", "Hooks"),
    ("conditions", "Conditions"),
    ("events", "Events"),
    ("report", "Report (as cutover status prints it)"),
)


def _summary(report: Report, obj: Mapping[str, Any]) -> str:
    status = obj.get("status") or {}
    rows = [
        ("Phase", _phase_badge(report.phase, report.reason)),
        ("Step", f"{report.step} of {report.total_steps} ({_e(report.step_description)})"),
        (
            "Traffic",
            f'{_bar(report.weight)} <span class="muted">green {_e(report.green)},'
            f" blue {_e(report.blue)} {100 - report.weight}%</span>",
        ),
        ("Rollback", f"{_rollback(report)} {_e(report.rollback.reason)}"),
        (
            "Risk",
            f'<span class="risk {_e(report.risk.level.value.lower())}">'
            f"{_e(report.risk.level.value)}</span> {_e('; '.join(report.risk.reasons))}",
        ),
        ("Started", _time(report.started_at)),
    ]
    if report.completed_at:
        rows.append(("Ended", _time(report.completed_at)))
    if report.message:
        rows.append(("Message", f'<span id="message">{_e(report.message)}</span>'))
    head = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    banner = ""
    reason = status.get("rollbackReason")
    if report.phase in (api.Phase.rolling_back.value, api.Phase.rolled_back.value):
        verb = "Rolling back" if report.phase == api.Phase.rolling_back.value else "Rolled back"
        banner = (
            f'<div class="problem rollback-reason" role="alert"><strong>{verb}</strong>'
            f"<p>{_e(reason or report.message or 'no reason recorded')}</p></div>"
        )
    problems = "".join(f"<li>{_e(p)}</li>" for p in report.spec_problems)
    if problems:
        banner += (
            f'<div class="problem error"><strong>Spec problems</strong><ul>{problems}</ul></div>'
        )
    steps = "".join(f"<li>{_e(s)}</li>" for s in report.next_steps)
    return f'{banner}<table class="facts">{head}</table><p>Next: </p><ul class="next">{steps}</ul>'


def _actions(obj: Mapping[str, Any], namespace: str, name: str) -> str:
    buttons = []
    for verb in ACTIONS:
        refused = requests.refusal(verb, dict(obj))
        effect = "" if refused else requests.effect(verb, dict(obj))
        title = refused or effect
        disabled = " disabled" if refused else ""
        buttons.append(
            f'<button type="button" class="action {verb.value}" data-verb="{verb.value}"'
            f' data-namespace="{_e(namespace)}" data-name="{_e(name)}"'
            f' data-effect="{_e(effect)}" title="{_e(title)}"{disabled}>'
            f"{_e(verb.value.capitalize())}</button>"
        )
    return f'<div class="actions">{"".join(buttons)}</div>'


_MARK = {
    TaskState.done: "done",
    TaskState.running: "running",
    TaskState.stopped: "stopped",
    TaskState.upcoming: "upcoming",
}


def _timeline(report: Report, status: api.MigrationStatus) -> str:
    if not report.tasks:
        return '<p class="muted">No steps (the spec cannot be read).</p>'
    began: dict[int, datetime] = {}
    for entry in current_run(status.history):
        began.setdefault(entry.step, entry.time)
    items = []
    for task in report.tasks:
        when = began.get(task.step - 1)
        issues = "".join(f'<div class="issue">{_e(i)}</div>' for i in task.issues)
        items.append(
            f'<li class="task {_MARK[task.state]}"><span class="dot"></span>'
            f'<span class="label">{task.step}. {_e(task.description)}</span>'
            f'<span class="muted">{_e(task.state.value)}'
            f"{' · ' + _time(when) if when else ''}</span>{issues}</li>"
        )
    return f'<ol class="timeline">{"".join(items)}</ol>'


def _plots(detail: Detail, report: Report) -> str:
    track = detail.track
    if track is None:
        return '<p class="muted">No history yet.</p>'
    firsts = [track.weights[0].time] if track.weights else []
    firsts += [series[0].time for series in track.gates.values() if series]
    start = track.started or (min(firsts) if firsts else detail.now)
    start = min([start, *firsts])
    end = detail.now if not report.completed_at else max(report.completed_at, start)
    if (end - start) < timedelta(seconds=10):
        end = start + timedelta(seconds=10)
    parts = [
        '<figure class="plot-box"><figcaption>Green weight'
        f' <strong id="plot-weight">{report.weight}%</strong></figcaption>'
        f"{weight_plot(track.weights, start, end)}</figure>"
    ]
    for gate in report.gates:
        points = track.gates.get(gate.name, [])
        latest = "-" if gate.value is None else f"{gate.value:.4g}"
        parts.append(
            f'<figure class="plot-box" data-gate="{_e(gate.name)}"><figcaption>Gate'
            f" <strong>{_e(gate.name)}</strong> {latest}"
            f' <span class="muted">passes when {_e(gate.threshold)}</span></figcaption>'
            f"{gate_plot(gate.name, points, start, end)}</figure>"
        )
    legend = (
        '<p class="legend muted"><span class="key weight"></span> weight'
        ' <span class="key value"></span> gate value <span class="key bound"></span> bound'
        " (kept since this page's server started, plus what the status holds)</p>"
    )
    return f'<div class="plots">{"".join(parts)}</div>{legend}'


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _badge(kind: str, text: str) -> str:
    return f'<span class="{kind} {_e(text.lower())}">{_e(text)}</span>'


def _gates(report: Report) -> str:
    rows = [
        [
            _e(f"{g.name} (dry run)" if g.dry_run else g.name),
            "-" if g.value is None else _e(f"{g.value:.4g}"),
            _e(g.threshold),
            _badge("verdict", g.verdict or "-"),
            _e(g.outcome),
            _e(f"{g.passed}/{g.failed}/{g.inconclusive}/{g.errors}"),
            _e(g.message or ""),
        ]
        for g in report.gates
    ]
    headers = ("Gate", "Value", "Passes when", "Verdict", "Outcome", "Checks P/F/I/E", "Message")
    return _table(headers, rows, "No gates.")


def _hooks(status: api.MigrationStatus) -> str:
    rows = [
        [
            _e(h.name),
            _e(h.stage.value),
            "-" if h.step is None else str(h.step + 1),
            str(h.attempt),
            _e(h.job),
            f'<span class="hook {_e(h.state.value.lower())}">{_e(h.state.value)}</span>',
            _time(h.started_at),
            _time(h.finished_at),
            _e(h.message),
        ]
        for h in status.hooks
    ]
    headers = ("Hook", "Stage", "Step", "Attempt", "Job", "State", "Started", "Finished", "Message")
    return _table(headers, rows, "No hook ran in this run.")


def _conditions(status: api.MigrationStatus) -> str:
    rows = [
        [
            _e(c.type.value),
            _e(c.status),
            _e(c.reason),
            _e(c.message),
            _time(c.last_transition_time),
        ]
        for c in status.conditions
    ]
    return _table(("Type", "Status", "Reason", "Message", "Since"), rows, "No conditions yet.")


def _events(events: list[dict[str, Any]] | None, read: bool) -> str:
    if not read:
        return '<p class="muted">Reading Events…</p>'
    if events is None:
        return '<p class="muted">Events are not readable with these credentials (RBAC).</p>'
    rows = [
        [
            _badge("event", str(e.get("type") or "")),
            _e(e.get("reason") or ""),
            _e(e.get("message") or ""),
            _e(e.get("count") or 1),
            _time(e.get("lastTimestamp") or e.get("eventTime")),
        ]
        for e in reversed(events)
    ]
    return _table(("Type", "Reason", "Message", "Count", "Last seen"), rows, "No Events.")


def report_text(report: Report) -> str:
    """The seed-format report, exactly as ``cutover status`` draws it, as HTML."""
    console = Console(
        record=True, width=110, file=io.StringIO(), force_terminal=True, color_system="truecolor"
    )
    console.print(report_renderable(report))
    return console.export_html(
        inline_styles=True, code_format='<pre class="report"><code>{code}</code></pre>'
    )


def detail_parts(detail: Detail) -> Parts:
    empty = {part: "" for part, _ in DETAIL_PARTS}
    if detail.problem is not None and detail.obj is None:
        return {**empty, "summary": notice(detail.problem, detail.namespace, "")}
    if detail.obj is None:
        message = (
            f'<div class="problem error" role="alert"><strong>Not found</strong><p>Migration'
            f" {_e(detail.namespace)}/{_e(detail.name)} does not exist (or not yet): this page"
            " shows it once it is created.</p></div>"
        )
        return {**empty, "summary": message}
    try:
        report = build_report(detail.obj, now=detail.now, deployments=detail.deployments)
        status = api.parse_status(detail.obj.get("status"))
    except api.SpecInvalid as error:
        return {**empty, "summary": f'<div class="problem error">{_e(error)}</div>'}
    return {
        "summary": _summary(report, detail.obj),
        "actions": _actions(detail.obj, detail.namespace, detail.name) if detail.actions else "",
        "timeline": _timeline(report, status),
        "plots": _plots(detail, report),
        "gates": _gates(report),
        "hooks": _hooks(status),
        "conditions": _conditions(status),
        "events": _events(detail.events, detail.events_read),
        "report": report_text(report),
    }


def detail_body(namespace: str, name: str, parts: Parts, actions: bool) -> str:
    sections = []
    for part, title in DETAIL_PARTS:
        if title is None:
            sections.append(f'<div id="{part}">{parts[part]}</div>')
        if part == "actions" and actions:
            # Outside the part: an update of the buttons must not wipe what the last one said.
            sections.append('<p id="action-result" class="muted" role="status"></p>')
        if title is not None:
            sections.append(_section(part, title, parts[part]))
    return f"<h1>{_e(namespace)}/{_e(name)}</h1>{''.join(sections)}"
