"""The bounded request log (mutating requests) and the request counters (all requests)."""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from typing import Any

DEFAULT_LOG_SIZE = 20_000


@dataclass(frozen=True)
class RequestInfo:
    method: str
    path: str
    verb: str  # get/list/watch/create/update/patch/delete/deletecollection
    group: str | None = None
    version: str | None = None
    resource: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    content_type: str | None = None


class RequestLog:
    def __init__(self, maxlen: int = DEFAULT_LOG_SIZE) -> None:
        self._entries: collections.deque[dict[str, Any]] = collections.deque(maxlen=maxlen)
        self._seq = 0
        self.counts: collections.Counter[tuple[str, str, int]] = collections.Counter()

    def record(self, info: RequestInfo, code: int, body: Any) -> None:
        self.counts[(info.verb, info.resource or info.path, code)] += 1
        if info.method not in ("POST", "PUT", "PATCH", "DELETE"):
            return
        self._seq += 1
        self._entries.append(
            {
                "seq": self._seq,
                "monotonic": time.monotonic(),
                "time": time.time(),
                "method": info.method,
                "verb": info.verb,
                "path": info.path,
                "group": info.group,
                "version": info.version,
                "resource": info.resource,
                "namespace": info.namespace,
                "name": info.name,
                "subresource": info.subresource,
                "content_type": info.content_type,
                "code": code,
                "body": body,
            }
        )

    def entries(self, since: int = 0) -> list[dict[str, Any]]:
        return [entry for entry in self._entries if entry["seq"] > since]

    def reset(self) -> None:
        """Forget the log but keep `seq` monotonic so `since` cursors stay valid."""
        self._entries.clear()
        self.counts.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "total": sum(self.counts.values()),
            "last_seq": self._seq,
            "by_verb_resource_code": [
                {"verb": verb, "resource": resource, "code": code, "count": count}
                for (verb, resource, code), count in sorted(self.counts.items())
            ],
        }
