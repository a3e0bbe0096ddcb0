"""Gate cost: Prometheus queries per gate per interval, and gate query latency, against a real
Prometheus.

Starts a real Prometheus (``/usr/bin/prometheus``, scrape 1 s) scraping the traffic exporter,
a tiny counting HTTP proxy in front of it (the gates' ``address``), a real control plane and the
operator (the chart's RBAC).
``--migrations`` Migrations, each with one error-rate gate checked every ``--interval``, hold at
50 % for a 10 m timed pause; once every gate has passed, the proxy counts queries per gate over
``--window`` seconds (expected: ``window / interval`` per gate, no more), the gaps between a
gate's consecutive queries, and each query's round trip through the proxy. Prometheus' own
``prometheus_http_requests_total{handler="/api/v1/query"}`` is the cross-check of the count.

    .venv/bin/python bench/gate_cost.py --migrations 20 --interval 1s --window 30
    .venv/bin/python bench/gate_cost.py --smoke
"""

from __future__ import annotations

import collections
import http.server
import itertools
import re
import threading
import time
import urllib.parse
import urllib.request
from typing import Any

from _common import Bench, bench_parser, describe, ms, save, wait_until

from cutover.durations import parse_duration
from tests.integration.gates_support import GREEN_ERROR_RATIO, app_manifest, gate, series
from tests.support.exporter import TrafficExporter
from tests.support.manifests import migration_body
from tests.support.prometheus import PrometheusServer


class CountingProxy:
    """Forwards every request to Prometheus; records (wall time, path, query, seconds)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.records: list[tuple[float, str, str, float]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                started = time.time()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                request = urllib.request.Request(
                    proxy.upstream + self.path,
                    data=body,
                    method=self.command,
                    headers={
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() in ("content-type", "accept", "authorization")
                    },
                )
                try:
                    with urllib.request.urlopen(request, timeout=10) as response:
                        code, payload = response.status, response.read()
                        ctype = response.headers.get("Content-Type", "application/json")
                except urllib.error.HTTPError as error:
                    code, payload = error.code, error.read()
                    ctype = error.headers.get("Content-Type", "application/json")
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                parsed = urllib.parse.urlsplit(self.path)
                params = urllib.parse.parse_qs(parsed.query)
                if body:
                    params.update(urllib.parse.parse_qs(body.decode(errors="replace")))
                query = (params.get("query") or [""])[0]
                with proxy.lock:
                    proxy.records.append((started, parsed.path, query, time.time() - started))

            do_GET = _forward
            do_POST = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def prometheus_query_count(prometheus: PrometheusServer) -> float:
    """Prometheus' own count of /api/v1/query requests, from its /metrics page."""
    with urllib.request.urlopen(f"{prometheus.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query"' in line
    )


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, qps=1000, burst=2000, smoke="2 Migrations, 5 s window")
    parser.add_argument("--migrations", type=int, default=10, help="Migrations with a gate (10)")
    parser.add_argument("--interval", default="1s", help="gate interval (1s)")
    parser.add_argument("--window", type=float, default=30, help="counting window, s (30)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.migrations, args.window = 2, 5
    interval = parse_duration(args.interval)
    exporter = TrafficExporter()
    prometheus = PrometheusServer(targets=[exporter.target], scrape_interval="1s")
    proxy = CountingProxy(prometheus.url)
    apps = [f"g{i}" for i in range(args.migrations)]
    try:
        prometheus.wait_for_targets_up(timeout=30)
        with Bench(args.cluster_dir) as bench:
            ns = bench.namespace
            for app in apps:
                for side in ("blue", "green"):
                    exporter.set(series(ns, f"{app}-{side}"), error_ratio=0.0)
            prometheus.wait_for_series(
                f'sum(rate(http_requests_total{{deployment="{series(ns, apps[-1] + "-green")}"}}'
                "[5s])) > 0"
            )
            bench.start_operator(args.qps, args.burst)
            for app in apps:
                bench.apply(app_manifest(app))
                error_gate = gate(
                    "error-rate", proxy.url, GREEN_ERROR_RATIO, interval=args.interval
                )
                error_gate["threshold"] = {"max": 0.05}
                steps = [{"setWeight": 50}, {"pause": {"duration": "10m"}}, {"setWeight": 100}]
                body = migration_body(app, app, {"steps": steps, "gates": [error_gate]})
                bench.create_migrations([body], workers=1)

            def all_passed() -> bool:
                for item in bench.migrations():
                    gates = (item.get("status") or {}).get("gates") or []
                    if not gates or gates[0].get("passed", 0) < 1:
                        return False
                return True

            wait_until(all_passed, 60 + 2 * args.migrations, interval=0.5)
            time.sleep(interval)
            prom_before = prometheus_query_count(prometheus)
            with proxy.lock:
                first = len(proxy.records)
            t0 = time.time()
            time.sleep(args.window)
            t1 = time.time()
            with proxy.lock:
                window = [r for r in proxy.records[first:] if t0 <= r[0] < t1]
            prom_after = prometheus_query_count(prometheus)
            phases = bench.phases()
            denied = bench.denied()
    finally:
        proxy.close()
        prometheus.close()
        exporter.stop()
    per_gate: dict[str, list[float]] = collections.defaultdict(list)
    latency: list[float] = []
    for started, path, query, seconds in window:
        if path != "/api/v1/query":
            continue
        found = re.search(r'deployment="[^"/]*/(g\d+)-green"', query)
        per_gate[found.group(1) if found else "?"].append(started)
        latency.append(seconds)
    expected = args.window / interval
    counts = {app: len(per_gate.get(app, [])) for app in apps}
    gaps = [b - a for times in per_gate.values() for a, b in itertools.pairwise(times)]
    per_interval = [c / expected for c in counts.values()]
    report = {
        "settings": vars(args) | {"output": str(args.output)},
        "phases": sorted(set(phases.values())),
        "window_seconds": t1 - t0,
        "expected_queries_per_gate": expected,
        "queries_per_gate": counts,
        "queries_per_gate_per_interval": describe(per_interval),
        "unattributed_queries": len(per_gate.get("?", [])),
        "gap_between_checks_seconds": describe(gaps),
        "query_round_trip_seconds": describe(latency),
        "prometheus_counter_delta": prom_after - prom_before,
        "proxy_count": sum(counts.values()),
        "rbac_denied": denied,
    }
    q = report["queries_per_gate_per_interval"]
    print(
        f"{args.migrations} gates every {args.interval} over {t1 - t0:.1f}s: queries per gate per"
        f" interval median {q['median']:.3f} min {q['min']:.3f} max {q['max']:.3f}"
        f" (expected 1); gaps p50 {ms(report['gap_between_checks_seconds']['median'])}"
        f" p99 {ms(report['gap_between_checks_seconds']['p99'])}; query round trip p50"
        f" {ms(report['query_round_trip_seconds']['median'])}"
        f" p99 {ms(report['query_round_trip_seconds']['p99'])}; Prometheus counted"
        f" {report['prometheus_counter_delta']:.0f} (its own counter), proxy"
        f" {report['proxy_count']}",
        flush=True,
    )
    save("gate_cost", report, args.output, args.smoke)
    if denied:
        print(f"requests the chart's RBAC denied: {denied}")
    return 1 if denied else 0


if __name__ == "__main__":
    raise SystemExit(main())
