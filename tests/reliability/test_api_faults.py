"""2. API faults: 5xx, 409, 429 + Retry-After, slow writes and dropped watches, all at once."""

from __future__ import annotations

import collections
import json
from typing import Any

from cutover.sandbox.process import SandboxProcess
from tests.integration.harness import new_namespace

from .support import chaos_seed, drive, scale

RETRY_AFTER = 1
INJECTED = {409, 429, 500, 503}


def _ours(entry: dict[str, Any]) -> bool:
    """Writes made by cutover.kube (Kopf's own client is not ours to judge)."""
    return entry.get("resource") in ("deployments", "jobs") or entry.get("subresource") == "status"


def retry_after_violations(entries: list[dict[str, Any]], namespace: str) -> list[str]:
    """Every retry of a request answered 429 must come >= Retry-After later."""
    mine = [e for e in entries if e.get("namespace") == namespace and _ours(e)]
    problems = []
    for i, entry in enumerate(mine):
        if entry["code"] != 429:
            continue
        key = (entry["method"], entry["path"], json.dumps(entry["body"], sort_keys=True))
        retry = next(
            (
                e
                for e in mine[i + 1 :]
                if (e["method"], e["path"], json.dumps(e["body"], sort_keys=True)) == key
            ),
            None,
        )
        if retry is None:
            continue  # e.g. the object changed meanwhile and a new decision wrote something else
        waited = retry["monotonic"] - entry["monotonic"]
        if waited < RETRY_AFTER - 0.05:
            problems.append(f"{entry['method']} {entry['path']} retried after {waited:.2f}s")
    return problems


def test_runs_end_correctly_under_api_faults(sandbox: SandboxProcess) -> None:
    seed = chaos_seed()
    print(f"\nCUTOVER_CHAOS_SEED={seed}")
    namespace = new_namespace(sandbox, "faults")
    since = sandbox.stats()["last_seq"]
    report = drive(
        sandbox,
        namespace,
        count=scale(6, 30),
        seed=seed,
        max_kills=scale(2, 10),
        kill_every=(4.0, 8.0),
        timeout=scale(150, 900),
        faults={
            "error_rate": 0.04,
            "conflict_rate": 0.03,
            "throttle_rate": 0.03,
            "retry_after": RETRY_AFTER,
            "write_latency": 0.05,
            "watch_drop_after": 3.0,
            "seed": seed,
        },
    )
    entries = sandbox.requests(since=since)
    mine = [e for e in entries if e.get("namespace") == namespace]
    injected = collections.Counter(e["code"] for e in mine if e["code"] in INJECTED)
    watches = sum(
        c["count"]
        for c in sandbox.stats()["by_verb_resource_code"]
        if c["verb"] == "watch" and c["resource"] in ("migrations", "deployments")
    )
    late = retry_after_violations(entries, namespace)
    print(report.line("api-faults"), f"injected={dict(injected)} watches={watches}")
    for anomaly in report.anomalies + late:
        print("ANOMALY", anomaly)
    assert sum(injected.values()) >= 5, injected
    assert injected[429] >= 1, injected
    # Dropped every 3 s, the watches were re-opened many times, and the runs still finished.
    assert watches >= report.seconds // 3, watches
    assert report.anomalies == [], (report.line("api-faults"), report.anomalies, report.phases)
    assert late == []
