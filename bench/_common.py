"""Shared pieces of the benchmarks: a real control plane + the operator on the chart's RBAC, bulk
creation, the kube-apiserver's audit log as the source of truth, process sampling with psutil.

Not a benchmark itself (leading underscore): the scripts in ``bench/`` import it.

The cluster is a real control plane (``devtools.controlplane``: etcd, kube-apiserver, the
controller manager, the scheduler and kwok's fake node) started in a temp directory, or the one
``--cluster-dir`` names (``make cluster`` leaves one in ``.cluster``; the tests pass their
session's). The operator runs as ``kopf run -m cutover.handlers --standalone --namespace NS``
with a token of the chart's ServiceAccount, bound to exactly the RBAC the chart renders; every
request it makes is in the audit log under ``system:serviceaccount:<NS>:<account>``, and only
those are counted: the benchmark's own requests (creating objects, polling) are not.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

import psutil  # noqa: E402
from kubernetes import client, config  # noqa: E402

from devtools.controlplane import ControlPlane  # noqa: E402
from devtools.demo.cluster import chart_rbac  # noqa: E402
from devtools.operator import launch_operator  # noqa: E402
from tests.support.admission import free_port, operator_env, webhook_configurations  # noqa: E402
from tests.support.controlplane import (  # noqa: E402
    CRDS,
    new_namespace,
    operator_kubeconfig,
)
from tests.support.patches import replicas_patched  # noqa: E402

RESULTS = ROOT / "bench" / "results"
GROUP, VERSION, PLURAL = "cutover.io", "v1alpha1", "migrations"
WRITE_VERBS = ("create", "patch", "update", "delete")
READ_VERBS = ("get", "list")
# The operator's budget per weight step, as docs/performance.md measured it (6.67 writes, 7.0
# reads per step with 20 Migrations on the emulator; 6.00 writes after "no Event per step").
# The smoke tests hold the operator to it: more means a regression a user pays for in QPS.
WRITES_PER_STEP_BUDGET = 7.0
READS_PER_STEP_BUDGET = 7.0
# Issue 16's goals for one more weight step, without a run's start and finish: with the replicas
# router the status intent and its two Deployment PATCHes (grow one side, then shrink the other);
# no read (the watch-fed index); with a weight router the intent and the route write. And for a
# rollback a gate triggers: the router's writes and the status intent, Events apart.
REPLICAS_WRITES_PER_STEP_GOAL = 3
WEIGHT_ROUTER_WRITES_PER_STEP_GOAL = 2
READS_PER_STEP_GOAL = 0
WRITES_PER_ROLLBACK_GOAL = 3


def add_cluster_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cluster-dir",
        type=Path,
        default=None,
        help="use the control plane running there (e.g. .cluster from `make cluster`) instead of"
        " starting one in a temp directory",
    )


def add_admission_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--admission",
        action="store_true",
        help="as a default install: the chart's admission webhooks on (the finalizer and the"
        " author are set at creation; runs are checked against the author's rights)",
    )


def bench_parser(
    doc: str | None,
    *,
    qps: float,
    burst: int,
    smoke: str,
    qps_help: str | None = None,
    burst_help: str | None = None,
) -> argparse.ArgumentParser:
    """The options every load benchmark shares: the operator's client rate limit, a smoke mode,
    where the JSON goes and which control plane; the script adds its own sizes to it."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
    parser.add_argument(
        "--qps", type=float, default=qps, help=qps_help or f"CUTOVER_API_QPS ({qps:g})"
    )
    parser.add_argument(
        "--burst", type=int, default=burst, help=burst_help or f"CUTOVER_API_BURST ({burst})"
    )
    parser.add_argument("--smoke", action="store_true", help=smoke)
    parser.add_argument("--output", type=Path, default=None, help="JSON file (bench/results/)")
    add_cluster_option(parser)
    return parser


# --- manifests ---------------------------------------------------------------------------------


def deployment(name: str, replicas: int, app: str | None = None) -> dict[str, Any]:
    labels = {"app": app or name, "version": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
            },
        },
    }


