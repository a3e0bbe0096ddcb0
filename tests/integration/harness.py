"""Running the real operator (``kopf run``) against the real control plane, and reading what it
did from the kube-apiserver's audit log."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from devtools.controlplane import ControlPlane
from devtools.operator import launch_operator
from tests.support.controlplane import new_namespace, operator_kubeconfig, wait_for

__all__ = [
    "ROOT",
    "OperatorProcess",
    "apply",
    "apply_text",
    "get",
    "migration",
    "new_namespace",
    "phase",
    "replicas",
    "wait_for",
    "wait_phase",
    "writes",
]

ROOT = Path(__file__).resolve().parents[2]


class OperatorProcess:
    """``kopf run -m cutover.handlers`` in a subprocess, watching one namespace, the namespaces
    matching the glob ``watch``, or all of them (with cluster-wide chart RBAC bound in
    ``namespace``)."""

    def __init__(
        self,
        cluster: ControlPlane,
        namespace: str,
        *,
        env: dict[str, str] | None = None,
        kubeconfig: Path | None = None,
        chart_values: dict[str, Any] | None = None,
        peering: str | None = None,
        all_namespaces: bool = False,
        watch: str | None = None,
        name: str | None = None,
    ):
        self.cluster = cluster
        self.namespace = namespace
        self.env = env or {}
        self.peering = peering
        self.all_namespaces = all_namespaces
        self.watch = watch
        self.log_path = cluster.workdir / f"operator-{name or namespace}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        # The chart's ServiceAccount and RBAC, never admin: a request the chart does not allow
        # fails the way it would in a user's cluster.
        self.kubeconfig = kubeconfig or operator_kubeconfig(
            cluster, namespace, cluster.workdir / "operators", values=chart_values
        )

    def start(self) -> OperatorProcess:
        log = self.log_path.open("ab")
        log.write(f"--- start {self.starts} ---\n".encode())
        log.flush()
        self.proc = launch_operator(
            None if self.all_namespaces else (self.watch or self.namespace),
            self.kubeconfig,
            log,
            self.env,
            peering=self.peering,
        )
        self.starts += 1
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, no last status write -- the crash the status must survive."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def apply(cluster: ControlPlane, namespace: str, path: Path | str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(path))


def apply_text(cluster: ControlPlane, namespace: str, manifest: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)


def get(cluster: ControlPlane, namespace: str, kind: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "-n", namespace, kind, name, "-o", "json")
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def migration(cluster: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return get(cluster, namespace, "migrations.cutover.io", name)


def phase(cluster: ControlPlane, namespace: str, name: str) -> str | None:
    return (migration(cluster, namespace, name).get("status") or {}).get("phase")


def wait_phase(
    cluster: ControlPlane, namespace: str, name: str, *phases: str, timeout: float = 60
) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def probe() -> dict[str, Any] | None:
        obj = migration(cluster, namespace, name)
        seen["status"] = obj.get("status") or {}
        return obj if seen["status"].get("phase") in phases else None

    try:
        return wait_for(probe, timeout=timeout, what=f"{name} in {phases}")  # type: ignore[no-any-return]
    except AssertionError as error:
        # Where the run was instead says more than "last=None" when a wait times out.
        last = seen.get("status") or {}
        where = {key: last.get(key) for key in ("phase", "reason", "message", "weight", "step")}
        raise AssertionError(f"{error}; last status {where}") from None


def replicas(cluster: ControlPlane, namespace: str, deployment: str) -> int:
    return int(get(cluster, namespace, "deployment", deployment)["spec"].get("replicas", 0))


# The API server's answer to a request whose client went away mid-answer (e.g. SIGKILLed).
INTERRUPTED = 504


def took_effect(
    entries: list[dict[str, Any]], same: Callable[[dict[str, Any]], Hashable]
) -> list[dict[str, Any]]:
    """The writes among audit ``entries`` that took effect, in order.

    A write whose client was SIGKILLed while the API server answered is audited as 504, yet the
    server may have applied it: the restarted operator then finds it in place and never repeats
    it. So a 504 write counts, unless the next entry is the ``same`` write (then it had not
    applied, or the retry found it applied and changed nothing: either way one took effect).
    """
    kept = [e for e in entries if int(e.get("code", 0)) < 400 or e.get("code") == INTERRUPTED]
    return [
        entry
        for index, entry in enumerate(kept)
        if entry.get("code") != INTERRUPTED
        or index + 1 == len(kept)
        or same(kept[index + 1]) != same(entry)
    ]


def same_request(entry: dict[str, Any]) -> Hashable:
    return (
        entry.get("method"),
        entry.get("resource"),
        entry.get("name"),
        json.dumps(entry.get("body"), sort_keys=True),
    )


def writes(
    cluster: ControlPlane, namespace: str, resource: str | None = None, since: int = 0
) -> list[dict[str, Any]]:
    """Writes in ``namespace`` that took effect, from the audit log, by anyone (tests filter
    further)."""
    entries = cluster.requests(since=since)
    return took_effect(
        [
            e
            for e in entries
            if e.get("namespace") == namespace
            and e.get("method") in ("POST", "PUT", "PATCH", "DELETE")
            and (resource is None or e.get("resource") == resource)
        ],
        same_request,
    )
