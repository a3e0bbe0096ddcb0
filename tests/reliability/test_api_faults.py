"""2. API faults: 5xx, 409, 429 + Retry-After, slow writes, dropped watches and 410 Gone on
watches, all at once, from a proxy between the operator and the real kube-apiserver."""

from __future__ import annotations

import collections
from typing import Any

from devtools.controlplane import ControlPlane
from devtools.controlplane.faultproxy import Injected
from tests.integration.harness import new_namespace

from .support import chaos_seed, drive, scale

RETRY_AFTER = 1
INJECTED = {409, 429, 500, 503}


def retry_after_violations(
    entries: list[dict[str, Any]], injected: list[Injected], namespace: str
) -> list[str]:
    """Every retry of a request answered 429 must come >= Retry-After later.

    Only writes to one named object (PATCH, PUT, DELETE) can be matched to their retry: a POST
    goes to a collection, and the next POST there (another Event, another Job) is not a retry.
    """
    mine = [e for e in entries if e.get("namespace") == namespace]
    problems = []
    for fault in injected:
        if fault.status != 429 or fault.namespace != namespace or fault.method == "POST":
            continue
        if "/migrations/" in fault.path and not fault.path.endswith("/status"):
            # Kopf's own client also patches the Migration itself (finalizer, its handler
            # state), and with its own back-off: the next write there is not ours to judge.
            continue
        retry = next(
            (
                e
                for e in mine
                if (e["method"], e["path"]) == (fault.method, fault.path)
                and e["received"] >= fault.time - 0.01
            ),
            None,
        )
        if retry is None:
            continue  # e.g. the object changed meanwhile and a new decision wrote something else
        waited = retry["received"] - fault.time
        if waited < RETRY_AFTER - 0.05:
            problems.append(f"{fault.method} {fault.path} retried after {waited:.2f}s")
    return problems


def test_runs_end_correctly_under_api_faults(cluster: ControlPlane) -> None:
    seed = chaos_seed()
    print(f"\nCUTOVER_CHAOS_SEED={seed}")
    namespace = new_namespace(cluster, "faults")
    since = cluster.stats()["last_seq"]
    report = drive(
        cluster,
        namespace,
        count=scale(6, 30),
        seed=seed,
        max_kills=scale(2, 10),
        kill_every=(4.0, 8.0),
        timeout=scale(150, 900),
        # The pace this test was sized with (the old default limit): at 100 QPS the runs can end
        # before the proxy has dropped and refused a single re-opened watch.
        operator_env={"CUTOVER_API_QPS": "20", "CUTOVER_API_BURST": "40"},
        faults={
            "error_rate": 0.04,
            "conflict_rate": 0.03,
            "throttle_rate": 0.03,
            "retry_after": RETRY_AFTER,
            "write_latency": 0.05,
            "watch_drop_after": 3.0,
            "watch_gone_every": 3,
            "seed": seed,
            # The random rates may draw no 429 in a short run: the first two writes meet one
            # and a 503 for sure.
            "script": [429, 503],
        },
    )
    entries = cluster.requests(since=since)
    injected = collections.Counter(
        i.status for i in report.injected if i.namespace == namespace and i.status in INJECTED
    )
    # Watch requests the operator opened: those the API server served (the audit log logs a
    # watch when it ends) and those the proxy answered 410 Gone itself.
    served = sum(
        1
        for e in cluster.reads(since)
        if e["verb"] == "watch"
        and e["resource"] in ("migrations", "deployments")
        and e["namespace"] == namespace
    )
    gone = sum(
        1
        for i in report.injected
        if i.status == 410 and i.resource in ("migrations", "deployments")
    )
    watches = served + gone
    late = retry_after_violations(entries, report.injected, namespace)
    print(report.line("api-faults"), f"injected={dict(injected)} watches={watches}")
    for anomaly in report.anomalies + late:
        print("ANOMALY", anomaly)
    assert sum(injected.values()) >= 5, injected
    assert injected[429] >= 1, injected
    gone = [i for i in report.injected if i.status == 410 and i.namespace == namespace]
    assert gone, "no watch was answered 410 Gone"
    # Watches are dropped every 3 s: beyond the first migrations and deployments watches, at
    # least one re-opened watch was served or answered 410, and the runs still finished. (Not a
    # count per elapsed second: how soon Kopf re-opens depends on the machine's load, and CI
    # once saw 5 in 19.8 s.)
    assert watches >= 3, watches
    assert report.anomalies == [], (report.line("api-faults"), report.anomalies, report.phases)
    assert late == []
