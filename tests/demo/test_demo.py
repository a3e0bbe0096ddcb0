"""``python -m devtools.demo`` end to end on a real control plane: outcomes, exit codes, nothing
left behind, and a cluster named by ``--kubeconfig``/``--context`` used without touching the
user's kubeconfig.

Each test runs the demo as a subprocess with ``--state-file``, where the demo records the pids
and ports of everything it starts and the namespaces it creates; afterwards no such process may
remain (checked with psutil when installed, else by scanning /proc), no such port may accept
connections, and the namespaces and the chart's cluster-scoped RBAC for them are being deleted.
Most tests reuse the session's control plane through ``--cluster-dir`` (as ``make demo`` reuses
the one ``make cluster`` started); one lets the demo start and stop its own.
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
import yaml

from devtools.controlplane import ControlPlane
from tests.support.prometheus import find_prometheus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 240


def demo_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "operator")
    env.pop("COLUMNS", None)
    env.pop("KUBECONFIG", None)
    return env


def run_demo(
    tmp_path: Path, *args: str, timeout: float = RUN_TIMEOUT
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    state_file = tmp_path / "state.json"
    result = subprocess.run(
        [sys.executable, "-m", "devtools.demo", "--state-file", str(state_file), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
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


def assert_nothing_left(state: dict[str, Any], plane: ControlPlane | None = None) -> None:
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
    assert "demo" in state["pids"]
    assert any(name.startswith("operator-") for name in state["pids"])
    assert not Path(workdir).exists(), "the demo's temp directory (logs, tokens) was kept"
    if plane is not None:
        for namespace in state.get("namespaces", {}):
            assert_deleted(plane, "namespace", namespace)
            assert_deleted(plane, "clusterrole", f"cutover-{namespace}-cluster")
            assert_deleted(plane, "clusterrolebinding", f"cutover-{namespace}-cluster")


def assert_deleted(plane: ControlPlane, kind: str, name: str) -> None:
    """Gone, or on its way out (a namespace terminates while its contents are deleted)."""
    found = plane.kubectl("get", kind, name, "-o", "json", check=False)
    if found.returncode != 0:
        assert "NotFound" in found.stderr, found.stderr
        return
    assert json.loads(found.stdout)["metadata"].get("deletionTimestamp"), f"{kind}/{name} remains"


def needs_prometheus() -> None:
    if find_prometheus() is None:
        pytest.skip("prometheus binary not installed (apt-get install prometheus)")


def test_good_scenario_succeeds(tmp_path: Path, control_plane: ControlPlane) -> None:
    needs_prometheus()
    result, state = run_demo(
        tmp_path, "--scenario", "good", "--cluster-dir", str(control_plane.root)
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"Using the control plane already running in {control_plane.root}" in output
    assert "Scenario good: Succeeded" in output
    assert "gate error-rate:" in output and "-> Passed" in output
    assert "Traceback" not in output
    assert any(name.startswith("prometheus-") for name in state["pids"])
    assert_nothing_left(state, control_plane)
    # A control plane the demo did not start keeps running.
    assert control_plane.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def test_bad_green_scenario_rolls_back_on_the_gate(
    tmp_path: Path, control_plane: ControlPlane
) -> None:
    needs_prometheus()
    result, state = run_demo(
        tmp_path, "--scenario", "bad-green", "--cluster-dir", str(control_plane.root)
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Scenario bad-green: RolledBack" in output
    assert "Rollback reason:" in output and "gate error-rate" in output
    assert "above max 0.05" in output
    assert "Traceback" not in output
    assert_nothing_left(state, control_plane)


def test_own_control_plane_without_prometheus(tmp_path: Path) -> None:
    """No control plane in --cluster-dir: the demo starts one and stops it; no Prometheus: both
    scenarios run with their gates skipped."""
    cluster_dir = tmp_path / "cluster"
    result, state = run_demo(
        tmp_path,
        "--scenario",
        "all",
        "--cluster-dir",
        str(cluster_dir),
        "--prometheus-binary",
        str(tmp_path / "nonexistent"),
        timeout=2 * RUN_TIMEOUT,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Without a terminal the demo wraps at 80 columns, and a long path breaks the line.
    assert f"Starting a local Kubernetes control plane in {cluster_dir}" in " ".join(output.split())
    assert "gates skipped: Prometheus not installed (apt-get install prometheus)" in output
    assert "Scenario good: Succeeded" in output
    assert "Scenario bad-green: Succeeded" in output  # nothing watched it: that is the point
    assert "Traceback" not in output
    assert not any(name.startswith("prometheus-") for name in state["pids"])
    assert {"controlplane-kube-apiserver", "controlplane-etcd"} <= set(state["pids"])
    assert "kube-apiserver" in state["ports"]
    assert not (cluster_dir / "state.json").exists()
    assert_nothing_left(state)


def test_named_context_leaves_the_kubeconfig_alone(
    tmp_path: Path, control_plane: ControlPlane
) -> None:
    """--kubeconfig/--context: the demo runs on that context, never on the file's current one,
    and the file is not written (no context switch, no token written back)."""
    document = yaml.safe_load(Path(control_plane.kubeconfig).read_text())
    local = document["current-context"]
    document["clusters"].append({"name": "elsewhere", "cluster": {"server": "https://127.0.0.1:9"}})
    document["contexts"].append(
        {
            "name": "elsewhere",
            "context": {"cluster": "elsewhere", "user": document["users"][0]["name"]},
        }
    )
    document["current-context"] = "elsewhere"  # the demo must not use it
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(yaml.safe_dump(document))
    before = kubeconfig.read_bytes()
    result, state = run_demo(
        tmp_path,
        "--scenario",
        "good",
        "--kubeconfig",
        str(kubeconfig),
        "--context",
        local,
        "--kubectl",
        control_plane.kubectl_binary,
        "--prometheus-binary",
        str(tmp_path / "nonexistent"),
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"Using context {local} of {kubeconfig}" in output
    assert "Scenario good: Succeeded" in output
    assert kubeconfig.read_bytes() == before
    assert_nothing_left(state, control_plane)


def test_unreachable_context_is_a_usage_error(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "x"}}],
                "contexts": [{"name": "nowhere", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "nowhere",
            }
        )
    )
    result, state = run_demo(tmp_path, "--kubeconfig", str(kubeconfig), timeout=90)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "does not answer" in output and "Traceback" not in output
    assert not any(name.startswith("operator-") for name in state["pids"])


def test_ctrl_c_stops_everything(tmp_path: Path, control_plane: ControlPlane) -> None:
    needs_prometheus()
    state_file = tmp_path / "state.json"
    # The playground runs until Ctrl-C: a scenario could end on its own on a loaded machine
    # before the signal is sent.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devtools.demo",
            "--scenario",
            "playground",
            "--cluster-dir",
            str(control_plane.root),
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
            if state_file.exists() and any(
                name.startswith("operator-")
                for name in json.loads(state_file.read_text()).get("pids", {})
            ):
                break
            time.sleep(0.2)
        time.sleep(3)  # the operator is starting, Prometheus scraping, the simulator running
        assert proc.poll() is None, proc.communicate()[0]
        # The leftover check must be able to see the demo's children while they run.
        workdir = json.loads(state_file.read_text())["workdir"]
        running = [cmd for pid, cmd, env in _processes() if workdir in cmd or workdir in env]
        assert len(running) >= 2, running  # Prometheus, operator
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, output
    assert "Interrupted: stopping everything" in output
    assert "Traceback" not in output
    assert_nothing_left(json.loads(state_file.read_text()), control_plane)
