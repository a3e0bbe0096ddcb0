"""Go/Kubernetes-style durations (``30s``, ``2m``, ``1h30m``, ``500ms``), as users write them."""

from __future__ import annotations

import re
from datetime import datetime

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
DURATION_PATTERN = r"^((\d+(\.\d+)?)(ms|s|m|h))+$|^0$"


class DurationError(ValueError):
    pass


# Far past any pause, deadline or window anyone means, and short enough that "now" plus it
# stays a date (Python's datetime ends in year 9999; 70,000,000h overflowed it).
MAX_DURATION_SECONDS = 100 * 365 * 24 * 3600.0


def parse_duration(text: str) -> float:
    """Seconds in ``text``; negative or unitless values (other than ``0``) are refused."""
    stripped = text.strip()
    if stripped == "0":
        return 0.0
    if stripped.startswith("-"):
        raise DurationError(f"duration {text!r} is negative")
    position = 0
    total = 0.0
    for match in _PART.finditer(stripped):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position == 0 or position != len(stripped):
        raise DurationError(
            f"cannot parse duration {text!r}: use a number with a unit, e.g. 30s, 2m, 1h30m"
        )
    if total > MAX_DURATION_SECONDS:
        limit = format_duration(MAX_DURATION_SECONDS)
        raise DurationError(f"duration {text!r} is longer than the maximum, {limit} (100 years)")
    return total


def format_duration(seconds: float) -> str:
    """The shortest Go-style spelling of ``seconds`` (whole seconds), for messages and plans."""
    whole = round(seconds)
    if whole == 0:
        return "0s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if secs:
        parts.append(f"{secs}s")
    return "".join(parts)


# A wake-up timed exactly at a deadline can run a hair early (clock reads, float rounding),
# find the deadline not yet passed and cost a whole poll: wake just past it instead.
_JUST_PAST = 0.05


def seconds_until_past(end: datetime, now: datetime) -> float:
    """Seconds to sleep from ``now`` to wake just after ``end`` (negative once it has passed)."""
    return (end - now).total_seconds() + _JUST_PAST
