"""Kopf logs every successful handler call at INFO. The watch handlers run for every event of
every Deployment, Job and HPA in the cluster, so their successes are dropped; everything else
Kopf says about handlers, and every failure, still reaches the log."""

from __future__ import annotations

import logging

import pytest

from cutover import handlers


def _passes(message: str) -> bool:
    record = logging.LogRecord("kopf.objects", logging.INFO, __file__, 0, message, None, None)
    return handlers.QuietWatchHandlers(handlers._WATCH_HANDLERS).filter(record)


@pytest.mark.parametrize("handler", ["deployments", "hook_jobs", "autoscalers", "poke"])
def test_a_watch_handlers_success_is_not_logged(handler: str) -> None:
    assert not _passes(f"Handler {handler!r} succeeded.")


@pytest.mark.parametrize(
    "message",
    [
        "Handler 'drive' succeeded.",  # the daemon: once per run, worth a line
        "Handler 'restore_on_delete' succeeded.",
        "Handler 'deployments' failed with an exception and will try again in 1 seconds: boom",
    ],
)
def test_everything_else_is_logged(message: str) -> None:
    assert _passes(message)
