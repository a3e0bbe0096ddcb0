"""The `python -m cutover.sandbox serve` entry point and `SandboxProcess` lifecycle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cutover.sandbox.process import _SOURCE_ROOT, SandboxProcess


def test_serve_prints_ready_json_and_exits_cleanly(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(_SOURCE_ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cutover.sandbox",
            "serve",
            "--port",
            "0",
            "--kubeconfig",
            str(tmp_path / "kc"),
            "--ready-file",
            str(tmp_path / "ready"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready == json.loads((tmp_path / "ready").read_text())
        assert ready["kubeconfig"] == str(tmp_path / "kc") and Path(ready["kubeconfig"]).exists()
        # An open watch must not hold up the shutdown.
        watch = urllib.request.urlopen(f"{ready['url']}/api/v1/configmaps?watch=true", timeout=10)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
        watch.close()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sandbox_process_context_manager() -> None:
    with SandboxProcess(deployment_delay=0.05) as sandbox:
        assert sandbox.url.startswith("http://127.0.0.1:")
        assert Path(sandbox.kubeconfig).exists()
        assert sandbox.configure(deployment_ready_delay=0.1)["deployment_ready_delay"] == 0.1
        assert (
            sandbox.kubectl("get", "ns", "default", "-o", "name").stdout.strip()
            == "namespace/default"
        )
        workdir = sandbox.workdir
    assert sandbox.returncode is None and not workdir.exists()
