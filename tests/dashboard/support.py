"""``cutover dashboard`` as a user starts it (a subprocess on a free loopback port), and a
headless Chromium (Debian's, driven by Playwright; no browser is ever downloaded)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from devtools.controlplane.cluster import free_port
from tests.support.controlplane import wait_for

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class Dashboard:
    """One ``cutover dashboard`` process; ``url`` is where it serves."""

    def __init__(self, kubeconfig: str, namespace: str, log: Path, *flags: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        # This checkout's code, whatever the venv's editable install points at.
        path = os.pathsep.join([str(ROOT / "operator"), os.environ.get("PYTHONPATH", "")])
        command = [sys.executable, "-m", "cutover.cli", "dashboard", "--port", str(self.port)]
        command += ["--kubeconfig", kubeconfig, "-n", namespace, *flags]
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": path},
            )

    def ready(self) -> Dashboard:
        """Wait until it serves (starting one takes seconds on a busy machine: start them all,
        then wait for each)."""
        wait_for(self._serving, timeout=60, what=f"the dashboard on {self.url}")
        return self

    def _serving(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the dashboard exited:\n{self.log()}")
        try:
            with urllib.request.urlopen(self.url + "/", timeout=2) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def interrupt(self) -> None:
        """Ctrl-C, as a person stops it; ``stop`` waits for the exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def stop(self) -> None:
        self.interrupt()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
