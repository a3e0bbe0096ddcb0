"""core.backtest: replayed checks judged by the run's rules, their worst windows, and the runs a
gate would have stopped."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from cutover.api import Gate, GateOutcome
from cutover.core.backtest import (
    RunStop,
    align,
    badness,
    check_times,
    readings,
    replay,
    sample_readings,
)
from cutover.core.gates import Reading, ReadingKind

from .specs import gate

T0 = datetime(2026, 11, 1, tzinfo=UTC)
MINUTE = 60.0


def make(**changes: object) -> Gate:
    return Gate.model_validate(gate(**changes))


def times(count: int, step: float = MINUTE) -> list[datetime]:
    return check_times(T0, T0 + timedelta(seconds=step * (count - 1)), step)


def values(*found: float | None) -> list[Reading]:
    return readings(list(found), None)


# -- the grid -------------------------------------------------------------------------------


def test_check_times_include_both_ends_like_a_range_query() -> None:
    found = check_times(T0, T0 + timedelta(minutes=10), 300)
    assert found == [T0, T0 + timedelta(minutes=5), T0 + timedelta(minutes=10)]
    assert check_times(T0, T0 + timedelta(minutes=9), 300)[-1] == T0 + timedelta(minutes=5)
    assert check_times(T0, T0, 30) == [T0]
    with pytest.raises(ValueError, match="positive"):
        check_times(T0, T0, 0)


def test_points_land_on_their_check_and_gaps_stay_empty() -> None:
    origin = T0.timestamp()
    points = [
        (origin, 1.0),
        (origin + 120.0004, 3.0),  # printed with rounding: still the third check
        (origin + 300, 9.0),  # past the last check
        (origin - 60, 9.0),  # before the first
        (origin + 180, math.nan),
    ]
    assert align(points, T0, MINUTE, 4) == [1.0, None, 3.0, None]


def test_a_missing_value_or_baseline_is_no_data_as_in_a_live_check() -> None:
    found = readings([0.1, None, 0.3], [0.2, 0.2, None])
    assert [r.kind for r in found] == [ReadingKind.value, ReadingKind.no_data, ReadingKind.no_data]
    assert (found[0].value, found[0].baseline) == (0.1, 0.2)
    assert "baseline" in found[2].message


def test_a_mann_whitney_check_reads_the_samples_of_its_window_on_both_sides() -> None:
    origin = T0.timestamp()
    green = [(origin + i * 10.0, float(i)) for i in range(13)]  # every 10s for 2 minutes
    baseline = [(at, 0.5) for at, _ in green]
    checks = [T0 + timedelta(seconds=30), T0 + timedelta(minutes=2), T0 + timedelta(minutes=3)]
    found = sample_readings(checks, green, baseline, 30.0)
    # [t - 30s, t], both ends included, as the check's own range query [t - window, t].
    assert found[0].green_samples == (0.0, 1.0, 2.0, 3.0)
    assert found[1].green_samples == (9.0, 10.0, 11.0, 12.0)
    assert found[1].baseline_samples == (0.5,) * 4
    # Past the data: too few samples is no data, as a live check judges it.
    assert found[2].kind is ReadingKind.no_data and "too few samples" in found[2].message


def test_a_mann_whitney_gate_fails_where_green_is_clearly_above_the_baseline() -> None:
    g = make(threshold=None, compare={"baseline": "b", "maxIncrease": 0.1, "test": "mannwhitney"})
    origin = T0.timestamp()
    green = [(origin + i, 0.01 if i < 60 else 0.5) for i in range(120)]
    baseline = [(origin + i, 0.01) for i in range(120)]
    checks = [T0 + timedelta(seconds=30), T0 + timedelta(seconds=119)]
    found = replay(g, checks, sample_readings(checks, green, baseline, 30.0), run_seconds=3600)
    assert (found.passed, found.failed) == (1, 1)
    assert found.worst_streaks[0].start == checks[1]


RATIO = {"threshold": None, "compare": {"baseline": "blue", "maxIncrease": 0.5, "tolerance": 0.1}}


@pytest.mark.parametrize(
    ("changes", "reading", "expected"),
    [
        ({"threshold": {"max": 0.05}}, Reading.of(0.08), 0.03),
        ({"threshold": {"max": 0.05}}, Reading.of(0.01), -0.04),
        ({"threshold": {"min": 0.9}}, Reading.of(0.5), 0.4),
        ({"threshold": {"min": 0.2, "max": 0.5}}, Reading.of(0.6), 0.1),
        ({"threshold": {"min": 0.2, "max": 0.5}}, Reading.of(0.1), 0.1),
        ({"threshold": {"min": 0.2, "max": 0.5}}, Reading.of(0.3), -0.1),
        # bound = 1.0 x 1.5 + 0.1 = 1.6
        (RATIO, Reading.of(2.0, 1.0), 0.4),
        (RATIO, Reading.of(1.0, 1.0), -0.6),
        (RATIO, Reading.of(1.0, math.nan), None),
        ({}, Reading.no_data(), None),
        ({}, Reading.of(math.nan), None),
    ],
)
def test_badness_is_the_distance_past_the_bound(
    changes: dict[str, object], reading: Reading, expected: float | None
) -> None:
    found = badness(reading, make(**changes))
    assert found == (None if expected is None else pytest.approx(expected))


# -- counts and windows ---------------------------------------------------------------------


def test_every_check_is_counted_once_by_its_verdict() -> None:
    g = make(threshold={"max": 0.05})
    found = replay(
        g, times(6), values(0.01, 0.06, None, 0.05, 0.2, None), run_seconds=3600, worst=3
    )
    assert (found.checks, found.passed, found.failed, found.inconclusive, found.no_data) == (
        6,
        2,
        2,
        0,
        2,
    )
    assert found.worst_value == (T0 + timedelta(minutes=4), 0.2)


def test_no_data_is_counted_as_such_whatever_it_counts_as_in_a_run() -> None:
    g = make(threshold={"max": 0.05}, onNoData="fail", failureLimit=5)
    found = replay(g, times(3), values(None, None, 0.01), run_seconds=3600)
    assert (found.no_data, found.failed, found.passed) == (2, 0, 1)
    # ... but as failures they make a failing streak, as they would hold a run.
    assert found.failing_streaks == 1
    assert found.worst_streaks[0].checks == 2 and found.worst_streaks[0].worst is None


def test_the_worst_windows_are_the_longest_streaks_then_the_furthest_past_the_bound() -> None:
    g = make(threshold={"max": 0.05}, failureLimit=100)
    series = values(
        0.06, 0.01,  # one failure, just past
        0.07, 0.08, 0.07, 0.01,  # three in a row
        0.5, 0.01,  # one failure, far past
        0.06, 0.06, 0.06,  # three in a row, less bad, at the end
    )  # fmt: skip
    found = replay(g, times(len(series)), series, run_seconds=3600, worst=3)
    assert found.failing_streaks == 4
    at = [(s.start, s.end, s.checks, s.worst) for s in found.worst_streaks]
    minute = timedelta(minutes=1)
    assert at == [
        (T0 + 2 * minute, T0 + 4 * minute, 3, 0.08),
        (T0 + 8 * minute, T0 + 10 * minute, 3, 0.06),
        (T0 + 6 * minute, T0 + 6 * minute, 1, 0.5),
    ]
    assert replay(g, times(len(series)), series, run_seconds=3600, worst=0).worst_streaks == ()


def test_a_gate_that_never_fails_has_no_window_but_a_worst_value() -> None:
    g = make(threshold={"max": 0.05})
    found = replay(g, times(3), values(0.01, 0.04, 0.02), run_seconds=3600)
    assert found.failing_streaks == 0 and found.worst_streaks == ()
    assert found.worst_value == (T0 + timedelta(minutes=1), 0.04)


# -- runs -----------------------------------------------------------------------------------


def test_a_run_rolls_back_once_its_failures_pass_the_limit_and_each_run_counts_afresh() -> None:
    g = make(threshold={"max": 0.05}, failureLimit=1)
    # Runs of 3 checks: [fail pass fail] [fail pass pass] [fail fail pass]
    series = values(0.1, 0.01, 0.1, 0.1, 0.01, 0.01, 0.1, 0.1, 0.01)
    found = replay(g, times(9), series, run_seconds=3 * MINUTE)
    assert found.runs == 3
    assert [(r.started, r.at, r.action) for r in found.stopped] == [
        (T0, T0 + timedelta(minutes=2), RunStop.rollback),
        (T0 + timedelta(minutes=6), T0 + timedelta(minutes=7), RunStop.rollback),
    ]
    assert found.stopped[0].outcome is GateOutcome.failed
    assert "above max" in found.stopped[0].message
    assert found.stopped_by(RunStop.rollback) == 2 and found.stopped_by(RunStop.pause) == 0


def test_failures_within_the_limit_stop_no_run_though_all_runs_together_pass_it() -> None:
    g = make(threshold={"max": 0.05}, failureLimit=2)
    series = values(0.1, 0.1, 0.01, 0.1, 0.01, 0.1)
    assert replay(g, times(6), series, run_seconds=3 * MINUTE).stopped == ()
    assert len(replay(g, times(6), series, run_seconds=6 * MINUTE).stopped) == 1


def test_without_automatic_rollback_a_failed_gate_pauses() -> None:
    g = make(threshold={"max": 0.05}, failureLimit=0)
    found = replay(g, times(2), values(0.1, 0.1), run_seconds=3600, automatic=False)
    assert [r.action for r in found.stopped] == [RunStop.pause]


def test_no_data_past_the_inconclusive_limit_pauses() -> None:
    g = make(threshold={"max": 0.05}, inconclusiveLimit=1, onNoData="inconclusive")
    found = replay(g, times(4), values(None, 0.01, None, 0.01), run_seconds=3600)
    assert [(r.at, r.action, r.outcome) for r in found.stopped] == [
        (T0 + timedelta(minutes=2), RunStop.pause, GateOutcome.inconclusive)
    ]


@pytest.mark.parametrize(
    ("on_error", "automatic", "action"),
    [
        ("rollback", True, RunStop.rollback),
        ("rollback", False, RunStop.pause),
        ("pause", True, RunStop.pause),
    ],
)
def test_errors_in_a_row_past_their_limit_follow_on_error(
    on_error: str, automatic: bool, action: RunStop
) -> None:
    g = make(consecutiveErrorLimit=1, onError=on_error)
    errors = [Reading.error("timeout")] * 2
    found = replay(g, times(2), errors, run_seconds=3600, automatic=automatic)
    assert [(r.action, r.outcome) for r in found.stopped] == [(action, GateOutcome.error)]
    assert found.errors == 2


def test_a_dry_run_gate_is_replayed_as_if_it_were_enforced() -> None:
    series = values(0.1, 0.1)
    armed = replay(make(failureLimit=0), times(2), series, run_seconds=3600)
    trial = replay(make(failureLimit=0, dryRun=True), times(2), series, run_seconds=3600)
    assert trial == armed and len(trial.stopped) == 1


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="readings"):
        replay(make(), times(2), values(0.1), run_seconds=60)
    with pytest.raises(ValueError, match="run length"):
        replay(make(), times(1), values(0.1), run_seconds=0)
    assert replay(make(), [], [], run_seconds=60).runs == 0
