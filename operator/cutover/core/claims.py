"""A Deployment belongs to one run at a time: which other Migrations claim this one's Deployments.

Another Migration with a valid spec claims its Deployments while it is Progressing, Paused or
RollingBack, or while it is Pending and older (creation time, then name): of two Migrations
created together, exactly one starts. A Migration being deleted, or one that has ended, claims
nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cutover.api import TERMINAL_PHASES, Phase


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
