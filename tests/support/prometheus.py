"""Re-export of ``devtools.demo.prometheus`` (the demo runs the same server), skipping if absent.

The only test-specific behaviour kept here: ``CUTOVER_TEST_PROMETHEUS`` names the binary, and a
missing binary skips the test instead of raising ``PrometheusNotFound``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from devtools.demo import prometheus as _demo
from devtools.demo.prometheus import PrometheusNotFound, free_port

__all__ = [
    "PROMETHEUS_BINARY",
    "PrometheusNotFound",
    "PrometheusServer",
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
