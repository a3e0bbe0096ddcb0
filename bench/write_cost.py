"""What one write of each kind the operator sends costs the kube-apiserver and etcd, in CPU.

A Migration is run by the operator (Gateway API router) into its first pause; its status is then
the status the operator writes while it steps. The operator is stopped, and the bench sends each
kind of write in turn, one at a time, as the operator sends it:

* ``status``: the whole status as a merge patch on ``/status`` (a step's intent);
* ``status_bare``: the same two changed fields on a Migration with no other status (what the
  object's size costs);
* ``route``: the router's JSON patch of the HTTPRoute's rule (test, then replace);
* ``replicas``: a Deployment's replicas, as a JSON patch with its generation tested;
* ``event``: the Event the operator posts about the Migration (``kube.event_body``);
* ``read``: a GET of the HTTPRoute, for scale.

Each kind is sent ``--writes`` times per round, kinds interleaved over ``--rounds`` rounds; the CPU
the kube-apiserver and etcd used over those writes (their idle rate, measured over as long
beforehand, subtracted) divided by the writes. The median over the rounds is reported.

    .venv/bin/python bench/write_cost.py --writes 300 --rounds 5
    .venv/bin/python bench/write_cost.py --smoke
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import psutil
from _common import (
    GROUP,
    PLURAL,
    VERSION,
    Bench,
    bench_parser,
    cpu_seconds,
    http_route,
    save,
    service,
    wait_until,
)
from concurrency import bench_migration
from kubernetes import client

from cutover.kube import event_body

KINDS = ("status", "status_bare", "route", "replicas", "event", "read")
NAME = "w0"
BARE = "w0-bare"
JSON_PATCH = "application/json-patch+json"


def moment(i: int) -> datetime:
    """The i-th write's time: a second apart, so each write changes what it stamps."""
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i)


def stamp(i: int) -> str:
    return moment(i).isoformat().replace("+00:00", "Z")


