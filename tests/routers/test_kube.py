"""``cutover.kube``: rate limiting, retries, error classification, Secrets and Events."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from cutover.kube import (
    Conflict,
    Forbidden,
    Kube,
    KubeError,
    NotFound,
    PatchType,
    RateLimiter,
)
from devtools.controlplane import ControlPlane
from devtools.controlplane.faultproxy import FaultProxy
from tests.support.controlplane import operator_kubeconfig


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []
        self.sleeps: list[float] = []

    def on_request(self, verb: str, resource: str, code: int) -> None:
        self.calls.append((verb, resource, code))

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def _kube(kubeconfig: Path, recorder: Recorder, **kw: Any) -> Kube:
    kube = Kube(
        config.new_client_from_config(config_file=str(kubeconfig)),
        on_request=recorder.on_request,
        **kw,
    )
    kube._owns_client = True
    kube._sleep = recorder.sleep  # backoff costs no wall-clock time
    return kube


@contextlib.asynccontextmanager
async def _recorded(kubeconfig: Path, **kw: Any) -> AsyncIterator[tuple[Kube, Recorder]]:
    """A client as :func:`_kube` makes it and its recorder; closed when the block ends."""
    recorder = Recorder()
    kube = _kube(kubeconfig, recorder, **kw)
    try:
        yield kube, recorder
    finally:
        await kube.close()


@pytest.fixture()
def proxy(control_plane: ControlPlane) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the kube-apiserver; faults off until set."""
    instance = control_plane.fault_proxy().start()
    yield instance  # pytest resumes the generator after the test, passed or failed
    instance.stop()


@pytest.fixture()
def proxied_admin(control_plane: ControlPlane, proxy: FaultProxy, tmp_path: Path) -> Path:
    """The admin kubeconfig, through the proxy: the client tests below use ConfigMaps, which the
    operator's RBAC rightly does not grant."""
    document = yaml.safe_load(Path(control_plane.kubeconfig).read_text())
    for cluster in document["clusters"]:
        cluster["cluster"]["server"] = proxy.url
    path = tmp_path / "admin-via-proxy.kubeconfig"
    path.write_text(yaml.safe_dump(document))
    path.chmod(0o600)
    return path


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


async def test_crud_list_and_delete(admin: Kube, ns: str) -> None:
    created = await admin.create("", "v1", "configmaps", ns, CONFIGMAP)
    assert created["metadata"]["name"] == "cm"
    got = await admin.get("", "v1", "configmaps", ns, "cm")
    assert got is not None and got["data"] == {"k": "v"}
    patched = await admin.patch("", "v1", "configmaps", ns, "cm", {"data": {"x": "1"}})
    assert patched["data"] == {"k": "v", "x": "1"}
    assert [
        i["metadata"]["name"] for i in await admin.list("", "v1", "configmaps", ns, "team=a")
    ] == ["cm"]
    assert await admin.list("", "v1", "configmaps", ns, "team=b") == []
    await admin.delete("", "v1", "configmaps", ns, "cm")
    await admin.delete("", "v1", "configmaps", ns, "cm")  # already gone: fine
    assert await admin.get("", "v1", "configmaps", ns, "cm") is None


async def _patch_cm(
    kube: Kube, ns: str, body: dict[str, Any] | list[Any], patch_type: PatchType = "merge"
) -> dict[str, Any]:
    """A patch of the test's ConfigMap ``cm``."""
    return await kube.patch("", "v1", "configmaps", ns, "cm", body, patch_type=patch_type)


async def test_json_and_strategic_patches(admin: Kube, ns: str) -> None:
    await admin.create("", "v1", "configmaps", ns, CONFIGMAP)
    result = await _patch_cm(admin, ns, [{"op": "add", "path": "/data/j", "value": "2"}], "json")
    assert result["data"]["j"] == "2"
    with pytest.raises(KubeError) as failed:
        await _patch_cm(admin, ns, [{"op": "test", "path": "/data/j", "value": "nope"}], "json")
    assert failed.value.status == 422
    strategic = await _patch_cm(admin, ns, {"data": {"s": "3"}}, "strategic")
    assert strategic["data"] == {"k": "v", "j": "2", "s": "3"}


