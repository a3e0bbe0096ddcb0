"""``python -m cutover.demo`` end to end: outcomes, exit codes, and nothing left behind.

Each test runs the demo as a subprocess with ``--state-file``, where the demo records the pids
and ports of everything it starts; afterwards no such process may remain (checked with psutil
when installed, else by scanning /proc) and no such port may accept connections.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.prometheus import find_prometheus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 150


def demo_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "operator")
    env.pop("COLUMNS", None)
    return env


def run_demo(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    state_file = tmp_path / "state.json"
    result = subprocess.run(
        [sys.executable, "-m", "cutover.demo", "--state-file", str(state_file), *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=demo_env(),
        cwd=ROOT,
        check=False,
    )
    return result, json.loads(state_file.read_text())


def _processes() -> list[tuple[int, str, str]]:
    """(pid, cmdline, environ) of every process we can read."""
    psutil: Any
    try:
        import psutil  # type: ignore[import-untyped, no-redef, unused-ignore]
    except ImportError:
        psutil = None
    found: list[tuple[int, str, str]] = []
    if psutil is not None:
        for proc in psutil.process_iter(["pid", "cmdline", "environ"]):
            info = proc.info
            env = " ".join(f"{k}={v}" for k, v in (info.get("environ") or {}).items())
            found.append((info["pid"], " ".join(info.get("cmdline") or []), env))
        return found
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found.append((int(entry.name), cmdline, environ))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def assert_nothing_left(state: dict[str, Any]) -> None:
    workdir = state["workdir"]
    deadline = time.monotonic() + 10  # the kernel may take a moment to release sockets
    while True:
        alive = {name: pid for name, pid in state["pids"].items() if pid and _alive(pid)}
        strays = [
            (pid, cmd)
            for pid, cmd, env in _processes()
            if pid != os.getpid() and (workdir in cmd or workdir in env)
        ]
        open_ports = {name: port for name, port in state["ports"].items() if _port_open(port)}
        if not (alive or strays or open_ports) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not alive, f"processes still running: {alive}"
    assert not strays, f"processes of the demo still running: {strays}"
    assert not open_ports, f"ports still open: {open_ports}"
    assert {"sandbox", "demo"} <= set(state["pids"])
    assert any(name.startswith("operator-") for name in state["pids"])


def needs_prometheus() -> None:
    if find_prometheus() is None:
        pytest.skip("prometheus binary not installed (apt-get install prometheus)")


def test_good_scenario_succeeds(tmp_path: Path) -> None:
    needs_prometheus()
    result, state = run_demo(tmp_path, "--scenario", "good")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Scenario good: Succeeded" in output
    assert "gate error-rate:" in output and "-> Passed" in output
    assert "Traceback" not in output
    assert any(name.startswith("prometheus-") for name in state["pids"])
    assert_nothing_left(state)


def test_bad_green_scenario_rolls_back_on_the_gate(tmp_path: Path) -> None:
    needs_prometheus()
    result, state = run_demo(tmp_path, "--scenario", "bad-green")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Scenario bad-green: RolledBack" in output
    assert "Rollback reason:" in output and "gate error-rate" in output
    assert "above max 0.05" in output
    assert "Traceback" not in output
    assert_nothing_left(state)


def test_without_prometheus_gates_are_skipped(tmp_path: Path) -> None:
    result, state = run_demo(
        tmp_path, "--scenario", "all", "--prometheus-binary", str(tmp_path / "nonexistent")
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "gates skipped: Prometheus not installed (apt-get install prometheus)" in output
    assert "Scenario good: Succeeded" in output
    assert "Scenario bad-green: Succeeded" in output  # nothing watched it: that is the point
    assert "Traceback" not in output
    assert not any(name.startswith("prometheus-") for name in state["pids"])
    assert_nothing_left(state)


def test_ctrl_c_stops_everything(tmp_path: Path) -> None:
    needs_prometheus()
    state_file = tmp_path / "state.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cutover.demo",
            "--scenario",
            "good",
            "--state-file",
            str(state_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=demo_env(),
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if state_file.exists() and "operator-demo-good" in json.loads(
                state_file.read_text()
            ).get("pids", {}):
                break
            time.sleep(0.2)
        time.sleep(3)  # mid-run: the operator has started moving traffic
        assert proc.poll() is None, proc.communicate()[0]
        # The leftover check must be able to see the demo's children while they run.
        workdir = json.loads(state_file.read_text())["workdir"]
        running = [cmd for pid, cmd, env in _processes() if workdir in cmd or workdir in env]
        assert len(running) >= 3, running  # sandbox, Prometheus, operator
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, output
    assert "Interrupted: stopping everything" in output
    assert "Traceback" not in output
    assert_nothing_left(json.loads(state_file.read_text()))
