from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from cutover.api import Gate, GateOutcome, GateStatus, Verdict
from cutover.core.gates import MIN_SAMPLES, Reading, ReadingKind, judge, outcome, record

from .specs import gate

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make(**changes: object) -> Gate:
    return Gate.model_validate(gate(**changes))


JUDGEMENTS = [
    # (gate changes, reading, verdict, words in the message)
    ({}, Reading.of(0.005), Verdict.passed, "0.005 is <= 0.01"),
    ({}, Reading.of(0.01), Verdict.passed, "<= 0.01"),
    ({}, Reading.of(0.02), Verdict.failed, "0.02 is above max 0.01"),
    ({"threshold": {"min": 0.9}}, Reading.of(0.5), Verdict.failed, "0.5 is below min 0.9"),
    ({"threshold": {"min": 0.9, "max": 1.0}}, Reading.of(0.95), Verdict.passed, ">= 0.9 and <= 1"),
    ({}, Reading.of(math.inf), Verdict.failed, "above max"),
    ({"onNoData": "fail"}, Reading.no_data(), Verdict.failed, "onNoData: fail"),
    ({"onNoData": "inconclusive"}, Reading.no_data(), Verdict.inconclusive, "no data"),
    ({"onNoData": "pass"}, Reading.no_data(), Verdict.passed, "onNoData: pass"),
    ({"onNoData": "fail"}, Reading.of(math.nan), Verdict.failed, "NaN"),
    ({"onNoData": "pass"}, Reading.of(math.nan), Verdict.passed, "NaN"),
    ({}, Reading.error("connection refused"), Verdict.error, "connection refused"),
    ({"onNoData": "pass"}, Reading.error("timeout"), Verdict.error, "timeout"),
]


@pytest.mark.parametrize(("changes", "reading", "verdict", "words"), JUDGEMENTS)
def test_one_reading_gives_the_documented_verdict(
    changes: dict[str, object], reading: Reading, verdict: Verdict, words: str
) -> None:
    judgement = judge(reading, make(**changes))
    assert judgement.verdict is verdict
    assert words in judgement.message


COMPARE = {"threshold": None, "compare": {"baseline": "blue_query", "maxIncrease": 0.2}}


@pytest.mark.parametrize(
    ("value", "baseline", "tolerance", "verdict"),
    [
        (0.10, 0.10, 0.0, Verdict.passed),
        (0.12, 0.10, 0.0, Verdict.passed),  # exactly baseline * 1.2
        (0.13, 0.10, 0.0, Verdict.failed),
        (0.13, 0.10, 0.02, Verdict.passed),  # the absolute tolerance widens the bound
        (0.0, 0.0, 0.0, Verdict.passed),
    ],
)
def test_a_ratio_comparison_bounds_green_by_blue(
    value: float, baseline: float, tolerance: float, verdict: Verdict
) -> None:
    compare = dict(COMPARE["compare"], tolerance=tolerance)  # type: ignore[arg-type]
    judgement = judge(Reading.of(value, baseline), make(threshold=None, compare=compare))
    assert judgement.verdict is verdict
    assert "baseline" in judgement.message


def test_a_comparison_without_a_baseline_follows_on_no_data() -> None:
    judgement = judge(Reading.of(0.1, None), make(onNoData="fail", **COMPARE))
    assert judgement.verdict is Verdict.failed and "baseline" in judgement.message


def test_mann_whitney_flags_a_clearly_worse_green_and_records_the_p_value() -> None:
    compare = {"baseline": "q", "maxIncrease": 0.0, "test": "mannwhitney", "confidence": 0.95}
    worse = Reading.samples((0.5, 0.52, 0.55, 0.51, 0.53), (0.1, 0.11, 0.09, 0.1, 0.12))
    judgement = judge(worse, make(threshold=None, compare=compare))
    assert judgement.verdict is Verdict.failed
    assert judgement.p_value is not None and judgement.p_value < 0.05

    same = Reading.samples((0.1, 0.11, 0.09, 0.1, 0.12), (0.1, 0.11, 0.09, 0.1, 0.12))
    judgement = judge(same, make(threshold=None, compare=compare))
    assert judgement.verdict is Verdict.passed and judgement.p_value is not None
    assert judgement.p_value > 0.05


def test_mann_whitney_with_constant_equal_series_passes() -> None:
    compare = {"baseline": "q", "maxIncrease": 0.0, "test": "mannwhitney"}
    flat = Reading.samples((0.0,) * 5, (0.0,) * 5)
    assert judge(flat, make(threshold=None, compare=compare)).verdict is Verdict.passed


def test_mann_whitney_with_too_few_samples_is_no_data() -> None:
    compare = {"baseline": "q", "maxIncrease": 0.0, "test": "mannwhitney"}
    thin = Reading.samples((0.5,), (0.1, 0.1, 0.1))
    judgement = judge(thin, make(threshold=None, compare=compare, onNoData="inconclusive"))
    assert judgement.verdict is Verdict.inconclusive and "too few samples" in judgement.message


