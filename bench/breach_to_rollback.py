"""How long from a green breach to traffic back on blue? Real operator, Prometheus, cluster.

Starts a real control plane (or uses ``--cluster-dir``'s), a real Prometheus (scrape interval
1 s) scraping a controllable traffic exporter, and the operator (``kopf run -m cutover.handlers``
with the chart's RBAC). Then, ``--runs`` times: applies an app and a Migration whose error-rate
gate checks every ``--interval``, waits until green serves traffic and the gate has passed,
raises green's error ratio to 50 %, and waits for the rollback. Each run's latency is split into

* detection: exporter change -> the gate check that failed (``status.gates[].lastEvaluatedAt``,
  the moment that check started), made of the wait for the next scrape, the rate window
  filling up and the wait for the next gate check;
* reaction: that check -> the kube-apiserver's completion of the router write that sends all
  traffic back to blue (green's replicas to 0; the audit event's ``stageTimestamp``), made of
  the query itself, the decision, the status write and the router write.

Prints a table (median and p99) and writes every run as JSON to ``bench/results/``.

    .venv/bin/python bench/breach_to_rollback.py --runs 20 --interval 1s
    .venv/bin/python bench/breach_to_rollback.py --smoke     # one tiny run: does it still work?
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from _common import ROOT, Bench, add_cluster_option, replicas_written, wait_until

from cutover.durations import parse_duration
from tests.integration.gates_support import (
    GREEN_ERROR_RATIO,
    app_manifest,
    gate,
    gate_record,
    migration_manifest,
    series,
)
from tests.support.exporter import TrafficExporter
from tests.support.prometheus import PrometheusServer

RESULTS = ROOT / "bench" / "results"
SCRAPE_INTERVAL = "1s"


@dataclass
class Run:
    app: str
    changed_at: float  # wall clock, exporter error ratio raised
    checked_at: float  # wall clock, the failed gate check began
    routed_at: float  # wall clock, the kube-apiserver completed green -> 0
    failed_value: float

    @property
    def detection(self) -> float:
        return self.checked_at - self.changed_at

    @property
    def reaction(self) -> float:
        return self.routed_at - self.checked_at

    @property
    def total(self) -> float:
        return self.routed_at - self.changed_at


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10, help="migrations that breach (10)")
    parser.add_argument("--interval", default="1s", help="gate interval (1s)")
    parser.add_argument("--window", default="5s", help="rate window of the gate query (5s)")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="one run, no result file unless --output is given: checks the bench works",
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="directory for the JSON (bench/results/)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for the breach offsets")
    add_cluster_option(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.runs = 1
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    parse_duration(args.interval)
    parse_duration(args.window)
    return args


def query(window: str) -> str:
    return GREEN_ERROR_RATIO.replace("[5s]", f"[{window}]")


def one_run(
    index: int,
    bench: Bench,
    exporter: TrafficExporter,
    prometheus: PrometheusServer,
    interval: str,
    window: str,
    rng: random.Random,
) -> Run:
    app = f"bench{index}"
    namespace = bench.namespace
    green = series(namespace, f"{app}-green")
    for side in ("blue", "green"):
        exporter.set(series(namespace, f"{app}-{side}"), error_ratio=0.0)
    prometheus.wait_for_series(f'sum(rate(http_requests_total{{deployment="{green}"}}[5s])) > 0')
    error_gate = gate("error-rate", prometheus.url, query(window), interval=interval)
    error_gate["threshold"] = {"max": 0.05}
    steps: list[dict[str, Any]] = [
        {"setWeight": 50},
        {"pause": {"duration": "10m"}},
        {"setWeight": 100},
    ]
    bench.apply(app_manifest(app))
    bench.apply(migration_manifest(app, app, [error_gate], steps))

    def gate_passed() -> bool:
        records = bench.status(app).get("gates") or []
        return bool(records) and records[0].get("passed", 0) >= 1

    wait_until(gate_passed, 60)
    tail = bench.tail()
    # Breach at a random point of the gate's cycle, as a real incident would.
    time.sleep(rng.uniform(0, parse_duration(interval)))
    exporter.set(green, error_ratio=0.5)
    changed = exporter.error_ratio_changed_at(green)
    assert changed is not None

    def ended() -> dict[str, Any]:
        state = bench.status(app)
        return state if state.get("phase") in ("RolledBack", "Succeeded", "Failed") else {}

    state = wait_until(ended, 120, interval=0.1)
    if state["phase"] != "RolledBack":
        raise SystemExit(f"{app}: expected RolledBack, got {state['phase']}: {state['message']}")
    record = gate_record(state, "error-rate")
    checked = datetime.fromisoformat(record["lastEvaluatedAt"]).timestamp()

    def rollback_write() -> float | None:
        tail.poll()
        for entry in tail.entries:
            if (
                entry["name"] == f"{app}-green"
                and replicas_written(entry) == 0
                and entry["time"] >= changed[1]
            ):
                return float(entry["time"])
        return None

    routed = wait_until(rollback_write, 10)
    for side in ("blue", "green"):
        exporter.set(series(namespace, f"{app}-{side}"), rps=0)
    return Run(app, changed[1], checked, float(routed), float(record["lastValue"]))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(runs: list[Run]) -> dict[str, dict[str, float]]:
    result = {}
    for part in ("detection", "reaction", "total"):
        values = [getattr(r, part) for r in runs]
        result[part] = {
            "median": statistics.median(values),
            "p99": percentile(values, 99),
            "min": min(values),
            "max": max(values),
        }
    return result


def table(stats: dict[str, dict[str, float]], runs: int) -> str:
    lines = [
        f"breach -> router write, {runs} run(s), seconds",
        f"{'part':<12}{'median':>9}{'p99':>9}{'min':>9}{'max':>9}",
    ]
    for part, values in stats.items():
        lines.append(
            f"{part:<12}"
            + "".join(f"{values[key]:>9.3f}" for key in ("median", "p99", "min", "max"))
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    runs: list[Run] = []
    exporter = TrafficExporter()
    prometheus = PrometheusServer(targets=[exporter.target], scrape_interval=SCRAPE_INTERVAL)
    try:
        prometheus.wait_for_targets_up(timeout=30)
        with Bench(args.cluster_dir) as bench:
            bench.start_operator(qps=1000, burst=2000)
            for index in range(args.runs):
                run = one_run(index, bench, exporter, prometheus, args.interval, args.window, rng)
                runs.append(run)
                print(
                    f"run {index + 1}/{args.runs}: detection {run.detection:.3f}s"
                    f" reaction {run.reaction:.3f}s total {run.total:.3f}s",
                    flush=True,
                )
            denied = bench.denied()
    finally:
        prometheus.close()
        exporter.stop()

    stats = summary(runs)
    print(table(stats, len(runs)))
    report: dict[str, Any] = {
        "benchmark": "breach_to_rollback",
        "when": datetime.now().astimezone().isoformat(timespec="seconds"),
        "settings": {
            "runs": args.runs,
            "gate_interval": args.interval,
            "rate_window": args.window,
            "scrape_interval": SCRAPE_INTERVAL,
            "router": "replicas",
        },
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "summary": stats,
        "rbac_denied": denied,
        "runs": [
            {**asdict(r), "detection": r.detection, "reaction": r.reaction, "total": r.total}
            for r in runs
        ],
    }
    if not args.smoke or args.output is not None:
        directory = args.output or RESULTS
        directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = directory / f"breach_to_rollback-{stamp}.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 1 if denied else 0


if __name__ == "__main__":
    sys.exit(main())
