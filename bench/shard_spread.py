"""How evenly shards split namespaces: the operator's crc32 label, against the API server's
sharded list and watch (KEP-5866, alpha in Kubernetes 1.36) keyed by the namespace.

The operator gives a namespace to shard ``crc32(name) % N`` (``cutover.scaleout.shard_of``).
The API server's ``shardSelector`` instead keeps an object when the 64-bit FNV-1a hash of a
field falls in a range, ``shardRange(object.metadata.namespace, start, end)``; N shards would
take N equal ranges of the hash space (``k8s.io/apimachinery/pkg/sharding``: ``HashField`` and
the comparison in ``Matches``). A range of the hash is decided by its top bits, and FNV-1a's top
bits barely move when only the last bytes of the name do: names that differ in a numbered
suffix land in one range.

Reported, per set of names: how many namespaces each shard gets both ways. With
``--cluster-dir`` (a control plane whose kube-apiserver runs with
``--feature-gates=ShardedListAndWatch=true``), the FNV figures are also asked of the API server:
one ConfigMap per namespace, listed across namespaces with each shard's selector; the server
must echo the selector in ``metadata.shardInfo``, or it ignored it.

    .venv/bin/python bench/shard_spread.py --shards 3
    .venv/bin/python bench/shard_spread.py --shards 3 --cluster-dir DIR   # a gated 1.36+ plane
"""

from __future__ import annotations

import argparse
import json
import random
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from _common import save, wait_until
from rich.console import Console
from rich.table import Table

from cutover.scaleout import shard_of

HASH_SPACE = 1 << 64
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
WORDS = (
    "payments",
    "checkout",
    "cart",
    "search",
    "auth",
    "users",
    "orders",
    "billing",
    "inventory",
    "shipping",
    "catalog",
    "reviews",
    "ads",
    "analytics",
    "email",
    "notify",
    "gateway",
    "frontend",
    "backend",
    "api",
    "web",
    "mobile",
    "ml",
    "data",
    "etl",
    "reports",
    "admin",
    "support",
    "chat",
    "media",
)
ENVIRONMENTS = ("dev", "staging", "prod", "qa")


def fnv1a_64(text: str) -> int:
    value = FNV_OFFSET
    for byte in text.encode():
        value = ((value ^ byte) * FNV_PRIME) % HASH_SPACE
    return value


def fmix64(value: int) -> int:
    """murmur3's finalizer: every input bit moves every output bit, top bits included."""
    value ^= value >> 33
    value = (value * 0xFF51AFD7ED558CCD) % HASH_SPACE
    value ^= value >> 33
    value = (value * 0xC4CEB9FE1A85EC53) % HASH_SPACE
    return value ^ (value >> 33)


def range_bounds(index: int, count: int) -> tuple[int, int]:
    """Shard ``index`` of ``count`` equal ranges, ``[start, end)``, as a client would cut them."""
    return index * HASH_SPACE // count, (index + 1) * HASH_SPACE // count


def range_shard(namespace: str, count: int) -> int:
    return _in_range(fnv1a_64(namespace), count)


def mixed_range_shard(namespace: str, count: int) -> int:
    """What the ranges would give if the server mixed the hash first (not what 1.36 does)."""
    return _in_range(fmix64(fnv1a_64(namespace)), count)


def _in_range(value: int, count: int) -> int:
    # The ranges are contiguous from 0 upwards: the first that ends above the value holds it.
    return next(i for i in range(count) if value < range_bounds(i, count)[1])


def shard_selector(index: int, count: int) -> str:
    start, end = range_bounds(index, count)
    return f"shardRange(object.metadata.namespace, '0x{start:016x}', '0x{end:016x}')"


def name_sets(seed: int) -> dict[str, list[str]]:
    """Namespace names as clusters name them: numbered tenants, service-environment pairs, and
    random suffixes (generated names)."""
    rng = random.Random(seed)
    return {
        "team-NN (60)": [f"team-{n:02d}" for n in range(60)],
        "tenant-NNNN (1,000)": [f"tenant-{n:04d}" for n in range(1000)],
        "service-environment (120)": [f"{w}-{e}" for w in WORDS for e in ENVIRONMENTS],
        "environment-service (120)": [f"{e}-{w}" for w in WORDS for e in ENVIRONMENTS],
        "ns-<8 random hex> (1,000)": [
            f"ns-{uuid.UUID(int=rng.getrandbits(128)).hex[:8]}" for _ in range(1000)
        ],
    }


