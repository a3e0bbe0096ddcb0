"""When a Migration gets a daemon, and when a new run may start (core/activity.py)."""

from __future__ import annotations

import pytest

from cutover.api import MigrationStatus, Phase
from cutover.core.activity import may_start, needs_attention
from cutover.core.machine import Request, RequestVerb

ENDED = (Phase.succeeded, Phase.rolled_back, Phase.failed)


@pytest.mark.parametrize("phase", [None, Phase.pending, Phase.progressing, Phase.paused])
def test_a_migration_that_has_not_ended_always_has_a_daemon(phase: Phase | None) -> None:
    assert needs_attention(phase, observed_generation=3, generation=3, has_request=False)


@pytest.mark.parametrize("phase", ENDED)
def test_an_ended_migration_costs_nothing_until_its_spec_changes_or_a_request_arrives(
    phase: Phase,
) -> None:
    assert not needs_attention(phase, observed_generation=3, generation=3, has_request=False)
    assert needs_attention(phase, observed_generation=3, generation=4, has_request=False)
    # Any request, even one the reconciler will only clear (unknown verb, handled id).
    assert needs_attention(phase, observed_generation=3, generation=3, has_request=True)


def test_a_pending_migration_or_a_new_spec_may_start_a_run() -> None:
    assert may_start(MigrationStatus(), generation=1, request=None)
    ended = MigrationStatus(phase=Phase.succeeded, observed_generation=1)
    assert not may_start(ended, generation=1, request=None)
    assert may_start(ended, generation=2, request=None)


def test_only_a_retry_not_yet_handled_restarts_an_ended_run() -> None:
    ended = MigrationStatus(phase=Phase.rolled_back, observed_generation=1, last_request="r1")
    assert may_start(ended, 1, Request(id="r2", verb=RequestVerb.retry))
    assert not may_start(ended, 1, Request(id="r1", verb=RequestVerb.retry))
    assert not may_start(ended, 1, Request(id="r3", verb=RequestVerb.promote))
