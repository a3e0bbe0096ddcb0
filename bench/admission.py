"""How fast the operator's admission webhooks answer, on a real control plane.

    .venv/bin/python bench/admission.py --requests 1000
    .venv/bin/python bench/admission.py --smoke
    .venv/bin/python bench/admission.py --requests 1000 --cluster-dir .cluster   # `make cluster`

The real operator (``kopf run``, the chart's RBAC) serves both webhooks on 127.0.0.1 and
registers its CA in the chart's webhook configurations (pointed at that port). Two figures:

- **webhook**: one AdmissionReview POSTed straight to ``/validate-migration`` and to
  ``/mutate-migration`` over TLS with the CA the operator published, until the answer is read:
  the time the API server waits for the operator (the configurations' ``timeoutSeconds`` bounds
  it);
- **apply**: a server-side dry-run create of a Migration as the admin, which the API server
  sends through both webhooks: what ``kubectl apply`` adds to a user's wait, all included.

Requests are sequential (a person or a GitOps sync applying Migrations one by one).
"""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from _common import ROOT, Bench, add_cluster_option, describe, migration, ms


def review(namespace: str, operation: str) -> dict[str, Any]:
    body = migration("orders", "orders-blue", "orders-green", [{"setWeight": 100}])
    body["metadata"]["namespace"] = namespace
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "cutover.io", "version": "v1alpha1", "kind": "Migration"},
            "resource": {"group": "cutover.io", "version": "v1alpha1", "resource": "migrations"},
            "requestKind": {"group": "cutover.io", "version": "v1alpha1", "kind": "Migration"},
            "name": "orders",
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "bench", "groups": ["system:authenticated"]},
            "object": body,
            "oldObject": None,
            "dryRun": False,
        },
    }


def post(port: int, context: ssl.SSLContext, path: str, body: bytes) -> float:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    started = time.perf_counter()
    connection.request("POST", path, body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    answer = json.loads(response.read())
    elapsed = time.perf_counter() - started
    connection.close()
    assert response.status == 200 and "response" in answer, answer
    return elapsed


def run(requests: int, cluster_dir: Path | None) -> dict[str, Any]:
    with Bench(cluster_dir, prefix="bench-adm") as bench:
        bench.start_operator(qps=100, burst=200, admission=True)
        ca = bench.published_ca()
        assert ca is not None
        context = ssl.create_default_context(cadata=ca.decode())
        figures: dict[str, list[float]] = {"validate": [], "mutate": [], "apply": []}
        for _ in range(requests):
            for kind in ("validate", "mutate"):
                body = json.dumps(review(bench.namespace, "CREATE")).encode()
                figures[kind].append(post(bench.webhook_port, context, f"/{kind}-migration", body))
        wanted = migration("orders", "orders-blue", "orders-green", [{"setWeight": 100}])
        for _ in range(min(requests, 200)):  # each also costs the API server an etcd-free write
            started = time.perf_counter()
            bench.custom.create_namespaced_custom_object(
                "cutover.io", "v1alpha1", bench.namespace, "migrations", wanted, dry_run="All"
            )
            figures["apply"].append(time.perf_counter() - started)
        return {kind: describe(values) for kind, values in figures.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=1000, help="requests per webhook")
    parser.add_argument("--smoke", action="store_true", help="20 requests: does it run at all")
    parser.add_argument(
        "--output", type=Path, default=ROOT / "bench" / "results" / "admission.json"
    )
    add_cluster_option(parser)
    args = parser.parse_args()
    result = run(20 if args.smoke else args.requests, args.cluster_dir)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    for kind, figures in result.items():
        print(
            f"{kind:9} n={figures['n']}  median {ms(figures['median'])}  p99 {ms(figures['p99'])}"
            f"  max {ms(figures['max'])}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
