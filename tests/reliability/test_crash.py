"""1. Crash anywhere: SIGKILL the real operator at random instants while Migrations run."""

from __future__ import annotations

from devtools.controlplane import ControlPlane
from tests.integration.harness import new_namespace

from .support import chaos_seed, drive, scale


def test_sigkill_at_random_instants_leaves_every_migration_correct(
    cluster: ControlPlane,
) -> None:
    seed = chaos_seed()
    print(f"\nCUTOVER_CHAOS_SEED={seed}")
    namespace = new_namespace(cluster, "chaos")
    report = drive(
        cluster,
        namespace,
        count=scale(8, 50),
        seed=seed,
        max_kills=scale(8, 60),
        timeout=scale(150, 900),
    )
    print(report.line("crash"))
    for anomaly in report.anomalies:
        print("ANOMALY", anomaly)
    assert report.kills >= scale(3, 20), report.line("crash")
    assert report.anomalies == [], (report.line("crash"), report.anomalies, report.phases)