def counts(names: list[str], count: int, assign: Any) -> list[int]:
    tally = Counter(assign(name, count) for name in names)
    return [tally[index] for index in range(count)]


def imbalance(per_shard: list[int]) -> float:
    """The busiest shard's share over a fair share: 1.0 is even, N means one shard has all."""
    return max(per_shard) * len(per_shard) / sum(per_shard)


def ask_the_server(cluster_dir: Path, names: list[str], count: int) -> dict[str, Any]:
    """One ConfigMap per namespace, then each shard's selector: what the API server returns."""
    from kubernetes import client, config  # the bench's own dependency, not the operator's

    api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
        str(cluster_dir / "kubeconfig")
    )
    core = client.CoreV1Api(api_client)
    label = {"cutover.io/shard-spread": "1"}
    selector = "cutover.io/shard-spread=1"

    def none_left() -> bool:
        return not core.list_namespace(label_selector=selector).items

    # A namespace being deleted (an earlier run's) cannot be created again until it is gone.
    wait_until(none_left, timeout=180, interval=1.0)
    try:
        for name in names:
            core.create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=label))
            )
            core.create_namespaced_config_map(
                name, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="probe", labels=label))
            )
        per_shard, echoed = [], []
        for index in range(count):
            request = api_client.param_serialize(
                method="GET",
                resource_path="/api/v1/configmaps",
                query_params=[
                    ("labelSelector", selector),
                    ("shardSelector", shard_selector(index, count)),
                ],
                auth_settings=["BearerToken"],
            )
            response = api_client.call_api(*request)
            response.read()
            listed = json.loads(response.data)
            per_shard.append(len(listed.get("items") or []))
            echoed.append(bool((listed.get("metadata") or {}).get("shardInfo")))
        return {"per_shard": per_shard, "server_applied_selector": all(echoed)}
    finally:
        for namespace in core.list_namespace(label_selector=selector).items:
            if namespace.metadata is not None and namespace.metadata.name:
                core.delete_namespace(namespace.metadata.name)
        wait_until(none_left, timeout=180, interval=1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=3, help="(3)")
    parser.add_argument("--seed", type=int, default=1, help="for the random names (1)")
    parser.add_argument("--cluster-dir", type=Path, help="a control plane to ask as well")
    parser.add_argument("--output", type=Path, help="where the JSON goes")
    args = parser.parse_args(argv)
    rows = []
    table = Table(title=f"namespaces per shard, {args.shards} shards (busiest over fair share)")
    for column in ("names", "crc32 % N (the operator)", "FNV-1a ranges (KEP-5866)"):
        table.add_column(column)
    table.add_column("FNV-1a, mixed, ranges (not in 1.36)")
    for label, names in name_sets(args.seed).items():
        by_label = counts(names, args.shards, shard_of)
        by_range = counts(names, args.shards, range_shard)
        by_mixed = counts(names, args.shards, mixed_range_shard)
        row: dict[str, Any] = {
            "names": label,
            "crc32_mod": by_label,
            "fnv_ranges": by_range,
            "fnv_fmix64_ranges": by_mixed,
            "imbalance": {
                "crc32_mod": imbalance(by_label),
                "fnv_ranges": imbalance(by_range),
                "fnv_fmix64_ranges": imbalance(by_mixed),
            },
        }
        if args.cluster_dir is not None and len(names) <= 120:
            row["api_server"] = ask_the_server(args.cluster_dir, names, args.shards)
            assert row["api_server"]["per_shard"] == by_range, row
        rows.append(row)
        table.add_row(
            label,
            *(
                f"{per_shard} x{imbalance(per_shard):.2f}"
                for per_shard in (by_label, by_range, by_mixed)
            ),
        )
    Console().print(table)
    report = {
        "shards": args.shards,
        "rows": rows,
        "selectors": [shard_selector(i, args.shards) for i in range(args.shards)],
    }
    path = save("shard_spread", report, args.output, smoke=False)
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
