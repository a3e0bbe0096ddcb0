"""An Event the API server refuses is never swallowed silently: counted, and logged once per
reason and status, without the Event's message or the request in the log."""

from __future__ import annotations

import logging
import uuid

import pytest
from kubernetes import client

from cutover import metrics
from cutover.kube import Kube

SECRETISH = "token=hunter2-never-logged"


def rejected(reason: str, code: str) -> float:
    found = metrics.REGISTRY.get_sample_value(
        "cutover_events_rejected_total", {"reason": reason, "code": code}
    )
    return found or 0.0


def warnings_about_rejected_events(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "cutover.kube" and r.levelno == logging.WARNING and r.msg == "event rejected"
    ]


@pytest.fixture()
def expected_denials() -> list[str]:
    # The chart grants Events in the operator's namespace only; the test posts one elsewhere.
    return ["create events"]


async def test_an_event_the_api_server_refuses_is_counted_and_logged_once_per_reason(
    kube: Kube, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cutover.kube")
    reason = f"Probe{uuid.uuid4().hex[:8]}"  # a fresh series: other tests share the registry
    other = f"{reason}Other"
    elsewhere = {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "namespace": "default"}

    for _ in range(3):
        await kube.emit_event(elsewhere, "Warning", reason, SECRETISH)
    await kube.emit_event(elsewhere, "Warning", other, SECRETISH)

    # Every refusal counted, by the Event's reason and the real API server's status.
    assert rejected(reason, "403") == 3
    assert rejected(other, "403") == 1
    warned = warnings_about_rejected_events(caplog)
    assert [(r.event_reason, r.code, r.api_reason) for r in warned] == [  # type: ignore[attr-defined]
        (reason, 403, "Forbidden"),
        (other, 403, "Forbidden"),
    ]
    repeats = [r for r in caplog.records if r.msg == "event rejected" and r.levelno < logging.INFO]
    assert len(repeats) == 2  # the 2nd and 3rd refusal of the same kind: DEBUG, not silence
    logged = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    assert SECRETISH not in logged


async def test_an_event_that_gets_no_response_is_counted_as_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    configuration = client.Configuration()
    configuration.host = "http://127.0.0.1:9"  # discard port: nothing listens
    configuration.retries = False
    kube = Kube(client.ApiClient(configuration), retries=0, timeout=2)
    kube._owns_client = True
    caplog.set_level(logging.DEBUG, logger="cutover.kube")
    reason = f"Probe{uuid.uuid4().hex[:8]}"
    try:
        await kube.emit_event(
            {"kind": "Migration", "name": "m", "namespace": "nowhere"}, "Normal", reason, "m"
        )
    finally:
        await kube.close()
    assert rejected(reason, "error") == 1
    (warned,) = warnings_about_rejected_events(caplog)
    assert (warned.event_reason, warned.code) == (reason, None)  # type: ignore[attr-defined]
