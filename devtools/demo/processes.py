"""The operator as a subprocess, and stopping process groups for good.

Every child of the demo runs in its own session (process group). A Ctrl-C in the terminal then
reaches only the demo, which stops the children in a sensible order (operator first, so it
does not act on a half-torn-down cluster; the control plane last) and never leaves one behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from devtools.operator import launch_operator


def stop_group(proc: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    """SIGTERM the process group of ``proc``; SIGKILL it after ``timeout``; reap ``proc``."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    # Even when the leader is gone, a grandchild could linger in the group: kill them all.
    _signal_group(proc, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILL cannot be ignored
        proc.wait(timeout=timeout)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # the leader's pid is the group id (start_new_session)


class OperatorProcess:
    """``kopf run -m cutover.handlers --standalone --namespace NS``, logging to a file."""

    def __init__(self, kubeconfig: str, namespace: str, log_path: Path) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self) -> OperatorProcess:
        with self.log_path.open("ab") as log:
            self.proc = launch_operator(self.namespace, self.kubeconfig, log)
        return self

    def watching(self) -> bool:
        """Kopf has started watching Migrations in the namespace: a new one is seen at once."""
        marker = (
            f"Starting the watch-stream for migrations.v1alpha1.cutover.io in '{self.namespace}'"
        )
        return marker in self.log_text()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_group(proc, timeout=10.0)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "<no operator log>"
        return "\n".join(text.splitlines()[-lines:])
