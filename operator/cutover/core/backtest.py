"""Replaying a gate over past data: which verdicts its checks would have had, where it failed
worst, and which runs it would have stopped. Pure: the CLI (``cutover backtest``) fetches the
past values from the gate's provider and hands them here.

Every replayed check is judged by ``core.gates.judge`` and counted by ``core.gates.record``,
the rules a run applies, so a backtest and a run cannot disagree about a value. A run's limits
(``failureLimit``, ``inconclusiveLimit``, ``consecutiveErrorLimit``) count checks for the whole
run, so "would this gate have stopped a run" needs a run length: the history is cut into runs of
that length, back to back, each starting with fresh counts.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from cutover.api import ErrorPolicy, Gate, GateOutcome, GateStatus, Verdict
from cutover.core import gates as gate_rules
from cutover.core.gates import MIN_SAMPLES, Judgement, Reading, ReadingKind

__all__ = [
    "Replay",
    "RunStop",
    "StoppedRun",
    "Streak",
    "align",
    "badness",
    "check_times",
    "readings",
    "replay",
    "sample_readings",
]


class RunStop(StrEnum):
    """What a gate's outcome does to a run (see core.gating)."""

    rollback = "rollback"
    pause = "pause"


@dataclass(frozen=True)
class Streak:
    """Failed checks in a row: from the first one's time to the last one's."""

    start: datetime
    end: datetime
    checks: int
    # The value furthest past the gate's bound within the streak (None: no value, e.g. no data
    # counted as a failure).
    worst: float | None


@dataclass(frozen=True)
class StoppedRun:
    """A run, started at ``started``, that this gate would have stopped at ``at``."""

    started: datetime
    at: datetime
    outcome: GateOutcome
    action: RunStop
    message: str


@dataclass(frozen=True)
class Replay:
    """What a gate would have said over a span of history."""

    checks: int
    passed: int
    failed: int
    inconclusive: int
    no_data: int
    errors: int
    # (time, value) of the check furthest past (or closest to) the gate's bound.
    worst_value: tuple[datetime, float] | None
    failing_streaks: int
    # The worst streaks, longest first (ties: the further past the bound first); at most as
    # many as asked for.
    worst_streaks: tuple[Streak, ...]
    runs: int
    stopped: tuple[StoppedRun, ...]

    def stopped_by(self, action: RunStop) -> int:
        return sum(1 for run in self.stopped if run.action is action)


def check_times(start: datetime, end: datetime, step_seconds: float) -> list[datetime]:
    """``start``, ``start + step`` ... up to ``end`` included: the times a range query with this
    start, end and step evaluates at."""
    if not step_seconds > 0:
        raise ValueError(f"step must be positive, got {step_seconds!r}")
    count = math.floor((end - start).total_seconds() / step_seconds + 1e-9) + 1
    return [start + timedelta(seconds=i * step_seconds) for i in range(max(count, 0))]


def align(
    points: Sequence[tuple[float, float]], start: datetime, step_seconds: float, count: int
) -> list[float | None]:
    """The value at each of ``count`` check times from ``(unix time, value)`` points (None: no
    point there, or NaN). Points are placed by their step index, so a time printed with
    rounding still lands on its check; points off the grid are dropped."""
    values: list[float | None] = [None] * count
    origin = start.timestamp()
    for at, value in points:
        offset = (at - origin) / step_seconds
        index = round(offset)
        if abs(offset - index) > 1e-3 or not 0 <= index < count or math.isnan(value):
            continue
        values[index] = value
    return values


def readings(
    values: Sequence[float | None], baselines: Sequence[float | None] | None
) -> list[Reading]:
    """The Reading of each check, as a live check makes it: no value (or, with a baseline, no
    baseline value) is no data."""
    found: list[Reading] = []
    for index, value in enumerate(values):
        baseline = None if baselines is None else baselines[index]
        if value is None:
            found.append(Reading.no_data("query returned no data"))
        elif baselines is not None and baseline is None:
            found.append(Reading.no_data("baseline query returned no data"))
        else:
            found.append(Reading.of(value, baseline))
    return found


def sample_readings(
    times: Sequence[datetime],
    green: Sequence[tuple[float, float]],
    baseline: Sequence[tuple[float, float]],
    window_seconds: float,
) -> list[Reading]:
    """The Reading of each Mann-Whitney check at ``times``: the (unix time, value) points of
    each series within ``[t - window, t]``, as the check's own range queries would return them
    (the same points when the check times fall on the points' grid). Too few on either side is
    no data, as the live check judges it."""
    found: list[Reading] = []
    green_at = [at for at, _ in green]
    baseline_at = [at for at, _ in baseline]
    for moment in times:
        end = moment.timestamp()
        start = end - window_seconds
        ours = _between(green, green_at, start, end)
        theirs = _between(baseline, baseline_at, start, end)
        if len(ours) < MIN_SAMPLES or len(theirs) < MIN_SAMPLES:
            found.append(
                Reading.no_data(
                    f"too few samples for mannwhitney (green {len(ours)}, baseline"
                    f" {len(theirs)}, need {MIN_SAMPLES} each)"
                )
            )
        else:
            found.append(Reading.samples(ours, theirs))
    return found


def _between(
    points: Sequence[tuple[float, float]], times: Sequence[float], start: float, end: float
) -> tuple[float, ...]:
    # A millisecond of slack: printed times are rounded, the grid is not.
    low = bisect.bisect_left(times, start - 1e-3)
    high = bisect.bisect_right(times, end + 1e-3)
    return tuple(value for _, value in points[low:high] if not math.isnan(value))


