"""Events are posted without the run waiting (cutover/eventposts.py): they still reach the API
server in the order the run posted them, a graceful stop waits for them a while, and what is left
after that is cancelled, not leaked."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from cutover.eventposts import EventPoster


class Recorder:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def emit(self, involved: Mapping[str, Any], type_: str, reason: str, msg: str) -> None:
        await self.gate.wait()
        self.sent.append(reason)


async def test_events_of_a_run_are_sent_in_the_order_posted() -> None:
    recorder = Recorder()
    poster = EventPoster(recorder.emit)
    for reason in ("Started", "WeightSet", "Succeeded"):
        poster.post({"name": "checkout"}, "Normal", reason, "")
    assert recorder.sent == []  # posting never waits
    await poster.join()
    assert recorder.sent == ["Started", "WeightSet", "Succeeded"]
    assert poster.pending == 0


async def test_a_stop_waits_a_while_for_events_then_cancels_the_rest() -> None:
    recorder = Recorder()
    recorder.gate.clear()  # the API server does not answer
    poster = EventPoster(recorder.emit)
    poster.post({"name": "checkout"}, "Normal", "Succeeded", "")
    await poster.join(timeout=0.05)
    assert poster.pending == 1 and recorder.sent == []
    await poster.close()
    assert poster.pending == 0
    recorder.gate.set()
    await asyncio.sleep(0)
    assert recorder.sent == []  # cancelled: never sent late
