"""``cutover backtest``: replay a Migration's gates over past data before it runs for real.

This module only dispatches: each gate's provider says whether it can replay
(``providers.can_replay``) and fetches the past answers (``Replayable.replay``: for Prometheus
one range query per gate and query, chunked under Prometheus' per-series limit), and
``core.backtest`` judges them with the rules a run uses. The query variables are rendered as
``cutover plan`` renders them (``--set`` overrides one), so the queries are the ones a run asks.

Exit codes: 0 it ran, whatever the verdicts; 1 bad input (file, no gates, unparsable time, a
template or a query the provider rejects, a query returning several series); 4 a provider
could not be asked (unreachable, timeout, server error).
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from cutover import api, providers
from cutover.cli.client import EXIT_UNREACHABLE, EXIT_USER, CliError
from cutover.cli.manifests import Document, read_manifests
from cutover.cli.plan import Templates, query_variables, resolve_gates, template_objects
from cutover.cli.render import dump
from cutover.cli.report import threshold_text
from cutover.core import backtest as core
from cutover.core import promql
from cutover.core.gates import Reading
from cutover.core.plan import schedule
from cutover.durations import DurationError, format_duration, parse_duration

__all__ = ["Format", "backtest", "parse_time"]

# Range queries over days take longer than a live check; a gate's own timeout is for one point.
MIN_TIMEOUT = 30.0
# A year at 30s is a million checks: beyond that a --step typo, not a question anyone asks.
MAX_CHECKS = 1_100_000
_DAYS = re.compile(r"^(\d+)d(.*)$")


class Format(enum.StrEnum):
    table = "table"
    json = "json"


def parse_time(text: str, now: datetime, option: str) -> datetime:
    """``now``, a duration ago (``7d``, ``36h``, ``1d12h``, ``90m``) or an RFC 3339 time (UTC
    when it names no zone); whole seconds, as Prometheus' range API takes them."""
    raw = text.strip()
    if raw == "now":
        moment = now
    else:
        try:
            moment = now - timedelta(seconds=_ago(raw))
        except DurationError:
            try:
                moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                raise CliError(
                    f"{option} {text!r}: use now, a duration ago (7d, 36h, 90m) or a time"
                    " (2026-11-22T06:00:00Z)"
                ) from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0)


def _ago(text: str) -> float:
    days = _DAYS.match(text)
    if days is None:
        return parse_duration(text)
    rest = days.group(2)
    return int(days.group(1)) * 86400.0 + (parse_duration(rest) if rest else 0.0)


