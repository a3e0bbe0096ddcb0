"""1. Crash anywhere: SIGKILL the real operator at random instants while Migrations run."""

from __future__ import annotations

from cutover.sandbox.process import SandboxProcess
from tests.integration.harness import new_namespace

from .support import chaos_seed, drive, scale


def test_sigkill_at_random_instants_leaves_every_migration_correct(
    sandbox: SandboxProcess,
) -> None:
    seed = chaos_seed()
    print(f"\nCUTOVER_CHAOS_SEED={seed}")
    namespace = new_namespace(sandbox, "chaos")
    report = drive(
        sandbox,
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