def service(name: str) -> dict[str, Any]:
    """The Service selecting only the pods of ``deployment(name, ...)``."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"version": name}, "ports": [{"port": 80}]},
    }


def http_route(name: str, blue: str, green: str) -> dict[str, Any]:
    """An HTTPRoute whose rule "main" sends everything to blue's Service, none to green's."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": "public"}],
            "rules": [
                {
                    "name": "main",
                    "backendRefs": [
                        {"name": blue, "port": 80, "weight": 100},
                        {"name": green, "port": 80, "weight": 0},
                    ],
                }
            ],
        },
    }


def gateway_api(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` (from :func:`migration`) routed by its own HTTPRoute and Services, which
    :meth:`Bench.create_routes` makes: named after the Migration, as ``service`` and
    ``http_route`` name them."""
    name = body["metadata"]["name"]
    spec = body["spec"]
    for side in ("blue", "green"):
        spec[side]["service"] = f"{name}-{side}"
    spec["traffic"] = {"router": "gatewayapi", "gatewayAPI": {"httpRoute": name, "rule": "main"}}
    return body


def route_weight_written(entry: dict[str, Any], green: str) -> int | None:
    """The weight an operator's HTTPRoute JSON patch gave ``green`` (None: it set none)."""
    body = entry.get("body")
    if entry.get("resource") != "httproutes" or entry.get("method") != "PATCH":
        return None
    if int(entry.get("code", 0)) >= 400 or not isinstance(body, list):
        return None
    for op in body:
        value = op.get("value") if isinstance(op, dict) else None
        if op.get("op") in ("replace", "add") and isinstance(value, dict):
            for ref in value.get("backendRefs") or []:
                if isinstance(ref, dict) and ref.get("name") == green:
                    return int(ref.get("weight", 1))
    return None


def migration(
    name: str, blue: str, green: str, steps: list[dict[str, Any]], **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Migration",
        "metadata": {"name": name},
        "spec": {
            "blue": {"deployment": blue},
            "green": {"deployment": green},
            "traffic": {"router": "replicas"},
            "steps": steps,
            **spec,
        },
    }


# --- statistics --------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, q in 0..100 (with fewer than 100 values p99 is the maximum)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def describe(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "median": None, "p99": None, "min": None, "max": None}
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p99": percentile(values, 99),
        "min": min(values),
        "max": max(values),
    }


def ms(value: float | int | None) -> str:
    return "n/a" if value is None else f"{value * 1000:.0f} ms"


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# --- the audit log: what the operator asked, in order ------------------------------------------


def _entry(event: dict[str, Any]) -> dict[str, Any]:
    ref = event.get("objectRef") or {}
    body = event.get("requestObject")
    name = ref.get("name")
    if not name and isinstance(body, dict):
        name = (body.get("metadata") or {}).get("name")
    verb = str(event.get("verb", ""))
    stage = event.get("stageTimestamp")
    received = event.get("requestReceivedTimestamp")
    return {
        "verb": verb,
        "method": {"create": "POST", "update": "PUT", "patch": "PATCH", "delete": "DELETE"}.get(
            verb, "GET"
        ),
        "resource": ref.get("resource"),
        "subresource": ref.get("subresource"),
        "namespace": ref.get("namespace"),
        "name": name,
        "code": int((event.get("responseStatus") or {}).get("code", 0)),
        "body": body,
        "user": (event.get("user") or {}).get("username"),
        # When the apiserver finished the request (its acknowledgement) and when it got it.
        "time": parse_time(stage) if stage else 0.0,
        "received": parse_time(received) if received else 0.0,
        "path": str(event.get("requestURI", "")).split("?")[0],
    }


def counter_key(entry: dict[str, Any]) -> tuple[str, str]:
    resource = str(entry["resource"] or entry["path"])
    if entry.get("subresource"):
        resource += f"/{entry['subresource']}"
    return str(entry["verb"]), resource


class OperatorRequests:
    """Follows the kube-apiserver's audit log (JSON lines) from where it ends now, keeping the
    requests of one identity: counts by (verb, resource[/subresource]) and every entry in order.

    Reads the file directly, incrementally and without waiting (``ControlPlane.reads`` re-reads
    the whole log and waits for it to stop growing: too slow to sample every 0.1 s under load).
    The kube-apiserver rotates the log at 100 MB (a long soak gets there): the rest of the
    rotated file is read, then the new one from its start.
    """

    def __init__(self, plane: ControlPlane, user_prefix: str) -> None:
        self.path = plane.audit_log
        self.user_prefix = user_prefix
        self.offset = self.path.stat().st_size if self.path.exists() else 0
        self.inode = self.path.stat().st_ino if self.path.exists() else 0
        self._partial_first = self.offset > 0
        self.counts: Counter[tuple[str, str]] = Counter()
        self.entries: list[dict[str, Any]] = []
        self.seq = 0
        self.denied: list[str] = []
        self._lock = threading.Lock()

    def poll(self) -> list[dict[str, Any]]:
        """New requests of the operator since the last poll, oldest first."""
        with self._lock:
            if not self.path.exists():
                return []
            rest = self._rotated_rest()
            with self.path.open("rb") as f:
                f.seek(self.offset)
                chunk = rest + f.read()
            end = chunk.rfind(b"\n")
            if end < 0:
                return []
            # ``rest`` ends a line of its own: what follows it is read from the new file.
            self.offset += end + 1 - len(rest)
            lines = chunk[: end + 1].splitlines()
            if self._partial_first:
                # Started at the file's end: the first "line" may be the tail of one cut in two.
                self._partial_first = False
                if lines and not lines[0].lstrip().startswith(b"{"):
                    lines = lines[1:]
            new = []
            for raw in lines:
                if self.user_prefix.encode() not in raw:
                    continue
                try:
                    entry = _entry(json.loads(raw))
                except ValueError:
                    continue
                if not str(entry["user"] or "").startswith(self.user_prefix):
                    continue
                if entry["code"] == 403:
                    # Refused, so it served nothing: listed apart, not counted as a read/write.
                    where = entry["namespace"] or "the cluster scope"
                    self.denied.append(f"{entry['verb']} {counter_key(entry)[1]} in {where}")
                    continue
                self.seq += 1
                entry["seq"] = self.seq
                self.counts[counter_key(entry)] += 1
                new.append(entry)
            self.entries.extend(new)
            return new

    def _rotated_rest(self) -> bytes:
        """What the log held after ``offset`` when it was rotated away, if it was (then the
        reading goes on at the start of the new file)."""
        inode = self.path.stat().st_ino
        if inode == self.inode:
            return b""
        rest = b""
        rotated = sorted(
            self.path.parent.glob(f"{self.path.stem}-*{self.path.suffix}"),
            key=lambda p: p.stat().st_mtime,
        )
        if rotated and self.inode:
            with rotated[-1].open("rb") as f:
                f.seek(self.offset)
                rest = f.read()
            if rest and not rest.endswith(b"\n"):
                rest += b"\n"
        self.inode, self.offset = inode, 0
        return rest

    def counters(self) -> dict[tuple[str, str], int]:
        self.poll()
        with self._lock:
            return dict(self.counts)

    def writes_since(self, seq: int) -> list[dict[str, Any]]:
        self.poll()
        with self._lock:
            return [e for e in self.entries if e["seq"] > seq and e["method"] != "GET"]


def delta(
    after: dict[tuple[str, str], int], before: dict[tuple[str, str], int]
) -> dict[tuple[str, str], int]:
    keys = set(after) | set(before)
    result = {k: after.get(k, 0) - before.get(k, 0) for k in keys}
    return {k: v for k, v in sorted(result.items()) if v}


def total(counts: dict[tuple[str, str], int], verbs: tuple[str, ...]) -> int:
    return sum(v for (verb, _), v in counts.items() if verb in verbs)


def flat(counts: dict[tuple[str, str], int]) -> dict[str, int]:
    return {f"{verb} {resource}": n for (verb, resource), n in sorted(counts.items())}


def status_of(entry: dict[str, Any]) -> dict[str, Any] | None:
    body = entry.get("body")
    if entry.get("subresource") != "status" or not isinstance(body, dict):
        return None
    if entry.get("method") == "GET" or int(entry.get("code", 0)) >= 400:
        return None
    status = body.get("status")
    return status if isinstance(status, dict) else None


def replicas_written(entry: dict[str, Any]) -> int | None:
    body = entry.get("body")
    if entry.get("resource") != "deployments" or entry.get("method") != "PATCH":
        return None
    if entry.get("subresource") not in (None, "scale"):
        return None
    if int(entry.get("code", 0)) >= 400:
        return None
    return replicas_patched(body)


# --- the operator ------------------------------------------------------------------------------


class OperatorProcess:
    """``kopf run -m cutover.handlers --standalone --namespace NS`` with a given kubeconfig."""

    def __init__(
        self, kubeconfig: Path, namespace: str, log_path: Path, env: dict[str, str]
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.liveness = ""

    def start(self) -> OperatorProcess:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.liveness = f"http://127.0.0.1:{probe.getsockname()[1]}/healthz"
        with self.log_path.open("ab") as log:
            # Logging at INFO, as installed: Kopf's debug lines for every watch event cost ~8 %
            # of the operator's CPU at 200 Migrations, which a production operator does not pay.
            self.proc = launch_operator(
                self.namespace,
                self.kubeconfig,
                log,
                self.env,
                verbose=False,
                liveness=self.liveness,
            )
        return self

    def live(self) -> bool:
        """Kopf's liveness probe answers: the operator runs and its watches are starting."""
        try:
            with urllib.request.urlopen(self.liveness, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


# --- the cluster and the operator --------------------------------------------------------------


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # A bench stopped with SIGTERM (kill, a CI timeout) unwinds its ``with Bench``: otherwise its
    # operator, in a session of its own, outlives it and spins against a control plane gone.
    raise SystemExit(128 + signum)


class Bench:
    """A control plane (started here, or the one in ``cluster_dir``), the CRD, a fresh namespace
    with the chart's RBAC, an admin client; the operator on demand."""

    def __init__(
        self,
        cluster_dir: Path | None = None,
        prefix: str = "bench",
        *,
        chart_values: dict[str, Any] | None = None,
        third_party_crds: bool = False,
    ) -> None:
        self.cluster_dir = cluster_dir
        self.prefix = prefix
        # The chart's values the operator's RBAC is rendered with (e.g. a router enabled), and
        # whether Gateway API's and Istio's CRDs are installed for it.
        self.chart_values = chart_values
        self.third_party_crds = third_party_crds
        self.workdir = Path(tempfile.mkdtemp(prefix="cutover-bench-"))
        self.owned = cluster_dir is None
        self.plane: ControlPlane = (
            ControlPlane(self.workdir / "cluster")
            if cluster_dir is None
            else ControlPlane.attach(cluster_dir)
        )
        self.namespace = ""
        self.operator: OperatorProcess | None = None
        self.api: Any = None
        self.audit: OperatorRequests | None = None
        self.user_prefix = ""
        self.kubeconfig: Path | None = None
        self.created_at: dict[str, float] = {}  # Migration -> when its POST returned
        # The chart's webhook configurations, while the operator serves them (``start_operator``).
        self.webhooks: list[dict[str, Any]] = []
        self.webhook_port = 0

    def __enter__(self) -> Bench:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            if self.owned:
                started = time.monotonic()
                self.plane.start()
                print(
                    f"control plane ready in {time.monotonic() - started:.1f}s ({self.plane.root})",
                    flush=True,
                )
            self.plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
            # Not `kubectl wait`: it fails outright while a new CRD has no conditions yet.
            established = '{.status.conditions[?(@.type=="Established")].status}'
            wait_until(
                lambda: (
                    self.plane.kubectl(
                        "get",
                        "crd",
                        "migrations.cutover.io",
                        "-o",
                        f"jsonpath={established}",
                        check=False,
                    ).stdout.strip()
                    == "True"
                ),
                60,
            )
            if self.third_party_crds:
                self.plane.install_third_party_crds()
            self.namespace = new_namespace(self.plane, self.prefix)
            accounts = [
                d["metadata"]["name"]
                for d in chart_rbac(self.namespace, self.chart_values)
                if d["kind"] == "ServiceAccount"
            ]
            self.user_prefix = f"system:serviceaccount:{self.namespace}:{accounts[0]}"
            self.kubeconfig = operator_kubeconfig(
                self.plane, self.namespace, self.workdir, values=self.chart_values
            )
            self.audit = OperatorRequests(self.plane, self.user_prefix)
            self.api = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=self.plane.kubeconfig
            )
            self.apps = client.AppsV1Api(self.api)
            self.custom = client.CustomObjectsApi(self.api)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        # First: nothing later may meet a webhook pointing at a stopped operator.
        for doc in self.webhooks:
            self.plane.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], check=False)
        if self.operator is not None:
            self.operator.stop()
        if self.api is not None:
            self.api.close()
        # The operator's log (and an own control plane's logs) outlive a failure, or on request.
        keep = bool(exc and exc[0] is not None) or bool(os.environ.get("CUTOVER_BENCH_KEEP"))
        if keep:
            print(f"logs kept in {self.workdir}", flush=True)
        if self.owned:
            self.plane.stop()
        else:
            if self.namespace:
                self.plane.kubectl(
                    "delete", "namespace", self.namespace, "--wait=false", check=False
                )
                for doc in chart_rbac(self.namespace, self.chart_values) if self.namespace else []:
                    if doc["kind"] in ("ClusterRole", "ClusterRoleBinding"):
                        self.plane.kubectl(
                            "delete", doc["kind"].lower(), doc["metadata"]["name"], check=False
                        )
        if not keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # processes

    def start_operator(
        self, qps: float, burst: int, *, admission: bool = False, **env: str
    ) -> psutil.Process:
        """The operator, running. ``admission``: as a default install runs it, with the chart's
        webhook configurations registered and served (pointed at a local port; from then on for
        every start); returns once the API server can call them."""
        assert self.kubeconfig is not None
        if admission and not self.webhooks:
            self.webhook_port = free_port()
            self.webhooks = webhook_configurations(self.namespace, self.webhook_port)
            items = {"apiVersion": "v1", "kind": "List", "items": self.webhooks}
            self.plane.kubectl("apply", "-f", "-", input=json.dumps(items))
        if self.webhooks:  # a restart serves them too: they stay registered
            env = {**operator_env(self.namespace, self.webhook_port), **env}
        proc = self._start_operator(qps, burst, **env)
        if self.webhooks:
            wait_until(lambda: self.published_ca() is not None, 60)
        return proc

    def published_ca(self) -> bytes | None:
        """The CA the operator put in its validating webhook configuration; None before."""
        name = next(
            d["metadata"]["name"]
            for d in self.webhooks
            if d["kind"] == "ValidatingWebhookConfiguration"
        )
        out = self.plane.kubectl(
            "get", "validatingwebhookconfiguration", name, "-o", "json", check=False
        ).stdout
        if not out:
            return None
        bundle = json.loads(out)["webhooks"][0]["clientConfig"].get("caBundle")
        return base64.b64decode(bundle) if bundle else None

    def _start_operator(self, qps: float, burst: int, **env: str) -> psutil.Process:
        if self.operator is not None:
            self.operator.stop()
        log_path = self.workdir / f"operator-{self.namespace}.log"
        offset = log_path.stat().st_size if log_path.exists() else 0  # a previous start's lines
        assert self.kubeconfig is not None, "the Bench is entered before an operator starts"
        self.operator = OperatorProcess(
            self.kubeconfig,
            self.namespace,
            log_path,
            {"CUTOVER_API_QPS": str(qps), "CUTOVER_API_BURST": str(burst), **env},
        ).start()
        assert self.operator.proc is not None
        proc = psutil.Process(self.operator.proc.pid)
        # Measure from when it runs (its watches start then), not from its start.
        started = time.monotonic()
        operator = self.operator
        wait_until(lambda: operator.live() or not self.operator_alive(), 120)
        if not self.operator_alive():
            raise RuntimeError(f"the operator exited:\n{self.operator_log()[offset:][-3000:]}")
        print(f"operator running after {time.monotonic() - started:.1f}s", flush=True)
        time.sleep(1)  # its watches have listed what exists
        return proc

    def outcome(self) -> tuple[dict[tuple[str, str], int], str, list[str], dict[str, float]]:
        """At a run's end: the operator's request counters, its log, the requests RBAC denied
        and when each Migration was created."""
        return self.counters(), self.operator_log(), self.denied(), dict(self.created_at)

    def operator_alive(self) -> bool:
        return bool(self.operator and self.operator.proc and self.operator.proc.poll() is None)

    def operator_log(self) -> str:
        return self.operator.log() if self.operator else ""

    def component(self, name: str) -> psutil.Process:
        """A process of the control plane (kube-apiserver, etcd...), for CPU sampling."""
        for component in self.plane.components:
            if component.name == name and component.pid:
                return psutil.Process(component.pid)
        raise RuntimeError(f"{name} is not running")

    # objects

    def create_deployments(self, specs: Iterable[tuple[str, int]], workers: int = 8) -> None:
        def one(spec: tuple[str, int]) -> None:
            # The client sends a dict as the body as it is; its stubs name only the model class.
            self.apps.create_namespaced_deployment(
                self.namespace,
                deployment(*spec),  # type: ignore[arg-type]
            )

        parallel(one, list(specs), workers)

    def wait_available(self, timeout: float) -> float:
        """Waits until every Deployment of the namespace has all its replicas available, as a
        cluster whose apps already run before anyone migrates them; returns the seconds it took.
        Without it, the controller manager creating blue's pods competes with the operator for
        the API server, and its backlog is counted as the operator's."""
        started = time.monotonic()

        def settled() -> bool:
            items = self.apps.list_namespaced_deployment(self.namespace).items
            return all(
                ((d.status and d.status.available_replicas) or 0) >= (d.spec.replicas or 0)
                for d in items
            )

        wait_until(settled, timeout, interval=2.0)
        return time.monotonic() - started

    def create_services(self, bodies: list[dict[str, Any]], workers: int = 8) -> None:
        core = client.CoreV1Api(self.api)

        def one(body: dict[str, Any]) -> None:
            core.create_namespaced_service(self.namespace, body)  # type: ignore[arg-type]

        parallel(one, bodies, workers)

    def create_routes(self, names: list[str]) -> None:
        """For each name, blue's and green's Services and an HTTPRoute all on blue (what
        :func:`gateway_api` routes a Migration through)."""
        self.create_services([service(f"{n}-{side}") for n in names for side in ("blue", "green")])
        self.create_custom_objects(
            "httproutes", [http_route(n, f"{n}-blue", f"{n}-green") for n in names]
        )

    def create_custom_objects(
        self, plural: str, bodies: list[dict[str, Any]], workers: int = 8
    ) -> None:
        """Objects of a third-party kind (``apiVersion`` says its group and version)."""

        def one(body: dict[str, Any]) -> None:
            group, version = body["apiVersion"].split("/")
            self.custom.create_namespaced_custom_object(
                group, version, self.namespace, plural, body
            )

        parallel(one, bodies, workers)

    def create_migrations(self, bodies: list[dict[str, Any]], workers: int = 8) -> None:
        def one(body: dict[str, Any]) -> None:
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, body
            )
            self.created_at[str(body["metadata"]["name"])] = time.time()

        parallel(one, bodies, workers)

    def delete_migrations(self, names: list[str], workers: int = 8) -> None:
        def one(name: str) -> None:
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name
            )

        parallel(one, names, workers)

    def annotate(self, name: str, annotations: dict[str, str]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"metadata": {"annotations": annotations}}
        )

    def migrations(self) -> list[dict[str, Any]]:
        result = cast(
            dict[str, Any],
            self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL),
        )
        return list(result.get("items") or [])

    def phases(self) -> dict[str, str]:
        return {
            m["metadata"]["name"]: str((m.get("status") or {}).get("phase") or "")
            for m in self.migrations()
        }

    def status(self, name: str) -> dict[str, Any]:
        obj = cast(
            dict[str, Any],
            self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name),
        )
        return dict(obj.get("status") or {})

    def apply(self, manifest: str) -> None:
        self.plane.kubectl("apply", "-n", self.namespace, "-f", "-", input=manifest)

    # the operator's requests, from the audit log

    def counters(self) -> dict[tuple[str, str], int]:
        assert self.audit is not None
        return self.audit.counters()

    def tail(self) -> LogTail:
        assert self.audit is not None
        return LogTail(self.audit)

    def denied(self) -> list[str]:
        """The operator's requests RBAC refused: each one a gap in the chart's rules."""
        assert self.audit is not None
        self.audit.poll()
        return list(self.audit.denied)


class LogTail:
    """The operator's writes from now on, as the audit log records them (with request bodies)."""

    def __init__(self, audit: OperatorRequests) -> None:
        self.audit = audit
        audit.poll()
        self.seq = audit.seq
        self.entries: list[dict[str, Any]] = []
        self.lost = 0  # the audit log loses nothing (blocking mode); kept for the reports

    def poll(self) -> list[dict[str, Any]]:
        new = self.audit.writes_since(self.seq)
        if new:
            self.seq = new[-1]["seq"]
            self.entries.extend(new)
        return new

    def wait_succeeded(self, done: set[str], want: int, deadline: float, every: float) -> None:
        """Adds to ``done`` each Migration whose status the operator writes as Succeeded, polling
        every ``every`` seconds until ``want`` have or ``deadline`` (monotonic) passes."""
        while len(done) < want and time.monotonic() < deadline:
            for entry in self.poll():
                status = status_of(entry)
                if status is not None and status.get("phase") == "Succeeded":
                    done.add(str(entry["name"]))
            time.sleep(every)


# --- helpers -----------------------------------------------------------------------------------


def wait_until(probe: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s")


def parallel(fn: Callable[[Any], None], items: list[Any], workers: int) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for future in [pool.submit(fn, item) for item in items]:
            future.result()


class Sampler:
    """Samples RSS and CPU of some processes in a thread (psutil)."""

    def __init__(self, procs: dict[str, psutil.Process], every: float = 0.5) -> None:
        self.procs = procs
        self.every = every
        self.samples: dict[str, list[tuple[float, float, float]]] = {k: [] for k in procs}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for key, proc in self.procs.items():
                try:
                    times = proc.cpu_times()
                    self.samples[key].append(
                        (now, proc.memory_info().rss, times.user + times.system)
                    )
                except psutil.Error:
                    pass
            self._stop.wait(self.every)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def cpu_busy(self, key: str) -> dict[str, float]:
        """Mean and peak (over ~2 s) CPU of one process, in cores."""
        rows = self.samples[key]
        if len(rows) < 2:
            return {"mean_cores": 0.0, "peak_cores": 0.0}
        mean = (rows[-1][2] - rows[0][2]) / max(rows[-1][0] - rows[0][0], 1e-9)
        peak = 0.0
        step = max(1, int(2 / self.every))
        for i in range(step, len(rows)):
            dt = rows[i][0] - rows[i - step][0]
            if dt > 0:
                peak = max(peak, (rows[i][2] - rows[i - step][2]) / dt)
        return {"mean_cores": mean, "peak_cores": peak}

    def rss_max(self, key: str) -> float:
        return max((r[1] for r in self.samples[key]), default=0.0)

    def rss_series(self, key: str, every: float = 5.0) -> list[tuple[float, float]]:
        """(seconds since the first sample, the highest RSS in MiB in that ``every``-second
        window): where in a run the peak came, at a size a JSON report can carry."""
        rows = self.samples[key]
        if not rows:
            return []
        windows: dict[int, float] = {}
        for when, rss, _ in rows:
            window = int((when - rows[0][0]) // every)
            windows[window] = max(windows.get(window, 0.0), rss)
        return [(w * every, round(mib(r), 1)) for w, r in sorted(windows.items())]


def cpu_seconds(proc: psutil.Process) -> float:
    """CPU time ``proc`` has used so far, user and system."""
    times = proc.cpu_times()
    return float(times.user + times.system)


def mib(value: float) -> float:
    return value / 2**20


def rss_then_later(proc: psutil.Process, settle: float, later: float) -> tuple[float, float]:
    """A process's RSS in MiB ``settle`` seconds from now, and ``later`` seconds after that
    (a heap trim interval: how much of a burst's high-water mark it gave back)."""
    time.sleep(settle)
    first = mib(proc.memory_info().rss)
    time.sleep(later)
    return first, mib(proc.memory_info().rss)


def save(name: str, report: dict[str, Any], output: Path | None, smoke: bool) -> Path:
    report = {
        "benchmark": name,
        "when": datetime.now().astimezone().isoformat(timespec="seconds"),
        "smoke": smoke,
        "cluster": "control plane (devtools.controlplane: kube-apiserver, etcd, kwok)",
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": psutil.cpu_count(),
        },
        **report,
    }
    if output is None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        output = RESULTS / f"{name}-{'smoke-' if smoke else ''}{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {output}")
    return output
