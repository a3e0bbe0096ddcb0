"""More than one operator process: peering for fail-over, shards for throughput.

Peering (Kopf's): the replicas of one install record themselves in a peering object and only the
one with the highest priority works. Kopf pauses *every* operator when two share the highest
priority, so a Deployment's identical replicas must not keep Kopf's default priority of 0: each
takes a priority from its start time, the oldest highest. A replica that starts later (a rolling
update, a rescheduled pod) stands by instead of taking over from a healthy active one, and when
the active one dies the oldest survivor resumes once the dead one's record expires (the peering
lifetime).

Shards: with ``CUTOVER_SHARDS=N`` each process owns the Migrations labelled
``cutover.io/shard=<its index>`` and watches only those (a server-side label selector, so the
API server filters). A Migration's shard is a hash of its namespace: every Migration of a
namespace lands on the same shard, so the claims that keep two Migrations off one Deployment
(namespace-local) are always judged by one process. The mutating webhook labels new Migrations;
without webhooks, shard 0 labels unlabelled ones every few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import kopf

from cutover import api, environment
from cutover.environment import ConfigurationError
from cutover.kube import Kube, KubeError

log = logging.getLogger("cutover.scaleout")

SHARD_LABEL = f"{api.GROUP}/shard"
# Far above any start time in microseconds, so that priorities stay positive for millennia.
_PRIORITY_CEILING = 10**18
_ORDINAL = re.compile(r"-([0-9]+)$")
LABEL_SWEEP_SECONDS = 5.0


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    @property
    def selector(self) -> str:
        return f"{SHARD_LABEL}={self.index}"


def shard_of(namespace: str, count: int) -> int:
    """The shard that owns a namespace's Migrations: stable across processes and restarts
    (crc32, not Python's per-process salted ``hash``)."""
    return zlib.crc32(namespace.encode()) % count


def shard_count(environ: Mapping[str, str]) -> int:
    return environment.whole_number(environ, "CUTOVER_SHARDS", 1, minimum=1)


def shard_from_environment(environ: Mapping[str, str]) -> Shard | None:
    """This process's shard: ``CUTOVER_SHARD``, else the ordinal a StatefulSet gives its pod
    (``cutover-2`` → 2); None when sharding is off."""
    count = shard_count(environ)
    if count == 1:
        return None
    if environ.get("CUTOVER_SHARD", "").strip():
        index = environment.whole_number(environ, "CUTOVER_SHARD", 0)
    else:
        ordinal = _ORDINAL.search(environ.get("POD_ID", ""))
        if ordinal is None:
            raise ConfigurationError(
                "CUTOVER_SHARDS is set but neither CUTOVER_SHARD nor a StatefulSet pod name "
                "(POD_ID ending in -<ordinal>) says which shard this process is"
            )
        index = int(ordinal.group(1))
    if index >= count:
        raise ConfigurationError(f"shard {index} is not one of 0..{count - 1} (CUTOVER_SHARDS)")
    return Shard(index=index, count=count)


def peering_priority(environ: Mapping[str, str], started: float | None = None) -> int:
    """``CUTOVER_PEERING_PRIORITY`` if set, else the older the process, the higher."""
    oldest_first = _PRIORITY_CEILING - int(
        (time.time() if started is None else started) * 1_000_000
    )
    return environment.integer(environ, "CUTOVER_PEERING_PRIORITY", oldest_first)


def configure(settings: kopf.OperatorSettings, environ: Mapping[str, str]) -> Shard | None:
    """Applies peering and shard settings to Kopf's; returns this process's shard, if any."""
    settings.peering.priority = peering_priority(environ)
    # In seconds. Kopf refreshes a replica's record at least a second before it expires; with
    # less than 2 the refresh comes as it expires, and the replicas would take turns.
    settings.peering.lifetime = environment.whole_number(
        environ, "CUTOVER_PEERING_LIFETIME", settings.peering.lifetime, minimum=2, unit="seconds"
    )
    shard = shard_from_environment(environ)
    if shard is not None:
        settings.watching.label_selectors[api.GROUP, api.PLURAL] = shard.selector
        log.info("shard", extra={"shard": shard.index, "shards": shard.count})
    return shard


def shard_label_patch(
    namespace: str, labels: Mapping[str, str] | None, count: int
) -> dict[str, str] | None:
    """The label a new or updated Migration needs (None: it has the right one, or no shards).

    A label that names no existing shard (after the shard count shrank, or a typo) is replaced:
    left alone, no process would ever see that Migration.
    """
    if count <= 1:
        return None
    current = (labels or {}).get(SHARD_LABEL)
    if current is not None and current.isdigit() and int(current) < count:
        return None
    return {SHARD_LABEL: str(shard_of(namespace, count))}


class LabelSweeper:
    """Shard 0's job when no webhook labels new Migrations: give unlabelled (or mislabelled)
    ones their shard. One filtered LIST every few seconds; nothing else."""

    def __init__(self, kube: Kube, shard: Shard, namespace: str | None) -> None:
        self._kube = kube
        self._shard = shard
        self._namespace = namespace
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def sweep(self) -> int:
        """Labels what needs it; returns how many Migrations it labelled."""
        valid = ",".join(str(index) for index in range(self._shard.count))
        items = await self._kube.list(
            api.GROUP,
            api.VERSION,
            api.PLURAL,
            self._namespace,
            label_selector=f"{SHARD_LABEL} notin ({valid})",
        )
        labelled = 0
        for item in items:
            meta = item.get("metadata") or {}
            patch = shard_label_patch(
                meta.get("namespace", ""), meta.get("labels"), self._shard.count
            )
            if patch is None:
                continue
            try:
                await self._kube.patch(
                    api.GROUP,
                    api.VERSION,
                    api.PLURAL,
                    meta.get("namespace"),
                    meta.get("name", ""),
                    {"metadata": {"labels": patch}},
                )
            except KubeError as error:
                if error.status != 404:
                    raise
                # Gone since the LIST (or its namespace is): it must not stop the others'.
                continue
            labelled += 1
        return labelled

    async def _run(self) -> None:
        while True:
            try:
                labelled = await self.sweep()
                if labelled:
                    log.info("labelled Migrations with their shard", extra={"count": labelled})
            except KubeError as error:
                log.warning("shard label sweep failed", extra={"error": str(error)})
            await asyncio.sleep(LABEL_SWEEP_SECONDS)
