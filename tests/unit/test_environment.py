"""The operator's settings from its environment: every variable judged alike, and a malformed
one stops the start at once with its name, instead of a startup Kopf retries forever.

Before cutover.environment, ``CUTOVER_API_QPS=fast`` made the startup handler raise a bare
ValueError, which Kopf retried every minute: the process stayed up and ran nothing.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from cutover import environment
from cutover.environment import ConfigurationError

OPERATOR_SOURCE = Path(__file__).resolve().parents[2] / "operator"


def test_unset_or_blank_means_the_default() -> None:
    for environ in ({}, {"X": "  "}):
        assert environment.whole_number(environ, "X", 7) == 7
        assert environment.integer(environ, "X", -3) == -3
        assert environment.number(environ, "X", 2.5) == 2.5
        assert environment.port(environ, "X") is None
        assert environment.flag(environ, "X") is None


def test_well_formed_values_are_read() -> None:
    assert environment.whole_number({"X": " 12 "}, "X", 0, minimum=1) == 12
    assert environment.integer({"X": "-40"}, "X", 0) == -40
    assert environment.number({"X": "0.25"}, "X", 1.0) == 0.25
    assert environment.port({"X": "9443"}, "X") == 9443
    assert environment.flag({"X": "Yes"}, "X") is True
    assert environment.flag({"X": "off"}, "X") is False


@pytest.mark.parametrize(
    ("read", "value", "says"),
    [
        (
            lambda e: environment.whole_number(e, "X", 0, minimum=1),
            "0",
            "X must be a whole number >= 1",
        ),
        (lambda e: environment.whole_number(e, "X", 0), "1.5", "X must be a whole number >= 0"),
        (lambda e: environment.whole_number(e, "X", 0), "²", "X must be a whole number >= 0"),
        (lambda e: environment.whole_number(e, "X", 0, unit="seconds"), "-1", "of seconds >= 0"),
        (lambda e: environment.integer(e, "X", 0), "high", "X must be an integer"),
        (lambda e: environment.integer(e, "X", 0), "--1", "X must be an integer"),
        (lambda e: environment.number(e, "X", 1.0), "0", "X must be a number > 0"),
        (lambda e: environment.number(e, "X", 1.0), "nan", "X must be a number > 0"),
        (lambda e: environment.number(e, "X", 1.0, unit="seconds"), "inf", "of seconds > 0"),
        (lambda e: environment.port(e, "X"), "0", "X must be a port number from 1 to 65535"),
        (lambda e: environment.port(e, "X"), "70000", "X must be a port number"),
        (lambda e: environment.port(e, "X"), "https", "X must be a port number"),
        (lambda e: environment.flag(e, "X"), "ture", "X must be true or false"),
    ],
)
def test_a_malformed_value_is_refused_with_the_variable_and_the_value(
    read: Callable[[Mapping[str, str]], object], value: str, says: str
) -> None:
    with pytest.raises(ConfigurationError, match=says) as refused:
        read({"X": value})
    assert repr(value) in str(refused.value)


def _start_operator(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """The image's entrypoint, outside a pod and with no kubeconfig."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(OPERATOR_SOURCE),
        "KUBECONFIG": str(tmp_path / "no-kubeconfig"),
        **settings,
    }
    command = [sys.executable, "-m", "kopf", "run", "-m", "cutover.handlers", "--standalone", "-A"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CUTOVER_API_QPS", "fast"),
        ("CUTOVER_API_BURST", "0"),
        ("CUTOVER_API_CONCURRENCY", "lots"),
        ("CUTOVER_METRICS_PORT", "70000"),
        ("CUTOVER_WEBHOOK_PORT", "https"),
        ("CUTOVER_NOTIFY_ATTEMPTS", "many"),
        ("CUTOVER_NOTIFY_BACKOFF", "-1"),
        ("CUTOVER_NOTIFY_QUEUE", "0"),
        ("CUTOVER_AUTHOR_RIGHTS", "ture"),
        ("CUTOVER_SHARDS", "²"),
        ("CUTOVER_PEERING_LIFETIME", "1"),
        ("CUTOVER_WATCH_TIMEOUT", "5m"),
    ],
)
def test_the_operator_stops_at_start_naming_a_malformed_variable(
    tmp_path: Path, name: str, value: str
) -> None:
    # The settings are read before any client is made: the missing kubeconfig is not what
    # stops it.
    finished = _start_operator(tmp_path, **{name: value})
    assert finished.returncode != 0
    assert f"{name} must be" in finished.stderr + finished.stdout
    assert repr(value) in finished.stderr + finished.stdout


def test_without_any_kubernetes_configuration_the_operator_stops_and_says_so(
    tmp_path: Path,
) -> None:
    # Not in a pod, no kubeconfig: waiting will not make one appear (it used to retry the
    # startup every 60 s, forever).
    finished = _start_operator(tmp_path)
    assert finished.returncode != 0
    assert "no Kubernetes configuration" in finished.stderr + finished.stdout
