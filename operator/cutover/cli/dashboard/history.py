"""What the dashboard remembers of each run: green's weight and every gate's value and bounds
over time.

Seeded from what the status holds (its history entries carry weight and time; each gate its last
value), then grown from every change the watch delivers. Kept in memory only: a restarted
dashboard starts again from the status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cutover import api
from cutover.api import Gate, GateStatus, MigrationSpec, MigrationStatus
from cutover.cli.report import current_run

# Per series: enough for hours of checks every few seconds, bounded so a long-lived dashboard
# does not grow without end.
POINT_LIMIT = 2000

Key = tuple[str, str]  # namespace, name


@dataclass(frozen=True)
class WeightPoint:
    time: datetime
    weight: int


@dataclass(frozen=True)
class GatePoint:
    time: datetime
    value: float | None  # None: the check returned no data
    low: float | None  # the bounds in force at that check (a ratio gate's move with its baseline)
    high: float | None


@dataclass
class Track:
    """One run of one Migration."""

    run_id: str | None
    weights: list[WeightPoint] = field(default_factory=list)
    gates: dict[str, list[GatePoint]] = field(default_factory=dict)
    started: datetime | None = None
    # History entries already drawn (several may share a time: a run starts at 0 % and sets its
    # first weight in the same second).
    merged: set[tuple[datetime, int, int, str]] = field(default_factory=set)

    def add_weight(self, point: WeightPoint) -> None:
        if self.weights and self.weights[-1].time > point.time:
            return  # an entry older than what we have: already drawn
        if self.weights and self.weights[-1].weight == point.weight:
            return
        self.weights.append(point)
        del self.weights[:-POINT_LIMIT]

    def add_gate(self, name: str, point: GatePoint) -> None:
        series = self.gates.setdefault(name, [])
        if series and series[-1].time >= point.time:
            return
        series.append(point)
        del series[:-POINT_LIMIT]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def bounds(gate: Gate | None, record: GateStatus) -> tuple[float | None, float | None]:
    """The (low, high) a gate's value had to stay within at its last check."""
    if gate is None or gate.template_ref is not None:  # a template not resolved (yet)
        return None, None
    if gate.threshold is not None:
        return gate.threshold.min, gate.threshold.max
    if gate.compare is None or record.last_baseline is None:
        return None, None
    if gate.compare.test is not api.CompareTest.ratio:
        return None, None  # a statistical test has no bound on the value itself
    high = record.last_baseline * (1 + gate.compare.max_increase) + gate.compare.tolerance
    return None, high


def _spec(raw: Mapping[str, Any]) -> MigrationSpec | None:
    try:
        return api.parse_spec(raw)
    except api.SpecInvalid:
        return None


class Histories:
    """Every watched Migration's current run, by (namespace, name)."""

    def __init__(self) -> None:
        self._tracks: dict[Key, Track] = {}

    def get(self, key: Key) -> Track | None:
        return self._tracks.get(key)

    def forget(self, key: Key) -> None:
        self._tracks.pop(key, None)

    def observe(self, obj: Mapping[str, Any], now: datetime) -> Track | None:
        """Add what ``obj`` (a Migration as the API server returns it) shows at ``now``; None
        when its status cannot be read (the page says so from the report)."""
        metadata = obj.get("metadata") or {}
        key = (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))
        try:
            status = api.parse_status(obj.get("status"))
        except api.StatusCorrupt:
            return None
        track = self._tracks.get(key)
        if track is None or track.run_id != status.run_id:
            track = Track(run_id=status.run_id)
            self._tracks[key] = track
        spec = _spec(obj.get("spec") or {})
        self._record(track, spec, status, now)
        return track

    @staticmethod
    def _record(
        track: Track, spec: MigrationSpec | None, status: MigrationStatus, now: datetime
    ) -> None:
        if status.started_at is not None:
            track.started = _aware(status.started_at)
        for entry in current_run(status.history):
            seen = (_aware(entry.time), entry.step, entry.weight, entry.reason)
            if seen not in track.merged:
                track.merged.add(seen)
                track.add_weight(WeightPoint(seen[0], entry.weight))
        # The status's own weight may be newer than its last history entry.
        track.add_weight(WeightPoint(now, status.weight))
        # A gate from a template has the bounds its run resolved (recorded in status).
        resolved = {r.gate.name: r.gate for r in status.resolved_gates}
        gates = {
            g.name: resolved.get(g.name, g) if g.template_ref else g
            for g in (spec.gates if spec else [])
        }
        for record in status.gates:
            if record.last_evaluated_at is None:
                continue
            when = _aware(record.last_evaluated_at)
            if track.started is not None and when < track.started:
                continue  # a check of an earlier run
            low, high = bounds(gates.get(record.name), record)
            track.add_gate(record.name, GatePoint(when, record.last_value, low, high))
