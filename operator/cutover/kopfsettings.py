"""Kopf's knobs that the operator sets, each with a default measured here and an environment
variable (``extraEnv`` in the chart) to override it. A malformed value stops the start with a
message naming the variable, rather than a traceback or a guess.
"""

from __future__ import annotations

from collections.abc import Mapping

import kopf

from cutover import environment

# How long a watch request may stay open before the API server ends it and Kopf starts another
# (0: the API server's own default).
WATCH_TIMEOUT_SECONDS = 300
# Objects per page of a watch's initial listing. Kopf's default lists a kind in one response:
# started among 2,000 Deployments, the operator's RSS stayed 9 MiB higher than with pages of
# 200 (117 -> 108 MiB; a process's RSS stays near the highest it reached, and the whole list,
# its text and its parsed objects, was alive at once; bench/listing.py). Pages cost one LIST
# request each. 0 lists in one response, as Kopf's default.
WATCH_LIST_CHUNK = 200
# How long Kopf keeps an object's worker (a task, its queue and the object's latest event) after
# its last event; Kopf's default is 5 s. While 1,000 runs moved 8,000 pods, up to 1,093 of them
# were alive at once, mostly for Deployments the controllers were still updating, and the
# operator's RSS rose with each such burst and stayed there (the allocator keeps the pages a
# burst took). An object with another event after this gets a new worker.
WORKER_IDLE_SECONDS = 0.5


def apply_environment(settings: kopf.OperatorSettings, environ: Mapping[str, str]) -> None:
    """Sets the watch timeout, the listing's page size and the workers' idle time, from
    CUTOVER_WATCH_TIMEOUT, CUTOVER_WATCH_LIST_CHUNK and CUTOVER_WORKER_IDLE_SECONDS where set."""
    settings.watching.server_timeout = environment.whole_number(
        environ, "CUTOVER_WATCH_TIMEOUT", WATCH_TIMEOUT_SECONDS
    )
    settings.watching.chunk_size = environment.whole_number(
        environ, "CUTOVER_WATCH_LIST_CHUNK", WATCH_LIST_CHUNK
    )
    settings.queueing.idle_timeout = worker_idle_seconds(environ)


def worker_idle_seconds(environ: Mapping[str, str]) -> float:
    """Kopf's ``settings.queueing.idle_timeout``: ``WORKER_IDLE_SECONDS`` unless
    CUTOVER_WORKER_IDLE_SECONDS says otherwise."""
    return environment.number(
        environ, "CUTOVER_WORKER_IDLE_SECONDS", WORKER_IDLE_SECONDS, unit="seconds"
    )
