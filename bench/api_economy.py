"""API economy: writes and reads per step and per rollback, requests while idle, rate limiter.

Real operator (``kopf run``, the chart's RBAC) on a real control plane; the kube-apiserver's
audit log, filtered to the operator's ServiceAccount (every verb, reads and watches included,
with bodies and timestamps), is the source of truth. Phases:

1. steps: ``--migrations`` Migrations 10 % -> 50 % -> 100 % (no gates); writes
   and reads per weight step, split by resource (status, Deployments, Events, annotations); then
   as many through 4 weights: the difference is the cost of one more weight step alone;
2. rollback: ``--rollbacks`` Migrations held at 50 % by an indefinite pause, then each is sent
   ``cutover.io/request: abort:<id>``; operator writes per rollback until ``RolledBack``; then
   as many held at 50 % by a long pause with a passing web gate (a local JSON server) that
   starts failing: writes per gate-triggered rollback, and those beyond the failing check's own
   status write (what a passing check writes, measured over 15 s of passing checks before);
3. idle: every Migration terminal or paused indefinitely; requests per second over
   ``--idle-seconds`` (watch re-establishments listed apart);
4. rate limiter: a fresh operator with ``CUTOVER_API_QPS=--limit-qps`` and
   ``CUTOVER_API_BURST=--limit-burst`` gets ``--burst-migrations`` new Migrations at once; the
   counts, sampled every 0.1 s, give the request rate after the burst allowance is spent.

``--router replicas`` (the default): blue has 4 pods, each weight a replica split;
``--router gatewayapi``: each pair has its own HTTPRoute and two Services (Gateway API's real
CRD installed), and the weights are route writes.

    .venv/bin/python bench/api_economy.py --migrations 50 --rollbacks 20 --idle-seconds 60
    .venv/bin/python bench/api_economy.py --smoke
"""

from __future__ import annotations

import time
from typing import Any

from _common import (
    READ_VERBS,
    READS_PER_STEP_BUDGET,
    READS_PER_STEP_GOAL,
    REPLICAS_WRITES_PER_STEP_GOAL,
    WEIGHT_ROUTER_WRITES_PER_STEP_GOAL,
    WRITE_VERBS,
    WRITES_PER_ROLLBACK_GOAL,
    WRITES_PER_STEP_BUDGET,
    Bench,
    bench_parser,
    delta,
    flat,
    gateway_api,
    migration,
    save,
    status_of,
    total,
    wait_until,
)

from tests.support.json_server import Answer, json_server

ROUTERS = ("replicas", "gatewayapi")
TERMINAL = {"Succeeded", "RolledBack", "Failed", "Aborted"}
SHORT = (10, 50, 100)
# Each weight a split of its own with blue's 4 pods (10 % and 20 % would both be one green pod:
# a step leaving blue alone, which costs one read of it instead of a write).
LONG = (25, 50, 75, 100)


def pair(bench: Bench, names: list[str], router: str, blue: int = 4) -> None:
    bench.create_deployments(
        [(f"{n}-blue", blue) for n in names] + [(f"{n}-green", 0) for n in names]
    )
    if router == "gatewayapi":
        bench.create_routes(names)


