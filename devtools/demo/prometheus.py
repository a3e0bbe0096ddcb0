"""Run the real ``prometheus`` binary on loopback, for the demo and the tests.

``PrometheusServer(targets=["127.0.0.1:1234"])`` writes a temp config scraping a file_sd
target file every second, starts Prometheus on ``127.0.0.1:<free port>`` with its TSDB in a
temp dir, and waits for ``/-/ready``.  ``set_targets`` rewrites the file_sd file (Prometheus
notices within ~1 s but applies new targets only every ~5 s: the scrape manager throttles
target updates).  ``stop``/``start``/``restart`` keep the same port and data dir, so tests
can simulate an outage.

If the binary is missing, constructing the server raises :class:`PrometheusNotFound`; the
tests' copy (``tests.support.prometheus``) turns that into ``pytest.skip``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_BINARY",
    "INSTALL_HINT",
    "PrometheusNotFound",
    "PrometheusServer",
    "find_prometheus",
    "free_port",
]

# Where Debian's `prometheus` package puts the binary.
DEFAULT_BINARY = "/usr/bin/prometheus"
INSTALL_HINT = "apt-get install -y --no-install-recommends prometheus"


class PrometheusNotFound(RuntimeError):
    """No executable prometheus binary where we looked."""


_CONFIG = """\
global:
  scrape_interval: {scrape_interval}
  scrape_timeout: {scrape_interval}
  evaluation_interval: {scrape_interval}
scrape_configs:
  - job_name: traffic
    file_sd_configs:
      - files: [{targets_file}]
        refresh_interval: 1s
"""


def find_prometheus(candidate: str | None = None, *, search_path: bool = True) -> str | None:
    """Path of an executable prometheus binary, or None.

    ``candidate`` is tried first; then, with ``search_path``, ``$PATH`` and Debian's location.
    """
    if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
        return candidate
    if not search_path:
        return None
    found = shutil.which("prometheus")
    if found:
        return found
    return DEFAULT_BINARY if os.access(DEFAULT_BINARY, os.X_OK) else None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class PrometheusServer:
    """A real Prometheus process on loopback (for the demo and integration tests)."""

    def __init__(
        self,
        targets: Iterable[str] = (),
        *,
        binary: str | None = None,
        port: int = 0,
        scrape_interval: str = "1s",
        ready_timeout: float = 30.0,
        extra_args: Iterable[str] = (),
        start: bool = True,
        workdir: str | os.PathLike[str] | None = None,
        retention: str = "1d",
    ) -> None:
        found = binary if binary is not None else find_prometheus()
        if found is None or find_prometheus(found, search_path=False) is None:
            raise PrometheusNotFound(
                f"prometheus binary not found ({binary or 'not on PATH nor at ' + DEFAULT_BINARY}):"
                f" {INSTALL_HINT}"
            )
        self.binary = found
        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self.ready_timeout = ready_timeout
        self.extra_args = list(extra_args)
        # Longer for backfilled history: older blocks are deleted at start.
        self.retention = retention
        self._tmp = tempfile.TemporaryDirectory(prefix="cutover-prometheus-", dir=workdir)
        self.workdir = Path(self._tmp.name)
        self.data_dir = self.workdir / "data"
        self.targets_file = self.workdir / "targets.json"
        self.config_file = self.workdir / "prometheus.yml"
        self.log_file = self.workdir / "prometheus.log"
        self._targets: list[str] = []
        self.set_targets(targets)
        self.config_file.write_text(
            _CONFIG.format(
                scrape_interval=scrape_interval, targets_file=json.dumps(str(self.targets_file))
            )
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        if start:
            self.start()

    # -- addresses ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    # -- targets --------------------------------------------------------------------------

    @property
    def targets(self) -> list[str]:
        return list(self._targets)

    def set_targets(self, targets: Iterable[str]) -> None:
        """Atomically rewrite the file_sd target list (``host:port`` strings)."""
        self._targets = list(dict.fromkeys(targets))
        groups = [{"targets": self._targets, "labels": {}}] if self._targets else []
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(self.targets_file)

    def add_target(self, target: str) -> None:
        self.set_targets([*self._targets, target])

    # -- lifecycle ------------------------------------------------------------------------

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the process (same port and data dir as before) and wait until ready."""
        if self.is_running():
            return
        self.data_dir.mkdir(exist_ok=True)
        args = [
            self.binary,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--web.listen-address={self.host}:{self.port}",
            "--web.enable-lifecycle",
            f"--storage.tsdb.retention.time={self.retention}",
            "--query.lookback-delta=5m",
            *self.extra_args,
        ]
        self._log = self.log_file.open("ab")
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            # Its own session: a Ctrl-C in the terminal reaches only the parent, which then
            # stops Prometheus in its own order (and never leaves it behind).
            start_new_session=True,
        )
        try:
            self.wait_ready(self.ready_timeout)
        except BaseException:
            self.stop(graceful=False)
            raise

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with {self._proc.returncode}:\n{self.log_tail()}"
                )
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp,
            ):
                if resp.status == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"prometheus not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self, *, graceful: bool = True, timeout: float = 10.0) -> None:
        """SIGTERM (or SIGKILL if not ``graceful``), then SIGKILL after ``timeout``."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self, *, graceful: bool = True) -> None:
        self.stop(graceful=graceful)
        self.start()

    def ensure_running(self) -> None:
        if not self.is_running():
            self.start()

    def close(self) -> None:
        """Stop and delete the temp dir."""
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> PrometheusServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

    # -- queries --------------------------------------------------------------------------

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>`` and return ``data`` (raises on ``status: error``)."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                payload = json.load(resp)
        except urllib.error.HTTPError as exc:
            payload = json.load(exc)
        if payload.get("status") != "success":
            raise RuntimeError(f"{payload.get('errorType')}: {payload.get('error')}")
        return payload["data"]

    def query(self, promql: str) -> list[Any]:
        """Instant query; returns ``data.result`` as Prometheus sends it."""
        result: list[Any] = self.api("query", query=promql)["result"]
        return result

    def wait_for_series(
        self, promql: str, timeout: float = 30.0, *, allow_nan: bool = False
    ) -> list[Any]:
        """Poll until ``promql`` returns a non-empty (and, by default, non-NaN) result.

        Returns the result (``data.result``); raises TimeoutError with the last answer.
        """
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                result = self.query(promql)
                last = result
                if result and (allow_nan or not _all_nan(result)):
                    return result
            except (OSError, RuntimeError, ValueError) as exc:
                last = exc
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no data for {promql!r} after {timeout}s; last: {last!r}")
            time.sleep(0.2)

    def wait_for_targets_up(self, timeout: float = 30.0) -> None:
        """Wait until every configured target is scraped and up."""
        if not self._targets:
            return
        self.wait_for_series(f'count(up{{job="traffic"}} == 1) == {len(self._targets)}', timeout)


def _all_nan(result: list[Any]) -> bool:
    values = [r.get("value", [0, "NaN"])[1] for r in result if isinstance(r, dict)]
    return bool(values) and all(math.isnan(float(v)) for v in values)
