"""Durations users write: one so long that "now" plus it is no date is refused, not a crash."""

from __future__ import annotations

import pytest

from cutover.api import SpecInvalid, parse_spec
from cutover.durations import DurationError, parse_duration

from .specs import raw


def test_a_duration_past_a_hundred_years_is_refused_with_the_maximum_named() -> None:
    assert parse_duration("876000h") == 876000 * 3600.0
    with pytest.raises(DurationError, match="876000h"):
        parse_duration("70000000h")


def test_a_spec_with_such_a_deadline_is_invalid_and_says_which_field() -> None:
    with pytest.raises(SpecInvalid) as invalid:
        parse_spec({**raw(), "progressDeadline": "70000000h"})
    assert any("progressDeadline" in p and "maximum" in p for p in invalid.value.problems)
