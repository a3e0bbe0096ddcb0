"""Events posted without the run waiting for them.

An Event is a note for people: nothing the operator decides depends on it, and under load it
gets a connection only after every run's writes and reads (``urgency.Urgency.notes``). A
reconcile used to await its Events before its last status write (that write waited for the
Events its decisions made), and a daemon whose run had just succeeded could not end before its
"Succeeded" Event was sent: Kopf, told to stop it, found it still running, and kept the
Migration's latest event while it waited (kopf 1.45 ``stop_daemons``: up to the 10 s
cancellation back-off). Posting an Event is now a task of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

Emit = Callable[[Mapping[str, Any], str, str, str], Coroutine[Any, Any, None]]


class EventPoster:
    """Sends each Event in a task of its own, in the order they were posted."""

    def __init__(self, emit: Emit) -> None:
        self._emit = emit  # never raises: a rejected Event is logged and counted (kube.py)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def post(self, involved: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Never waits. Tasks start in the order they are made, so Events of one run reach
        the request queue, and within one urgency the API server, in the order posted."""
        emitting = self._emit(involved, type_, reason, message)
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(emitting)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def join(self, timeout: float | None = None) -> None:
        """Until every posted Event is sent, or ``timeout`` (a graceful stop; tests)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def close(self) -> None:
        """Cancels what is left and waits for the cancellations."""
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
