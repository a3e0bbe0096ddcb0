"""1. Crash anywhere: SIGKILL the real operator at random instants while Migrations run."""

from __future__ import annotations

import time
from typing import Any

from devtools.controlplane import ControlPlane
from tests.integration.harness import new_namespace

from .support import chaos_seed, drive, ok_writes, scale


def operator_writes(entries: list[dict[str, Any]], namespace: str) -> list[float]:
    """When the operator's identity (never the test's admin) wrote in ``namespace``."""
    return sorted(
        e["received"]
        for e in ok_writes(entries, namespace)
        if str(e.get("user") or "").startswith("system:serviceaccount:")
    )


def test_sigkill_at_random_instants_leaves_every_migration_correct(
    cluster: ControlPlane,
) -> None:
    seed = chaos_seed()
    print(f"\nCUTOVER_CHAOS_SEED={seed}")
    namespace = new_namespace(cluster, "chaos")
    since = cluster.stats()["last_seq"]
    # Each kill is followed by a restart, which the operator's log marks ("--- start N ---"). The
    # driver's loop ticks between kills: the kill that the n-th restart followed happened after
    # the tick that saw n-1 restarts and before the tick that saw n.
    log_path = cluster.workdir / f"operator-{namespace}.log"
    ticks: list[tuple[float, int]] = []

    def on_tick() -> None:
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        ticks.append((time.time(), text.count("--- start ") - 1))

    max_kills = scale(8, 60)
    report = drive(
        cluster,
        namespace,
        count=scale(8, 50),
        seed=seed,
        max_kills=max_kills,
        timeout=scale(150, 900),
        on_tick=on_tick,
    )
    print(report.line("crash"))
    for anomaly in report.anomalies:
        print("ANOMALY", anomaly)
    # Every Migration ended where its scenario says, with exactly the ideal replica writes and no
    # Job created twice: each restarted operator resumed exactly where the killed one was.
    assert report.anomalies == [], (report.line("crash"), report.anomalies, report.phases)

    # How many kills fit into the run depends on how fast the machine finishes it; what must
    # hold is that the crashes happened, each one was followed by a restart, and at least one
    # fell in the middle of the work (the operator wrote before it and after its restart).
    assert 1 <= report.kills <= max_kills, report.line("crash")
    restarts = ticks[-1][1] if ticks else 0
    assert restarts == report.kills, (restarts, report.line("crash"))
    writes = operator_writes(cluster.requests(since=since), namespace)
    mid_run = 0
    for kill in range(1, report.kills + 1):
        before = max(t for t, seen in ticks if seen < kill)  # the kill came after this
        after = min(t for t, seen in ticks if seen >= kill)  # and the restart before this
        if any(w < before for w in writes) and any(w > after for w in writes):
            mid_run += 1
    assert mid_run >= 1, (report.line("crash"), ticks, writes[:1], writes[-1:])
