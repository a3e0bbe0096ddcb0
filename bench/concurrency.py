"""Many concurrent Migrations in one namespace: step latency, missed or doubled steps.

N Migrations (no gates), steps 10 % -> pause -> 50 % -> pause -> 100 %, created together against
the real operator (``kopf run``, watching the namespace, with the chart's RBAC) on a real control
plane. ``--router replicas`` (the default): blue has 10 replicas so every weight is a distinct
replica split. ``--router gatewayapi``: each Migration has its own HTTPRoute and two Services
(Gateway API's real CRD installed); green is scaled to blue's size once, the weights are route
writes.

* step latency: a timed pause is due ``pause`` after the kube-apiserver acknowledged the status
  write that started it (issue 16: pauses last what the spec says from that write; the audit
  event's ``stageTimestamp``); the step after it is done when the kube-apiserver completes its
  first router write: a replica PATCH, or the route PATCH. Also reported: the same from the
  ``stepStartedAt`` that write carries (the decision, earlier by the write's latency), the
  wait split between the operator and the API server, and pauses cut short (the next step's
  intent received before the pause was due: must be 0);
* create -> first write: the Migration's POST returning to its first router write;
* correctness: per Migration the sequence of router writes must be exactly the ideal one
  (replicas: green 1, blue 9, green 5, blue 5, green 10, blue 0; gatewayapi: green scaled up,
  route 10, 50, 100, blue 0): anything else is a missed or doubled step;
* CPU of the kube-apiserver, etcd and the operator (psutil), to tell which is the bottleneck.

    .venv/bin/python bench/concurrency.py --migrations 100 500 1000 --qps 500 --burst 1000
    .venv/bin/python bench/concurrency.py --smoke
"""

from __future__ import annotations

import collections
import statistics
import time
from pathlib import Path
from typing import Any

from _common import (
    READ_VERBS,
    READS_PER_STEP_BUDGET,
    WRITE_VERBS,
    WRITES_PER_STEP_BUDGET,
    Bench,
    LogTail,
    Sampler,
    add_admission_option,
    bench_parser,
    delta,
    describe,
    flat,
    gateway_api,
    mib,
    migration,
    ms,
    parse_time,
    replicas_written,
    route_weight_written,
    save,
    status_of,
    total,
)

from cutover.core.plan import replica_split
from cutover.durations import parse_duration

BLUE_REPLICAS = 10
WEIGHTS = (10, 50, 100)
ROUTERS = ("replicas", "gatewayapi")
ROUTE = "route"  # a route write's label in a run's sequence of router writes


def steps(pause: str) -> list[dict[str, Any]]:
    return [
        {"setWeight": 10},
        {"pause": {"duration": pause}},
        {"setWeight": 50},
        {"pause": {"duration": pause}},
        {"setWeight": 100},
    ]


def ideal_writes(name: str, blue_replicas: int = BLUE_REPLICAS) -> list[tuple[str, int]]:
    """The replica PATCHes of a perfect run: grow one side, then shrink the other."""
    blue, green = blue_replicas, 0
    out: list[tuple[str, int]] = []
    for weight in WEIGHTS:
        want_blue, want_green = replica_split(blue_replicas, weight)
        order = [("green", want_green), ("blue", want_blue)]
        if want_green < green:
            order.reverse()
        for side, count in order:
            if (blue, green)[side == "green"] != count:
                out.append((f"{name}-{side}", count))
        blue, green = want_blue, want_green
    if blue:
        out.append((f"{name}-blue", 0))  # finishing retires blue
    return out


def ideal_route_writes(name: str, blue_replicas: int) -> list[tuple[str, int]]:
    """A perfect run with a weight router: green at blue's size, the route's three weights,
    then blue scaled to zero (retiring the route only drops the operator's annotation: the
    last step left all traffic on green)."""
    return [
        (f"{name}-green", blue_replicas),
        *((ROUTE, weight) for weight in WEIGHTS),
        (f"{name}-blue", 0),
    ]


