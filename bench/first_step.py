"""Create -> first step latency, and the operator's API requests per step, on a real control plane.

    .venv/bin/python bench/first_step.py --migrations 20
    .venv/bin/python bench/first_step.py --smoke
    .venv/bin/python bench/first_step.py --migrations 300 --existing   # an operator (re)start
    .venv/bin/python bench/first_step.py --migrations 20 --cluster-dir .cluster   # `make cluster`

The operator runs as a real ``kopf run`` subprocess with the Helm chart's RBAC; the
kube-apiserver's audit log is the source of truth: every request of the operator's
ServiceAccount (reads and watches included), with its body and the apiserver's timestamps.
Migrations are created by the benchmark as the admin, which the counts leave out.

With ``--existing`` the Migrations are all created before the operator starts (a restart, or
the first start on a cluster full of them): the latency is then from the operator's launch
(Python's start-up included) to each one's first replica write.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    READ_VERBS,
    READS_PER_STEP_BUDGET,
    ROOT,
    WRITE_VERBS,
    WRITES_PER_STEP_BUDGET,
    Bench,
    add_cluster_option,
    delta,
    describe,
    flat,
    migration,
    replicas_written,
    total,
)

STEPS: list[dict[str, Any]] = [
    {"setWeight": 25},
    {"pause": {"duration": "1s"}},
    {"setWeight": 50},
    {"setWeight": 100},
]
WEIGHT_STEPS = 3  # 25, 50, 100


def run(migrations: int, cluster_dir: Path | None, existing: bool = False) -> dict[str, Any]:
    names = [f"app{i}" for i in range(migrations)]
    with Bench(cluster_dir) as bench:
        bench.create_deployments(
            [(f"{n}-blue", 4) for n in names] + [(f"{n}-green", 0) for n in names]
        )
        bodies = [migration(name, f"{name}-blue", f"{name}-green", STEPS) for name in names]
        if existing:
            bench.create_migrations(bodies)
            before = bench.counters()
            tail = bench.tail()
            launched = time.time()
            bench.start_operator(qps=1000, burst=2000)
            created = dict.fromkeys(names, launched)
        else:
            bench.start_operator(qps=1000, burst=2000)
            time.sleep(1)
            before = bench.counters()
            tail = bench.tail()
            for body in bodies:
                bench.create_migrations([body], workers=1)
        deadline = time.monotonic() + 60 + migrations
        done: set[str] = set()
        tail.wait_succeeded(done, migrations, deadline, every=0.2)
        time.sleep(1)
        tail.poll()
        after, log_text, denied, created_at = bench.outcome()
        requests = list(bench.audit.entries) if bench.audit else []
        if not existing:
            created = created_at
    first_write: dict[str, float] = {}
    for entry in tail.entries:
        if replicas_written(entry) is not None:
            owner = str(entry["name"]).rsplit("-", 1)[0]
            first_write.setdefault(owner, float(entry["time"]))
    latencies = [first_write[n] - created[n] for n in names if n in first_write]
    reads_before = reads_before_first_write(requests, names)
    counts = delta(after, before)
    weight_steps = WEIGHT_STEPS * len(done)
    writes = total(counts, WRITE_VERBS)
    reads = total(counts, READ_VERBS)
    return {
        "migrations": migrations,
        "existing_before_operator_start": existing,
        "succeeded": len(done),
        "create_to_first_step_seconds": describe(latencies),
        # GETs of a Migration's own blue and green before its first replica write.
        "deployment_reads_before_first_write": describe(reads_before),
        "weight_steps": weight_steps,
        "operator_writes": writes,
        "operator_reads": reads,
        "operator_writes_per_weight_step": writes / weight_steps if weight_steps else None,
        "operator_reads_per_weight_step": reads / weight_steps if weight_steps else None,
        "budget_per_weight_step": {
            "writes": WRITES_PER_STEP_BUDGET,
            "reads": READS_PER_STEP_BUDGET,
        },
        "rbac_denied": denied,
        "operator_errors_logged": log_text.count("Traceback"),
        "requests_by_verb_resource": flat(counts),
    }


def reads_before_first_write(requests: list[dict[str, Any]], names: list[str]) -> list[float]:
    """Per Migration that wrote: how often the operator read its blue or green before that."""
    reads: dict[str, int] = {}
    wrote: set[str] = set()
    for entry in requests:
        if entry["resource"] != "deployments":
            continue
        owner = str(entry["name"]).rsplit("-", 1)[0]
        if owner in wrote:
            continue
        if replicas_written(entry) is not None:
            wrote.add(owner)
        elif entry["method"] == "GET":
            reads[owner] = reads.get(owner, 0) + 1
    return [float(reads.get(n, 0)) for n in names if n in wrote]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--migrations", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="one migration, for the tests")
    parser.add_argument(
        "--existing",
        action="store_true",
        help="create every Migration before the operator starts (latency from its start)",
    )
    parser.add_argument(
        "--output", type=Path, default=ROOT / "bench" / "results" / "first_step.json"
    )
    add_cluster_option(parser)
    args = parser.parse_args(argv)
    result = run(1 if args.smoke else args.migrations, args.cluster_dir, args.existing)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    latency = result["create_to_first_step_seconds"]
    print(f"migrations: {result['succeeded']}/{result['migrations']} succeeded")
    if latency["median"] is not None:
        print(
            f"{'operator start' if args.existing else 'create'} -> first step:"
            f" median {latency['median'] * 1000:.0f} ms, p99 {latency['p99'] * 1000:.0f} ms,"
            f" max {latency['max'] * 1000:.0f} ms"
        )
    if result["weight_steps"]:
        print(
            f"operator writes per weight step: {result['operator_writes_per_weight_step']:.2f}"
            f" (budget {WRITES_PER_STEP_BUDGET:g})"
        )
        print(
            f"operator reads per weight step: {result['operator_reads_per_weight_step']:.2f}"
            f" (budget {READS_PER_STEP_BUDGET:g})"
        )
    for key, count in result["requests_by_verb_resource"].items():
        print(f"  {key:40} {count}")
    if result["rbac_denied"]:
        print(f"requests the chart's RBAC denied: {result['rbac_denied']}")
    ok = result["succeeded"] == result["migrations"] and not result["rbac_denied"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
