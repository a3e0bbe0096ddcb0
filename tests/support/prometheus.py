"""Re-export of ``devtools.demo.prometheus`` (the demo runs the same server), skipping if absent.

Test-specific behaviour kept here: ``CUTOVER_TEST_PROMETHEUS`` names the binary, a missing binary
skips the test instead of raising ``PrometheusNotFound``, and ``backfilled`` starts a server
holding recorded history (written with ``promtool tsdb create-blocks-from openmetrics``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from typing import Any

import pytest

from devtools.demo import prometheus as _demo
from devtools.demo.prometheus import PrometheusNotFound, free_port

__all__ = [
    "PROMETHEUS_BINARY",
    "PrometheusNotFound",
    "PrometheusServer",
    "backfilled",
    "find_prometheus",
    "free_port",
]

PROMETHEUS_BINARY = os.environ.get("CUTOVER_TEST_PROMETHEUS", _demo.DEFAULT_BINARY)


def find_prometheus() -> str | None:
    """Path of the prometheus binary (``CUTOVER_TEST_PROMETHEUS``, then ``$PATH``), or None."""
    return _demo.find_prometheus(PROMETHEUS_BINARY)


class PrometheusServer(_demo.PrometheusServer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "binary" not in kwargs:
            kwargs["binary"] = find_prometheus()
            if kwargs["binary"] is None:
                pytest.skip(
                    f"prometheus binary not found at {PROMETHEUS_BINARY} or on PATH "
                    "(apt-get install prometheus, or set CUTOVER_TEST_PROMETHEUS)"
                )
        super().__init__(*args, **kwargs)


def backfilled(openmetrics: Iterable[str], *, retention: str = "30d") -> PrometheusServer:
    """A running Prometheus whose storage holds the samples of ``openmetrics`` (lines of the
    OpenMetrics text format, ``# EOF`` added), scraping nothing.

    The blocks are written before Prometheus starts: a fresh head is empty, so every block is
    loaded, and ``retention`` must reach back to the oldest sample or it is deleted at start."""
    promtool = shutil.which("promtool", path=os.path.dirname(find_prometheus() or "") or None)
    promtool = promtool or shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not found (it comes with Debian's prometheus package)")
    server = PrometheusServer(start=False, retention=retention)
    source = server.workdir / "history.om"
    with source.open("w") as out:
        for line in openmetrics:
            out.write(line + "\n")
        out.write("# EOF\n")
    server.data_dir.mkdir(exist_ok=True)
    done = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        server.close()
        raise RuntimeError(f"promtool failed ({done.returncode}): {done.stderr[-2000:]}")
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server