async def test_not_found_and_conflict(admin: Kube, ns: str) -> None:
    with pytest.raises(NotFound) as missing:
        await admin.patch("", "v1", "configmaps", ns, "ghost", {"data": {"a": "b"}})
    assert f"configmaps {ns}/ghost" in str(missing.value) and missing.value.status == 404
    created = await admin.create("", "v1", "configmaps", ns, CONFIGMAP)
    stale = created["metadata"]["resourceVersion"]
    await _patch_cm(admin, ns, {"data": {"k": "w"}})
    with pytest.raises(Conflict):
        await _patch_cm(admin, ns, {"metadata": {"resourceVersion": stale}, "data": {"k": "z"}})
    with pytest.raises(Conflict):  # AlreadyExists
        await admin.create("", "v1", "configmaps", ns, CONFIGMAP)


async def test_the_charts_rbac_is_enforced_and_forbidden_is_not_retried(
    operator_kubeconfig_path: Path,
    ns: str,
    expected_denials: list[str],
    kube: Kube,
) -> None:
    # The chart grants the operator no ConfigMaps: the real RBAC answers 403 at once.
    expected_denials.append("create configmaps")
    async with _recorded(operator_kubeconfig_path) as (operator, recorder):
        with pytest.raises(Forbidden) as denied:
            await operator.create("", "v1", "configmaps", ns, CONFIGMAP)
        assert denied.value.status == 403
        assert recorder.calls == [("create", "configmaps", 403)] and recorder.sleeps == []
    # What it does grant works with the same token.
    assert await kube.get("apps", "v1", "deployments", ns, "absent") is None


async def test_retries_server_errors_then_succeeds(
    proxy: FaultProxy, proxied_admin: Path, ns: str
) -> None:
    async with _recorded(proxied_admin) as (kube, recorder):
        proxy.set_faults(script=[503, 500])
        await kube.create("", "v1", "configmaps", ns, CONFIGMAP)
        assert [c[2] for c in recorder.calls] == [503, 500, 201]
        assert len(recorder.sleeps) == 2 and all(0 <= s <= 5 for s in recorder.sleeps)
        assert [i.status for i in proxy.injected] == [503, 500]
        assert await kube.get("", "v1", "configmaps", ns, "cm") is not None


async def test_obeys_retry_after(proxy: FaultProxy, proxied_admin: Path, ns: str) -> None:
    async with _recorded(proxied_admin) as (kube, recorder):
        proxy.set_faults(script=[429], retry_after=2)
        await kube.create("", "v1", "configmaps", ns, CONFIGMAP)
        assert [c[2] for c in recorder.calls] == [429, 201]
        assert recorder.sleeps == [2.0]


async def test_unguarded_conflict_is_retried_guarded_is_not(
    proxy: FaultProxy, proxied_admin: Path, ns: str
) -> None:
    async with _recorded(proxied_admin) as (kube, recorder):
        created = await kube.create("", "v1", "configmaps", ns, CONFIGMAP)
        proxy.set_faults(script=[409])
        await kube.patch("", "v1", "configmaps", ns, "cm", {"data": {"a": "1"}})
        assert [c[2] for c in recorder.calls[-2:]] == [409, 200]
        proxy.set_faults(script=[409])
        recorder.calls.clear()
        with pytest.raises(Conflict):
            await kube.patch(
                "",
                "v1",
                "configmaps",
                ns,
                "cm",
                {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}},
            )
        assert [c[2] for c in recorder.calls] == [409]


async def test_gives_up_after_the_retries(proxy: FaultProxy, proxied_admin: Path, ns: str) -> None:
    async with _recorded(proxied_admin, retries=2) as (kube, recorder):
        proxy.set_faults(script=[500] * 10)
        with pytest.raises(KubeError) as failed:
            await kube.create("", "v1", "configmaps", ns, CONFIGMAP)
        assert failed.value.status == 500
        assert len(recorder.calls) == 3
        # Exponential backoff, capped: each delay is within base * 2**attempt.
        assert all(s <= 0.2 * 2**i for i, s in enumerate(recorder.sleeps))


