"""Create -> first step latency, and API requests per step, against the sandbox cluster.

    .venv/bin/python bench/first_step.py --migrations 20
    .venv/bin/python bench/first_step.py --smoke

The operator runs as a real `kopf run` subprocess; the sandbox's request log (writes, with wall
time) and its request counters (every verb, reads and watches included) are the source of truth.
Migrations are created through the official client, not kubectl, so that the only other client
in the counters is the operator itself.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "operator"))

from kubernetes import client, config  # noqa: E402
from tests.integration.harness import OperatorProcess  # noqa: E402

from cutover.sandbox.process import SandboxProcess  # noqa: E402

STEPS = [{"setWeight": 25}, {"pause": {"duration": "1s"}}, {"setWeight": 50}, {"setWeight": 100}]


def deployment(name: str, version: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name, "version": version}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{name}-{version}", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
            },
        },
    }


def migration(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "cutover.io/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": name},
        "spec": {
            "blue": {"deployment": f"{name}-blue"},
            "green": {"deployment": f"{name}-green"},
            "traffic": {"router": "replicas"},
            "steps": STEPS,
        },
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def counters(sandbox: SandboxProcess) -> dict[tuple[str, str], int]:
    totals: dict[tuple[str, str], int] = {}
    for row in sandbox.stats()["by_verb_resource_code"]:
        key = (str(row["verb"]), str(row["resource"]))
        totals[key] = totals.get(key, 0) + int(row["count"])
    return totals


def run(migrations: int, namespace: str = "bench") -> dict[str, Any]:
    with SandboxProcess(deployment_delay=0.1) as sandbox:
        sandbox.kubectl("apply", "-f", str(ROOT / "crds" / "migrations.cutover.io.yaml"))
        sandbox.kubectl("create", "namespace", namespace)
        api = config.new_client_from_config(config_file=sandbox.kubeconfig)
        apps, custom = client.AppsV1Api(api), client.CustomObjectsApi(api)
        operator = OperatorProcess(sandbox, namespace).start()
        try:
            time.sleep(3)  # the operator's watches are up
            for i in range(migrations):
                apps.create_namespaced_deployment(namespace, deployment(f"app{i}", "blue", 4))
                apps.create_namespaced_deployment(namespace, deployment(f"app{i}", "green", 0))
            time.sleep(1)
            before = counters(sandbox)
            start_seq = sandbox.stats()["last_seq"]
            for i in range(migrations):
                custom.create_namespaced_custom_object(
                    "cutover.io", "v1alpha1", namespace, "migrations", migration(f"app{i}")
                )
            deadline = time.monotonic() + 60 + migrations
            done: set[str] = set()
            while time.monotonic() < deadline and len(done) < migrations:
                for entry in sandbox.requests(since=start_seq):
                    body = entry.get("body") or {}
                    status = body.get("status") if isinstance(body, dict) else None
                    is_status = entry.get("subresource") == "status" and isinstance(status, dict)
                    if is_status and status.get("phase") == "Succeeded":
                        done.add(str(entry["name"]))
                time.sleep(0.2)
            time.sleep(1)
            after = counters(sandbox)
            log = sandbox.requests(since=start_seq)
        finally:
            operator.stop()
            api.close()
    created = {
        str(e["body"]["metadata"]["name"]): e["time"]
        for e in log
        if e["resource"] == "migrations" and e["method"] == "POST"
    }
    first_write: dict[str, float] = {}
    for entry in log:
        if entry["resource"] == "deployments" and entry["method"] == "PATCH":
            owner = str(entry["name"]).rsplit("-", 1)[0]
            first_write.setdefault(owner, entry["time"])
    latencies = [first_write[n] - created[n] for n in created if n in first_write]
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    delta = {k: v for k, v in delta.items() if v}
    # Steps that write traffic: 3 weights (25, 50, 100) per migration.
    weight_steps = 3 * len(done)
    writes = {k: v for k, v in delta.items() if k[0] in ("create", "patch", "update", "delete")}
    reads = {k: v for k, v in delta.items() if k[0] in ("get", "list")}
    creates = sum(v for k, v in writes.items() if k[0] == "create" and k[1] == "migrations")
    return {
        "migrations": migrations,
        "succeeded": len(done),
        "create_to_first_step_seconds": {
            "median": statistics.median(latencies) if latencies else None,
            "p99": percentile(latencies, 0.99) if latencies else None,
            "max": max(latencies) if latencies else None,
        },
        "operator_writes_per_weight_step": (sum(writes.values()) - creates) / weight_steps
        if weight_steps
        else None,
        "operator_reads_per_weight_step": sum(reads.values()) / weight_steps
        if weight_steps
        else None,
        "requests_by_verb_resource": {f"{v} {r}": n for (v, r), n in sorted(delta.items())},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--migrations", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="one migration, for `make test`")
    parser.add_argument(
        "--output", type=Path, default=ROOT / "bench" / "results" / "first_step.json"
    )
    args = parser.parse_args()
    result = run(1 if args.smoke else args.migrations)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    latency = result["create_to_first_step_seconds"]
    print(f"migrations: {result['succeeded']}/{result['migrations']} succeeded")
    if latency["median"] is not None:
        print(
            f"create -> first step: median {latency['median'] * 1000:.0f} ms,"
            f" p99 {latency['p99'] * 1000:.0f} ms"
        )
    print(f"operator writes per weight step: {result['operator_writes_per_weight_step']:.2f}")
    print(f"operator reads per weight step: {result['operator_reads_per_weight_step']:.2f}")
    for key, count in result["requests_by_verb_resource"].items():
        print(f"  {key:40} {count}")
    return 0 if result["succeeded"] == result["migrations"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
