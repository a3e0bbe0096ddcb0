"""The outbound policy for gates on the real control plane, with the real operator.

The operator runs with ``CUTOVER_GATE_ALLOWED_HOSTS=127.0.0.1``. Local listeners stand in for
gate endpoints and record every request: one on 127.0.0.1 (allowed), one on 127.0.0.2 (a
loopback address outside the allowlist). A Migration whose gate points outside the allowlist,
at the cloud metadata address or at the API server, or asks to skip TLS verification, fails its
preflight with the gate, the address and the reason, before any request is sent and before any
traffic moves; the same Migration pointed at the allowed listener runs.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.controlplane import ControlPlane
from tests.support.listener import Listener, listeners

from .gates_support import condition, gate, replica_writes, start_app
from .harness import OperatorProcess, apply_text, replicas, wait_phase

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
TERMINAL = ("Succeeded", "RolledBack", "Failed")
TOKEN = "egress-test-token-0d1e2f"
AUTH = {"auth": {"bearerToken": {"name": "prom-auth", "key": "token"}}}


@pytest.fixture
def namespace_prefix() -> str:
    return "egress"


@pytest.fixture
def operator(cluster: ControlPlane, namespace: str) -> Iterator[OperatorProcess]:
    env = {"CUTOVER_GATE_ALLOWED_HOSTS": "127.0.0.1", "CUTOVER_GATE_ALLOW_INSECURE_TLS": "false"}
    process = OperatorProcess(cluster, namespace, env=env).start()
    yield process
    process.stop()


@pytest.fixture
def allowed() -> Iterator[Listener]:
    with listeners() as start:
        yield start("127.0.0.1")


@pytest.fixture
def outside() -> Iterator[Listener]:
    with listeners() as start:
        yield start("127.0.0.2")


def value_gate(name: str, address: str, **prometheus: Any) -> dict[str, Any]:
    """A gate the listener's answer (0.5) passes, sending the Secret's bearer token."""
    return gate(name, address, "up", threshold={"max": 1}, prometheus={**AUTH, **prometheus})


def test_refused_gate_addresses_fail_preflight_with_nothing_sent_and_no_traffic_moved(
    cluster: ControlPlane,
    namespace: str,
    operator: OperatorProcess,
    allowed: Listener,
    outside: Listener,
) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "prom-auth"},
        "data": {"token": base64.b64encode(TOKEN.encode()).decode()},
    }
    apply_text(cluster, namespace, json.dumps(secret))
    refused = {
        "outside": (
            value_gate("outside", outside.url),
            f"spec.gates[0].prometheus.address: gate 'outside': refused by the operator's"
            f" outbound policy: {outside.url}: not in CUTOVER_GATE_ALLOWED_HOSTS (127.0.0.1/32)",
        ),
        "metadata": (
            value_gate("metadata", "http://169.254.169.254/latest/meta-data"),
            "spec.gates[0].prometheus.address: gate 'metadata': refused by the operator's"
            " outbound policy: http://169.254.169.254:80: 169.254.169.254 is link-local",
        ),
        "apiserver": (  # allowlisted as 127.0.0.1, and still never opened
            value_gate("apiserver", f"{cluster.server}/api/v1/namespaces/{namespace}/secrets"),
            "spec.gates[0].prometheus.address: gate 'apiserver': refused by the operator's"
            f" outbound policy: {cluster.server}: this is the Kubernetes API server",
        ),
        "insecure": (
            value_gate("insecure", f"https://127.0.0.1:{allowed.port}", insecureSkipVerify=True),
            "spec.gates[0].prometheus.insecureSkipVerify: gate 'insecure': refused by the"
            " operator's outbound policy",
        ),
    }
    for name, (spec_gate, _) in refused.items():
        start_app(cluster, namespace, name, name, [spec_gate])
    start_app(cluster, namespace, "inside", "inside", [value_gate("inside", allowed.url)])

    for name, (_, needle) in refused.items():
        final = wait_phase(cluster, namespace, name, *TERMINAL, timeout=30)["status"]
        assert final["phase"] == "Failed", final
        invalid = condition(final, "InvalidSpec")
        assert invalid["status"] == "True" and invalid["reason"] == "PreflightFailed", invalid
        assert needle in invalid["message"], invalid["message"]
        assert TOKEN not in json.dumps(final)
        blue, green = (replicas(cluster, namespace, f"{name}-{side}") for side in ("blue", "green"))
        assert (blue, green) == (2, 0)  # the Deployments as created: no traffic moved

    inside = wait_phase(cluster, namespace, "inside", *TERMINAL, timeout=60)["status"]
    assert inside["phase"] == "Succeeded", inside  # the allowlist lets the allowed address work
    assert allowed.requests, "the allowed listener was never queried"
    assert {r.get("authorization") for r in allowed.requests} == {f"Bearer {TOKEN}"}
    assert outside.requests == []  # 0 outbound requests to the address outside the allowlist
    moved = {deployment for deployment, _, _ in replica_writes(cluster, namespace)}
    assert moved <= {"inside-blue", "inside-green"}, moved  # no traffic moved for refused gates
    assert TOKEN not in operator.log()
