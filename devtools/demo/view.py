"""The live view of a demo run: a redrawn panel in a terminal, plain lines elsewhere (CI logs).

Both modes print the same log of events as they happen: phase changes and steps from
``status.history``, and (plain mode only, where nothing is redrawn) every new gate check. The
terminal mode adds a panel under the log, redrawn a few times a second, with the step, the
weight, a progress bar, the simulated traffic and each gate's latest value against its
threshold.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cutover.cli.render import progress_bar
from cutover.cli.report import GateReport, Report
from devtools.demo.traffic import TrafficSnapshot

_PHASE_STYLE = {
    "Pending": "cyan",
    "Progressing": "cyan",
    "Paused": "magenta",
    "RollingBack": "bold yellow",
    "RolledBack": "bold yellow",
    "Succeeded": "bold green",
    "Failed": "bold red",
}
_VERDICT_STYLE = {"Passed": "green", "Failed": "bold red", "Inconclusive": "yellow"}


def _clock(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%H:%M:%S")
    text = str(value or "")
    return text[11:19] if len(text) >= 19 else text


def gate_line(gate: GateReport) -> Text:
    value = "no data" if gate.value is None else f"{gate.value:.4f}"
    verdict = gate.verdict or "not checked yet"
    line = Text(f"gate {gate.name}: {value} (threshold {gate.threshold}) -> ")
    line.append(verdict, style=_VERDICT_STYLE.get(verdict, ""))
    line.append(
        f"  [{gate.passed} passed, {gate.failed} failed, {gate.inconclusive} inconclusive,"
        f" {gate.errors} errors]"
    )
    return line


def traffic_line(snapshot: TrafficSnapshot) -> str:
    if not snapshot.load:
        return "simulator: waiting for the first read of the cluster"
    parts = [
        f"{name} {load.rps:5.1f} rps, {load.error_ratio:.1%} errors"
        for name, load in snapshot.load.items()
    ]
    extra = f" ({snapshot.read_errors} read errors)" if snapshot.read_errors else ""
    return "; ".join(parts) + extra


class RunView:
    """Shows one Migration run; feed it every poll with ``update``."""

    def __init__(self, console: Console, scenario: str, title: str) -> None:
        self.console = console
        self.scenario = scenario
        self.title = title
        self.live_mode = console.is_terminal and not console.is_dumb_terminal
        self._seen_history: set[tuple[str, str, str]] = set()
        self._checks: dict[str, int] = {}
        self._last_step: tuple[str, int, int] | None = None
        self._live: Live | None = None
        self._started = time.monotonic()

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> RunView:
        self.console.rule(f"[bold]Scenario {escape(self.scenario)}[/]: {escape(self.title)}")
        if self.live_mode:
            self._live = Live(
                Text("starting..."), console=self.console, refresh_per_second=8, transient=False
            )
            self._live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def say(self, message: RenderableType) -> None:
        """A line in the log (above the live panel, if any)."""
        self.console.print(message)

    # --- updates -----------------------------------------------------------------------------

    def update(
        self, obj: Mapping[str, Any] | None, report: Report | None, traffic: TrafficSnapshot
    ) -> None:
        if obj is not None and report is not None:
            self._log_history(obj)
            if not self.live_mode:
                self._log_progress(report)
                self._log_checks(report)
        if self._live is not None:
            self._live.update(self.panel(report, traffic))

    def _log_history(self, obj: Mapping[str, Any]) -> None:
        total = len((obj.get("spec") or {}).get("steps") or []) or 1
        for entry in (obj.get("status") or {}).get("history") or []:
            key = (str(entry.get("time")), str(entry.get("reason")), str(entry.get("message")))
            if key in self._seen_history:
                continue
            self._seen_history.add(key)
            phase = str(entry.get("phase", "?"))
            line = Text(f"{_clock(entry.get('time'))}  ")
            line.append(f"{phase:<12}", style=_PHASE_STYLE.get(phase, ""))
            # While finishing, the step index is one past the last step.
            step = min(int(entry.get("step", 0)) + 1, total)
            line.append(f" step {step}/{total}  weight {entry.get('weight', 0):>3}%  ")
            line.append(str(entry.get("reason", "")), style="bold")
            if entry.get("message"):
                line.append(f": {entry['message']}")
            self.say(line)

    def _log_progress(self, report: Report) -> None:
        key = (report.phase, report.step, report.weight)
        if key == self._last_step:
            return
        self._last_step = key
        self.say(
            f"  -> {report.phase}: step {report.step} of {report.total_steps}"
            f" ({report.step_description}), weight {report.weight}%,"
            f" progress {report.progress_percent}%"
        )

    def _log_checks(self, report: Report) -> None:
        for gate in report.gates:
            count = gate.passed + gate.failed + gate.inconclusive + gate.errors
            if count != self._checks.get(gate.name, 0):
                self._checks[gate.name] = count
                self.say(Text("     ").append(gate_line(gate)))

    def panel(self, report: Report | None, traffic: TrafficSnapshot) -> RenderableType:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        if report is None:
            grid.add_row("Migration", "waiting for the operator to pick it up")
        else:
            phase = Text(report.phase, style=_PHASE_STYLE.get(report.phase, ""))
            if report.reason and report.reason != report.phase:
                phase.append(f" ({report.reason})", style="")
            grid.add_row("State", phase)
            grid.add_row(
                "Current Phase",
                f"{report.step} of {report.total_steps} ({escape(report.step_description)})",
            )
            grid.add_row("Weight", f"green {report.weight}% / blue {100 - report.weight}%")
            grid.add_row("Overall Progress", progress_bar(report.progress_percent))
        grid.add_row("Traffic", escape(traffic_line(traffic)))
        grid.add_row("Routing", Text(traffic.source, style="dim"))
        grid.add_row("Elapsed", f"{time.monotonic() - self._started:.0f}s")
        parts: list[RenderableType] = [grid]
        if report is not None and report.gates:
            gates = Table(box=None, pad_edge=False)
            for column in ("Gate", "Latest value", "Threshold", "Verdict", "Checks (P/F/I/E)"):
                gates.add_column(column)
            for gate in report.gates:
                verdict = gate.verdict or "-"
                gates.add_row(
                    gate.name,
                    "no data" if gate.value is None else f"{gate.value:.4f}",
                    gate.threshold,
                    Text(verdict, style=_VERDICT_STYLE.get(verdict, "")),
                    f"{gate.passed}/{gate.failed}/{gate.inconclusive}/{gate.errors}",
                )
            parts.append(gates)
        elif report is not None:
            parts.append(Text("Gates: none (skipped)", style="yellow"))
        return Panel(Group(*parts), title=f"Migration {self.scenario}/checkout", expand=False)