def body(router: str, name: str, steps: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    """The Migration of ``name``'s pair (:func:`pair`), through ``router``."""
    made = migration(name, f"{name}-blue", f"{name}-green", steps, **spec)
    return gateway_api(made) if router == "gatewayapi" else made


def wait_phases(bench: Bench, names: list[str], phases: set[str], timeout: float) -> None:
    def done() -> bool:
        current = bench.phases()
        return all(current.get(n) in phases for n in names)

    wait_until(done, timeout, interval=0.5)


def start_paused(bench: Bench, names: list[str], first_weight: int, router: str) -> None:
    """Blue/green pairs and a Migration each that pauses (indefinitely) after ``first_weight``."""
    pair(bench, names, router)
    steps: list[dict[str, Any]] = [{"setWeight": first_weight}, {"pause": {}}, {"setWeight": 100}]
    bench.create_migrations([body(router, n, steps) for n in names])
    wait_phases(bench, names, {"Paused"}, 60 + len(names))


def rates(counts: dict[tuple[str, str], int], n: int, unit: str) -> dict[str, float]:
    """Writes (with and without Events) and reads per ``unit``, over ``n`` of them."""
    writes = total(counts, WRITE_VERBS)
    return {
        f"writes_per_{unit}": writes / n,
        f"writes_per_{unit}_without_events": (writes - counts.get(("create", "events"), 0)) / n,
        f"reads_per_{unit}": total(counts, READ_VERBS) / n,
    }


def show_rates(label: str, unit: str, result: dict[str, Any], extra: str) -> None:
    """Prints what :func:`rates` measured for a phase, then its requests by verb and resource."""
    print(
        f"{label}: writes/{unit} {result[f'writes_per_{unit}']:.2f}"
        f" ({result[f'writes_per_{unit}_without_events']:.2f} without Events),"
        f" reads/{unit} {result[f'reads_per_{unit}']:.2f}{extra}",
        flush=True,
    )
    for key, value in result[f"per_{unit}_by_verb_resource"].items():
        print(f"  {key:32} {value}")


def per(counts: dict[tuple[str, str], int], n: int) -> dict[str, float]:
    return {f"{v} {r}": round(c / n, 3) for (v, r), c in counts.items()}


def run_steps(
    bench: Bench, names: list[str], weights: tuple[int, ...], router: str
) -> tuple[dict[tuple[str, str], int], int]:
    """Runs ``names`` through ``weights`` (no gates, no pauses) to Succeeded: the operator's
    requests meanwhile, and how many of its status writes there were."""
    pair(bench, names, router)
    time.sleep(1)
    before = bench.counters()
    tail = bench.tail()
    bench.create_migrations([body(router, n, [{"setWeight": w} for w in weights]) for n in names])
    wait_phases(bench, names, {"Succeeded"}, 60 + 5 * len(names))
    time.sleep(1)
    after = bench.counters()
    tail.poll()
    return delta(after, before), sum(1 for e in tail.entries if status_of(e) is not None)


def steps_phase(bench: Bench, size: int, router: str) -> dict[str, Any]:
    """Whole runs of 3 weight steps, then runs of 4: the difference is what one more weight
    step costs, without each run's start and finish (Kopf's finalizer, Started/Succeeded,
    the final status, retiring blue)."""
    counts, status_writes = run_steps(bench, [f"s{i}" for i in range(size)], SHORT, router)
    longer, _ = run_steps(bench, [f"l{i}" for i in range(size)], LONG, router)
    steps = len(SHORT) * size
    added = (len(LONG) - len(SHORT)) * size
    # Watches are re-established on their own clock, not by a step: left out of the difference.
    extra = {
        k: longer.get(k, 0) - counts.get(k, 0)
        for k in counts.keys() | longer.keys()
        if k[0] != "watch"
    }
    return {
        "migrations": size,
        "weight_steps": steps,
        **rates(counts, steps, "step"),
        "status_writes_per_step": status_writes / steps,
        "per_step_by_verb_resource": per(counts, steps),
        "weights": list(SHORT),
        "added_steps": {
            "weights": list(LONG),
            **rates(extra, added, "added_step"),
            "per_added_step_by_verb_resource": per(extra, added),
        },
        "budget_per_weight_step": {
            "writes": WRITES_PER_STEP_BUDGET,
            "reads": READS_PER_STEP_BUDGET,
        },
        "goal_per_added_step": {
            "writes": REPLICAS_WRITES_PER_STEP_GOAL
            if router == "replicas"
            else WEIGHT_ROUTER_WRITES_PER_STEP_GOAL,
            "reads": READS_PER_STEP_GOAL,
        },
        "note": "per step: each run's start and finish (status, events, annotations) spread over"
        " its 3 weight steps; per added step: runs of 4 weight steps minus runs of 3, over the"
        " added steps; only the operator's ServiceAccount is counted",
    }


def rollback_phase(bench: Bench, size: int, router: str) -> dict[str, Any]:
    names = [f"r{i}" for i in range(size)]
    start_paused(bench, names, 50, router)
    time.sleep(1.5)
    before = bench.counters()
    for i, name in enumerate(names):
        bench.annotate(name, {"cutover.io/request": f"abort:bench{i}"})
    wait_phases(bench, names, TERMINAL, 60 + size)
    time.sleep(1)
    after = bench.counters()
    counts = delta(after, before)
    phases = bench.phases()
    return {
        "migrations": size,
        "final_phases": sorted({phases[n] for n in names}),
        **rates(counts, size, "rollback"),
        "per_rollback_by_verb_resource": per({k: v for k, v in counts.items() if v}, size),
    }


# Long enough for 3 checks of each Migration at the gate's 5 s interval.
PASSING_WINDOW = 15.0


def gate_rollback_phase(bench: Bench, size: int, router: str) -> dict[str, Any]:
    """Migrations held at 50 % by a long pause while a web gate (a local JSON server) passes;
    then the server answers a failing value and each rolls back on its next check."""
    names = [f"g{i}" for i in range(size)]
    with json_server() as server:
        server.answer("/health", Answer({"errorRate": 0.0}))
        gate = {
            "name": "health",
            # Long enough that no passing check is in flight when the answer turns.
            "interval": "5s",
            "web": {"url": server.url + "/health", "jsonPath": "$.errorRate"},
            "threshold": {"max": 0.05},
        }
        pair(bench, names, router)
        steps: list[dict[str, Any]] = [
            {"setWeight": 50},
            {"pause": {"duration": "1h"}},
            {"setWeight": 100},
        ]
        bench.create_migrations([body(router, n, steps, gates=[gate]) for n in names])

        def checked() -> bool:
            found = {m["metadata"]["name"]: m.get("status") or {} for m in bench.migrations()}
            return all(
                (found.get(n) or {}).get("currentStepIndex") == 1
                and any(g.get("lastEvaluatedAt") for g in found[n].get("gates") or [])
                for n in names
            )

        wait_until(checked, 60 + size, interval=0.5)
        # What a check costs when it passes, so that the rollback's own writes can be told
        # from the failing check's: every check records its verdict in the status.
        passing_before, checks_before = bench.counters(), len(server.received)
        time.sleep(PASSING_WINDOW)
        passing = delta(bench.counters(), passing_before)
        checks = len(server.received) - checks_before
        before = bench.counters()
        server.answer("/health", Answer({"errorRate": 1.0}))
        wait_phases(bench, names, TERMINAL, 60 + size)
        time.sleep(1)
        after = bench.counters()
    counts = delta(after, before)
    phases = bench.phases()
    per_check = rates(passing, max(checks, 1), "passing_check")
    result = rates(counts, size, "rollback")
    return {
        "migrations": size,
        "final_phases": sorted({phases[n] for n in names}),
        **result,
        "passing_checks": checks,
        "passing_window_seconds": PASSING_WINDOW,
        **per_check,
        "writes_per_rollback_beyond_the_check": result["writes_per_rollback_without_events"]
        - per_check["writes_per_passing_check_without_events"],
        "per_rollback_by_verb_resource": per({k: v for k, v in counts.items() if v}, size),
        "goal_writes_per_rollback": WRITES_PER_ROLLBACK_GOAL,
        "note": "from the gate's failing answer to RolledBack: the failing check's status write"
        " (which also records the RollingBack intent), the router's writes, RolledBack, Events;"
        " beyond the check: less what a passing check writes (measured over the window before)",
    }


def idle_phase(bench: Bench, paused: int, seconds: float, router: str) -> dict[str, Any]:
    names = [f"p{i}" for i in range(paused)]
    start_paused(bench, names, 10, router)
    # The last writes settle, Kopf's included: it touches a Migration (an annotation PATCH) 10 s
    # after its daemon was told to stop (``cancellation_backoff`` in handlers.py), which belongs
    # to the end of a run that just ended, not to idling. A faster operator ended the previous
    # phase's runs close enough to this window for that touch to land in it.
    time.sleep(12)
    phases = bench.phases()
    before = bench.counters()
    time.sleep(seconds)
    after = bench.counters()
    counts = delta(after, before)
    watches = {k: v for k, v in counts.items() if k[0] == "watch"}
    others = {k: v for k, v in counts.items() if k[0] != "watch"}
    return {
        "seconds": seconds,
        "migrations": len(phases),
        "phases": {p: list(phases.values()).count(p) for p in sorted(set(phases.values()))},
        "requests_per_second": sum(others.values()) / seconds,
        "watch_requests": flat(watches),
        "requests": flat(others),
    }


def limiter_phase(bench: Bench, qps: float, burst: int, size: int, router: str) -> dict[str, Any]:
    names = [f"q{i}" for i in range(size)]
    pair(bench, names, router)
    bench.start_operator(qps, burst)  # stops the one running
    time.sleep(3)  # the restart's own reconciles (Paused ones re-read the router) are done
    samples: list[tuple[float, int]] = []

    def operator_requests() -> int:
        counts = bench.counters()
        return sum(v for (verb, _), v in counts.items() if verb != "watch")

    base = operator_requests()
    tail = bench.tail()
    bench.create_migrations(
        [body(router, n, [{"setWeight": 100}]) for n in names],
        workers=16,
    )
    start = time.monotonic()
    idle_for = 0.0
    last = base
    while time.monotonic() - start < 120:
        now = time.monotonic()
        tail.poll()
        # Kopf's own PATCHes (finalizer, last-handled annotation) bypass Cutover's limiter.
        kopf = sum(
            1
            for e in tail.entries
            if e["resource"] == "migrations" and e["method"] == "PATCH" and not e["subresource"]
        )
        count = operator_requests() - base - kopf
        samples.append((now, count))
        if count == last:
            idle_for += 0.1
            if idle_for > 3 and count > 0:
                break
        else:
            idle_for, last = 0.0, count
        time.sleep(0.1)
    tail.poll()
    samples = [(t, c) for t, c in samples if c > 0] or samples
    t0, _n0 = samples[0]
    active = [(t, c) for t, c in samples if c < samples[-1][1]] or samples
    t_end, n_end = active[-1][0], samples[-1][1]
    window_max = 0
    for i, (t, c) in enumerate(samples):
        j = i
        while j < len(samples) and samples[j][0] - t <= 1.0:
            j += 1
        window_max = max(window_max, samples[j - 1][1] - c)
    after_burst = [(t, c) for t, c in samples if c >= burst]
    sustained = None
    if len(after_burst) > 2 and after_burst[-1][0] > after_burst[0][0]:
        last_busy = next(((t, c) for t, c in reversed(after_burst) if c < n_end), after_burst[-1])
        if last_busy[0] > after_burst[0][0]:
            sustained = (last_busy[1] - after_burst[0][1]) / (last_busy[0] - after_burst[0][0])
    writes = sorted(
        float(e["time"])
        for e in tail.entries
        if not (e["resource"] == "migrations" and e["method"] == "PATCH") or e["subresource"]
    )
    write_window = 0
    for i, t in enumerate(writes):
        j = i
        while j < len(writes) and writes[j] - t <= 1.0:
            j += 1
        write_window = max(write_window, j - i)
    return {
        "qps": qps,
        "burst": burst,
        "migrations": size,
        "operator_requests": n_end,
        "drain_seconds": t_end - t0,
        "sustained_rate_after_burst": sustained,
        "max_requests_in_any_1s_window": window_max,
        "max_writes_in_any_1s_window": write_window,
        "holds": sustained is None or sustained <= qps * 1.1,
        "kopf_patches_excluded": kopf,
        "note": "Cutover's requests (the operator's, minus Kopf's own PATCHes) sampled every 0.1 s;"
        " the first `burst` requests may go at once; afterwards the rate must not exceed qps",
    }


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(
        __doc__,
        qps=200,
        burst=400,
        smoke="tiny sizes, 5 s idle",
        qps_help="operator QPS, phases 1-3 (200)",
        burst_help="operator burst, phases 1-3",
    )
    parser.add_argument("--migrations", type=int, default=20, help="phase 1 size (20)")
    parser.add_argument("--rollbacks", type=int, default=10, help="phase 2 size (10)")
    parser.add_argument("--paused", type=int, default=10, help="paused indefinitely in 3 (10)")
    parser.add_argument("--idle-seconds", type=float, default=30, help="phase 3 length (30)")
    parser.add_argument("--limit-qps", type=float, default=5, help="phase 4 QPS (5)")
    parser.add_argument("--limit-burst", type=int, default=10, help="phase 4 burst (10)")
    parser.add_argument("--burst-migrations", type=int, default=20, help="phase 4 size (20)")
    parser.add_argument(
        "--router",
        choices=ROUTERS,
        default="replicas",
        help="replicas (the default) or gatewayapi: each pair's own HTTPRoute and Services",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.migrations, args.rollbacks, args.paused = 2, 2, 2
        args.idle_seconds, args.burst_migrations = 5, 4
    routed = args.router != "replicas"
    with Bench(
        args.cluster_dir,
        chart_values={"routers": {args.router: {"enabled": True}}} if routed else None,
        third_party_crds=routed,
    ) as bench:
        bench.start_operator(args.qps, args.burst)
        steps = steps_phase(bench, args.migrations, args.router)
        show_rates(
            "steps", "step", steps, f", status writes/step {steps['status_writes_per_step']:.2f}"
        )
        added = steps["added_steps"]
        show_rates("per added step", "added_step", added, "")
        rollback = rollback_phase(bench, args.rollbacks, args.router)
        show_rates("rollback", "rollback", rollback, f", phases {rollback['final_phases']}")
        gate_rollback = gate_rollback_phase(bench, args.rollbacks, args.router)
        show_rates(
            "gate rollback", "rollback", gate_rollback, f", phases {gate_rollback['final_phases']}"
        )
        print(
            f"gate rollback: {gate_rollback['writes_per_passing_check_without_events']:.2f}"
            f" writes per passing check ({gate_rollback['passing_checks']} checks), so"
            f" {gate_rollback['writes_per_rollback_beyond_the_check']:.2f} writes per rollback"
            " beyond the failing check's own",
            flush=True,
        )
        idle = idle_phase(bench, args.paused, args.idle_seconds, args.router)
        print(
            f"idle: {idle['requests_per_second']:.3f} requests/s over {idle['seconds']:.0f}s"
            f" with {idle['phases']}; requests {idle['requests']}; watches"
            f" {idle['watch_requests']}",
            flush=True,
        )
        limiter = limiter_phase(
            bench, args.limit_qps, args.limit_burst, args.burst_migrations, args.router
        )
        sustained = limiter["sustained_rate_after_burst"]
        print(
            f"limiter: qps {limiter['qps']} burst {limiter['burst']}:"
            f" {limiter['operator_requests']} requests in {limiter['drain_seconds']:.1f}s,"
            f" sustained {'n/a' if sustained is None else f'{sustained:.2f}'}/s,"
            f" max {limiter['max_requests_in_any_1s_window']} in any 1 s"
            f" (writes {limiter['max_writes_in_any_1s_window']}); holds {limiter['holds']}",
            flush=True,
        )
        denied = bench.denied()
        if denied:
            print(f"requests the chart's RBAC denied: {denied}", flush=True)
    save(
        "api_economy",
        {
            "settings": vars(args) | {"output": str(args.output)},
            "steps": steps,
            "rollback": rollback,
            "gate_rollback": gate_rollback,
            "idle": idle,
            "limiter": limiter,
            "rbac_denied": denied,
        },
        args.output,
        args.smoke,
    )
    return 1 if denied else 0


if __name__ == "__main__":
    raise SystemExit(main())
