"""A stand-in for Kopf's ``DaemonStopped``: false until set, and awaitable until then."""

from __future__ import annotations

import asyncio
from typing import Any


class Stop:
    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __bool__(self) -> bool:
        return self.event.is_set()

    def wait(self) -> Any:
        return self.event.wait()
