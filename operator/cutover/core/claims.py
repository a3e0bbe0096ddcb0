"""A Deployment belongs to one run at a time: which other Migrations claim this one's Deployments.

Another Migration with a valid spec claims its Deployments while it is Progressing, Paused or
RollingBack, or while it is Pending and older (creation time, then name): of two Migrations
created together, exactly one starts. A Migration being deleted, or one that has ended, claims
nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cutover import api
from cutover.api import TERMINAL_PHASES, Phase, SpecInvalid


@dataclass(frozen=True)
class Claimant:
    """Another Migration in the namespace, as the watch or a list shows it."""

    name: str
    uid: str
    # metadata.creationTimestamp as the API server wrote it: RFC 3339 in UTC sorts as text.
    created: str
    deleting: bool
    phase: Phase
    # Its blue and green; None when its spec is invalid (it can never start, so claims nothing).
    deployments: frozenset[str] | None


def claimant(obj: Mapping[str, Any]) -> Claimant:
    """Another Migration as the API returns it; what cannot be read claims as little as it may."""
    meta = obj.get("metadata") or {}
    try:
        phase = Phase(str((obj.get("status") or {}).get("phase") or Phase.pending.value))
    except ValueError:
        phase = Phase.pending  # a phase this version does not know claims as little as Pending
    try:
        spec = api.parse_spec(obj.get("spec") or {})
        deployments: frozenset[str] | None = frozenset(
            {spec.blue.deployment, spec.green.deployment}
        )
    except SpecInvalid:
        deployments = None
    return Claimant(
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        created=str(meta.get("creationTimestamp") or ""),
        deleting=bool(meta.get("deletionTimestamp")),
        phase=phase,
        deployments=deployments,
    )


def conflicts(
    uid: str,
    name: str,
    namespace: str,
    deployments: Iterable[str],
    migrations: Iterable[Claimant],
) -> list[str]:
    """Why this Migration may not start: one line per Deployment another run claims."""
    everyone = list(migrations)
    mine = set(deployments)
    me = next((m for m in everyone if m.uid == uid), None)
    key = (me.created, name) if me is not None else None
    problems = []
    for other in everyone:
        if other.uid == uid or other.deleting or other.phase in TERMINAL_PHASES:
            continue
        if other.phase is Phase.pending and (key is None or (other.created, other.name) >= key):
            continue
        if other.deployments is None:
            continue
        for deployment in sorted(mine & other.deployments):
            problems.append(
                f"Deployment {namespace}/{deployment} is already claimed by Migration"
                f" {other.name} ({other.phase.value})"
            )
    return problems
