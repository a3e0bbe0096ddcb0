"""Many Migrations across shard processes: every one started and held, what each shard carries.

``--migrations`` Migrations spread over ``--namespaces`` namespaces, run by ``--shards``
operator processes (``CUTOVER_SHARDS``/``CUTOVER_SHARD``, the chart's cluster-wide RBAC,
watching the bench's namespaces). Each Migration is labelled with its namespace's shard at
creation, as the chart's mutating webhook labels it, and is created with ``spec.paused: true``
between two Deployments of 0 replicas: it starts (its status written, its daemon running) and
holds, so no pods are made and the control plane can carry 10,000 on one machine. A held
Migration costs a shard what an active one does between its steps: a Kopf daemon and its
latest body.

Reported: the time from the first creation until every Migration is Paused; per shard, the
Migrations it reports in ``cutover_migrations`` (its /metrics: each must hold only its own
shard's), its RSS (peak while starting, and settled), and its CPU while they all idle: over
consecutive 30 s windows once all are held (the first still holds the end of the start-up),
with the kube-apiserver's and the controller manager's beside it. The operators start once the
controllers are done with the Deployments, whose status events would otherwise reach them
during the idle windows.

    .venv/bin/python bench/shards.py --migrations 10000 --shards 3 --namespaces 30
    .venv/bin/python bench/shards.py --smoke
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections import Counter
from typing import Any, cast

import psutil
from _common import (
    GROUP,
    PLURAL,
    VERSION,
    Bench,
    OperatorProcess,
    bench_parser,
    cpu_seconds,
    deployment,
    mib,
    migration,
    parallel,
    save,
    wait_until,
)
from prometheus_client.parser import text_string_to_metric_families

from cutover.scaleout import SHARD_LABEL, shard_of
from tests.support.admission import free_port
from tests.support.controlplane import new_namespace

IDLE_SECONDS = 30.0
# Below this, the controller manager has finished with the Deployments the bench created.
QUIET_CORES = 0.05


def cpu_rate(proc: psutil.Process, seconds: float) -> float:
    """The cores ``proc`` used over the next ``seconds``."""
    before = cpu_seconds(proc)
    time.sleep(seconds)
    return (cpu_seconds(proc) - before) / seconds


def namespaces_per_shard(plane: Any, prefix: str, count: int, shards: int) -> list[str]:
    """``count`` new namespaces named ``prefix<n>``, as evenly over the shards as their hashes
    allow: the first candidate names that fill each shard's share in turn."""
    share = -(-count // shards)
    chosen: list[str] = []
    per_shard: Counter[int] = Counter()
    candidate = 0
    while len(chosen) < count:
        name = f"{prefix}{candidate}"
        candidate += 1
        shard = shard_of(name, shards)
        if per_shard[shard] < share:
            per_shard[shard] += 1
            chosen.append(new_namespace(plane, name=name))
    return chosen


def held_migration(namespace: str, name: str, shards: int) -> dict[str, Any]:
    body = migration(
        name,
        f"{name}-blue",
        f"{name}-green",
        [{"setWeight": 50}, {"setWeight": 100}],
        paused=True,
    )
    body["metadata"]["labels"] = {SHARD_LABEL: str(shard_of(namespace, shards))}
    return body


def migrations_by_phase(url: str) -> dict[str, float]:
    """The operator's ``cutover_migrations`` gauge at ``url`` (its /metrics), by phase."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        sample.labels["phase"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "cutover_migrations"
        for sample in family.samples
    }


def phase_counts(bench: Bench, namespaces: list[str]) -> Counter[str]:
    phases: Counter[str] = Counter()
    for namespace in namespaces:
        listed = cast(
            dict[str, Any],
            bench.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL),
        )
        for item in listed.get("items") or []:
            phases[str((item.get("status") or {}).get("phase") or "")] += 1
    return phases


def run(args: Any) -> dict[str, Any]:
    per_namespace = -(-args.migrations // args.namespaces)
    with Bench(args.cluster_dir, chart_values={"watchNamespace": ""}) as bench:
        assert bench.kubeconfig is not None
        # A prefix of its own, so that the operators watch only this run's namespaces.
        prefix = f"shards-{uuid.uuid4().hex[:6]}-"
        namespaces = namespaces_per_shard(bench.plane, prefix, args.namespaces, args.shards)
        pairs = [
            (namespace, f"m{index}") for namespace in namespaces for index in range(per_namespace)
        ][: args.migrations]

        def create_pair(pair: tuple[str, str]) -> None:
            namespace, name = pair
            for side in ("blue", "green"):
                bench.apps.create_namespaced_deployment(
                    namespace,
                    deployment(f"{name}-{side}", 0),  # type: ignore[arg-type]
                )

        started = time.monotonic()
        parallel(create_pair, pairs, 16)
        print(f"{2 * len(pairs)} Deployments in {time.monotonic() - started:.0f}s", flush=True)
        # The controllers give each new Deployment a ReplicaSet and a status: events the
        # operators would take for their Migrations' idling if they came later.
        controllers = bench.component("kube-controller-manager")
        wait_until(lambda: cpu_rate(controllers, 5.0) < QUIET_CORES, args.timeout)
        print(f"controllers quiet after {time.monotonic() - started:.0f}s", flush=True)
        operators: list[tuple[OperatorProcess, psutil.Process, str]] = []
        try:
            for index in range(args.shards):
                port = free_port()
                shard = OperatorProcess(
                    bench.kubeconfig,
                    f"{prefix}*",
                    bench.workdir / f"operator-shard{index}.log",
                    {
                        "CUTOVER_SHARDS": str(args.shards),
                        "CUTOVER_SHARD": str(index),
                        "CUTOVER_API_QPS": str(args.qps),
                        "CUTOVER_API_BURST": str(args.burst),
                        "CUTOVER_METRICS_PORT": str(port),
                    },
                ).start()
                assert shard.proc is not None
                process = psutil.Process(shard.proc.pid)
                operators.append((shard, process, f"http://127.0.0.1:{port}/metrics"))
            return measure(args, bench, namespaces, pairs, operators)
        finally:
            for shard, _, _ in operators:
                shard.stop()


def measure(
    args: Any,
    bench: Bench,
    namespaces: list[str],
    pairs: list[tuple[str, str]],
    operators: list[tuple[OperatorProcess, psutil.Process, str]],
) -> dict[str, Any]:
    wait_until(lambda: all(_answers(url) for _, _, url in operators), 60)
    rss_before = [mib(p.memory_info().rss) for _, p, _ in operators]
    peaks = list(rss_before)

    def create(pair: tuple[str, str]) -> None:
        namespace, name = pair
        bench.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, held_migration(namespace, name, args.shards)
        )

    first_created = time.monotonic()
    parallel(create, pairs, 16)
    created = time.monotonic() - first_created
    print(f"{len(pairs)} Migrations created in {created:.0f}s", flush=True)

    def all_paused() -> bool:
        for index, (_, proc, _) in enumerate(operators):
            peaks[index] = max(peaks[index], mib(proc.memory_info().rss))
        held = sum(migrations_by_phase(url).get("Paused", 0) for _, _, url in operators)
        return held >= len(pairs)

    wait_until(all_paused, args.timeout, interval=2.0)
    all_held = time.monotonic() - first_created
    phases = phase_counts(bench, namespaces)
    print(f"all {len(pairs)} Paused {all_held:.0f}s after the first creation: {phases}", flush=True)
    # Consecutive windows: the first ones still hold the end of the start-up (watch events of
    # the last writes); the last one is the idle cost.
    watched = [p for _, p, _ in operators] + [
        bench.component("kube-apiserver"),
        bench.component("kube-controller-manager"),
    ]
    windows: list[list[float]] = []
    for _ in range(args.idle_windows):
        before = [cpu_seconds(p) for p in watched]
        time.sleep(IDLE_SECONDS)
        used = [(cpu_seconds(p) - b) / IDLE_SECONDS for p, b in zip(watched, before, strict=True)]
        windows.append(used)
        print(
            "CPU over 30 s, % of a core: shards "
            + ", ".join(f"{100 * u:.2f}" for u in used[: len(operators)])
            + f"; kube-apiserver {100 * used[-2]:.1f}, controller manager {100 * used[-1]:.1f}",
            flush=True,
        )
    cpu_idle = windows[-1][: len(operators)]
    expected = Counter(shard_of(namespace, args.shards) for namespace, _ in pairs)
    shards: list[dict[str, Any]] = []
    for index, (_, proc, url) in enumerate(operators):
        counts = migrations_by_phase(url)
        settled = mib(proc.memory_info().rss)
        shards.append(
            {
                "shard": index,
                "its_migrations": expected[index],
                "migrations_reported": {phase: n for phase, n in counts.items() if n},
                "rss_before_mib": rss_before[index],
                "rss_peak_mib": max(peaks[index], settled),
                "rss_settled_mib": settled,
                "cpu_idle_cores": cpu_idle[index],
            }
        )
        shard = shards[-1]
        print(
            f"shard {index}: {expected[index]} of its own, reports"
            f" {shard['migrations_reported']}; RSS {rss_before[index]:.1f} -> peak"
            f" {shard['rss_peak_mib']:.1f}, settled {shard['rss_settled_mib']:.1f} MiB;"
            f" idle CPU {100 * cpu_idle[index]:.2f} % of a core",
            flush=True,
        )
    return {
        "migrations": len(pairs),
        "shards": args.shards,
        "namespaces": len(namespaces),
        "create_seconds": created,
        "all_paused_after_seconds": all_held,
        "phases": dict(phases),
        "idle_seconds": IDLE_SECONDS,
        "cpu_windows_cores": [
            {
                "shards": window[: len(operators)],
                "kube_apiserver": window[-2],
                "kube_controller_manager": window[-1],
            }
            for window in windows
        ],
        "per_shard": shards,
        "each_shard_holds_only_its_own": all(
            s["migrations_reported"].get("Paused") == s["its_migrations"] for s in shards
        ),
    }


def _answers(url: str) -> bool:
    try:
        migrations_by_phase(url)
    except OSError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(
        __doc__,
        qps=200,
        burst=400,
        smoke="30 Migrations, 3 shards, 3 namespaces",
        qps_help="each shard's QPS (the chart's per-pod figure in the sizing table, 200)",
        burst_help="each shard's burst",
    )
    parser.add_argument("--migrations", type=int, default=10_000, help="(10,000)")
    parser.add_argument("--shards", type=int, default=3, help="operator processes (3)")
    parser.add_argument("--namespaces", type=int, default=30, help="spread over (30)")
    parser.add_argument("--timeout", type=float, default=1800, help="for all to be held (s)")
    parser.add_argument(
        "--idle-windows", type=int, default=6, help="30 s windows of CPU after all are held (6)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.migrations, args.shards, args.namespaces, args.idle_windows = 30, 3, 3, 1
    report = run(args)
    settings = vars(args) | {"output": str(args.output)}
    save("shards", {"settings": settings, **report}, args.output, args.smoke)
    return 0 if report["each_shard_holds_only_its_own"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