def badness(reading: Reading, gate: Gate) -> float | None:
    """How far a value is past the gate's bound (negative: inside it, by that much); None when
    the reading has no value or the gate judges otherwise (e.g. a Mann-Whitney test)."""
    value = reading.value
    if reading.kind is not ReadingKind.value or value is None or math.isnan(value):
        return None
    if gate.threshold is not None:
        past = [
            amount
            for amount in (
                value - gate.threshold.max if gate.threshold.max is not None else None,
                gate.threshold.min - value if gate.threshold.min is not None else None,
            )
            if amount is not None
        ]
        return max(past) if past else None
    compare = gate.compare
    if compare is None or reading.baseline is None or math.isnan(reading.baseline):
        return None
    return value - (reading.baseline * (1 + compare.max_increase) + compare.tolerance)


def _stop(outcome: GateOutcome, gate: Gate, automatic: bool) -> RunStop | None:
    """What ``outcome`` does to a run, as core.gating decides it (None: the run goes on)."""
    if outcome is GateOutcome.failed:
        return RunStop.rollback if automatic else RunStop.pause
    if outcome is GateOutcome.error:
        rolls_back = gate.on_error is ErrorPolicy.rollback and automatic
        return RunStop.rollback if rolls_back else RunStop.pause
    if outcome is GateOutcome.inconclusive:
        return RunStop.pause
    return None


@dataclass(frozen=True)
class _Ranked:
    streak: Streak
    worst_badness: float | None


def _failing_streaks(
    times: Sequence[datetime],
    measured: Sequence[Reading],
    judged: Sequence[Judgement],
    bad: Sequence[float | None],
) -> list[_Ranked]:
    found: list[_Ranked] = []
    first: int | None = None
    for index in range(len(times) + 1):
        failing = index < len(times) and judged[index].verdict is Verdict.failed
        if failing and first is None:
            first = index
        elif not failing and first is not None:
            scored = [i for i in range(first, index) if bad[i] is not None]
            top = max(scored, key=lambda i: bad[i] or 0.0, default=None)
            streak = Streak(
                start=times[first],
                end=times[index - 1],
                checks=index - first,
                worst=None if top is None else measured[top].value,
            )
            found.append(_Ranked(streak, None if top is None else bad[top]))
            first = None
    return found


def _runs(
    gate: Gate,
    times: Sequence[datetime],
    measured: Sequence[Reading],
    judged: Sequence[Judgement],
    run_seconds: float,
    automatic: bool,
) -> tuple[int, list[StoppedRun]]:
    """(runs, the runs the gate stopped): each run counts from zero, like a new run does."""
    if not times:
        return 0, []
    origin = times[0]
    stopped: list[StoppedRun] = []
    current: int | None = None
    status = GateStatus(name=gate.name, dry_run=gate.dry_run)
    done = False
    runs = 0
    for at, reading, judgement in zip(times, measured, judged, strict=True):
        run = math.floor((at - origin).total_seconds() / run_seconds + 1e-9)
        if run != current:
            current, runs, done = run, runs + 1, False
            status = GateStatus(name=gate.name, dry_run=gate.dry_run)
        if done:
            continue
        status = gate_rules.record(status, gate, reading, judgement, at)
        action = _stop(status.outcome, gate, automatic)
        if action is not None:
            started = origin + timedelta(seconds=run * run_seconds)
            stopped.append(StoppedRun(started, at, status.outcome, action, judgement.message))
            done = True
    return runs, stopped


def replay(
    gate: Gate,
    times: Sequence[datetime],
    measured: Sequence[Reading],
    *,
    run_seconds: float,
    automatic: bool = True,
    worst: int = 3,
) -> Replay:
    """Judge every check of ``gate`` at ``times`` and count them; cut the checks into runs of
    ``run_seconds`` from the first check on and say which runs the gate would have stopped.

    ``automatic`` is the Migration's ``rollback.automatic``: off, a failed gate pauses."""
    if len(times) != len(measured):
        raise ValueError(f"{len(times)} check times but {len(measured)} readings")
    if not run_seconds > 0:
        raise ValueError(f"run length must be positive, got {run_seconds!r}")
    judged = [gate_rules.judge(reading, gate) for reading in measured]
    bad = [badness(reading, gate) for reading in measured]
    counts = {verdict: 0 for verdict in Verdict}
    no_data = 0
    for reading, judgement in zip(measured, judged, strict=True):
        if reading.kind is ReadingKind.no_data:
            no_data += 1
        else:
            counts[judgement.verdict] += 1
    scored = [i for i, b in enumerate(bad) if b is not None]
    top = max(scored, key=lambda i: bad[i] or 0.0, default=None)
    worst_value = None
    if top is not None:
        value = measured[top].value
        assert value is not None
        worst_value = (times[top], value)
    streaks = _failing_streaks(times, measured, judged, bad)
    # Longest first; among equals, the one further past the bound; then the earliest.
    ranked = sorted(
        streaks,
        key=lambda r: (
            -r.streak.checks,
            -(r.worst_badness if r.worst_badness is not None else -math.inf),
            r.streak.start,
        ),
    )
    runs, stopped = _runs(gate, times, measured, judged, run_seconds, automatic)
    return Replay(
        checks=len(times),
        passed=counts[Verdict.passed],
        failed=counts[Verdict.failed],
        inconclusive=counts[Verdict.inconclusive],
        no_data=no_data,
        errors=counts[Verdict.error],
        worst_value=worst_value,
        failing_streaks=len(streaks),
        worst_streaks=tuple(s.streak for s in ranked[: max(worst, 0)]),
        runs=runs,
        stopped=tuple(stopped),
    )
