"""The heap trimmer hands freed heap back to the OS once a minute, off the event loop, and does
nothing where the C library has no malloc_trim; full garbage collections are made rare and the
start-up heap is left out of them; TLS connections read into 16 KiB, not 256 KiB."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import gc
import ssl
import threading
from collections.abc import Iterator

import pytest

from cutover.heap import (
    FULL_COLLECTION_EVERY,
    TLS_READ_BUFFER,
    HeapTrimmer,
    glibc_malloc_trim,
    shrink_tls_read_buffers,
    tune_collector,
)


async def test_the_heap_is_trimmed_every_interval_off_the_event_loop_until_stopped() -> None:
    loop_thread = threading.get_ident()
    threads: list[int] = []
    trimmed = asyncio.Event()

    def trim() -> None:
        threads.append(threading.get_ident())
        if len(threads) == 3:
            loop.call_soon_threadsafe(trimmed.set)

    loop = asyncio.get_running_loop()
    trimmer = HeapTrimmer(interval=0.01, trim=trim)
    trimmer.start()
    await asyncio.wait_for(trimmed.wait(), timeout=10)
    await trimmer.stop()
    count = len(threads)
    await asyncio.sleep(0.05)

    assert count >= 3 and len(threads) == count  # none after the stop
    assert loop_thread not in threads
    assert not trimmer.running


async def test_without_malloc_trim_nothing_runs() -> None:
    trimmer = HeapTrimmer(interval=0.01, trim=None)
    trimmer.start()
    assert not trimmer.running
    await trimmer.stop()


def test_glibc_s_malloc_trim_is_found_and_callable_on_linux() -> None:
    trim = glibc_malloc_trim()
    if trim is None:
        pytest.skip("not a glibc system")
    assert trim() in (0, 1)  # 1: memory was released, 0: there was none to release


@pytest.fixture
def collector() -> Iterator[None]:
    """The interpreter's collector settings, put back after the test."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("collector")
def test_tuning_keeps_start_up_objects_out_of_collections_and_full_ones_rare() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    start_up = object.__new__(type("StartUp", (), {}))
    tune_collector()
    assert gc.get_threshold() == (700, 10, FULL_COLLECTION_EVERY)
    assert gc.get_freeze_count() > 0
    # Frozen: no generation holds the start-up heap any more, so no collection walks it.
    assert not any(o is start_up for o in gc.get_objects())
    created_later = object.__new__(type("Later", (), {}))
    assert any(o is created_later for o in gc.get_objects())


async def test_tls_connections_made_after_start_up_hold_a_16_kib_read_buffer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    protocol = asyncio.sslproto.SSLProtocol
    monkeypatch.setattr(protocol, "max_size", protocol.max_size)  # restored after the test

    def read_buffer() -> int:
        made = protocol(
            asyncio.get_running_loop(),
            asyncio.Protocol(),
            ssl.create_default_context(),
            None,
            server_hostname="api.example",
        )
        return len(made._ssl_buffer)

    assert read_buffer() == 256 * 1024  # asyncio's own size: 16 MiB for 64 connections
    shrink_tls_read_buffers()
    assert read_buffer() == TLS_READ_BUFFER == 16 * 1024