def one_run(
    size: int,
    pause: str,
    qps: float,
    burst: int,
    timeout: float,
    cluster_dir: Path | None,
    blue_replicas: int = BLUE_REPLICAS,
    progress_deadline: str | None = None,
    router: str = "replicas",
    admission: bool = False,
) -> dict[str, Any]:
    names = [f"m{i}" for i in range(size)]
    pause_s = parse_duration(pause)
    routed = router != "replicas"
    with Bench(
        cluster_dir,
        chart_values={"routers": {router: {"enabled": True}}} if routed else None,
        third_party_crds=routed,
    ) as bench:
        bench.create_deployments(
            [(f"{n}-blue", blue_replicas) for n in names] + [(f"{n}-green", 0) for n in names]
        )
        if routed:
            bench.create_routes(names)
        settled_in = bench.wait_available(timeout=600 + size * blue_replicas * 0.2)
        print(f"{size * blue_replicas} blue pods available after {settled_in:.1f}s", flush=True)
        operator = bench.start_operator(qps, burst, admission=admission)
        procs = {
            "operator": operator,
            "kube-apiserver": bench.component("kube-apiserver"),
            "etcd": bench.component("etcd"),
        }
        tail = bench.tail()
        tail_start = tail.seq
        before = bench.counters()
        succeeded: set[str] = set()
        started = time.monotonic()
        with Sampler(procs) as sampler:
            bench.create_migrations(
                [bench_migration(n, pause, progress_deadline, router) for n in names],
                workers=8 if size > 10 else 1,
            )
            created_in = time.monotonic() - started
            deadline = time.monotonic() + timeout
            tail.wait_succeeded(succeeded, size, deadline, every=0.5)
            elapsed = time.monotonic() - started
            time.sleep(1)
            tail.poll()
        after, log_text, denied, created = bench.outcome()
        assert bench.audit is not None
        requests = [e for e in bench.audit.entries if e["seq"] > tail_start]
    counts = delta(after, before)
    analysed = analyse(
        names,
        tail,
        counts,
        pause_s,
        succeeded,
        sampler,
        elapsed,
        created_in,
        log_text,
        created,
        blue_replicas,
        router,
    )
    return analysed | {
        "start_breakdown_seconds": start_breakdown(names, requests, created),
        "router": router,
        "admission_webhooks": admission,
        "qps": qps,
        "burst": burst,
        "rbac_denied": denied,
        "blue_replicas": blue_replicas,
        "blue_settled_seconds": settled_in,
        "progress_deadline": progress_deadline,
    }


def bench_migration(
    name: str, pause: str, progress_deadline: str | None = None, router: str = "replicas"
) -> dict[str, Any]:
    extra: dict[str, Any] = {"progressDeadline": progress_deadline} if progress_deadline else {}
    body = migration(name, f"{name}-blue", f"{name}-green", steps(pause), **extra)
    return gateway_api(body) if router == "gatewayapi" else body


def _owner(entry: dict[str, Any]) -> str | None:
    """The Migration a request of the operator was about (the bench names everything after it:
    ``m7``, ``m7-blue``, ``m7-green``, the route ``m7``); None for Events and lists."""
    name = entry.get("name")
    if not name or entry["resource"] in ("events", None):
        return None
    if entry["resource"] in ("migrations", "httproutes"):
        return str(name)
    if entry["resource"] in ("deployments", "services"):
        return str(name).rsplit("-", 1)[0]
    return None


