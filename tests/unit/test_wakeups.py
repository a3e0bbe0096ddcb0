"""A daemon's sleep (wakeups.sleep): it ends when its time is up, when something it waits for
wakes it, or when Kopf tells the daemon to stop, whichever comes first."""

from __future__ import annotations

import asyncio

from cutover.wakeups import sleep, wake_on_stop

from .stop import Stop


async def test_a_sleep_ends_when_its_time_is_up() -> None:
    wake = asyncio.Event()
    await asyncio.wait_for(sleep(Stop(), wake, 0.01), timeout=10)
    assert not wake.is_set()


async def test_a_wake_up_ends_an_endless_sleep() -> None:
    wake = asyncio.Event()
    sleeper = asyncio.ensure_future(sleep(Stop(), wake, None))
    await asyncio.sleep(0)
    assert not sleeper.done()
    wake.set()
    await asyncio.wait_for(sleeper, timeout=10)


async def test_a_daemon_told_to_stop_stops_sleeping() -> None:
    stopped, wake = Stop(), asyncio.Event()
    watch = asyncio.ensure_future(wake_on_stop(stopped, wake))
    sleeper = asyncio.ensure_future(sleep(stopped, wake, None))
    await asyncio.sleep(0)
    assert not sleeper.done()
    stopped.event.set()
    await asyncio.wait_for(sleeper, timeout=10)
    await asyncio.wait_for(watch, timeout=10)


async def test_a_daemon_already_told_to_stop_does_not_sleep() -> None:
    stopped = Stop()
    stopped.event.set()
    await asyncio.wait_for(sleep(stopped, asyncio.Event(), None), timeout=10)
