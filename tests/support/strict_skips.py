"""With ``CUTOVER_STRICT_SKIPS=1`` (CI), a skip whose reason is not in ``ALLOWED`` fails the run.

A test that skips because something it needs is missing proves nothing, and ``-rs`` alone only
lists it among the passes. On CI every dependency but a few is installed, so any other skip
means a test silently stopped running: the session exits 1 and names each such skip. The
allow-list holds only what cannot be had on the CI machine; widen it deliberately.
"""

from __future__ import annotations

import os
import re

import pytest

ENV = "CUTOVER_STRICT_SKIPS"

# Reasons (regular expressions, searched) for skips that are legitimate where CI runs.
ALLOWED: tuple[re.Pattern[str], ...] = (
    # No kind on the CI machine: the kind end-to-end tests (`make e2e`) cannot run.
    re.compile(r"^kind end-to-end test: `kind` is not on PATH$"),
    # No Docker engine (the CI machine may not be able to start one): the image build and the
    # kind end-to-end tests, which need it, cannot run.
    re.compile(r"^kind end-to-end test: (`docker` is not on PATH|`docker info` timed out)$"),
    re.compile(r"^kind end-to-end test: no usable Docker engine"),
    re.compile(r"^no docker client on PATH$"),
    re.compile(r"^no usable Docker engine \(`docker info`"),
    re.compile(r"^`docker info` timed out$"),
)


def allowed(reason: str) -> bool:
    return any(pattern.search(reason) for pattern in ALLOWED)


def skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    # A skip's longrepr is (path, line, "Skipped: <reason>").
    whole = isinstance(longrepr, tuple) and len(longrepr) == 3
    text = str(longrepr[2]) if whole and isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ")


class StrictSkips:
    """Collects the skips no reason in ``ALLOWED`` accounts for; fails the session on any."""

    def __init__(self) -> None:
        self.unexpected: list[tuple[str, str]] = []

    def _note(self, report: pytest.CollectReport | pytest.TestReport) -> None:
        if not report.skipped or hasattr(report, "wasxfail"):  # an xfail is not a skip
            return
        reason = skip_reason(report)
        if not allowed(reason):
            self.unexpected.append((report.nodeid, reason))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._note(report)  # a module-level skip or importorskip

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._note(report)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.unexpected:
            return
        terminalreporter.section(f"unexpected skips ({ENV}=1)", sep="=", red=True, bold=True)
        for nodeid, reason in self.unexpected:
            terminalreporter.line(f"unexpected skip: {nodeid}: {reason}")
        terminalreporter.line(
            "each of these tests should run here; install what it needs, or add its reason to "
            "tests/support/strict_skips.py ALLOWED if it can never run on this machine"
        )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(
        self, session: pytest.Session, exitstatus: int | pytest.ExitCode
    ) -> None:
        # A run that collected nothing because a module skipped is a failure too.
        quiet = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
        if self.unexpected and exitstatus in quiet:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(ENV) == "1":
        config.pluginmanager.register(StrictSkips(), "cutover-strict-skips")
