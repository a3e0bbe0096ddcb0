"""Operator memory and CPU: RSS idle and with N active Migrations, CPU while they idle, and a
create -> finish -> delete soak.

The operator is a real ``kopf run`` process (the chart's RBAC) on a real control plane; psutil
reads its RSS and CPU times, the kube-apiserver's audit log its requests.

1. RSS with 0 Migrations (after ``--settle`` seconds);
2. RSS with ``--migrations`` active Migrations, each held at 10 % by an indefinite pause (one
   Kopf daemon each: the most a Migration costs);
3. CPU of the operator over ``--idle-seconds`` with those Migrations idle;
   then RSS once they are all promoted to the end and kept (finished runs, not deleted), and
   of the operator restarted among them;
4. soak: ``--lanes`` pairs of Deployments; each lane runs Migrations one after the other
   (A -> B, then B -> A, ...): create, wait for ``Succeeded`` in the write log, delete
   (with ``--soak-keep`` kept instead, as GitOps keeps them). Runs
   ``--cycles`` cycles or for ``--soak-seconds``; RSS is sampled after every round, growth is
   measured from the end of the warm-up (the first 20 % of cycles) and extrapolated linearly.

    .venv/bin/python bench/memory.py --migrations 1000 --idle-seconds 60 --soak-seconds 180
    .venv/bin/python bench/memory.py --migrations 1000 --admission   # as a default install
    .venv/bin/python bench/memory.py --migrations 0 --cycles 100000 --lanes 20   # long soak
    .venv/bin/python bench/memory.py --migrations 0 --cycles 2000 --lanes 40 --soak-keep
    .venv/bin/python bench/memory.py --smoke
"""

from __future__ import annotations

import time
from typing import Any

from _common import (
    Bench,
    add_admission_option,
    bench_parser,
    cpu_seconds,
    mib,
    migration,
    parallel,
    rss_then_later,
    save,
    status_of,
    wait_until,
)

from cutover.heap import TRIM_INTERVAL

KOPF_ALONE_MIB = 41  # anchor from the brief: a bare Kopf operator
ARGO_MIB_PER_ROLLOUT = 1.0  # argo-rollouts#2855: 11-13k Rollouts -> 11-14 GB


def rss(proc: Any) -> float:
    return float(proc.memory_info().rss)


