"""Which waiting request is sent next when every connection is busy: a run's writes before other
runs' reads, reads before Events, each in arrival order."""

from __future__ import annotations

import asyncio
from typing import Any

import kubernetes.client

from cutover.kube import Kube
from cutover.urgency import Urgency, UrgentSlots


async def test_a_released_slot_goes_to_the_most_urgent_waiter_first_come_first_served() -> None:
    slots = UrgentSlots(1)
    await slots.acquire(Urgency.checks)
    served: list[str] = []

    async def wait(label: str, urgency: Urgency) -> None:
        await slots.acquire(urgency)
        served.append(label)
        slots.release()

    waiters = [
        asyncio.ensure_future(wait(label, urgency))
        for label, urgency in [
            ("event", Urgency.notes),
            ("read 1", Urgency.checks),
            ("write 1", Urgency.progress),
            ("read 2", Urgency.checks),
            ("write 2", Urgency.progress),
        ]
    ]
    await asyncio.sleep(0)
    assert served == []  # the one slot is held
    slots.release()
    await asyncio.gather(*waiters)
    assert served == ["write 1", "write 2", "read 1", "read 2", "event"]


async def test_a_waiter_cancelled_in_the_queue_takes_no_slot() -> None:
    slots = UrgentSlots(1)
    await slots.acquire(Urgency.progress)
    gone = asyncio.ensure_future(slots.acquire(Urgency.progress))
    later = asyncio.ensure_future(slots.acquire(Urgency.notes))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    slots.release()
    await asyncio.wait_for(later, timeout=5)  # the slot went past the cancelled waiter
    slots.release()
    await slots.acquire(Urgency.checks)  # and came back: none was lost


class HeldSender:
    """Stands in for the HTTP exchange: the first request waits until ``let_go``; every request
    is recorded as (method, resource) in the order it was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.first_sent = asyncio.Event()
        self.let_go = asyncio.Event()

    async def __call__(
        self, method: str, path: str, *args: Any
    ) -> tuple[int, dict[str, str], bytes]:
        resource = path.split("/namespaces/", 1)[1].split("/")[1]
        self.sent.append((method, resource))
        if len(self.sent) == 1:
            self.first_sent.set()
            await asyncio.wait_for(self.let_go.wait(), 10)
        return 201 if method == "POST" else 200, {}, b"{}"


async def test_with_every_connection_busy_writes_go_before_reads_and_events_last() -> None:
    kube = Kube(kubernetes.client.ApiClient(), max_in_flight=1, qps=0)
    sender = HeldSender()
    kube._send = sender  # type: ignore[method-assign]
    try:
        busy = asyncio.ensure_future(kube.get("", "v1", "services", "shop", "first"))
        await asyncio.wait_for(sender.first_sent.wait(), 10)
        queued = [
            kube.emit_event(
                {"apiVersion": "v1", "kind": "Pod", "name": "p", "namespace": "shop"},
                "Normal",
                "Started",
                "m",
            ),
            kube.get("", "v1", "services", "shop", "checks"),
            kube.patch("apps", "v1", "deployments", "shop", "green", {"spec": {"replicas": 1}}),
        ]
        tasks = [asyncio.ensure_future(request) for request in queued]
        await asyncio.sleep(0.05)  # all three are waiting for the one connection
        sender.let_go.set()
        await asyncio.gather(busy, *tasks)
    finally:
        await kube.close()
    assert [resource for _, resource in sender.sent] == [
        "services",  # the request already in flight
        "deployments",  # the run's write
        "services",  # the read
        "events",  # the Event
    ], sender.sent
