"""``cutover backtest`` against a real Prometheus holding a week of recorded history.

The history is backfilled with ``promtool tsdb create-blocks-from openmetrics``: one sample a
minute of a checkout's request counters, 1 % errors, except for a known two-hour breach (10 %),
a ten-minute blip (6 %) and half an hour without samples. The gate (max 5 % errors over 5m,
checked every 5m) is replayed and its verdicts compared with what those windows imply.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cutover.cli import app
from tests.support.prometheus import PrometheusServer, backfilled, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

HOUR = timedelta(hours=1)
# Aligned to the hour and well behind Prometheus' head (nothing is scraped, but a block
# overlapping "now" is not what a real backfill looks like).
END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - 3 * HOUR
START = END - timedelta(days=7)
BREACH = (START + timedelta(days=3, hours=10), START + timedelta(days=3, hours=12))
BLIP = (START + timedelta(days=5, hours=4), START + timedelta(days=5, hours=4, minutes=10))
GAP = (START + timedelta(days=1, hours=6), START + timedelta(days=1, hours=6, minutes=30))
RATIO = (
    'sum(rate(http_requests_total{deployment="{{green}}",code=~"5.."}[5m]))'
    ' / sum(rate(http_requests_total{deployment="{{green}}"}[5m]))'
)


def _errors_per_minute(at: datetime) -> int:
    """Of 100 requests a minute: the errors in the minute ending at ``at``."""
    if BREACH[0] <= at < BREACH[1]:
        return 10
    if BLIP[0] <= at < BLIP[1]:
        return 6
    return 1


def history() -> Iterator[str]:
    """OpenMetrics lines of the live version's counters, a sample a minute, from 10m before
    START (a rate at START needs samples before it) to END."""
    errors = ok = 0
    at = START - timedelta(minutes=10)
    lines_500: list[str] = []
    lines_200: list[str] = []
    while at <= END:
        failed = _errors_per_minute(at)
        errors += failed
        ok += 100 - failed
        if not GAP[0] <= at < GAP[1]:
            stamp = int(at.timestamp())
            lines_500.append(
                f'http_requests_total{{deployment="shop-blue",code="500"}} {errors} {stamp}'
            )
            lines_200.append(
                f'http_requests_total{{deployment="shop-blue",code="200"}} {ok} {stamp}'
            )
        at += timedelta(minutes=1)
    # OpenMetrics wants each series' samples together and the family announced once.
    yield "# TYPE http_requests counter"
    yield from lines_500
    yield from lines_200


@pytest.fixture(scope="module")
def history_server() -> Iterator[PrometheusServer]:
    server = backfilled(history())
    try:
        yield server
    finally:
        server.close()


def migration(address: str, *, web: bool = False) -> dict[str, Any]:
    gates: list[dict[str, Any]] = [
        {
            "name": "error-rate",
            "prometheus": {"address": address, "query": RATIO},
            "threshold": {"max": 0.05},
            "interval": "5m",
            "failureLimit": 1,
        }
    ]
    if web:
        gates.append(
            {
                "name": "status-page",
                "web": {"url": "http://127.0.0.1:9/status", "jsonPath": "$.errors"},
                "threshold": {"max": 0},
            }
        )
    return {
        "apiVersion": "cutover.io/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": "shop", "namespace": "default"},
        "spec": {
            "blue": {"deployment": "shop-blue"},
            "green": {"deployment": "shop-green"},
            "traffic": {"router": "replicas", "service": "shop"},
            "steps": [{"setWeight": 50}, {"pause": {"duration": "30m"}}, {"setWeight": 100}],
            "gates": gates,
        },
    }


def write(tmp_path: Path, manifest: dict[str, Any]) -> Path:
    path = tmp_path / "migration.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def backtest(*args: str) -> tuple[int, str, str]:
    result = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"}).invoke(app, ["backtest", *args])
    return result.exit_code, result.stdout, result.stderr


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_week_of_history_shows_the_breach_as_the_worst_window(
    history_server: PrometheusServer, tmp_path: Path
) -> None:
    path = write(tmp_path, migration(history_server.url, web=True))
    # The history is the live version's: --set green points the gate's query at it.
    code, out, err = backtest(
        "-f", str(path), "--since", stamp(START), "--until", stamp(END),
        "--set", "green=shop-blue", "--run", "1h", "-o", "json",
    )  # fmt: skip

    assert code == 0, out + err
    report = json.loads(out)
    gates = {g["name"]: g for g in report["gates"]}
    gate = gates["error-rate"]
    assert gate["replayed"] is True
    # A check every 5m over 7 days, both ends included.
    assert gate["checks"] == 7 * 24 * 12 + 1
    # A check at t reads the 5 samples in (t-5m, t]: the breach fails every check from 5m
    # after its start to its end (24), the blip one; the gap leaves 6 checks without data.
    assert gate["failed"] == 24 + 1, gate
    assert gate["noData"] == 6, gate
    assert gate["inconclusive"] == 0
    assert gate["passed"] == gate["checks"] - 25 - 6
    worst = gate["worstWindows"][0]
    assert worst["start"] == stamp(BREACH[0] + timedelta(minutes=5)), worst
    assert worst["end"] == stamp(BREACH[1]), worst
    assert worst["checks"] == 24
    assert worst["worst"] == pytest.approx(0.1)
    assert gate["worstWindows"][1]["start"] == stamp(BLIP[0] + timedelta(minutes=5))
    assert gate["worstWindows"][1]["worst"] == pytest.approx(0.06)
    assert gate["worstValue"]["value"] == pytest.approx(0.1)
    # failureLimit 1: a run stops at its second failed check. Hour-long runs: the breach's
    # first two hours hold 11 and 12 failures (stopped), the blip's run 1 (not); the gap's run
    # pauses at its first check without data (onNoData inconclusive, inconclusiveLimit 0).
    assert gate["runs"] == 7 * 24 + 1
    assert gate["wouldRollBack"] == 2, gate["stoppedRuns"]
    assert gate["wouldPause"] == 1, gate["stoppedRuns"]
    rolled = [r for r in gate["stoppedRuns"] if r["action"] == "rollback"]
    assert [r["at"] for r in rolled] == [
        stamp(BREACH[0] + timedelta(minutes=10)),
        stamp(BREACH[0] + HOUR + timedelta(minutes=5)),
    ]
    assert gates["status-page"]["replayed"] is False
    assert gates["status-page"]["cannotReplay"] == "cannot replay: web"


def test_the_table_names_the_worst_window_and_the_gate_that_cannot_replay(
    history_server: PrometheusServer, tmp_path: Path
) -> None:
    path = write(tmp_path, migration(history_server.url, web=True))
    code, out, err = backtest(
        "-f", str(path), "--since", stamp(START), "--until", stamp(END),
        "--set", "green=shop-blue", "--worst", "1",
    )  # fmt: skip

    assert code == 0, out + err
    assert f"{stamp(BREACH[0] + timedelta(minutes=5))} .. {stamp(BREACH[1])}" in out
    assert "24 failed checks in a row" in out
    assert "cannot replay: web" in out


def test_compare_gates_replay_their_baseline_too(
    history_server: PrometheusServer, tmp_path: Path
) -> None:
    # Blue's "history" is a flat 1 %: green fails wherever it is above 1 % x 5, as above.
    compare = {"baseline": "vector(0.01)", "maxIncrease": 4}
    document = migration(history_server.url)
    (base,) = document["spec"]["gates"]
    document["spec"]["gates"] = [
        {**base, "name": "ratio", "threshold": None, "compare": compare},
        {
            **base,
            "name": "mann-whitney",
            "threshold": None,
            "compare": {**compare, "test": "mannwhitney", "window": "5m"},
        },
    ]
    path = write(tmp_path, document)

    def around(start: datetime, end: datetime) -> dict[str, dict[str, Any]]:
        # Short spans: a Mann-Whitney replay costs a statistical test per check.
        code, out, err = backtest(
            "-f", str(path), "--since", stamp(start), "--until", stamp(end),
            "--set", "green=shop-blue", "-o", "json",
        )  # fmt: skip
        assert code == 0, out + err
        return {g["name"]: g for g in json.loads(out)["gates"]}

    breach = around(BREACH[0] - HOUR, BREACH[1] + HOUR)
    # The ratio test fails where the threshold gate does: the breach's 24 checks.
    ratio = breach["ratio"]
    assert (ratio["checks"], ratio["failed"], ratio["noData"]) == (4 * 12 + 1, 24, 0), ratio
    assert ratio["worstWindows"][0]["start"] == stamp(BREACH[0] + timedelta(minutes=5))
    assert ratio["worstWindows"][0]["worst"] == pytest.approx(0.1)
    # Mann-Whitney reads each check's 5 minutes of samples, one every 10s, for both queries.
    mann_whitney = breach["mann-whitney"]
    assert (mann_whitney["failed"], mann_whitney["noData"]) == (24, 0), mann_whitney
    assert mann_whitney["worstWindows"][0]["start"] == stamp(BREACH[0] + timedelta(minutes=5))
    assert mann_whitney["worstWindows"][0]["end"] == stamp(BREACH[1])

    blip = around(BLIP[0] - timedelta(minutes=30), BLIP[1] + timedelta(minutes=30))
    # The ratio fails the check 5m in (its 5m rate is all blip); Mann-Whitney only the one 10m
    # in, whose whole window is above the bound (5m in, fewer than half the samples are).
    assert [w["start"] for w in blip["ratio"]["worstWindows"]] == [
        stamp(BLIP[0] + timedelta(minutes=5))
    ]
    assert [w["start"] for w in blip["mann-whitney"]["worstWindows"]] == [
        stamp(BLIP[0] + timedelta(minutes=10))
    ]


def test_green_without_history_has_no_data_rather_than_passing(
    history_server: PrometheusServer, tmp_path: Path
) -> None:
    path = write(tmp_path, migration(history_server.url))
    code, out, err = backtest(
        "-f", str(path), "--since", stamp(END - timedelta(days=1)), "--until", stamp(END),
        "-o", "json",
    )  # fmt: skip

    assert code == 0, out + err
    (gate,) = json.loads(out)["gates"]
    assert gate["noData"] == gate["checks"] == 24 * 12 + 1
    assert gate["passed"] == gate["failed"] == 0


def test_an_unreachable_prometheus_exits_4_and_says_so(tmp_path: Path) -> None:
    address = f"http://127.0.0.1:{free_port()}"
    path = write(tmp_path, migration(address))
    code, out, err = backtest("-f", str(path), "--since", "1d")

    assert code == 4, out + err
    assert "could not answer" in out and "connection refused" in out, out
    assert "error-rate" in err
