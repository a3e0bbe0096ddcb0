"""Shared pieces of the scale benchmarks: the sandbox + operator pair, bulk creation, the
sandbox's request log and counters (the source of truth), process sampling with psutil.

Not a benchmark itself (leading underscore): ``concurrency.py``, ``api_economy.py``,
``memory.py`` and ``gate_cost.py`` import it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

import psutil  # noqa: E402
from kubernetes import client, config  # noqa: E402
from tests.integration.harness import OperatorProcess  # noqa: E402

from cutover.sandbox.process import SandboxProcess  # noqa: E402

RESULTS = ROOT / "bench" / "results"
GROUP, VERSION, PLURAL = "cutover.io", "v1alpha1", "migrations"
WRITE_VERBS = ("create", "patch", "update", "delete")
READ_VERBS = ("get", "list")


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


# --- the cluster and the operator --------------------------------------------------------------


class Bench:
    """Sandbox (its own process) + the CRD + one namespace + a client; the operator on demand."""

    def __init__(self, namespace: str = "bench", deployment_delay: float = 0.1) -> None:
        self.namespace = namespace
        self.sandbox = SandboxProcess(deployment_delay=deployment_delay)
        self.operator: OperatorProcess | None = None
        self.api: Any = None
        self.own_lists = 0  # list migrations the bench itself sent (to subtract from counters)

    def __enter__(self) -> Bench:
        self.sandbox.start()
        self.sandbox.kubectl("apply", "-f", str(ROOT / "crds" / "migrations.cutover.io.yaml"))
        self.sandbox.kubectl("create", "namespace", self.namespace)
        self.api = config.new_client_from_config(config_file=self.sandbox.kubeconfig)
        self.apps = client.AppsV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.operator is not None:
            self.operator.stop()
        if self.api is not None:
            self.api.close()
        self.sandbox.stop()

    # processes

    def start_operator(self, qps: float, burst: int, **env: str) -> psutil.Process:
        self.operator = OperatorProcess(
            self.sandbox,
            self.namespace,
            env={"CUTOVER_API_QPS": str(qps), "CUTOVER_API_BURST": str(burst), **env},
        ).start()
        assert self.operator.proc is not None
        proc = psutil.Process(self.operator.proc.pid)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: "'configure' succeeded" in self.operator_log(), 20)
        time.sleep(2)  # the watches (and the Deployment index) are up
        return proc

    def operator_log(self) -> str:
        return self.operator.log() if self.operator else ""

    def sandbox_process(self) -> psutil.Process:
        for child in psutil.Process().children(recursive=True):
            try:
                if "cutover.sandbox" in " ".join(child.cmdline()):
                    return child
            except psutil.Error:
                continue
        raise RuntimeError("sandbox process not found")

    # objects

    def create_deployments(self, specs: Iterable[tuple[str, int]], workers: int = 8) -> None:
        def one(spec: tuple[str, int]) -> None:
            self.apps.create_namespaced_deployment(self.namespace, deployment(*spec))

        parallel(one, list(specs), workers)

    def create_migrations(self, bodies: list[dict[str, Any]], workers: int = 8) -> None:
        def one(body: dict[str, Any]) -> None:
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, body
            )

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
        self.own_lists += 1
        result = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
        return list(result.get("items") or [])

    def phases(self) -> dict[str, str]:
        return {
            m["metadata"]["name"]: str((m.get("status") or {}).get("phase") or "")
            for m in self.migrations()
        }

    # the sandbox's view

    def counters(self) -> dict[tuple[str, str], int]:
        totals: dict[tuple[str, str], int] = {}
        for row in self.sandbox.stats()["by_verb_resource_code"]:
            key = (str(row["verb"]), str(row["resource"]))
            totals[key] = totals.get(key, 0) + int(row["count"])
        return totals


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


class LogTail:
    """Drains the sandbox's bounded write log as it goes, keeping what the caller filters."""

    def __init__(self, sandbox: SandboxProcess, since: int | None = None) -> None:
        self.sandbox = sandbox
        self.seq = sandbox.stats()["last_seq"] if since is None else since
        self.entries: list[dict[str, Any]] = []
        self.lost = 0

    def poll(self) -> list[dict[str, Any]]:
        new = self.sandbox.requests(since=self.seq)
        if new:
            if new[0]["seq"] > self.seq + 1:
                self.lost += new[0]["seq"] - self.seq - 1
            self.seq = new[-1]["seq"]
            self.entries.extend(new)
        return new


def status_of(entry: dict[str, Any]) -> dict[str, Any] | None:
    body = entry.get("body")
    if entry.get("subresource") != "status" or not isinstance(body, dict):
        return None
    status = body.get("status")
    return status if isinstance(status, dict) else None


def replicas_written(entry: dict[str, Any]) -> int | None:
    body = entry.get("body")
    if entry.get("resource") != "deployments" or entry.get("method") != "PATCH":
        return None
    if not isinstance(body, dict) or int(entry.get("code", 0)) >= 400:
        return None
    value = (body.get("spec") or {}).get("replicas")
    return int(value) if value is not None else None


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


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
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
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


def mib(value: float) -> float:
    return value / 2**20


def save(name: str, report: dict[str, Any], output: Path | None, smoke: bool) -> Path:
    report = {
        "benchmark": name,
        "when": datetime.now().astimezone().isoformat(timespec="seconds"),
        "smoke": smoke,
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
