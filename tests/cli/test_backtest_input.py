"""``cutover backtest`` with input it cannot use: a clear message and exit 1, before anything is
asked of Prometheus; and gates it cannot replay, said so rather than skipped."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cutover.cli import app
from cutover.cli.backtest import parse_time
from cutover.cli.client import CliError

NOW = datetime(2026, 11, 29, 6, 30, 15, 123456, tzinfo=UTC)
# Nothing listens on the discard port: a test that reached Prometheus would fail with exit 4.
NOWHERE = "http://127.0.0.1:9"


def manifest(*gates: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "cutover.io/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": "shop"},
        "spec": {
            "blue": {"deployment": "shop-blue"},
            "green": {"deployment": "shop-green"},
            "traffic": {"router": "replicas", "service": "shop"},
            "steps": [{"setWeight": 100}],
            "gates": list(gates),
        },
    }


def prometheus_gate(**changes: Any) -> dict[str, Any]:
    found: dict[str, Any] = {
        "name": "error-rate",
        "prometheus": {"address": NOWHERE, "query": 'up{deployment="{{green}}"}'},
        "threshold": {"max": 0.05},
    }
    found.update(changes)
    return found


def backtest(tmp_path: Path, document: dict[str, Any] | None, *args: str) -> tuple[int, str]:
    path = tmp_path / "migration.yaml"
    if document is not None:
        path.write_text(yaml.safe_dump(document))
    result = CliRunner().invoke(app, ["backtest", "-f", str(path), *args])
    return result.exit_code, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", datetime(2026, 11, 29, 6, 30, 15, tzinfo=UTC)),
        ("7d", datetime(2026, 11, 22, 6, 30, 15, tzinfo=UTC)),
        ("1d12h", datetime(2026, 11, 27, 18, 30, 15, tzinfo=UTC)),
        ("90m", datetime(2026, 11, 29, 5, 0, 15, tzinfo=UTC)),
        ("2026-11-22T06:00:00Z", datetime(2026, 11, 22, 6, 0, tzinfo=UTC)),
        ("2026-11-22T07:00:00+01:00", datetime(2026, 11, 22, 6, 0, tzinfo=UTC)),
        ("2026-11-22T06:00:00", datetime(2026, 11, 22, 6, 0, tzinfo=UTC)),
    ],
)
def test_times_are_now_a_duration_ago_or_a_time(text: str, expected: datetime) -> None:
    assert parse_time(text, NOW, "--since") == expected


@pytest.mark.parametrize("text", ["last week", "7", "-7d", "7days", ""])
def test_a_time_it_cannot_read_is_refused_with_the_forms_it_takes(text: str) -> None:
    with pytest.raises(CliError, match=r"--since .*use now, a duration ago"):
        parse_time(text, NOW, "--since")


@pytest.mark.parametrize(
    ("document", "args", "words"),
    [
        (None, ["--since", "7d"], "cannot read"),
        ({"apiVersion": "v1", "kind": "ConfigMap"}, ["--since", "7d"], "no Migration found"),
        (manifest(), ["--since", "7d"], "has no gates to backtest"),
        (manifest(prometheus_gate()), ["--since", "a week"], "--since 'a week'"),
        (manifest(prometheus_gate()), ["--since", "1d", "--until", "2d"], "is not before"),
        (manifest(prometheus_gate()), ["--since", "7d", "--step", "0s"], "--step"),
        (manifest(prometheus_gate()), ["--since", "7d", "--run", "soon"], "--run"),
        (manifest(prometheus_gate()), ["--since", "7d", "--set", "green"], "name=value"),
        (manifest(prometheus_gate()), ["--since", "7d", "--set", "gren=x"], "not a query"),
        (manifest(prometheus_gate()), ["--since", "400d"], "1152001 checks every 30s"),
        (
            manifest(prometheus_gate(prometheus={"address": NOWHERE, "query": "up{a='{{x}}'}"})),
            ["--since", "7d"],
            "spec.gates[0].prometheus.query",
        ),
    ],
)
def test_bad_input_exits_1_with_a_message(
    tmp_path: Path, document: dict[str, Any] | None, args: list[str], words: str
) -> None:
    code, out = backtest(tmp_path, document, *args)
    assert code == 1, out
    assert words in out


def test_gates_it_cannot_replay_are_named_with_the_reason(tmp_path: Path) -> None:
    with_secret = prometheus_gate(
        name="private",
        prometheus={
            "address": NOWHERE,
            "query": "up",
            "auth": {"bearerToken": {"name": "prometheus", "key": "token"}},
        },
    )
    web = {
        "name": "status-page",
        "web": {"url": "http://127.0.0.1:9/status", "jsonPath": "$.errors"},
        "threshold": {"max": 0},
    }
    code, out = backtest(tmp_path, manifest(with_secret, web), "--since", "1d", "-o", "json")

    assert code == 0, out
    reasons = {g["name"]: g["cannotReplay"] for g in json.loads(out)["gates"]}
    assert reasons == {
        "private": "cannot replay: it reads credentials from Secrets, which backtest does not read",
        "status-page": "cannot replay: web",
    }


def test_the_since_default_window_ends_now(tmp_path: Path) -> None:
    web = {
        "name": "w",
        "web": {"url": "http://127.0.0.1:9/", "jsonPath": "$.x"},
        "threshold": {"max": 0},
    }
    code, out = backtest(tmp_path, manifest(web), "--since", "1d", "-o", "json")
    assert code == 0, out
    report = json.loads(out)
    until = datetime.fromisoformat(report["until"].replace("Z", "+00:00"))
    assert abs(until - datetime.now(UTC)) < timedelta(minutes=1)
    assert report["runLength"] == "30s"