def run(gate_def: Gate, readings: list[Reading]) -> GateStatus:
    status = GateStatus(name=gate_def.name)
    for i, reading in enumerate(readings):
        status = record(status, gate_def, reading, judge(reading, gate_def), T0 + timedelta(i))
    return status


BAD, GOOD, NONE, ERR = Reading.of(1.0), Reading.of(0.0), Reading.no_data(), Reading.error("down")

OUTCOMES = [
    # failureLimit 1: the second failure (more than one) fails the gate.
    ({"failureLimit": 1}, [BAD], GateOutcome.running),
    ({"failureLimit": 1}, [BAD, GOOD, BAD], GateOutcome.failed),
    ({"failureLimit": 0}, [BAD], GateOutcome.failed),
    # Failures are counted over the run, not in a row.
    ({"failureLimit": 2}, [BAD, GOOD, BAD, GOOD, BAD], GateOutcome.failed),
    ({"inconclusiveLimit": 2}, [NONE, NONE], GateOutcome.running),
    ({"inconclusiveLimit": 2}, [NONE, NONE, NONE], GateOutcome.inconclusive),
    # Errors count only in a row, and a good reading resets the run.
    ({"consecutiveErrorLimit": 2}, [ERR, ERR, GOOD, ERR, ERR], GateOutcome.running),
    ({"consecutiveErrorLimit": 2}, [ERR, ERR, ERR], GateOutcome.error),
    # Errors never count as failures.
    ({"failureLimit": 0, "consecutiveErrorLimit": 10}, [ERR] * 5, GateOutcome.running),
    # A no-data reading is not an error either: it resets the error run.
    ({"consecutiveErrorLimit": 1, "onNoData": "pass"}, [ERR, NONE, ERR], GateOutcome.running),
    ({}, [], GateOutcome.pending),
]


@pytest.mark.parametrize(("changes", "readings", "expected"), OUTCOMES)
def test_limits_turn_a_series_of_checks_into_an_outcome(
    changes: dict[str, object], readings: list[Reading], expected: GateOutcome
) -> None:
    assert run(make(**changes), readings).outcome is expected


def test_a_record_keeps_counts_values_and_schedules_the_next_check() -> None:
    gate_def = make(interval="30s", failureLimit=5)
    status = run(gate_def, [GOOD, BAD, NONE, ERR])
    assert (status.passed, status.failed, status.inconclusive, status.errors) == (1, 1, 1, 1)
    assert status.consecutive_errors == 1
    assert status.last_value == 1.0  # the error reading carries no value: the last one stays
    assert status.last_passed_at == T0
    assert status.next_check_at == T0 + timedelta(3) + timedelta(seconds=30)
    assert status.last_verdict is Verdict.error


def test_outcome_is_recomputed_from_counts() -> None:
    gate_def = make(failureLimit=0)
    assert outcome(GateStatus(name="x", failed=1), gate_def) is GateOutcome.failed


# --- what a person reads, and the edges of each rule ----------------------------------------


@pytest.mark.parametrize(
    ("changes", "reading", "message"),
    [
        ({}, Reading.no_data(), "query returned no data (onNoData: inconclusive)"),
        # A provider that says nothing about the emptiness still gets a message a person reads.
        (
            {},
            Reading(ReadingKind.no_data, message=""),
            "query returned no data (onNoData: inconclusive)",
        ),
        ({"onNoData": "fail"}, Reading.of(math.nan), "query returned NaN (onNoData: fail)"),
        ({"threshold": {"min": 0.9}}, Reading.of(0.95), "value 0.95 is >= 0.9"),
        ({"threshold": {"max": 0.01}}, Reading.of(0.005), "value 0.005 is <= 0.01"),
        ({}, Reading.error("connection refused"), "provider error: connection refused"),
        (
            {
                "threshold": None,
                "compare": {"baseline": "q", "maxIncrease": 0.2, "tolerance": 0.02},
            },
            Reading.of(0.13, 0.1),
            "value 0.13 vs baseline 0.1 (bound 0.14 = baseline x 1.2 + 0.02)",
        ),
        (
            {
                "threshold": None,
                "onNoData": "fail",
                "compare": {"baseline": "q", "maxIncrease": 0.2},
            },
            Reading.of(0.13, None),
            "baseline query returned no data (onNoData: fail)",
        ),
    ],
)
def test_each_verdict_explains_itself_in_words(
    changes: dict[str, object], reading: Reading, message: str
) -> None:
    assert judge(reading, make(**changes)).message == message


def test_a_value_exactly_on_a_bound_passes() -> None:
    both = make(threshold={"min": 0.9, "max": 1.0})
    assert judge(Reading.of(0.9), both).verdict is Verdict.passed
    assert judge(Reading.of(1.0), both).verdict is Verdict.passed


