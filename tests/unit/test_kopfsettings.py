"""Kopf's knobs the operator sets (cutover.kopfsettings): measured defaults, each settable
through the environment, and a bad value stops the start with a message naming the variable
instead of a traceback.

The worker's idle time is short by default: at 1,000 runs Kopf's default (5 s) kept over a
thousand workers alive at once while the controllers updated Deployments (docs/performance.md).
"""

from __future__ import annotations

import kopf
import pytest

from cutover.kopfsettings import (
    WATCH_LIST_CHUNK,
    WATCH_TIMEOUT_SECONDS,
    WORKER_IDLE_SECONDS,
    apply_environment,
    worker_idle_seconds,
)
from cutover.scaleout import ConfigurationError


def _applied(environ: dict[str, str]) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    apply_environment(settings, environ)
    return settings


def test_a_worker_idles_less_than_kopfs_default_unless_told_otherwise() -> None:
    assert (
        worker_idle_seconds({})
        == WORKER_IDLE_SECONDS
        < kopf.OperatorSettings().queueing.idle_timeout
    )
    assert worker_idle_seconds({"CUTOVER_WORKER_IDLE_SECONDS": " 2.5 "}) == 2.5


def test_without_overrides_watches_list_in_pages_and_end_after_the_timeout() -> None:
    settings = _applied({})
    assert settings.watching.chunk_size == WATCH_LIST_CHUNK
    assert settings.watching.server_timeout == WATCH_TIMEOUT_SECONDS
    assert settings.queueing.idle_timeout == WORKER_IDLE_SECONDS


def test_each_variable_sets_its_knob() -> None:
    settings = _applied(
        {
            "CUTOVER_WATCH_TIMEOUT": "60",
            "CUTOVER_WATCH_LIST_CHUNK": "0",
            "CUTOVER_WORKER_IDLE_SECONDS": "5",
        }
    )
    assert settings.watching.server_timeout == 60
    assert settings.watching.chunk_size == 0  # one response, as Kopf's default
    assert settings.queueing.idle_timeout == 5.0


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "inf"])
def test_a_value_that_is_no_positive_number_of_seconds_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match="CUTOVER_WORKER_IDLE_SECONDS"):
        worker_idle_seconds({"CUTOVER_WORKER_IDLE_SECONDS": value})


@pytest.mark.parametrize("name", ["CUTOVER_WATCH_TIMEOUT", "CUTOVER_WATCH_LIST_CHUNK"])
@pytest.mark.parametrize("value", ["-1", "200 objects", "1.5", "٣"])
def test_a_count_that_is_no_whole_number_is_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{name} must be a whole number"):
        _applied({name: value})
