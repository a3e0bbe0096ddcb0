"""The live view renders, in a terminal and as plain lines, without a cluster."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from cutover.cli.report import build_report
from devtools.demo.traffic import DeploymentLoad, TrafficSnapshot
from devtools.demo.view import RunView

ROOT = Path(__file__).resolve().parents[2]
TRAFFIC = TrafficSnapshot(
    load={
        "checkout-blue": DeploymentLoad(rps=100.0, error_ratio=0.005),
        "checkout-green": DeploymentLoad(rps=100.0, error_ratio=0.3),
    },
    source="Service checkout (selector app=checkout) over ready pods",
)


def migration(
    phase: str, weight: int, failed: int, history: list[dict[str, Any]]
) -> dict[str, Any]:
    manifest = yaml.safe_load((ROOT / "examples/demo/migration-bad-green.yaml").read_text())
    return {
        **manifest,
        "metadata": {"name": "checkout", "namespace": "demo-bad-green"},
        "status": {
            "phase": phase,
            "weight": weight,
            "currentStepIndex": 3,
            "message": "step 4",
            "gates": [
                {
                    "name": "error-rate",
                    "outcome": "Failed" if failed > 1 else "Running",
                    "lastVerdict": "Failed" if failed else "Passed",
                    "lastValue": 0.19 if failed else 0.004,
                    "passed": 4,
                    "failed": failed,
                }
            ],
            "history": history,
        },
    }


HISTORY = [
    {
        "time": "2026-01-01T10:00:00Z",
        "phase": "Progressing",
        "step": 2,
        "weight": 50,
        "reason": "WeightSet",
        "message": "green weight set to 50%",
    }
]
ROLLBACK = {
    "time": "2026-01-01T10:00:09Z",
    "phase": "RollingBack",
    "step": 3,
    "weight": 0,
    "reason": "GateFailed",
    "message": "gate error-rate: value 0.19 is above max 0.05",
}


def test_plain_lines_log_transitions_and_gate_checks_once() -> None:
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=False)
    with RunView(console, "demo-bad-green", "bad green") as view:
        assert not view.live_mode
        first = migration("Progressing", 50, 0, HISTORY)
        view.update(first, build_report(first), TRAFFIC)
        view.update(first, build_report(first), TRAFFIC)  # nothing new: no new lines
        second = migration("RollingBack", 0, 2, [*HISTORY, ROLLBACK])
        view.update(second, build_report(second), TRAFFIC)
    text = out.getvalue()
    assert text.count("WeightSet: green weight set to 50%") == 1
    assert "step 3/5  weight  50%" in text
    assert "GateFailed: gate error-rate: value 0.19 is above max 0.05" in text
    assert "gate error-rate: 0.0040 (threshold <= 0.05) -> Passed" in text
    assert "gate error-rate: 0.1900 (threshold <= 0.05) -> Failed  [4 passed, 2 failed" in text


def test_terminal_panel_shows_step_weight_progress_traffic_and_gates() -> None:
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=True, color_system=None)
    view = RunView(console, "demo-bad-green", "bad green")
    obj = migration("Progressing", 50, 1, HISTORY)
    console.print(view.panel(build_report(obj), TRAFFIC))
    console.print(view.panel(None, TrafficSnapshot()))
    text = out.getvalue()
    assert "Current Phase     4 of 5 (pause 4s)" in text
    assert "green 50% / blue 50%" in text
    assert "60%" in text  # the progress bar
    assert "checkout-green 100.0 rps, 30.0% errors" in text
    assert "error-rate" in text and "0.1900" in text and "<= 0.05" in text and "Failed" in text
    assert "waiting for the operator to pick it up" in text