MANN_WHITNEY = {"baseline": "q", "maxIncrease": 0.0, "test": "mannwhitney", "confidence": 0.95}


def mann_whitney(green: tuple[float, ...], baseline: tuple[float, ...], **compare: object):  # type: ignore[no-untyped-def]
    return judge(
        Reading.samples(green, baseline),
        make(threshold=None, onNoData="inconclusive", compare=dict(MANN_WHITNEY, **compare)),
    )


def test_mann_whitney_judges_from_exactly_the_minimum_number_of_samples() -> None:
    enough = (0.1,) * MIN_SAMPLES
    judgement = mann_whitney(enough, enough)
    assert judgement.verdict is Verdict.passed and judgement.p_value == 1.0
    assert mann_whitney(enough[:-1], enough).verdict is Verdict.inconclusive
    assert mann_whitney(enough, enough[:-1]).verdict is Verdict.inconclusive


def test_mann_whitney_allows_green_up_to_max_increase_and_tolerance_above_blue() -> None:
    blue = (0.1, 0.1, 0.1, 0.1, 0.1)
    # 15 % above blue: allowed by maxIncrease 0.2 (bound 0.12), not by 0.0.
    green = (0.115, 0.116, 0.114, 0.115, 0.117)
    assert mann_whitney(green, blue, maxIncrease=0.2).verdict is Verdict.passed
    assert mann_whitney(green, blue, maxIncrease=0.0).verdict is Verdict.failed
    # An absolute tolerance widens the bound the same way.
    assert mann_whitney(green, blue, tolerance=0.02).verdict is Verdict.passed
    # 80 % above blue is beyond maxIncrease 0.2 (bound 0.12; a bound of 2.2x would pass it).
    far = (0.18, 0.181, 0.179, 0.18, 0.182)
    breach = mann_whitney(far, blue, maxIncrease=0.2)
    assert breach.verdict is Verdict.failed
    assert "significantly above baseline x 1.2 at 95% confidence" in breach.message


def test_mann_whitney_fails_two_flat_series_far_apart_and_passes_a_better_green() -> None:
    worse = mann_whitney((0.5,) * 5, (0.1,) * 5)
    assert worse.verdict is Verdict.failed and worse.p_value is not None and worse.p_value < 0.05
    assert worse.message.startswith(f"mannwhitney p={worse.p_value:.4g} (green is significantly")
    assert worse.message.endswith("above baseline x 1 at 95% confidence; 5 vs 5 samples)")
    # The test is one-sided: a green clearly *below* blue is not a breach.
    better = mann_whitney((0.01, 0.02, 0.01, 0.015, 0.012), (0.1, 0.11, 0.09, 0.1, 0.12))
    assert better.verdict is Verdict.passed and "green is not significantly above" in better.message


def test_a_record_counts_every_check_and_keeps_the_comparison_figures() -> None:
    gate_def = make(failureLimit=5, consecutiveErrorLimit=5)
    status = run(gate_def, [GOOD, GOOD, ERR, ERR])
    assert (status.passed, status.errors, status.consecutive_errors) == (2, 2, 2)

    compare = make(threshold=None, compare={"baseline": "q", "maxIncrease": 0.2})
    status = run(compare, [Reading.of(0.1, 0.1), Reading.of(0.1, None)])
    assert status.last_baseline == 0.1  # a check without a baseline keeps the last one

    mw = make(threshold=None, compare=MANN_WHITNEY)
    sampled = Reading.samples((0.5,) * 5, (0.1,) * 5)
    status = record(GateStatus(name="x"), mw, sampled, judge(sampled, mw), T0)
    assert status.last_p_value is not None and status.last_p_value < 0.05


def test_excused_checks_no_longer_count_and_any_check_means_running_not_pending() -> None:
    gate_def = make(failureLimit=1, inconclusiveLimit=1, consecutiveErrorLimit=4)
    excused = GateStatus(name="x", failed=2, excused_failed=2, passed=1)
    assert outcome(excused, gate_def) is GateOutcome.running
    for counts in (
        {"errors": 1, "consecutive_errors": 1},
        {"inconclusive": 1},
        {"passed": 1, "failed": 1},
    ):
        assert outcome(GateStatus(name="x", **counts), gate_def) is GateOutcome.running, counts


def test_an_empty_result_without_a_provider_message_reads_as_no_data() -> None:
    # Built here, not in a parametrize list: the default message is part of what is tested.
    assert judge(Reading.no_data(), make()).message == (
        "query returned no data (onNoData: inconclusive)"
    )


def test_a_gate_with_only_inconclusive_checks_and_errors_is_running_not_pending() -> None:
    gate_def = make(inconclusiveLimit=1, consecutiveErrorLimit=4)
    mixed = GateStatus(name="x", inconclusive=1, errors=1, consecutive_errors=1)
    assert outcome(mixed, gate_def) is GateOutcome.running