def parse_sets(items: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--set {item!r}: use --set name=value (e.g. --set green=shop-blue)")
        found[key.strip()] = value
    return found


@dataclass(frozen=True)
class GateBacktest:
    """One gate's backtest: replayed, unable to replay (``cannot``), or failed (``error``)."""

    name: str
    provider: str
    dry_run: bool
    judged_by: str
    on_no_data: str
    step_seconds: float
    query: str = ""
    cannot: str | None = None
    error: str | None = None
    replay: core.Replay | None = None


@dataclass
class MigrationBacktest:
    name: str
    namespace: str
    start: datetime
    end: datetime
    run_seconds: float
    gates: list[GateBacktest] = field(default_factory=list)
    # The exit code the problems met call for (0: none).
    code: int = 0


def _cannot_replay(gate: api.Gate) -> str | None:
    """Why ``gate`` cannot be replayed, as the output says it, or None."""
    if not providers.can_replay(gate.provider):
        return f"cannot replay: {gate.provider}"
    source = providers.source_for(gate)
    if source.secret_refs(gate) or getattr(gate.source, "ca", None) is not None:
        return "cannot replay: it reads credentials from Secrets, which backtest does not read"
    return None


def _variables(
    document: Document, spec: api.MigrationSpec, sets: dict[str, str]
) -> dict[str, dict[str, str]]:
    """gate name -> its query variables, ``--set`` applied; an unknown ``--set`` name fails."""
    base = query_variables(document.body, spec)
    per_gate = {
        gate.name: providers.variables(base, gate) for gate in spec.gates if not gate.template_ref
    }
    known = set(base).union(*(set(values) for values in per_gate.values()))
    unknown = sorted(set(sets) - known)
    if unknown:
        raise CliError(
            f"--set {unknown[0]}: not a query variable of Migration {document.name}"
            f" (known: {', '.join(sorted(known))})"
        )
    return {name: {**values, **sets} for name, values in per_gate.items()}


def _client(gate: api.Gate, request: providers.GateRequest) -> providers.Replayable:
    """The gate's provider client, built as gatecheck builds it minus Secrets (none are read)."""
    source = providers.source_for(gate)
    options: dict[str, Any] = {
        **source.client_options(gate, {}),
        **dict(request.options),
        "timeout": max(parse_duration(gate.source.timeout), MIN_TIMEOUT),
    }
    if hasattr(gate.source, "insecure_skip_verify"):  # providers speaking TLS themselves
        options["insecure_skip_verify"] = gate.source.insecure_skip_verify
    client = providers.provider_for(gate.provider, **options)
    # can_replay checked the class; the instance is of it.
    assert isinstance(client, providers.Replayable)
    return client


def _fetch(
    client: providers.Replayable,
    request: providers.GateRequest,
    start: datetime,
    end: datetime,
    step: float,
) -> tuple[list[tuple[float, float]], list[tuple[float, float]] | None]:
    """The past answers of the query and of its baseline (None: the gate has none)."""
    try:
        points = client.replay(request.query, start, end, step)
        if request.baseline is None:
            return points, None
        return points, client.replay(request.baseline, start, end, step)
    finally:
        close = getattr(client, "close", None)
        if callable(close):
            close()


def _measure(
    gate: api.Gate,
    client: providers.Replayable,
    request: providers.GateRequest,
    times: list[datetime],
    result: MigrationBacktest,
    step: float,
) -> list[Reading]:
    """The Reading of every check at ``times``: one replay per query, never one per check."""
    compare = gate.compare
    if compare is None or compare.test is not api.CompareTest.mannwhitney:
        points, baseline = _fetch(client, request, result.start, result.end, step)
        values = core.align(points, result.start, step, len(times))
        baselines = (
            None if baseline is None else core.align(baseline, result.start, step, len(times))
        )
        return core.readings(values, baselines)
    # Imported here: it brings the operator's Kubernetes client, which other commands never need.
    from cutover.gatecheck import range_step

    # A check reads both series over its window at the operator's sample step; one replay of
    # each at that step from a window before the first check holds every check's samples (the
    # very same points when the interval is a multiple of the sample step).
    window = parse_duration(compare.window)
    sample_step = range_step(window)
    start = result.start - timedelta(seconds=window)
    points, baseline = _fetch(client, request, start, result.end, sample_step)
    return core.sample_readings(times, points, baseline or [], window)


def _failure(provider: str, error: Exception) -> tuple[str, int]:
    """How a failed replay is reported, and the exit code it calls for."""
    if isinstance(error, providers.InvalidQuery):
        return f"{provider} rejected the query: {error}", EXIT_USER
    if isinstance(error, providers.MultipleSeries):
        return f"a gate's query must return one series: {error}", EXIT_USER
    return f"{provider} could not answer: {error}", EXIT_UNREACHABLE


def _replay_gate(
    gate: api.Gate,
    index: int,
    values: dict[str, str],
    result: MigrationBacktest,
    step_override: float | None,
    automatic: bool,
    worst: int,
) -> GateBacktest:
    step = step_override if step_override is not None else parse_duration(gate.interval)
    if gate.template_ref is not None:
        # Its template was not among the files: there is no query to replay.
        ref = gate.template_ref.describe()
        return GateBacktest(
            name=gate.name,
            provider=ref,
            dry_run=gate.dry_run,
            judged_by=f"as {ref} says",
            on_no_data=gate.on_no_data.value,
            step_seconds=step,
            cannot=f"cannot replay: the gate comes from {ref}, which is not among the files (-f)",
        )
    entry = GateBacktest(
        name=gate.name,
        provider=gate.provider,
        dry_run=gate.dry_run,
        judged_by=threshold_text(gate),
        on_no_data=gate.on_no_data.value,
        step_seconds=step,
    )
    cannot = _cannot_replay(gate)
    if cannot is not None:
        return replace(entry, cannot=cannot)
    checks = (result.end - result.start).total_seconds() // step + 1
    if checks > MAX_CHECKS:
        raise CliError(
            f"gate {gate.name}: {checks:.0f} checks every {format_duration(step)} from --since"
            f" to --until, more than {MAX_CHECKS}: use a larger --step or a shorter span"
        )
    times = core.check_times(result.start, result.end, step)
    source = providers.source_for(gate)
    path = f"Migration {result.name}: spec.gates[{index}]"
    rendered: dict[str, str] = {}
    for template_field, template in source.templates(gate):
        try:
            rendered[template_field] = promql.render_query(template, values)
        except promql.TemplateError as error:
            raise CliError(f"{path}.{template_field}: {error}") from None
    request = source.request(gate, rendered)
    entry = replace(entry, query=source.describe(gate, request))
    try:
        client = _client(gate, request)
    except ValueError as error:
        raise CliError(f"{path}.{gate.provider}: {error}") from None
    try:
        measured = _measure(gate, client, request, times, result, step)
    except (providers.ProviderError, providers.MultipleSeries) as error:
        message, code = _failure(gate.provider, error)
        result.code = max(result.code, code)
        return replace(entry, error=message)
    replayed = core.replay(
        gate,
        times,
        measured,
        run_seconds=max(result.run_seconds, step),
        automatic=automatic,
        worst=worst,
    )
    return replace(entry, replay=replayed)


def backtest_migration(
    document: Document,
    start: datetime,
    end: datetime,
    *,
    step: float | None,
    run: float | None,
    sets: dict[str, str],
    worst: int,
    templates: Templates | None = None,
) -> MigrationBacktest:
    """Replay every gate of one Migration manifest over ``start``..``end``; a gate from a
    template among ``templates`` is replayed as it resolves."""
    migration = api.Migration.from_manifest(document.body)
    checked, problems = resolve_gates(document.body, migration.spec, templates or {})
    if problems:
        raise CliError(f"{document.path}: Migration {document.name}: {'; '.join(problems)}")
    spec = migration.spec.model_copy(update={"gates": [c.gate for c in checked]})
    if not spec.gates:
        raise CliError(f"{document.path}: Migration {document.name} has no gates to backtest")
    planned = schedule(spec)
    # A run lasts at least one check of the slowest gate: the plan's minimum says how long.
    run_seconds = run if run is not None else planned.minimum_seconds
    metadata = document.body.get("metadata") or {}
    result = MigrationBacktest(
        name=document.name,
        namespace=str(metadata.get("namespace") or "default"),
        start=start,
        end=end,
        run_seconds=max(run_seconds, max(parse_duration(g.interval) for g in spec.gates)),
    )
    variables = _variables(document, spec, sets)
    for index, gate in enumerate(spec.gates):
        result.gates.append(
            _replay_gate(
                gate,
                index,
                variables.get(gate.name, {}),
                result,
                step,
                spec.rollback.automatic,
                worst,
            )
        )
    return result


# --- output -----------------------------------------------------------------------------------


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def _number(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4g}"


def to_data(result: MigrationBacktest) -> dict[str, Any]:
    """The ``-o json`` form: camelCase keys like the Migration's own."""
    gates = []
    for entry in result.gates:
        data: dict[str, Any] = {
            "name": entry.name,
            "provider": entry.provider,
            "dryRun": entry.dry_run,
            "judgedBy": entry.judged_by,
            "onNoData": entry.on_no_data,
            "step": format_duration(entry.step_seconds),
            "replayed": entry.replay is not None,
        }
        if entry.query:
            data["query"] = entry.query
        if entry.cannot is not None:
            data["cannotReplay"] = entry.cannot
        if entry.error is not None:
            data["error"] = entry.error
        replay = entry.replay
        if replay is not None:
            data.update(
                {
                    "checks": replay.checks,
                    "passed": replay.passed,
                    "failed": replay.failed,
                    "inconclusive": replay.inconclusive,
                    "noData": replay.no_data,
                    "worstValue": None
                    if replay.worst_value is None
                    else {"at": _time(replay.worst_value[0]), "value": replay.worst_value[1]},
                    "failingStreaks": replay.failing_streaks,
                    "worstWindows": [
                        {
                            "start": _time(s.start),
                            "end": _time(s.end),
                            "checks": s.checks,
                            "worst": s.worst,
                        }
                        for s in replay.worst_streaks
                    ],
                    "runs": replay.runs,
                    "wouldRollBack": replay.stopped_by(core.RunStop.rollback),
                    "wouldPause": replay.stopped_by(core.RunStop.pause),
                    "stoppedRuns": [
                        {
                            "started": _time(r.started),
                            "at": _time(r.at),
                            "outcome": r.outcome.value,
                            "action": r.action.value,
                            "message": r.message,
                        }
                        for r in replay.stopped
                    ],
                }
            )
        gates.append(data)
    return {
        "migration": result.name,
        "namespace": result.namespace,
        "since": _time(result.start),
        "until": _time(result.end),
        "runLength": format_duration(result.run_seconds),
        "gates": gates,
    }


def text_lines(result: MigrationBacktest) -> list[str]:
    run = format_duration(result.run_seconds)
    lines = [
        f"Migration {result.name} ({result.namespace}): {_time(result.start)} .."
        f" {_time(result.end)}, runs of {run}",
    ]
    for entry in result.gates:
        trial = " (dry run)" if entry.dry_run else ""
        lines.append("")
        lines.append(
            f"{entry.name}{trial}  {entry.provider}, every {format_duration(entry.step_seconds)},"
            f" {entry.judged_by}"
        )
        if entry.cannot is not None:
            lines.append(f"  {entry.cannot}")
            continue
        if entry.error is not None:
            lines.append(f"  error: {entry.error}")
            continue
        replay = entry.replay
        assert replay is not None
        total = replay.checks
        lines.append(
            f"  {total} checks: passed {replay.passed} ({_percent(replay.passed, total)}),"
            f" failed {replay.failed} ({_percent(replay.failed, total)}),"
            f" inconclusive {replay.inconclusive} ({_percent(replay.inconclusive, total)}),"
            f" no data {replay.no_data} ({_percent(replay.no_data, total)};"
            f" onNoData: {entry.on_no_data})"
        )
        rolled = replay.stopped_by(core.RunStop.rollback)
        paused = replay.stopped_by(core.RunStop.pause)
        enforced = "enforced, it would have" if entry.dry_run else "would have"
        verdict = f"{enforced} rolled back {rolled} and paused {paused}"
        first = f" (the first at {_time(replay.stopped[0].at)})" if replay.stopped else ""
        lines.append(f"  runs of {run}: {replay.runs}; {verdict}{first}")
        if replay.worst_streaks:
            lines.append(
                f"  worst windows ({len(replay.worst_streaks)} of {replay.failing_streaks}"
                " failing streaks):"
            )
            for streak in replay.worst_streaks:
                # The time the streak's checks cover: one interval each.
                span = format_duration(
                    (streak.end - streak.start).total_seconds() + entry.step_seconds
                )
                checks = (
                    "1 failed check" if streak.checks == 1 else f"{streak.checks} failed checks"
                )
                lines.append(
                    f"    {_time(streak.start)} .. {_time(streak.end)}  {checks} in a row"
                    f" ({span}), worst {_number(streak.worst)}"
                )
        else:
            lines.append("  no failed check")
        if replay.worst_value is not None:
            at, value = replay.worst_value
            lines.append(f"  worst value {_number(value)} at {_time(at)}")
    return lines


# --- the command ------------------------------------------------------------------------------


def backtest(
    files: Annotated[
        list[Path],
        typer.Option("-f", "--filename", help="Migration manifest (file, directory or -)."),
    ],
    since: Annotated[
        str,
        typer.Option(
            "--since", help="Start: a duration ago (7d, 36h) or a time (2026-11-22T06:00:00Z)."
        ),
    ],
    until: Annotated[str, typer.Option("--until", help="End: now, a duration ago or a time.")] = (
        "now"
    ),
    step: Annotated[
        str | None,
        typer.Option(
            "--step", help="Time between replayed checks (default: each gate's interval)."
        ),
    ] = None,
    run: Annotated[
        str | None,
        typer.Option(
            "--run",
            help="How long a run lasts, for 'would it have stopped a run' (default: the plan's"
            " minimum, at least one interval).",
        ),
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override a query variable, e.g. --set green=shop-blue to read the live"
            " version's history. Repeatable.",
        ),
    ] = None,
    worst: Annotated[
        int, typer.Option("--worst", min=0, help="How many worst windows to show per gate.")
    ] = 3,
    output: Annotated[Format, typer.Option("-o", "--output", help="table | json.")] = Format.table,
) -> None:
    """Replay the Migration's gates over past data: how often each would have passed, failed,
    been inconclusive or had no data, its worst windows, and the runs it would have stopped.

    Exit 0 when it ran (whatever the verdicts), 1 on bad input, 4 when a provider (Prometheus)
    could not answer.
    """
    now = datetime.now(UTC)
    start = parse_time(since, now, "--since")
    end = parse_time(until, now, "--until")
    if start >= end:
        raise CliError(f"--since {since} is not before --until {until}")
    step_seconds = _positive(step, "--step")
    run_seconds = _positive(run, "--run")
    overrides = parse_sets(sets or [])
    everything = read_manifests(files)
    templates = template_objects([d.body for d in everything])
    documents = [d for d in everything if d.kind == api.KIND]
    if not documents:
        raise CliError(f"{', '.join(str(f) for f in files)}: no Migration found")
    results = []
    for document in documents:
        results.append(
            backtest_migration(
                document,
                start,
                end,
                step=step_seconds,
                run=run_seconds,
                sets=overrides,
                worst=worst,
                templates=templates,
            )
        )
    if output is Format.json:
        data = [to_data(r) for r in results]
        typer.echo(dump(data[0] if len(data) == 1 else data, "json"), nl=False)
    else:
        for index, result in enumerate(results):
            if index:
                typer.echo("")
            for line in text_lines(result):
                typer.echo(line)
    code = max(r.code for r in results)
    if code:
        failed = [f"{r.name}/{g.name}" for r in results for g in r.gates if g.error is not None]
        typer.echo(f"error: gates not replayed: {', '.join(failed)}", err=True)
    raise typer.Exit(code)


def _positive(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    try:
        seconds = parse_duration(text)
    except DurationError as error:
        raise CliError(f"{option}: {error}") from None
    if seconds < 1:
        raise CliError(f"{option} {text!r}: must be at least 1s")
    return seconds
