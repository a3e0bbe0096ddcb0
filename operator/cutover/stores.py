"""Watch-fed stores: what the reconciler looks up of other objects, kept from Kopf's watches.

Kopf's ``@kopf.index`` would keep these too, but at a cost quadratic in the objects at start-up
(kopf 1.45.2): the watcher makes one readiness toggle per object of an indexed resource
(``_core/reactor/queueing.py``), and every toggle made or dropped wakes every worker waiting for
the indexes (``_cogs/aiokits/aiotoggles.py``: ``Condition.notify_all``), each of which re-checks
the whole set. A store is a dict instead, updated by an ``@kopf.on.event`` handler: one entry
per event, nothing waits.

What the indexes also guaranteed is that nothing reads them before their initial listing: a
daemon started before the Deployment watch delivered blue would see "no such Deployment" and
fail its run. A store offers two ways to keep that guarantee:

* ``prime(namespace)``: the namespace is complete from then on. A typed watch event (ADDED,
  MODIFIED, DELETED) in a namespace says the watch's initial listing of it is over (Kopf yields
  the listing, with no type, first); before one, the first reader LISTs the namespace, once per
  process.
* ``ensure(key, fetch)``: one key is known, present or absent: a miss is asked of the API server
  once and the answer kept until the watch says otherwise.

An event that arrives while such a read is in flight wins over what the read returned (the read
may be older: a DELETED event must not be undone by a LIST taken before it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# One object -> its entries: the keys it is found under and its value there ({} for none).
Indexer = Callable[[Mapping[str, Any]], Mapping[K, V]]
# A namespace (None: cluster-scoped) -> the objects it holds now, as the API lists them.
Lister = Callable[[str | None], Awaitable[Sequence[Mapping[str, Any]]]]
# One object as the API returns it, None when there is none.
Fetch = Callable[[], Awaitable[Mapping[str, Any] | None]]

DELETED = "DELETED"
# Keys known absent are remembered up to this many (deleted objects' names would otherwise
# pile up for the life of the process); past it they are forgotten: a GET each, once more.
ABSENT_LIMIT = 4096


def _uid(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    # Every object the API serves has a uid; the fallback only keeps a malformed one apart.
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")


def _namespace(obj: Mapping[str, Any]) -> str | None:
    return (obj.get("metadata") or {}).get("namespace") or None


class Store(Generic[K, V]):
    """Objects of one kind by the keys ``indexer`` gives them; several objects may share a key."""

    def __init__(self, indexer: Indexer[K, V], lister: Lister) -> None:
        self._indexer = indexer
        self._lister = lister
        self._by_key: dict[K, dict[str, V]] = {}
        self._keys_of: dict[str, set[K]] = {}  # uid -> the keys it is stored under
        self._absent: set[K] = set()  # keys known to hold nothing (a 404, a deletion)
        self._primed: set[str | None] = set()
        self._locks: dict[str | None, asyncio.Lock] = {}
        # Per read in flight, by a token of its own: the uids the watch wrote meanwhile. Not a
        # list of the sets: two reads' sets are often equal, and list.remove goes by equality.
        self._reading: dict[object, set[str]] = {}

    def apply(self, event_type: str | None, obj: Mapping[str, Any]) -> bool:
        """One watch event (``type`` None: the watch's own initial listing). True when what the
        store holds for the object changed: most events of a Deployment (its controller's
        status updates while pods start) change nothing a reader of the store sees."""
        uid = _uid(obj)
        for touched in self._reading.values():
            touched.add(uid)
        if event_type is not None:
            self._primed.add(_namespace(obj))
        before = self._entries_of(uid)
        if event_type == DELETED:
            for key in self._discard(uid, set()):
                if key not in self._by_key:
                    self._known_absent(key)
        else:
            self._replace(uid, self._indexer(obj))
        return self._entries_of(uid) != before

    def _entries_of(self, uid: str) -> dict[K, V]:
        return {key: self._by_key[key][uid] for key in self._keys_of.get(uid, ())}

    def values(self, key: K) -> list[V]:
        return list(self._by_key.get(key, {}).values())

    def first(self, key: K) -> V | None:
        return next(iter(self._by_key.get(key, {}).values()), None)

    def primed(self, namespace: str | None) -> bool:
        return namespace in self._primed

    async def prime(self, namespace: str | None) -> None:
        """Makes the store complete for ``namespace`` (see the module's docstring), with one
        LIST shared by every caller that asks meanwhile. A failed LIST raises; the next call
        tries again."""
        if namespace in self._primed:
            return
        lock = self._locks.setdefault(namespace, asyncio.Lock())
        async with lock:
            if namespace in self._primed:
                return
            with self._tracking() as touched:
                listed = await self._lister(namespace)
            for obj in listed:
                uid = _uid(obj)
                if uid not in touched:
                    self._replace(uid, self._indexer(obj))
            self._primed.add(namespace)
        self._locks.pop(namespace, None)

    async def ensure(self, key: K, fetch: Fetch) -> None:
        """Makes ``key`` known: nothing to do once the watch (or an earlier fetch) told; a miss
        is fetched and kept, absent too. A failed fetch raises and keeps nothing."""
        if key in self._by_key or key in self._absent:
            return
        with self._tracking() as touched:
            obj = await fetch()
        if key in self._by_key or key in self._absent:
            return  # the watch told meanwhile: newer than the answer
        if obj is None:
            self._known_absent(key)
        elif _uid(obj) not in touched:
            self._replace(_uid(obj), self._indexer(obj))

    async def refresh(self, key: K, fetch: Fetch) -> None:
        """Reads ``key``'s object again whatever the store holds, for a decision too costly to
        take on a copy the watch may not have brought up to date. What the watch says meanwhile
        wins over the answer; an object gone is left for the watch to say."""
        with self._tracking() as touched:
            obj = await fetch()
        if obj is not None and _uid(obj) not in touched:
            self._replace(_uid(obj), self._indexer(obj))

    @contextlib.contextmanager
    def _tracking(self) -> Iterator[set[str]]:
        """The uids the watch writes while the block runs (a read in flight)."""
        token = object()
        touched: set[str] = set()
        self._reading[token] = touched
        try:
            yield touched
        finally:
            del self._reading[token]

    def _known_absent(self, key: K) -> None:
        if len(self._absent) >= ABSENT_LIMIT:
            self._absent.clear()
        self._absent.add(key)

    def _replace(self, uid: str, entries: Mapping[K, V]) -> None:
        for key, value in entries.items():
            self._by_key.setdefault(key, {})[uid] = value
            self._absent.discard(key)
        self._discard(uid, set(entries))
        if entries:
            self._keys_of[uid] = set(entries)

    def _discard(self, uid: str, keep: set[K]) -> set[K]:
        """Forgets ``uid`` under every key but ``keep``; returns the keys it left."""
        left = self._keys_of.pop(uid, set()) - keep
        for key in left:
            held = self._by_key.get(key)
            if held is not None:
                held.pop(uid, None)
                if not held:
                    del self._by_key[key]
        return left
