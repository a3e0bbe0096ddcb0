"""Judging gate readings: pure functions from measurements to verdicts and outcomes.

Semantics (documented in docs/gates.md, matched to Argo Rollouts where it is sound):

* One check gives one verdict. A value outside the threshold fails. An empty result or NaN follows
  the gate's ``onNoData`` (fail, inconclusive or pass). A provider error (unreachable Prometheus,
  PromQL error, timeout) is an ``Error`` verdict: it never counts as a failure.
* Counts are kept for the whole run. Failed checks beyond ``failureLimit`` make the gate Failed;
  inconclusive checks beyond ``inconclusiveLimit`` make it Inconclusive; provider errors *in a
  row* beyond ``consecutiveErrorLimit`` make it Error. Any non-error reading resets the error run.
* The worst outcome wins: Failed > Error > Inconclusive > Running > Pending.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from cutover.api import (
    CompareTest,
    Gate,
    GateOutcome,
    GateStatus,
    NoDataPolicy,
    Verdict,
)
from cutover.durations import parse_duration

# Mann-Whitney needs a few samples on each side before its p-value means anything.
MIN_SAMPLES = 3
# A measurement still under way is looked at again this soon (or at the interval, if shorter),
# so a gate whose Job takes seconds gets its verdict in seconds, not one interval later.
PENDING_RECHECK_SECONDS = 5.0


class ReadingKind(StrEnum):
    value = "value"
    no_data = "no_data"
    error = "error"
    # The measurement is still under way (a gate's Job still running): no verdict yet.
    pending = "pending"


@dataclass(frozen=True)
class Reading:
    """What the metric provider returned for one gate check."""

    kind: ReadingKind
    value: float | None = None
    baseline: float | None = None
    green_samples: tuple[float, ...] = field(default=())
    baseline_samples: tuple[float, ...] = field(default=())
    message: str = ""

    @classmethod
    def of(cls, value: float, baseline: float | None = None) -> Reading:
        return cls(ReadingKind.value, value=value, baseline=baseline)

    @classmethod
    def samples(cls, green: tuple[float, ...], baseline: tuple[float, ...]) -> Reading:
        return cls(ReadingKind.value, green_samples=green, baseline_samples=baseline)

    @classmethod
    def no_data(cls, message: str = "query returned no data") -> Reading:
        return cls(ReadingKind.no_data, message=message)

    @classmethod
    def error(cls, message: str) -> Reading:
        return cls(ReadingKind.error, message=message)

    @classmethod
    def pending(cls, message: str) -> Reading:
        return cls(ReadingKind.pending, message=message)


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    message: str
    p_value: float | None = None


_NO_DATA_VERDICT = {
    NoDataPolicy.fail: Verdict.failed,
    NoDataPolicy.inconclusive: Verdict.inconclusive,
    NoDataPolicy.pass_: Verdict.passed,
}


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _no_data(gate: Gate, why: str) -> Judgement:
    verdict = _NO_DATA_VERDICT[gate.on_no_data]
    return Judgement(verdict, f"{why} (onNoData: {gate.on_no_data.value})")


def judge(reading: Reading, gate: Gate) -> Judgement:
    """The verdict of one reading against one gate."""
    if reading.kind is ReadingKind.error:
        return Judgement(Verdict.error, f"provider error: {reading.message}")
    if reading.kind is ReadingKind.no_data:
        return _no_data(gate, reading.message or "query returned no data")
    if gate.compare is not None and gate.compare.test is CompareTest.mannwhitney:
        return _judge_mann_whitney(reading, gate)
    if reading.value is None or math.isnan(reading.value):
        return _no_data(gate, "query returned NaN")
    if gate.threshold is not None:
        judged = _judge_threshold(reading.value, gate)
        if reading.message:  # what the provider knows about the value (e.g. why a Job failed)
            return Judgement(judged.verdict, f"{judged.message}: {reading.message}")
        return judged
    return _judge_ratio(reading, gate)


def _judge_threshold(value: float, gate: Gate) -> Judgement:
    assert gate.threshold is not None
    low, high = gate.threshold.min, gate.threshold.max
    if high is not None and value > high:
        return Judgement(Verdict.failed, f"value {_fmt(value)} is above max {_fmt(high)}")
    if low is not None and value < low:
        return Judgement(Verdict.failed, f"value {_fmt(value)} is below min {_fmt(low)}")
    bounds = " and ".join(
        text
        for text in (
            f">= {_fmt(low)}" if low is not None else "",
            f"<= {_fmt(high)}" if high is not None else "",
        )
        if text
    )
    return Judgement(Verdict.passed, f"value {_fmt(value)} is {bounds}")


def _judge_ratio(reading: Reading, gate: Gate) -> Judgement:
    compare = gate.compare
    assert compare is not None and reading.value is not None
    if reading.baseline is None or math.isnan(reading.baseline):
        return _no_data(gate, "baseline query returned no data")
    bound = reading.baseline * (1 + compare.max_increase) + compare.tolerance
    detail = (
        f"value {_fmt(reading.value)} vs baseline {_fmt(reading.baseline)}"
        f" (bound {_fmt(bound)} = baseline x {_fmt(1 + compare.max_increase)}"
        f" + {_fmt(compare.tolerance)})"
    )
    verdict = Verdict.passed if reading.value <= bound else Verdict.failed
    return Judgement(verdict, detail)


def _judge_mann_whitney(reading: Reading, gate: Gate) -> Judgement:
    from scipy.stats import mannwhitneyu

    compare = gate.compare
    assert compare is not None
    green = [v for v in reading.green_samples if not math.isnan(v)]
    baseline = [v for v in reading.baseline_samples if not math.isnan(v)]
    if len(green) < MIN_SAMPLES or len(baseline) < MIN_SAMPLES:
        return _no_data(
            gate,
            f"too few samples for mannwhitney (green {len(green)}, baseline {len(baseline)},"
            f" need {MIN_SAMPLES} each)",
        )
    allowed = [b * (1 + compare.max_increase) + compare.tolerance for b in baseline]
    if len(set(green) | set(allowed)) == 1:
        # Every sample is equal: no evidence that green is worse, and scipy would divide by zero.
        p_value = 1.0
    else:
        p_value = float(mannwhitneyu(green, allowed, alternative="greater").pvalue)
    alpha = 1 - compare.confidence
    worse = p_value < alpha
    detail = (
        f"mannwhitney p={p_value:.4g} (green {'is' if worse else 'is not'} significantly above"
        f" baseline x {_fmt(1 + compare.max_increase)} at {compare.confidence:.0%} confidence;"
        f" {len(green)} vs {len(baseline)} samples)"
    )
    return Judgement(Verdict.failed if worse else Verdict.passed, detail, p_value=p_value)


def record(
    status: GateStatus, gate: Gate, reading: Reading, judgement: Judgement, now: datetime
) -> GateStatus:
    """The gate's status after one check; the input is not modified."""
    new = status.edit_copy()
    new.last_verdict = judgement.verdict
    new.last_message = judgement.message
    new.last_evaluated_at = now
    new.next_check_at = now + timedelta(seconds=parse_duration(gate.interval))
    new.last_p_value = judgement.p_value
    if reading.value is not None:
        new.last_value = reading.value
    if reading.baseline is not None:
        new.last_baseline = reading.baseline
    if judgement.verdict is Verdict.error:
        new.errors += 1
        new.consecutive_errors += 1
    else:
        new.consecutive_errors = 0
        if judgement.verdict is Verdict.passed:
            new.passed += 1
            new.last_passed_at = now
        elif judgement.verdict is Verdict.failed:
            new.failed += 1
        else:
            new.inconclusive += 1
    new.outcome = outcome(new, gate)
    return new


