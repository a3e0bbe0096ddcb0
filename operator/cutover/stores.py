"""Watch-fed stores: what the reconciler looks up of other objects, kept from Kopf's watches.

Kopf's ``@kopf.index`` would keep these too, but at a cost quadratic in the objects at start-up
(kopf 1.45.2): the watcher makes one readiness toggle per object of an indexed resource
(``_core/reactor/queueing.py``), and every toggle made or dropped wakes every worker waiting for
the indexes (``_cogs/aiokits/aiotoggles.py``: ``Condition.notify_all``), each of which re-checks
the whole set. A store is a dict instead, updated by an ``@kopf.on.event`` handler: one entry
per event, nothing waits.

What the indexes also guaranteed is that nothing reads them before their initial listing: a
daemon started before the Deployment watch delivered blue would see "no such Deployment" and
fail its run. A store gives the same guarantee per namespace: ``prime`` LISTs a namespace once
per process before its first reader, and the watch keeps it current from then on. An event that
arrives while that LIST is in flight wins over what the LIST returned (it may be newer; a
DELETED event must not be undone by a LIST taken before it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# One object -> its entries: the keys it is found under and its value there ({} for none).
Indexer = Callable[[Mapping[str, Any]], Mapping[K, V]]
# A namespace (None: cluster-scoped) -> the objects it holds now, as the API lists them.
Lister = Callable[[str | None], Awaitable[Sequence[Mapping[str, Any]]]]

DELETED = "DELETED"


def _uid(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    # Every object the API serves has a uid; the fallback only keeps a malformed one apart.
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")


class Store(Generic[K, V]):
    """Objects of one kind by the keys ``indexer`` gives them; several objects may share a key."""

    def __init__(self, indexer: Indexer[K, V], lister: Lister) -> None:
        self._indexer = indexer
        self._lister = lister
        self._by_key: dict[K, dict[str, V]] = {}
        self._keys_of: dict[str, set[K]] = {}  # uid -> the keys it is stored under
        self._primed: set[str | None] = set()
        self._locks: dict[str | None, asyncio.Lock] = {}
        # uids the watch wrote while a namespace's LIST was in flight, per namespace.
        self._touched: dict[str | None, set[str]] = {}

    def apply(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        """One watch event (``type`` None: the watch's own initial listing)."""
        uid = _uid(obj)
        for touched in self._touched.values():
            touched.add(uid)
        if event_type == DELETED:
            self._discard(uid, set())
        else:
            self._replace(uid, self._indexer(obj))

    def values(self, key: K) -> list[V]:
        return list(self._by_key.get(key, {}).values())

    def first(self, key: K) -> V | None:
        return next(iter(self._by_key.get(key, {}).values()), None)

    def primed(self, namespace: str | None) -> bool:
        return namespace in self._primed

    async def prime(self, namespace: str | None) -> None:
        """Makes the store complete for ``namespace``: one LIST per process, shared by every
        caller that asks meanwhile. A failed LIST raises; the next call tries again."""
        if namespace in self._primed:
            return
        lock = self._locks.setdefault(namespace, asyncio.Lock())
        async with lock:
            if namespace in self._primed:
                return
            touched = self._touched[namespace] = set()
            try:
                listed = await self._lister(namespace)
            finally:
                del self._touched[namespace]
            for obj in listed:
                uid = _uid(obj)
                if uid not in touched:
                    self._replace(uid, self._indexer(obj))
            self._primed.add(namespace)
        self._locks.pop(namespace, None)

    def _replace(self, uid: str, entries: Mapping[K, V]) -> None:
        for key, value in entries.items():
            self._by_key.setdefault(key, {})[uid] = value
        self._discard(uid, set(entries))
        if entries:
            self._keys_of[uid] = set(entries)

    def _discard(self, uid: str, keep: set[K]) -> None:
        """Forgets ``uid`` under every key but ``keep``."""
        for key in self._keys_of.pop(uid, set()) - keep:
            held = self._by_key.get(key)
            if held is not None:
                held.pop(uid, None)
                if not held:
                    del self._by_key[key]
