"""3. Prometheus faults: down, slow, garbage, wrong JSON, NaN -- each policy's documented outcome.

docs/gates.md: an unreachable / slow / unparsable Prometheus is an Error verdict (never a
failure): past ``consecutiveErrorLimit`` in a row, ``onError: pause`` pauses (reason GateError)
and ``onError: rollback`` rolls back. NaN is "no data": ``onNoData`` fail -> rollback (GateFailed),
inconclusive -> pause (InconclusiveGate), pass -> the run goes on.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.controlplane import ControlPlane
from tests.integration.harness import OperatorProcess, apply_text, new_namespace, wait_for
from tests.support.prometheus import PrometheusServer, free_port

from .support import TERMINAL, app_manifest, list_json, migration_manifest, scale

OUTAGE = scale(10, 60)
# The NaN cases share the real Prometheus with the outage: let them ride it out.
CALM = {"consecutiveErrorLimit": OUTAGE * 3}


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        mode = self.path.split("/")[1]
        if mode == "slow":
            time.sleep(3)
            body = b'{"status":"success","data":{"resultType":"vector","result":[]}}'
        elif mode == "garbage":
            body = b"<html>502 Bad Gateway</html>\x00\xff"
        else:  # well-formed JSON, wrong shape
            body = b'{"status":"success","data":{"resultType":"vector","result":"oops"}}'
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass

    do_POST = do_GET

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def bad_prometheus() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _gate(address: str, query: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": "g",
        "interval": "1s",
        "prometheus": {"address": address, "query": query, "timeout": "1s"},
        "threshold": {"max": 1},
        **fields,
    }


def _status(cluster: ControlPlane, namespace: str) -> dict[str, dict[str, Any]]:
    return {
        m["metadata"]["name"]: m.get("status") or {} for m in list_json(cluster, namespace, "mig")
    }


def test_prometheus_faults_follow_the_documented_policies(
    cluster: ControlPlane, prometheus: PrometheusServer, bad_prometheus: str
) -> None:
    namespace = new_namespace(cluster, "prom")
    real = prometheus.url
    cases: dict[str, tuple[dict[str, Any], str, str]] = {
        # name: (gate, final phase, reason)
        "slow-pause": (
            _gate(f"{bad_prometheus}/slow", "vector(0)", consecutiveErrorLimit=1),
            "Paused",
            "GateError",
        ),
        "slow-rollback": (
            _gate(
                f"{bad_prometheus}/slow", "vector(0)", consecutiveErrorLimit=1, onError="rollback"
            ),
            "RolledBack",
            "GateError",
        ),
        "garbage": (
            _gate(f"{bad_prometheus}/garbage", "vector(0)", consecutiveErrorLimit=1),
            "Paused",
            "GateError",
        ),
        "wrong-json": (
            _gate(f"{bad_prometheus}/wrong", "vector(0)", consecutiveErrorLimit=1),
            "Paused",
            "GateError",
        ),
        "nan-fail": (
            _gate(real, "vector(NaN)", onNoData="fail", **CALM),
            "RolledBack",
            "GateFailed",
        ),
        "nan-inconclusive": (_gate(real, "vector(NaN)", **CALM), "Paused", "InconclusiveGate"),
        "nan-pass": (_gate(real, "vector(NaN)", onNoData="pass", **CALM), "Succeeded", "Succeeded"),
        # Down longer than a few checks, but under the error limit: no rollback, it goes on.
        "down-pause": (
            _gate(real, "vector(0)", consecutiveErrorLimit=OUTAGE * 3),
            "Succeeded",
            "Succeeded",
        ),
        # Down past the limit with onError: pause -> paused, never rolled back.
        "down-hold": (_gate(real, "vector(0)", consecutiveErrorLimit=2), "Paused", "GateError"),
    }
    steps = [{"setWeight": 50}, {"pause": {"duration": f"{OUTAGE + 6}s"}}, {"setWeight": 100}]
    operator = OperatorProcess(cluster, namespace).start()
    try:
        for name, (gate, _, _) in cases.items():
            apply_text(cluster, namespace, app_manifest(name))
            apply_text(
                cluster,
                namespace,
                migration_manifest(name, name, {"steps": steps, "gates": [gate]}),
            )
        wait_for(
            lambda: all(
                s.get("weight") == 50
                for n, s in _status(cluster, namespace).items()
                if n.startswith("down")
            ),
            timeout=30,
        )
        prometheus.stop()
        outage_start = time.monotonic()
        seen: dict[str, set[str]] = {name: set() for name in cases}
        while time.monotonic() - outage_start < OUTAGE:
            for name, state in _status(cluster, namespace).items():
                seen[name].add(str(state.get("phase")))
            time.sleep(0.5)
        prometheus.ensure_running()

        def settled() -> bool:
            states = _status(cluster, namespace)
            for name, state in states.items():
                seen[name].add(str(state.get("phase")))
            return all(
                states[n].get("phase") == phase
                and (phase in TERMINAL or states[n].get("reason") == reason)
                for n, (_, phase, reason) in cases.items()
            )

        with contextlib.suppress(AssertionError):
            wait_for(settled, timeout=OUTAGE + 60, interval=0.5)
        states = _status(cluster, namespace)
    finally:
        prometheus.ensure_running()
        operator.stop()

    problems = []
    for name, (_, phase, reason) in cases.items():
        state = states[name]
        record = (state.get("gates") or [{}])[0]
        got_reason = state.get("reason")
        if phase == "RolledBack":
            got_reason = next(
                (c["reason"] for c in state.get("conditions", []) if c["type"] == "RolledBack"),
                None,
            )
        if (state.get("phase"), got_reason) != (phase, reason):
            problems.append(
                f"{name}: {state.get('phase')}/{got_reason}, want {phase}/{reason}"
                f" ({state.get('message')})"
            )
        if phase != "Succeeded" and not record.get("lastMessage"):
            problems.append(f"{name}: the gate record says nothing: {record}")
        if reason == "GateError" and phase == "Paused" and "RollingBack" in seen[name]:
            problems.append(f"{name}: rolled back under onError: pause")
        print(
            f"[prometheus] {name}: {state.get('phase')}/{got_reason} errors={record.get('errors')}"
            f" last={str(record.get('lastMessage'))[:90]!r}"
        )
    for name in ("down-pause", "down-hold"):
        if not (states[name].get("gates") or [{}])[0].get("errors"):
            problems.append(f"{name}: no error counted during the outage")
    assert problems == [], problems
