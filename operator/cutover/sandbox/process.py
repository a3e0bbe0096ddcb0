"""`SandboxProcess`: run the sandbox cluster in a subprocess, for tests and demos (sync API)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

# The directory that contains the `cutover` package, so the child imports the same code.
_SOURCE_ROOT = Path(__file__).resolve().parents[2]
# Subcommands where kubectl would otherwise fetch the OpenAPI schema to validate input.
_VALIDATING_COMMANDS = {"apply", "create", "replace"}


class SandboxProcessError(RuntimeError):
    pass


class SandboxProcess:
    """Start `python -m cutover.sandbox serve` on a free port in a temp dir; stop it on exit."""

    def __init__(
        self,
        *,
        deployment_delay: float = 0.2,
        startup_timeout: float = 20.0,
        python: str = sys.executable,
        kubectl_binary: str = "kubectl",
        workdir: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.deployment_delay = deployment_delay
        self.startup_timeout = startup_timeout
        self.python = python
        self.kubectl_binary = kubectl_binary
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="sandbox-"))
        self._extra_env = env or {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._url: str | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> SandboxProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def kubeconfig(self) -> str:
        return str(self.workdir / "kubeconfig")

    @property
    def log_path(self) -> Path:
        return self.workdir / "sandbox.log"

    @property
    def url(self) -> str:
        if self._url is None:
            raise SandboxProcessError("the sandbox process is not running")
        return self._url

    def start(self) -> None:
        if self._proc is not None:
            raise SandboxProcessError("the sandbox process is already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        ready_file = self.workdir / "ready.json"
        ready_file.unlink(missing_ok=True)
        env = {**os.environ, **self._extra_env}
        env["PYTHONPATH"] = os.pathsep.join(
            [str(_SOURCE_ROOT), *filter(None, [env.get("PYTHONPATH")])]
        )
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [
            self.python,
            "-m",
            "cutover.sandbox",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--kubeconfig",
            self.kubeconfig,
            "--ready-file",
            str(ready_file),
            "--deployment-delay",
            str(self.deployment_delay),
        ]
        # Files, not pipes: nobody drains the pipes while tests run, and a full pipe would
        # freeze the server mid-request.
        with open(self.workdir / "stdout.log", "wb") as out, open(self.log_path, "wb") as err:
            self._proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=err,
                env=env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                log = self.log_path.read_text(errors="replace")
                self._proc = None
                raise SandboxProcessError(f"the sandbox exited early:\n{log}")
            if ready_file.exists():
                self._url = json.loads(ready_file.read_text())["url"]
                return
            time.sleep(0.05)
        self.stop()
        raise SandboxProcessError(f"the sandbox was not ready in {self.startup_timeout}s")

    def stop(self) -> None:
        proc, self._proc, self._url = self._proc, None, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    # --- admin API -----------------------------------------------------------------------------

    def _admin(self, method: str, path: str, data: Any = None) -> Any:
        body = None if data is None else json.dumps(data).encode()
        request = urllib.request.Request(
            f"{self.url}/_sandbox/{path}",
            data=body,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise SandboxProcessError(
                f"{method} /_sandbox/{path}: {exc.code} {exc.read().decode(errors='replace')}"
            ) from exc
        ctype = response.headers.get("Content-Type", "")
        return json.loads(payload) if "json" in ctype else payload.decode()

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._admin("GET", f"requests?since={since}")
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._admin("GET", "stats")
        return result

    def reset_log(self) -> None:
        self._admin("POST", "reset-log", {})

    def set_job_outcome(self, namespace: str, name: str, outcome: str) -> None:
        self._admin("POST", f"jobs/{namespace}/{name}", {"outcome": outcome})

    def job_log(self, namespace: str, name: str) -> str:
        return str(self._admin("GET", f"jobs/{namespace}/{name}/logs"))

    def configure(self, **settings: float) -> dict[str, Any]:
        result: dict[str, Any] = self._admin("POST", "config", settings)
        return result

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._admin("POST", "faults", settings)
        return result

    # --- kubectl -------------------------------------------------------------------------------

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        argv = list(args)
        if (
            argv
            and argv[0] in _VALIDATING_COMMANDS
            and not any(a.startswith("--validate") for a in argv)
        ):
            argv.append("--validate=false")
        cmd = [
            self.kubectl_binary,
            "--kubeconfig",
            self.kubeconfig,
            "--cache-dir",
            str(self.workdir / "kube-cache"),
            *argv,
        ]
        result = subprocess.run(
            cmd, capture_output=True, text=True, input=input, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise SandboxProcessError(
                f"kubectl {' '.join(argv)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result
