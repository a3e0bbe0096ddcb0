"""``cutover.kube``: rate limiting, retries, error classification, Secrets and Events."""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from cutover.kube import Conflict, Kube, KubeError, NotFound, RateLimiter
from cutover.sandbox import FaultInjector, SandboxCluster
from cutover.sandbox.faults import FaultDecision


@dataclass
class ScriptedFaults(FaultInjector):
    """Fails the next writes with the given status codes, in order, then lets writes through."""

    script: list[int] = field(default_factory=list)

    @property
    def enabled(self) -> bool:
        return True

    def decide_write(self, plural: str | None) -> FaultDecision:
        if not self.script:
            return FaultDecision()
        status = self.script.pop(0)
        return FaultDecision(status=status, retry_after=2 if status == 429 else None)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []
        self.sleeps: list[float] = []

    def on_request(self, verb: str, resource: str, code: int) -> None:
        self.calls.append((verb, resource, code))

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def _kube(cluster: SandboxCluster, tmp_path: Path, recorder: Recorder, **kw: Any) -> Kube:
    path = cluster.write_kubeconfig(tmp_path / "kc-recorded")
    kube = Kube(
        config.new_client_from_config(config_file=str(path)), on_request=recorder.on_request, **kw
    )
    kube._owns_client = True
    kube._sleep = recorder.sleep  # backoff costs no wall-clock time
    return kube


CONFIGMAP = {"metadata": {"name": "cm", "labels": {"team": "a"}}, "data": {"k": "v"}}


async def test_rate_limiter_holds_qps_with_a_fake_clock() -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(qps=10, burst=5, clock=lambda: now[0], sleep=sleep)
    for _ in range(25):
        await limiter.acquire()
    # The burst is free; the other 20 requests are spread at 10 per second.
    assert 1.9 <= now[0] <= 2.1


async def test_crud_list_and_delete(kube: Kube) -> None:
    created = await kube.create("", "v1", "configmaps", "default", CONFIGMAP)
    assert created["metadata"]["name"] == "cm"
    got = await kube.get("", "v1", "configmaps", "default", "cm")
    assert got is not None and got["data"] == {"k": "v"}
    patched = await kube.patch("", "v1", "configmaps", "default", "cm", {"data": {"x": "1"}})
    assert patched["data"] == {"k": "v", "x": "1"}
    assert [
        i["metadata"]["name"] for i in await kube.list("", "v1", "configmaps", "default", "team=a")
    ] == ["cm"]
    assert await kube.list("", "v1", "configmaps", "default", "team=b") == []
    await kube.delete("", "v1", "configmaps", "default", "cm")
    await kube.delete("", "v1", "configmaps", "default", "cm")  # already gone: fine
    assert await kube.get("", "v1", "configmaps", "default", "cm") is None


async def test_json_and_strategic_patches(kube: Kube) -> None:
    await kube.create("", "v1", "configmaps", "default", CONFIGMAP)
    result = await kube.patch(
        "",
        "v1",
        "configmaps",
        "default",
        "cm",
        [{"op": "add", "path": "/data/j", "value": "2"}],
        patch_type="json",
    )
    assert result["data"]["j"] == "2"
    with pytest.raises(KubeError) as failed:
        await kube.patch(
            "",
            "v1",
            "configmaps",
            "default",
            "cm",
            [{"op": "test", "path": "/data/j", "value": "nope"}],
            patch_type="json",
        )
    assert failed.value.status == 422


async def test_not_found_and_conflict(kube: Kube) -> None:
    with pytest.raises(NotFound) as missing:
        await kube.patch("", "v1", "configmaps", "default", "ghost", {"data": {"a": "b"}})
    assert "configmaps default/ghost" in str(missing.value) and missing.value.status == 404
    created = await kube.create("", "v1", "configmaps", "default", CONFIGMAP)
    stale = created["metadata"]["resourceVersion"]
    await kube.patch("", "v1", "configmaps", "default", "cm", {"data": {"k": "w"}})
    with pytest.raises(Conflict):
        await kube.patch(
            "",
            "v1",
            "configmaps",
            "default",
            "cm",
            {"metadata": {"resourceVersion": stale}, "data": {"k": "z"}},
        )
    with pytest.raises(Conflict):  # AlreadyExists
        await kube.create("", "v1", "configmaps", "default", CONFIGMAP)


async def test_retries_server_errors_then_succeeds(cluster: SandboxCluster, tmp_path: Path) -> None:
    recorder = Recorder()
    kube = _kube(cluster, tmp_path, recorder)
    try:
        cluster.faults = ScriptedFaults(script=[503, 500])
        await kube.create("", "v1", "configmaps", "default", CONFIGMAP)
        assert [c[2] for c in recorder.calls] == [503, 500, 201]
        assert len(recorder.sleeps) == 2 and all(0 <= s <= 5 for s in recorder.sleeps)
    finally:
        kube.close()


async def test_obeys_retry_after(cluster: SandboxCluster, tmp_path: Path) -> None:
    recorder = Recorder()
    kube = _kube(cluster, tmp_path, recorder)
    try:
        cluster.faults = ScriptedFaults(script=[429])
        await kube.create("", "v1", "configmaps", "default", CONFIGMAP)
        assert [c[2] for c in recorder.calls] == [429, 201]
        assert recorder.sleeps == [2.0]
    finally:
        kube.close()