async def test_operator_event_survives_server_errors(
    control_plane: ControlPlane,
    proxy: FaultProxy,
    admin: Kube,
    ns: str,
    tmp_path: Path,
) -> None:
    # The operator's own identity through the proxy: its Event is retried past two 5xx.
    path = operator_kubeconfig(control_plane, ns, tmp_path / "via-proxy", server=proxy.url)
    async with _recorded(path) as (kube, recorder):
        proxy.set_faults(script=[503, 500])
        involved = {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "namespace": ns}
        await kube.emit_event(involved, "Normal", "Retried", "through two server errors")
        assert [c[2] for c in recorder.calls] == [503, 500, 201]
    events = await admin.list("", "v1", "events", ns)
    assert [e["reason"] for e in events] == ["Retried"]


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
            await kube.get("", "v1", "configmaps", "nowhere", "cm")
        assert failed.value.status is None
        assert recorder.calls == [("get", "configmaps", 0), ("get", "configmaps", 0)]
        # An Event that cannot be posted is logged, never raised.
        await kube.emit_event(
            {"kind": "Migration", "name": "m", "namespace": "nowhere"}, "Normal", "R", "m"
        )
    finally:
        await kube.close()


async def test_read_secret_key_decodes_and_never_logs_the_value(
    kube: Kube, admin: Kube, ns: str, caplog: pytest.LogCaptureFixture
) -> None:
    value = "hunter2-very-secret"
    encoded = base64.b64encode(value.encode()).decode()
    await admin.create(
        "", "v1", "secrets", ns, {"metadata": {"name": "creds"}, "data": {"token": encoded}}
    )
    caplog.set_level(logging.DEBUG)
    # The operator reads it with the chart's Secret rule (rbac.readSecrets).
    assert await kube.read_secret_key(ns, "creds", "token") == value
    with pytest.raises(KubeError) as no_key:
        await kube.read_secret_key(ns, "creds", "password")
    assert f"{ns}/creds" in str(no_key.value) and "password" in str(no_key.value)
    with pytest.raises(NotFound) as no_secret:
        await kube.read_secret_key(ns, "missing", "token")
    assert f"Secret {ns}/missing" in str(no_secret.value)
    # A real API server stores only valid base64 in data: what it can hold but the operator
    # cannot decode is bytes that are not UTF-8.
    with pytest.raises(KubeError) as refused:
        await admin.patch("", "v1", "secrets", ns, "creds", {"data": {"bad": "!!not-base64"}})
    assert refused.value.status in (400, 422)
    raw = b"\xffnot-utf8\xfe"
    await admin.patch(
        "", "v1", "secrets", ns, "creds", {"data": {"bad": base64.b64encode(raw).decode()}}
    )
    with pytest.raises(KubeError) as undecodable:
        await kube.read_secret_key(ns, "creds", "bad")
    assert "not-utf8" not in str(undecodable.value)
    assert "not valid base64-encoded UTF-8" in str(undecodable.value)
    text = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    assert value not in text and encoded not in text


async def test_emit_event(kube: Kube, admin: Kube, ns: str) -> None:
    involved = {
        "apiVersion": "cutover.io/v1alpha1",
        "kind": "Migration",
        "name": "checkout",
        "namespace": ns,
        "uid": "1234",
    }
    await kube.emit_event(involved, "Warning", "RouterError", "x" * 5000)
    # The chart lets the operator create Events, not list them.
    events = await admin.list("", "v1", "events", ns)
    assert len(events) == 1
    event = events[0]
    assert event["involvedObject"] == involved
    assert event["source"] == {"component": "cutover"}
    assert event["type"] == "Warning" and event["reason"] == "RouterError"
    assert event["count"] == 1 and len(event["message"]) == 1024
    assert event["metadata"]["name"].startswith("checkout.")
    assert event["firstTimestamp"] and event["lastTimestamp"] and event["eventTime"]


async def test_requests_in_flight_together_take_no_thread_each(kube: Kube, ns: str) -> None:
    """Requests are coroutines on the event loop: many in flight at once start no thread, so a
    busy operator's requests never take the GIL from its event loop."""
    import threading

    before = {thread.ident for thread in threading.enumerate()}
    results = await asyncio.gather(
        *(kube.get("apps", "v1", "deployments", ns, f"d{i}") for i in range(12)),
        *(kube.get("", "v1", "services", ns, f"s{i}") for i in range(12)),
    )
    assert results == [None] * 24
    assert {thread.ident for thread in threading.enumerate()} <= before