class Writers:
    """One callable per kind: the i-th write of that kind."""

    def __init__(self, bench: Bench, status: dict[str, Any]) -> None:
        self.bench = bench
        self._status = status
        self.apps = client.AppsV1Api(bench.api)
        self.route_weight = 0
        # group, version, namespace and plural of the bench's HTTPRoute
        self.routes = ("gateway.networking.k8s.io", "v1", bench.namespace, "httproutes")

    def write(self, kind: str) -> Callable[[int], None]:
        return getattr(self, kind)  # type: ignore[no-any-return]

    def _patch_status(self, name: str, status: dict[str, Any]) -> None:
        self.bench.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.bench.namespace, PLURAL, name, {"status": status}
        )

    def status(self, i: int) -> None:
        # What a step's intent changes: the step, its start, the conditions' times.
        status = copy.deepcopy(self._status)
        status["currentStepIndex"] = i % 5
        status["stepStartedAt"] = stamp(i)
        for condition in status.get("conditions") or []:
            condition["lastTransitionTime"] = stamp(i)
        self._patch_status(NAME, status)

    def status_bare(self, i: int) -> None:
        self._patch_status(BARE, {"currentStepIndex": i % 5, "stepStartedAt": stamp(i)})

    def route(self, i: int) -> None:
        weights = (100 - self.route_weight, self.route_weight)
        self.route_weight = (self.route_weight + 10) % 100
        refs = [
            {"group": "", "kind": "Service", "name": f"{NAME}-{side}", "port": 80, "weight": w}
            for side, w in zip(("blue", "green"), weights, strict=True)
        ]
        rule = {"name": "main", "backendRefs": refs}
        current = self._route()["spec"]["rules"][0]
        self.bench.custom.patch_namespaced_custom_object(
            *self.routes,
            NAME,
            [
                {"op": "test", "path": "/spec/rules/0", "value": current},
                {"op": "replace", "path": "/spec/rules/0", "value": rule},
            ],
            _content_type=JSON_PATCH,
        )

    def replicas(self, i: int) -> None:
        name = f"{NAME}-spare"
        metadata = self.apps.read_namespaced_deployment(name, self.bench.namespace).metadata
        assert metadata is not None
        self.apps.patch_namespaced_deployment(
            name,
            self.bench.namespace,
            [
                {"op": "test", "path": "/metadata/generation", "value": metadata.generation},
                {"op": "replace", "path": "/spec/replicas", "value": i % 2},
            ],
            _content_type=JSON_PATCH,
        )

    def event(self, i: int) -> None:
        involved = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Migration",
            "name": NAME,
            "namespace": self.bench.namespace,
        }
        message = f"green weight set to {i % 100}%"
        body = event_body(involved, "Normal", "WeightSet", message, moment(i))
        # Sent as it is: the client's Event model would re-serialize eventTime in a form the API
        # server refuses (an offset where it wants microseconds and "Z").
        request = self.bench.api.param_serialize(
            "POST",
            "/api/v1/namespaces/{namespace}/events",
            path_params={"namespace": self.bench.namespace},
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.bench.api.call_api(*request)
        response.read()
        if response.status >= 300:
            raise RuntimeError(f"Event refused: {response.status} {response.data[:300]!r}")

    def read(self, i: int) -> None:
        self._route()

    def _route(self) -> dict[str, Any]:
        return cast(
            dict[str, Any], self.bench.custom.get_namespaced_custom_object(*self.routes, NAME)
        )


# Reads a kind needs before its write (the route's and the Deployment's current state), sent
# as the operator would not: their cost is measured by ``read`` and taken off.
READS_BEFORE = {"route": 1, "replicas": 1}


def measure(
    send: Callable[[int], None], writes: int, procs: dict[str, psutil.Process]
) -> dict[str, float]:
    idle = {name: cpu_seconds(p) for name, p in procs.items()}
    started = time.monotonic()
    time.sleep(min(2.0, writes * 0.01))
    idle_for = time.monotonic() - started
    idle_rate = {name: (cpu_seconds(p) - idle[name]) / idle_for for name, p in procs.items()}
    before = {name: cpu_seconds(p) for name, p in procs.items()}
    started = time.monotonic()
    for i in range(writes):
        send(i)
    took = time.monotonic() - started
    out = {
        f"{name}_cpu_ms": 1000 * (cpu_seconds(p) - before[name] - idle_rate[name] * took) / writes
        for name, p in procs.items()
    }
    out["round_trip_ms"] = 1000 * took / writes
    return out


def captured_status(bench: Bench, qps: float, burst: int) -> dict[str, Any]:
    """The status the operator wrote for a run in its first pause (weight 10)."""
    bench.create_deployments([(f"{NAME}-blue", 2), (f"{NAME}-green", 0), (f"{NAME}-spare", 0)])
    bench.create_services([service(f"{NAME}-{side}") for side in ("blue", "green")])
    bench.create_custom_objects("httproutes", [http_route(NAME, f"{NAME}-blue", f"{NAME}-green")])
    bench.wait_available(timeout=120)
    bench.start_operator(qps, burst)
    bench.create_migrations([bench_migration(NAME, "1h", router="gatewayapi")])

    def paused() -> dict[str, Any] | None:
        body = cast(
            dict[str, Any],
            bench.custom.get_namespaced_custom_object(
                GROUP, VERSION, bench.namespace, PLURAL, NAME
            ),
        )
        status = body.get("status") or {}
        in_pause = status.get("weight") == 10 and status.get("currentStepIndex") == 1
        return status if in_pause else None

    status: dict[str, Any] = wait_until(paused, 120)
    # A status write of the operator's own would race the bench's.
    assert bench.operator is not None
    bench.operator.stop()
    bench.operator = None
    return status


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, qps=100, burst=200, smoke="20 writes of each kind, 1 round")
    parser.add_argument("--writes", type=int, default=300, help="writes per kind per round (300)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, kinds interleaved (5)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.writes, args.rounds = 20, 1
    with Bench(
        args.cluster_dir,
        chart_values={"routers": {"gatewayapi": {"enabled": True}}},
        third_party_crds=True,
    ) as bench:
        status = captured_status(bench, args.qps, args.burst)
        bare = bench_migration(BARE, "1h", router="gatewayapi")
        bench.custom.create_namespaced_custom_object(GROUP, VERSION, bench.namespace, PLURAL, bare)
        procs = {
            "kube_apiserver": bench.component("kube-apiserver"),
            "etcd": bench.component("etcd"),
        }
        writers = Writers(bench, status)
        rounds: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
        for number in range(args.rounds):
            for kind in KINDS:
                reading = measure(writers.write(kind), args.writes, procs)
                rounds[kind].append(reading)
                print(
                    f"round {number + 1} {kind}: kube-apiserver"
                    f" {reading['kube_apiserver_cpu_ms']:.2f} ms, etcd {reading['etcd_cpu_ms']:.2f}"
                    f" ms CPU; {reading['round_trip_ms']:.2f} ms a round trip",
                    flush=True,
                )
        denied = bench.denied()
    medians = {
        kind: {key: statistics.median(r[key] for r in readings) for key in readings[0]}
        for kind, readings in rounds.items()
    }
    read_cost = medians["read"]["kube_apiserver_cpu_ms"]
    for kind, reads in READS_BEFORE.items():
        medians[kind]["kube_apiserver_cpu_ms_without_its_read"] = (
            medians[kind]["kube_apiserver_cpu_ms"] - reads * read_cost
        )
    for kind, row in medians.items():
        print(f"{kind}: " + ", ".join(f"{key} {value:.2f}" for key, value in row.items()))
    report: dict[str, Any] = {
        "settings": vars(args) | {"output": str(args.output)},
        "status_bytes": len(json.dumps(status, separators=(",", ":"))),
        "status": status,
        "median_per_write": medians,
        "rounds": rounds,
        "rbac_denied": denied,
    }
    save("write-cost", report, args.output, args.smoke)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