def start_breakdown(
    names: list[str], requests: list[dict[str, Any]], created: dict[str, float]
) -> dict[str, dict[str, float | int | None]]:
    """Where each start's create -> first router write went, from the audit log (every request of
    the operator, reads included): the Migration's POST returned -> the operator's first request
    about it received (the watch event, Kopf, the daemon's start, a place in the operator's
    request queue) -> its status intent received (the start's checks; without webhooks, also
    the wait for Kopf's finalizer) -> acknowledged (the API server) -> its first Deployment write
    received (the operator) -> acknowledged (the API server)."""
    first: dict[str, float] = {}
    intent: dict[str, tuple[float, float]] = {}
    router: dict[str, tuple[float, float]] = {}
    for entry in requests:
        owner = _owner(entry)
        if owner is None or owner not in created:
            continue
        received, acked = float(entry["received"]), float(entry["time"])
        first.setdefault(owner, received)
        if entry["method"] == "GET":
            continue
        if status_of(entry) is not None:
            intent.setdefault(owner, (received, acked))
        elif replicas_written(entry) is not None and owner in intent:
            router.setdefault(owner, (received, acked))
    parts: dict[str, list[float]] = collections.defaultdict(list)
    for name in names:
        if name not in created or name not in intent or name not in router:
            continue
        parts["1_created_to_first_request"].append(first[name] - created[name])
        parts["2_first_request_to_intent_sent"].append(intent[name][0] - first[name])
        parts["3_server_intent"].append(intent[name][1] - intent[name][0])
        parts["4_intent_to_router_write_sent"].append(router[name][0] - intent[name][1])
        parts["5_server_router_write"].append(router[name][1] - router[name][0])
    return {k: describe(v) for k, v in sorted(parts.items())}


