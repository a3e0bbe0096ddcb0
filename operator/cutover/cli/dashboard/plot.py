"""SVG plots drawn on the server: green's weight over time, and a gate's values beside its bounds.

Plain SVG markup (no script, no external font): it updates with the rest of the page and reads
the same offline. Weights are steps (a weight holds until the next one); gate values are points
joined by lines, their bounds dashed steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from html import escape

from cutover.cli.dashboard.history import GatePoint, WeightPoint

WIDTH = 640
HEIGHT = 170
_LEFT = 48
_RIGHT = 12
_TOP = 12
_BOTTOM = 26


def _x(moment: datetime, start: datetime, end: datetime) -> float:
    span = max((end - start).total_seconds(), 1e-9)
    share = (moment - start).total_seconds() / span
    return _LEFT + max(0.0, min(1.0, share)) * (WIDTH - _LEFT - _RIGHT)


def _y(value: float, low: float, high: float) -> float:
    share = (value - low) / (high - low) if high > low else 0.5
    return _TOP + (1 - max(0.0, min(1.0, share))) * (HEIGHT - _TOP - _BOTTOM)


def _clock(moment: datetime) -> str:
    return moment.strftime("%H:%M:%S")


def _number(value: float) -> str:
    return f"{value:.4g}"


def _frame(title: str, start: datetime, end: datetime, ticks: Sequence[tuple[float, str]]) -> str:
    bottom = HEIGHT - _BOTTOM
    parts = [
        f"<title>{escape(title)}</title>",
        f'<line class="axis" x1="{_LEFT}" y1="{bottom}" x2="{WIDTH - _RIGHT}" y2="{bottom}"/>',
        f'<line class="axis" x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{bottom}"/>',
        f'<text class="tick" x="{_LEFT}" y="{HEIGHT - 8}">{_clock(start)}</text>',
        f'<text class="tick end" x="{WIDTH - _RIGHT}" y="{HEIGHT - 8}">{_clock(end)}</text>',
    ]
    for y, label in ticks:
        parts.append(
            f'<line class="grid" x1="{_LEFT}" y1="{y:.1f}" x2="{WIDTH - _RIGHT}" y2="{y:.1f}"/>'
        )
        parts.append(f'<text class="tick left" x="{_LEFT - 6}" y="{y + 4:.1f}">{label}</text>')
    return "".join(parts)


def _svg(kind: str, label: str, inner: str) -> str:
    return (
        f'<svg class="plot {kind}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"'
        f' aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">{inner}</svg>'
    )


def _steps(
    points: Sequence[tuple[datetime, float]],
    start: datetime,
    end: datetime,
    low: float,
    high: float,
) -> str:
    """An SVG path holding each value until the next, the last one until ``end``."""
    if not points:
        return ""
    first_time, first_value = points[0]
    commands = [f"M{_x(first_time, start, end):.1f} {_y(first_value, low, high):.1f}"]
    for moment, value in points[1:]:
        commands.append(f"H{_x(moment, start, end):.1f} V{_y(value, low, high):.1f}")
    commands.append(f"H{_x(end, start, end):.1f}")
    return " ".join(commands)


def weight_plot(points: Sequence[WeightPoint], start: datetime, end: datetime) -> str:
    """Green's share of traffic from ``start`` to ``end``."""
    ticks = [(_y(v, 0, 100), f"{v}%") for v in (0, 50, 100)]
    path = _steps([(p.time, float(p.weight)) for p in points], start, end, 0, 100)
    current = points[-1].weight if points else 0
    inner = _frame("green weight over time", start, end, ticks)
    if path:
        inner += f'<path class="weight" d="{path}"/>'
    label = f"green weight over time, now {current}%"
    return _svg("weight-plot", label, inner)


def gate_plot(name: str, points: Sequence[GatePoint], start: datetime, end: datetime) -> str:
    """One gate's values, with its lower and upper bounds as they were at each check."""
    values = [p.value for p in points if p.value is not None and math.isfinite(p.value)]
    lows = [p.low for p in points if p.low is not None]
    highs = [p.high for p in points if p.high is not None]
    seen = values + lows + highs
    low, high = (min(seen), max(seen)) if seen else (0.0, 1.0)
    pad = (high - low) * 0.15 or abs(high) * 0.15 or 1.0
    low, high = low - pad, high + pad
    if min(seen, default=0.0) >= 0 > low:
        low = 0.0  # rates and ratios never go below zero: do not draw an axis that does
    ticks = [(_y(v, low, high), _number(v)) for v in (low, (low + high) / 2, high)]
    inner = _frame(f"gate {name} over time", start, end, ticks)
    for css, series in (("bound low", "low"), ("bound high", "high")):
        bound = [(p.time, getattr(p, series)) for p in points if getattr(p, series) is not None]
        path = _steps(bound, start, end, low, high)
        if path:
            inner += f'<path class="{css}" d="{path}"/>'
    finite = [(p.time, p.value) for p in points if p.value is not None and math.isfinite(p.value)]
    if finite:
        line = " ".join(f"{_x(t, start, end):.1f},{_y(v, low, high):.1f}" for t, v in finite)
        inner += f'<polyline class="value" points="{line}"/>'
        for t, v in finite:
            inner += (
                f'<circle class="value" cx="{_x(t, start, end):.1f}" cy="{_y(v, low, high):.1f}"'
                f' r="3"><title>{_clock(t)}: {_number(v)}</title></circle>'
            )
    for p in points:
        if p.value is None or not math.isfinite(p.value):
            x = _x(p.time, start, end)
            inner += (
                f'<line class="nodata" x1="{x:.1f}" y1="{_TOP}" x2="{x:.1f}"'
                f' y2="{HEIGHT - _BOTTOM}"><title>{_clock(p.time)}: no data</title></line>'
            )
    latest = _number(finite[-1][1]) if finite else "no value yet"
    return _svg("gate-plot", f"gate {name} over time, latest {latest}", inner)
