"""How long Kopf keeps an idle object's worker (handlers.worker_idle_seconds): short by default,
since at 1,000 runs Kopf's default (5 s) kept over a thousand workers alive at once while the
controllers updated Deployments (docs/performance.md); settable, and a bad value stops the start
with a message instead of a traceback."""

from __future__ import annotations

import kopf
import pytest

from cutover.handlers import WORKER_IDLE_SECONDS, worker_idle_seconds
from cutover.scaleout import ConfigurationError


def test_a_worker_idles_less_than_kopfs_default_unless_told_otherwise() -> None:
    assert (
        worker_idle_seconds({})
        == WORKER_IDLE_SECONDS
        < kopf.OperatorSettings().queueing.idle_timeout
    )
    assert worker_idle_seconds({"CUTOVER_WORKER_IDLE_SECONDS": " 2.5 "}) == 2.5


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "inf"])
def test_a_value_that_is_no_positive_number_of_seconds_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match="CUTOVER_WORKER_IDLE_SECONDS"):
        worker_idle_seconds({"CUTOVER_WORKER_IDLE_SECONDS": value})