def analyse(
    names: list[str],
    tail: LogTail,
    counts: dict[tuple[str, str], int],
    pause_s: float,
    succeeded: set[str],
    sampler: Sampler,
    elapsed: float,
    created_in: float,
    log_text: str,
    created: dict[str, float],
    blue_replicas: int = BLUE_REPLICAS,
    router: str = "replicas",
) -> dict[str, Any]:
    statuses: dict[str, list[tuple[int, float, dict[str, Any]]]] = collections.defaultdict(list)
    patches: dict[str, list[tuple[int, float, str, int]]] = collections.defaultdict(list)
    # When the API server received each of those writes (the audit log's
    # requestReceivedTimestamp), by sequence number: the gap from the previous write's
    # acknowledgement to this one's receipt is the operator's time, the rest the server's.
    received: dict[int, float] = {}
    for entry in tail.entries:
        status = status_of(entry)
        if status is not None:
            statuses[str(entry["name"])].append((int(entry["seq"]), float(entry["time"]), status))
            received[int(entry["seq"])] = float(entry["received"])
            continue
        count = replicas_written(entry)
        label = str(entry["name"])
        owner = label.rsplit("-", 1)[0]
        if count is None and router == "gatewayapi":
            owner = str(entry["name"])  # the route is named after its Migration
            label, count = ROUTE, route_weight_written(entry, f"{owner}-green")
        if count is not None:
            patches[owner].append((int(entry["seq"]), float(entry["time"]), label, count))
            received[int(entry["seq"])] = float(entry["received"])

    # Due: the pause's status write acknowledged + the pause (issue 16: a timed pause lasts
    # what the spec says from the status write that starts it).
    step_latency: list[float] = []
    from_decision: list[float] = []  # due: the stepStartedAt that write carries + the pause
    backdated: list[float] = []  # that write's time - the stepStartedAt it carries
    cut_short = 0  # the next step's intent received before the pause was over
    first_write: list[float] = []
    # The step after a pause, split where it waited: the operator (due -> the intent's
    # receipt; the intent's acknowledgement -> the router PATCH's receipt) and the API server
    # (each write's receipt -> its acknowledgement).
    breakdown: dict[str, list[float]] = collections.defaultdict(list)
    missed = doubled = wrong = 0
    for name in names:
        mine = patches.get(name, [])
        if name in created and mine:
            first_write.append(mine[0][1] - created[name])
        actual = [(dep, count) for _, _, dep, count in mine]
        ideal = (
            ideal_writes(name, blue_replicas)
            if router == "replicas"
            else ideal_route_writes(name, blue_replicas)
        )
        if actual != ideal:
            wrong += 1
            a, b = collections.Counter(actual), collections.Counter(ideal)
            missed += sum((b - a).values())
            doubled += sum((a - b).values())
        for pause_index in (1, 3):
            entered = next(
                (
                    (seq, t, s)
                    for seq, t, s in statuses.get(name, [])
                    if s.get("currentStepIndex") == pause_index
                ),
                None,
            )
            if entered is None or not entered[2].get("stepStartedAt"):
                continue
            started_at = parse_time(entered[2]["stepStartedAt"])
            backdated.append(entered[1] - started_at)
            due = entered[1] + pause_s
            patch = next(
                (
                    (seq, t)
                    for seq, t, label, _ in mine
                    if seq > entered[0] and (router == "replicas" or label == ROUTE)
                ),
                None,
            )
            if patch is None:
                continue
            ack = patch[1]
            step_latency.append(ack - due)
            from_decision.append(ack - (started_at + pause_s))
            intent = next(
                (
                    (seq, t)
                    for seq, t, s in statuses.get(name, [])
                    if entered[0] < seq < patch[0] and s.get("currentStepIndex") == pause_index + 1
                ),
                None,
            )
            if intent is not None:
                cut_short += received[intent[0]] < due
                breakdown["operator_due_to_intent_sent"].append(received[intent[0]] - due)
                breakdown["server_intent"].append(intent[1] - received[intent[0]])
                breakdown["operator_intent_to_patch_sent"].append(received[patch[0]] - intent[1])
                breakdown["server_patch"].append(ack - received[patch[0]])

    step_writes = len(names) * len(WEIGHTS)
    writes = total(counts, WRITE_VERBS)
    reads = total(counts, READ_VERBS)
    cpu = {k: sampler.cpu_busy(k) for k in sampler.samples}
    errors = log_text.count("reconcile failed") + log_text.count("action failed")
    return {
        "migrations": len(names),
        "succeeded": len(succeeded),
        "create_seconds": created_in,
        "elapsed_seconds": elapsed,
        "step_latency_seconds": describe(step_latency),
        "step_latency_from_step_started_at_seconds": describe(from_decision),
        "step_started_at_written_late_by_seconds": describe(backdated),
        "pauses_cut_short": cut_short,
        "step_latency_breakdown_seconds": {k: describe(v) for k, v in sorted(breakdown.items())},
        "create_to_first_write_seconds": describe(first_write),
        "runs_with_wrong_replica_sequence": wrong,
        "missed_writes": missed,
        "doubled_writes": doubled,
        "log_entries_lost": tail.lost,
        "operator_writes_per_weight_step": writes / step_writes,
        "operator_reads_per_weight_step": reads / step_writes,
        "budget_per_weight_step": {
            "writes": WRITES_PER_STEP_BUDGET,
            "reads": READS_PER_STEP_BUDGET,
        },
        "cpu_cores": cpu,
        "operator_rss_max_mib": mib(sampler.rss_max("operator")),
        "operator_rss_series_mib": sampler.rss_series("operator"),
        "operator_reconcile_errors_logged": errors,
        "rate_limit_waits_logged": log_text.count("kube request retried"),
        "requests_by_verb_resource": flat(counts),
    }


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, qps=20, burst=40, smoke="5 Migrations, 1 s pauses")
    parser.add_argument("--migrations", type=int, nargs="+", default=[100], help="sizes (100)")
    parser.add_argument("--runs", type=int, default=1, help="repetitions of each size (1)")
    parser.add_argument("--pause", default="5s", help="timed pause duration (5s)")
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds a run may take (120 + 0.6 per one)"
    )
    parser.add_argument("--blue-replicas", type=int, default=BLUE_REPLICAS, help="blue's size")
    parser.add_argument("--router", choices=ROUTERS, default="replicas", help="(replicas)")
    parser.add_argument(
        "--progress-deadline", default=None, help="the Migrations' progressDeadline (10m)"
    )
    add_admission_option(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.migrations, args.runs, args.pause = [5], 1, "1s"
    results: list[dict[str, Any]] = []
    for size in args.migrations:
        for run in range(args.runs):
            timeout = args.timeout or 120 + size * 0.6
            result = one_run(
                size,
                args.pause,
                args.qps,
                args.burst,
                timeout,
                args.cluster_dir,
                args.blue_replicas,
                args.progress_deadline,
                args.router,
                args.admission,
            )
            result["run"] = run + 1
            results.append(result)
            if result["pauses_cut_short"]:
                print(f"{result['pauses_cut_short']} pauses ended early", flush=True)
            lat = result["step_latency_seconds"]
            cpu = result["cpu_cores"]
            peak_at, peak_mib = max(result["operator_rss_series_mib"], key=lambda w: w[1])
            print(
                f"{size} migrations run {run + 1}: {result['succeeded']}/{size} succeeded in"
                f" {result['elapsed_seconds']:.1f}s; step latency p50 {ms(lat['median'])}"
                f" p99 {ms(lat['p99'])} max {ms(lat['max'])}; wrong sequences"
                f" {result['runs_with_wrong_replica_sequence']} (missed {result['missed_writes']},"
                f" doubled {result['doubled_writes']}); writes/step"
                f" {result['operator_writes_per_weight_step']:.2f} reads/step"
                f" {result['operator_reads_per_weight_step']:.2f}; CPU operator"
                f" {cpu['operator']['mean_cores']:.2f} (peak {cpu['operator']['peak_cores']:.2f})"
                f" kube-apiserver {cpu['kube-apiserver']['mean_cores']:.2f}"
                f" (peak {cpu['kube-apiserver']['peak_cores']:.2f})"
                f" etcd {cpu['etcd']['mean_cores']:.2f} cores; operator RSS peak"
                f" {peak_mib:.1f} MiB at {peak_at:.0f}s",
                flush=True,
            )
            start = result["start_breakdown_seconds"]
            print(
                "  where a start waited (p50 / p99): "
                + "; ".join(f"{k} {ms(v['median'])} / {ms(v['p99'])}" for k, v in start.items()),
                flush=True,
            )
            parts = result["step_latency_breakdown_seconds"]
            print(
                "  where a step waited (p50 / p99): "
                + "; ".join(f"{k} {ms(v['median'])} / {ms(v['p99'])}" for k, v in parts.items()),
                flush=True,
            )
    summary: dict[str, Any] = {}
    for size in args.migrations:
        mine = [r for r in results if r["migrations"] == size]
        p50s = [r["step_latency_seconds"]["median"] for r in mine if r["step_latency_seconds"]["n"]]
        p99s = [r["step_latency_seconds"]["p99"] for r in mine if r["step_latency_seconds"]["n"]]
        summary[str(size)] = {
            "runs": len(mine),
            "step_latency_p50_median_of_runs": statistics.median(p50s) if p50s else None,
            "step_latency_p99_median_of_runs": statistics.median(p99s) if p99s else None,
            "step_latency_p99_worst_run": max(p99s) if p99s else None,
            "missed_or_doubled": sum(r["missed_writes"] + r["doubled_writes"] for r in mine),
            "all_succeeded": all(r["succeeded"] == size for r in mine),
            "goal_p99_500ms_met": bool(p99s) and max(p99s) <= 0.5,
        }
    for size, row in summary.items():
        print(
            f"SUMMARY {size}: p50 {ms(row['step_latency_p50_median_of_runs'])}"
            f" p99 {ms(row['step_latency_p99_median_of_runs'])} (median of {row['runs']} runs),"
            f" missed+doubled {row['missed_or_doubled']}, all succeeded {row['all_succeeded']}"
        )
    save(
        "concurrency",
        {
            "settings": {
                "pause": args.pause,
                "qps": args.qps,
                "burst": args.burst,
                "blue_replicas": args.blue_replicas,
                "progress_deadline": args.progress_deadline,
                "router": args.router,
                "admission_webhooks": args.admission,
                "anchors": "Flagger stalled at ~50 canaries on default client limits (flagger#638)",
            },
            "summary": summary,
            "runs": results,
        },
        args.output,
        args.smoke,
    )
    ok = all(r["succeeded"] == r["migrations"] and not r["rbac_denied"] for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