def wait(status: GateStatus, gate: Gate, reading: Reading, now: datetime) -> GateStatus:
    """The gate's status while its measurement is still under way: no verdict is counted, the
    message says what it waits for, and the next look comes soon."""
    recheck = min(parse_duration(gate.interval), PENDING_RECHECK_SECONDS)
    later = now + timedelta(seconds=recheck)
    return status.model_copy(update={"last_message": reading.message, "next_check_at": later})


def outcome(status: GateStatus, gate: Gate) -> GateOutcome:
    if status.failed - status.excused_failed > gate.failure_limit:
        return GateOutcome.failed
    if status.consecutive_errors > gate.consecutive_error_limit:
        return GateOutcome.error
    if status.inconclusive - status.excused_inconclusive > gate.inconclusive_limit:
        return GateOutcome.inconclusive
    if status.passed + status.failed + status.inconclusive + status.errors == 0:
        return GateOutcome.pending
    return GateOutcome.running


_SEVERITY = [
    GateOutcome.skipped,
    GateOutcome.passed,
    GateOutcome.pending,
    GateOutcome.running,
    GateOutcome.inconclusive,
    GateOutcome.error,
    GateOutcome.failed,
]


def excuse(status: GateStatus, gate: Gate) -> GateStatus:
    """A person let a held run go on: the checks so far no longer count towards the limits."""
    new = status.edit_copy()
    new.excused_failed = new.failed
    new.excused_inconclusive = new.inconclusive
    new.consecutive_errors = 0
    new.outcome = outcome(new, gate)
    return new


def severity(outcome: GateOutcome) -> int:
    """Rank of an outcome: the worst gate decides what the run does."""
    return _SEVERITY.index(outcome)
