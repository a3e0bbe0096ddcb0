"""The process's heap: full garbage collections kept rare, and freed heap given back to the OS.

**Full collections.** A full (generation 2) collection walks every object the process holds,
with the event loop and every request thread stopped: with 1,000 Migrations that took 0.3-0.8 s
on 2 busy cores. CPython runs one after every 10 collections of the middle generation, which
a busy watch stream makes every ~6 s: 45 full collections in a run of 1,000 Migrations, 14.9 s
of stopped operator, which is where its p99 step latency and create -> first write went
(docs/performance.md, "Where a step waits"). Reference counting frees nearly everything; only
cyclic garbage waits for a full collection, so one every 100 middle collections costs a little
memory held longer, and the start-up heap (modules, classes), which lives as long as the
process, is frozen out of every future walk.

**TLS read buffers.** asyncio gives every TLS connection a 256 KiB read buffer of its own,
written through (so resident) when it is made. The operator's requests are coroutines on
aiohttp (``cutover.kubehttp``) with up to 64 connections to the API server, plus Kopf's
watches and the webhook server's: 16 MiB of buffers. 16 KiB, a TLS record's largest plaintext,
reads the same bytes in more calls: 1,000 GETs over 64 connections left the process 89.5 MiB
with 256 KiB buffers, 74.5 MiB with 16 KiB, and 81.2 MiB with the former 64 request threads.

**Trimming.**

Many Migrations starting at once allocate tens of MiB of short-lived objects: watch events, API
responses, parsed statuses. glibc keeps most of the pages they are freed from, and the RSS,
which is what a memory limit is measured against, stays at the burst's high-water mark.
``malloc_trim(0)`` returns free pages to the OS. With 300 Migrations started and held, RSS
went from 108.3 to 100.4 MiB (docs/performance.md, "Memory and CPU at 1,000"). Without glibc
(musl, macOS) the call does not exist and nothing is done.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import ctypes
import gc
import logging
from collections.abc import Callable

log = logging.getLogger("cutover.heap")

# Middle-generation collections between two full ones (CPython's default: 10).
FULL_COLLECTION_EVERY = 100


def tune_collector() -> None:
    """At start-up, once the modules are imported: collects what importing left, freezes the
    rest out of later collections, and makes full collections ten times rarer."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
    log.info(
        "garbage collector tuned",
        extra={"frozen": gc.get_freeze_count(), "threshold": list(gc.get_threshold())},
    )


# A TLS record carries at most 16 KiB of plaintext: a read of one record fits.
TLS_READ_BUFFER = 16 * 1024


def shrink_tls_read_buffers() -> None:
    """At start-up, before the first connection: every later TLS connection of the process
    (the API server's, Kopf's watches, webhook clients) reads into 16 KiB, not 256 KiB."""
    # A class attribute of CPython's asyncio since 3.11, read when a connection is made.
    setattr(asyncio.sslproto.SSLProtocol, "max_size", TLS_READ_BUFFER)  # noqa: B010


# A trim costs milliseconds; once a minute is nothing at idle, and soon enough after a burst.
TRIM_INTERVAL = 60.0

Trim = Callable[[], object]


def glibc_malloc_trim() -> Trim | None:
    """``malloc_trim(0)`` of the C library this process runs on, None where there is none."""
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


class HeapTrimmer:
    """Trims the heap every ``interval`` seconds, in a thread: the event loop never waits."""

    def __init__(self, interval: float = TRIM_INTERVAL, trim: Trim | None = None) -> None:
        self.interval = interval
        self._trim = trim
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_this_process(cls) -> HeapTrimmer:
        return cls(trim=glibc_malloc_trim())

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._trim is None:
            log.info("no malloc_trim in this C library: freed heap stays with the process")
            return
        self._task = asyncio.ensure_future(self._run(self._trim))

    async def _run(self, trim: Trim) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await asyncio.to_thread(trim)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
