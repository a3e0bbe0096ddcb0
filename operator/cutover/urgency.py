"""Which of the operator's waiting requests gets the next free connection.

With 1,000 runs the operator has more requests ready than connections in flight, and a
first-come queue would send them in arrival order: a run's next weight waited behind other runs'
start checks and Events. A free slot goes to the most urgent waiter instead, in arrival order
within an urgency.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from enum import IntEnum


class Urgency(IntEnum):
    """Lower goes first."""

    progress = 0  # a write that carries out a decision: a status intent, a router write
    checks = 1  # a read, or a review that only asks: what a decision is made from
    notes = 2  # an Event: nobody waits for it


class UrgentSlots:
    """``size`` holders at once; a released slot goes to the most urgent waiter."""

    def __init__(self, size: int) -> None:
        self._free = max(size, 1)
        self._order = itertools.count()
        self._waiters: list[tuple[Urgency, int, asyncio.Future[None]]] = []

    async def acquire(self, urgency: Urgency) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (urgency, next(self._order), waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed over just as the caller was cancelled: pass it on
            raise  # a cancelled waiter left in the heap is skipped by ``release``

    def release(self) -> None:
        while self._waiters:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1