async def test_unguarded_conflict_is_retried_guarded_is_not(
    cluster: SandboxCluster, tmp_path: Path
) -> None:
    recorder = Recorder()
    kube = _kube(cluster, tmp_path, recorder)
    try:
        created = await kube.create("", "v1", "configmaps", "default", CONFIGMAP)
        cluster.faults = ScriptedFaults(script=[409])
        await kube.patch("", "v1", "configmaps", "default", "cm", {"data": {"a": "1"}})
        cluster.faults = ScriptedFaults(script=[409])
        recorder.calls.clear()
        with pytest.raises(Conflict):
            await kube.patch(
                "",
                "v1",
                "configmaps",
                "default",
                "cm",
                {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}},
            )
        assert [c[2] for c in recorder.calls] == [409]
    finally:
        kube.close()


async def test_gives_up_after_the_retries(cluster: SandboxCluster, tmp_path: Path) -> None:
    recorder = Recorder()
    kube = _kube(cluster, tmp_path, recorder, retries=2)
    try:
        cluster.faults = ScriptedFaults(script=[500] * 10)
        with pytest.raises(KubeError) as failed:
            await kube.create("", "v1", "configmaps", "default", CONFIGMAP)
        assert failed.value.status == 500
        assert len(recorder.calls) == 3
        # Exponential backoff, capped: each delay is within base * 2**attempt.
        assert all(s <= 0.2 * 2**i for i, s in enumerate(recorder.sleeps))
    finally:
        kube.close()


async def test_connection_errors_are_temporary_then_raise() -> None:
    recorder = Recorder()
    configuration = client.Configuration()
    configuration.host = "http://127.0.0.1:9"  # discard port: nothing listens
    configuration.retries = False
    kube = Kube(
        client.ApiClient(configuration), retries=1, timeout=2, on_request=recorder.on_request
    )
    kube._owns_client = True
    kube._sleep = recorder.sleep
    try:
        with pytest.raises(KubeError) as failed:
            await kube.get("", "v1", "configmaps", "default", "cm")
        assert failed.value.status is None
        assert recorder.calls == [("get", "configmaps", 0), ("get", "configmaps", 0)]
        # An Event that cannot be posted is logged, never raised.
        await kube.emit_event(
            {"kind": "Migration", "name": "m", "namespace": "default"}, "Normal", "R", "m"
        )
    finally:
        kube.close()


async def test_read_secret_key_decodes_and_never_logs_the_value(
    kube: Kube, caplog: pytest.LogCaptureFixture
) -> None:
    value = "hunter2-very-secret"
    encoded = base64.b64encode(value.encode()).decode()
    await kube.create(
        "", "v1", "secrets", "default", {"metadata": {"name": "creds"}, "data": {"token": encoded}}
    )
    caplog.set_level(logging.DEBUG)
    assert await kube.read_secret_key("default", "creds", "token") == value
    with pytest.raises(KubeError) as no_key:
        await kube.read_secret_key("default", "creds", "password")
    assert "default/creds" in str(no_key.value) and "password" in str(no_key.value)
    with pytest.raises(NotFound) as no_secret:
        await kube.read_secret_key("default", "missing", "token")
    assert "Secret default/missing" in str(no_secret.value)
    await kube.patch("", "v1", "secrets", "default", "creds", {"data": {"bad": "!!not-base64"}})
    with pytest.raises(KubeError) as undecodable:
        await kube.read_secret_key("default", "creds", "bad")
    assert "not-base64" not in str(undecodable.value)
    text = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    assert value not in text and encoded not in text


async def test_emit_event(kube: Kube) -> None:
    involved = {
        "apiVersion": "cutover.io/v1alpha1",
        "kind": "Migration",
        "name": "checkout",
        "namespace": "default",
        "uid": "1234",
    }
    await kube.emit_event(involved, "Warning", "RouterError", "x" * 5000)
    events = await kube.list("", "v1", "events", "default")
    assert len(events) == 1
    event = events[0]
    assert event["involvedObject"] == involved
    assert event["source"] == {"component": "cutover"}
    assert event["type"] == "Warning" and event["reason"] == "RouterError"
    assert event["count"] == 1 and len(event["message"]) == 1024
    assert event["metadata"]["name"].startswith("checkout.")
    assert event["firstTimestamp"] and event["lastTimestamp"] and event["eventTime"]


async def test_requests_run_off_the_event_loop_thread(kube: Kube) -> None:
    import threading

    seen: list[str] = []
    send = kube._send

    def spy(*args: Any) -> tuple[int, dict[str, str], bytes]:
        seen.append(threading.current_thread().name)
        return send(*args)

    kube._send = spy  # type: ignore[method-assign]
    await asyncio.gather(*(kube.get("", "v1", "configmaps", "default", f"c{i}") for i in range(6)))
    assert len(seen) == 6
    assert all(name.startswith("cutover-kube") for name in seen)
    assert threading.current_thread().name not in seen
