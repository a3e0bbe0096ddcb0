"""Running the real operator (``kopf run``) against the sandbox, and reading what it did."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cutover.sandbox.process import SandboxProcess

ROOT = Path(__file__).resolve().parents[2]


class OperatorProcess:
    """``kopf run -m cutover.handlers`` in a subprocess, watching one namespace."""

    def __init__(
        self, sandbox: SandboxProcess, namespace: str, *, env: dict[str, str] | None = None
    ):
        self.sandbox = sandbox
        self.namespace = namespace
        self.env = env or {}
        self.log_path = sandbox.workdir / f"operator-{namespace}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> OperatorProcess:
        env = dict(os.environ)
        env.update(
            {
                "KUBECONFIG": self.sandbox.kubeconfig,
                "PYTHONPATH": str(ROOT / "operator"),
                "PYTHONUNBUFFERED": "1",
                **self.env,
            }
        )
        log = self.log_path.open("ab")
        log.write(f"--- start {self.starts} ---\n".encode())
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kopf",
                "run",
                "-m",
                "cutover.handlers",
                "--standalone",
                "--namespace",
                self.namespace,
                "--verbose",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
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


def new_namespace(sandbox: SandboxProcess, prefix: str = "t") -> str:
    namespace = f"{prefix}-{uuid.uuid4().hex[:8]}"
    sandbox.kubectl("create", "namespace", namespace)
    return namespace


def apply(sandbox: SandboxProcess, namespace: str, path: Path | str) -> None:
    sandbox.kubectl("apply", "-n", namespace, "-f", str(path))


def apply_text(sandbox: SandboxProcess, namespace: str, manifest: str) -> None:
    sandbox.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)


def get(sandbox: SandboxProcess, namespace: str, kind: str, name: str) -> dict[str, Any]:
    out = sandbox.kubectl("get", "-n", namespace, kind, name, "-o", "json")
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def migration(sandbox: SandboxProcess, namespace: str, name: str) -> dict[str, Any]:
    return get(sandbox, namespace, "migrations.cutover.io", name)


def wait_for(
    probe: Callable[[], Any], *, timeout: float = 30, interval: float = 0.2, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as error:
            last = error
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}: last={last!r}")


def phase(sandbox: SandboxProcess, namespace: str, name: str) -> str | None:
    return (migration(sandbox, namespace, name).get("status") or {}).get("phase")


def wait_phase(
    sandbox: SandboxProcess, namespace: str, name: str, *phases: str, timeout: float = 60
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = migration(sandbox, namespace, name)
        return obj if (obj.get("status") or {}).get("phase") in phases else None

    return wait_for(probe, timeout=timeout, what=f"{name} in {phases}")  # type: ignore[no-any-return]


def replicas(sandbox: SandboxProcess, namespace: str, deployment: str) -> int:
    return int(get(sandbox, namespace, "deployment", deployment)["spec"].get("replicas", 0))


def writes(
    sandbox: SandboxProcess, namespace: str, resource: str | None = None, since: int = 0
) -> list[dict[str, Any]]:
    """Successful writes in ``namespace`` from the sandbox's request log."""
    entries = sandbox.requests(since=since)
    return [
        e
        for e in entries
        if e.get("namespace") == namespace
        and e.get("method") in ("POST", "PUT", "PATCH", "DELETE")
        and int(e.get("code", 0)) < 400
        and (resource is None or e.get("resource") == resource)
    ]