def soak(
    bench: Bench, proc: Any, lanes: int, cycles: int | None, seconds: float, keep: bool = False
) -> dict[str, Any]:
    """``keep``: the finished Migrations are not deleted, as GitOps keeps them; RSS growth is
    then what each finished Migration the cluster keeps costs the process."""
    pairs = [(f"lane{k}-a", f"lane{k}-b") for k in range(lanes)]
    bench.create_deployments([(a, 2) for a, _ in pairs] + [(b, 0) for _, b in pairs])
    time.sleep(1)
    tail = bench.tail()
    done = 0
    rounds: list[tuple[int, float, float]] = []  # (cycles done, seconds, rss)
    start = time.monotonic()
    flip = False
    while True:
        if cycles is not None and done >= cycles:
            break
        if cycles is None and time.monotonic() - start >= seconds:
            break
        batch = lanes if cycles is None else min(lanes, cycles - done)
        names = [f"c{done + k}" for k in range(batch)]
        bodies = []
        for k, name in enumerate(names):
            a, b = pairs[k]
            blue, green = (b, a) if flip else (a, b)
            bodies.append(migration(name, blue, green, [{"setWeight": 100}]))
        bench.create_migrations(bodies, workers=min(8, batch))
        pending = set(names)

        def finished(pending: set[str] = pending) -> bool:
            for entry in tail.poll():
                status = status_of(entry)
                if status and status.get("phase") in ("Succeeded", "Failed", "RolledBack"):
                    pending.discard(str(entry["name"]))
            return not pending

        # A round right after 1,000 held Migrations were deleted waits behind the controller
        # manager's backlog (their 8,000 pods): over a minute on 2 cores.
        wait_until(finished, 300, interval=0.05)
        if not keep:
            bench.delete_migrations(names, workers=min(8, batch))
        done += batch
        flip = not flip
        rounds.append((done, time.monotonic() - start, rss(proc)))
    # let the deletions finish before the last reading
    time.sleep(2)
    rounds.append((done, time.monotonic() - start, rss(proc)))
    elapsed = rounds[-1][1]
    warm = next((r for r in rounds if r[0] >= max(1, done // 5)), rounds[0])
    end = rounds[-1]
    growth = (end[2] - warm[2]) / warm[2] if warm[2] else 0.0
    span = end[0] - warm[0]
    per_1000 = (end[2] - warm[2]) / span * 1000 if span > 0 else 0.0
    at_100k = (warm[2] + per_1000 * (100_000 - warm[0]) / 1000 - warm[2]) / warm[2]
    return {
        "kept": keep,
        "lanes": lanes,
        "cycles": done,
        "seconds": elapsed,
        "cycles_per_second": done / elapsed if elapsed else 0.0,
        "rss_after_warmup_mib": mib(warm[2]),
        "rss_end_mib": mib(end[2]),
        "rss_growth_after_warmup": growth,
        "rss_growth_bytes_per_1000_cycles": per_1000,
        "rss_growth_extrapolated_to_100k_cycles": at_100k,
        "hours_for_100k_cycles": 100_000 / (done / elapsed) / 3600 if done else None,
        "rss_series_mib": [(c, round(s, 1), round(mib(r), 2)) for c, s, r in rounds],
    }


def finished_and_kept(
    bench: Bench, proc: Any, names: list[str], args: Any
) -> tuple[dict[str, Any], Any]:
    """RSS once the held Migrations are promoted to the end and kept, as GitOps keeps them: a
    finished run has no daemon, so what it still costs is what the process keeps of it. Read
    after ``settle`` and again ``trim_wait`` seconds later (by default once the heap trimmer has
    run). Then the operator is restarted among them (an upgrade, a rescheduled pod) and read
    again: a process's RSS stays near its highest, so what it keeps of each finished
    Migration shows best in a process that only ever had finished ones. Returns the report and
    the restarted operator."""
    settle, trim_wait = args.settle, args.trim_wait
    started = time.monotonic()
    parallel(lambda n: bench.annotate(n, {"cutover.io/request": f"promote:bench-{n}"}), names, 8)
    done = {"Succeeded", "RolledBack", "Failed"}

    def all_done() -> bool:
        phases = bench.phases()
        return all(phases.get(n) in done for n in names)

    wait_until(all_done, 120 + 2 * len(names), interval=2)
    finished_in = time.monotonic() - started
    phases = bench.phases()
    kept, kept_later = rss_then_later(proc, settle, trim_wait)
    print(
        f"RSS with {len(names)} finished Migrations kept: {kept:.1f} MiB,"
        f" {kept_later:.1f} MiB {trim_wait:.0f}s later",
        flush=True,
    )
    proc = bench.start_operator(args.qps, args.burst)
    restarted, restarted_later = rss_then_later(proc, settle, trim_wait)
    print(
        f"RSS of an operator restarted among them: {restarted:.1f} MiB,"
        f" {restarted_later:.1f} MiB {trim_wait:.0f}s later",
        flush=True,
    )
    report = {
        "seconds_to_all_finished": finished_in,
        "phases_when_finished": {p: list(phases.values()).count(p) for p in sorted(done)},
        "rss_finished_kept_mib": kept,
        "rss_finished_kept_later_mib": kept_later,
        "later_by_seconds": trim_wait,
        "rss_restarted_among_finished_mib": restarted,
        "rss_restarted_among_finished_later_mib": restarted_later,
    }
    return report, proc


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, qps=1000, burst=2000, smoke="5 Migrations, 5 s windows")
    parser.add_argument("--migrations", type=int, default=1000, help="active Migrations (1000)")
    parser.add_argument("--idle-seconds", type=float, default=60, help="CPU window (60)")
    parser.add_argument("--settle", type=float, default=10, help="wait before readings (10)")
    parser.add_argument("--lanes", type=int, default=10, help="parallel soak lanes (10)")
    parser.add_argument("--cycles", type=int, default=None, help="soak cycles (default: time)")
    parser.add_argument("--soak-seconds", type=float, default=120, help="soak length (120)")
    parser.add_argument(
        "--soak-keep", action="store_true", help="soak without deleting the finished Migrations"
    )
    add_admission_option(parser)
    parser.add_argument(
        "--trim-wait",
        type=float,
        default=TRIM_INTERVAL + 5,
        help="second RSS reading of the finished Migrations this much later (a trim interval)",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.migrations, args.idle_seconds, args.settle = 5, 5, 3
        args.lanes, args.cycles, args.trim_wait = 2, 6, 1
    report: dict[str, Any] = {"settings": vars(args) | {"output": str(args.output)}}
    with Bench(args.cluster_dir) as bench:
        proc = bench.start_operator(args.qps, args.burst, admission=args.admission)
        time.sleep(args.settle)
        rss_0 = rss(proc)
        print(f"RSS with 0 Migrations: {mib(rss_0):.1f} MiB", flush=True)
        report["rss_idle_0_mib"] = mib(rss_0)
        if args.migrations:
            names = [f"m{i}" for i in range(args.migrations)]
            bench.create_deployments(
                [(f"{n}-blue", 4) for n in names] + [(f"{n}-green", 0) for n in names]
            )
            settled_in = bench.wait_available(timeout=600 + args.migrations)
            print(f"blue Deployments available after {settled_in:.1f}s", flush=True)
            start = time.monotonic()
            bench.create_migrations(
                [
                    migration(
                        n,
                        f"{n}-blue",
                        f"{n}-green",
                        [{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}],
                    )
                    for n in names
                ]
            )

            settled = {"Paused", "Succeeded", "RolledBack", "Failed"}

            def all_settled() -> bool:
                phases = bench.phases()
                return all(phases.get(n) in settled for n in names)

            # Under overload some can roll back (progressDeadline) instead of pausing: they are
            # counted, not waited for forever.
            wait_until(all_settled, 120 + 2 * args.migrations, interval=2)
            report["seconds_to_all_settled"] = time.monotonic() - start
            phases = bench.phases()
            report["phases_when_settled"] = {
                p: list(phases.values()).count(p) for p in sorted(set(phases.values()))
            }
            time.sleep(args.settle)
            rss_n = rss(proc)
            before_counts = bench.counters()
            cpu_0, t_0 = cpu_seconds(proc), time.monotonic()
            time.sleep(args.idle_seconds)
            cpu_1, t_1 = cpu_seconds(proc), time.monotonic()
            after_counts = bench.counters()
            idle_requests = sum(after_counts.values()) - sum(before_counts.values())
            cpu = (cpu_1 - cpu_0) / (t_1 - t_0)
            per = (rss_n - rss_0) / args.migrations
            report.update(
                {
                    "rss_active_mib": mib(rss_n),
                    "active_migrations": args.migrations,
                    "rss_per_active_migration_kib": per / 1024,
                    "ratio_to_argo_1mb_per_rollout": (per / 2**20) / ARGO_MIB_PER_ROLLOUT,
                    "cpu_idle_fraction_of_core": cpu,
                    "idle_window_seconds": t_1 - t_0,
                    "requests_during_idle_window": idle_requests,
                    "rss_after_idle_window_mib": mib(rss(proc)),
                }
            )
            print(
                f"RSS with {args.migrations} active (paused) Migrations: {mib(rss_n):.1f} MiB"
                f" ({per / 1024:.1f} KiB each); CPU while idle {cpu * 100:.2f} % of a core over"
                f" {t_1 - t_0:.0f}s ({idle_requests} API requests)",
                flush=True,
            )
            finished, proc = finished_and_kept(bench, proc, names, args)
            report.update(finished)
            bench.delete_migrations(names)
            wait_until(lambda: not bench.migrations(), 120 + args.migrations, interval=2)
            time.sleep(args.settle)
            report["rss_after_delete_all_mib"] = mib(rss(proc))
            print(f"RSS after deleting them: {report['rss_after_delete_all_mib']:.1f} MiB")
        result = soak(bench, proc, args.lanes, args.cycles, args.soak_seconds, args.soak_keep)
        report["soak"] = result
        print(
            f"soak: {result['cycles']} cycles in {result['seconds']:.0f}s"
            f" ({result['cycles_per_second']:.1f}/s), RSS {result['rss_after_warmup_mib']:.1f} ->"
            f" {result['rss_end_mib']:.1f} MiB ({result['rss_growth_after_warmup'] * 100:+.2f} %"
            f" after warm-up; {result['rss_growth_bytes_per_1000_cycles'] / 1024:.0f} KiB per"
            f" 1000 cycles; extrapolated to 100k:"
            f" {result['rss_growth_extrapolated_to_100k_cycles'] * 100:+.1f} %)",
            flush=True,
        )
        report["rbac_denied"] = bench.denied()
    report["anchors"] = {"kopf_alone_mib": KOPF_ALONE_MIB, "argo_mib_per_rollout": 1.0}
    save("memory", report, args.output, args.smoke)
    return 1 if report["rbac_denied"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
