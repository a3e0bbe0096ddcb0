"""The in-process `SandboxCluster` API: discovery, watches, faults, patches, admin endpoints."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from cutover.sandbox import SandboxCluster
from tests.sandbox.helpers import WIDGET_CRD


async def _req(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Any = None,
    content_type: str = "application/json",
) -> tuple[int, Any, Any]:
    data = None if body is None else json.dumps(body)
    async with session.request(
        method, url, data=data, headers={"Content-Type": content_type}
    ) as resp:
        text = await resp.text()
        return resp.status, (json.loads(text) if text else None), resp.headers


async def test_kubeconfig_and_discovery_of_new_crd(cluster: SandboxCluster, tmp_path: Path) -> None:
    path = cluster.write_kubeconfig(tmp_path / "kc")
    config = yaml.safe_load(Path(path).read_text())
    assert config["current-context"] == "cutover-sandbox"
    assert config["clusters"][0]["cluster"]["server"] == cluster.url
    async with aiohttp.ClientSession() as s:
        _, groups, _ = await _req(s, "GET", f"{cluster.url}/apis")
        names = {g["name"] for g in groups["groups"]}
        assert {
            "apps",
            "batch",
            "events.k8s.io",
            "coordination.k8s.io",
            "apiextensions.k8s.io",
            "networking.k8s.io",
        } <= names
        assert "example.io" not in names
        _, core, _ = await _req(s, "GET", f"{cluster.url}/api/v1")
        assert {"pods", "services", "events", "configmaps", "secrets", "namespaces"} <= {
            r["name"] for r in core["resources"]
        }
        crd = yaml.safe_load(WIDGET_CRD)
        code, _, _ = await _req(
            s, "POST", f"{cluster.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd
        )
        assert code == 201
        _, doc, _ = await _req(s, "GET", f"{cluster.url}/apis/example.io/v1")
        widgets = {r["name"]: r for r in doc["resources"]}
        assert widgets["widgets"]["shortNames"] == ["wid"]
        assert widgets["widgets"]["categories"] == ["examples"]
        assert "widgets/status" in widgets
        code, _, _ = await _req(
            s,
            "DELETE",
            f"{cluster.url}/apis/apiextensions.k8s.io/v1/"
            "customresourcedefinitions/widgets.example.io",
        )
        assert code == 200
        code, _, _ = await _req(s, "GET", f"{cluster.url}/apis/example.io/v1")
        assert code == 404


async def test_watch_resumes_from_resource_version(cluster: SandboxCluster) -> None:
    base = f"{cluster.url}/api/v1/namespaces/default/configmaps"
    async with aiohttp.ClientSession() as s:
        _, first, _ = await _req(s, "POST", base, {"metadata": {"name": "a"}})
        await _req(s, "POST", base, {"metadata": {"name": "b"}})
        await _req(s, "DELETE", f"{base}/a")
        rv = first["metadata"]["resourceVersion"]
        url = f"{base}?watch=true&resourceVersion={rv}&timeoutSeconds=1"
        async with s.get(url) as resp:
            lines = [json.loads(line) async for line in resp.content if line.strip()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [
        ("ADDED", "b"),
        ("DELETED", "a"),
    ]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in lines]
    assert rvs == sorted(rvs) and rvs[0] > int(rv)


async def test_watch_bookmarks_and_timeout(cluster: SandboxCluster) -> None:
    cluster.bookmark_interval = 0.2
    url = (
        f"{cluster.url}/apis/apps/v1/namespaces/default/deployments?watch=true"
        "&allowWatchBookmarks=true&timeoutSeconds=1"
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with aiohttp.ClientSession() as s, s.get(url) as resp:
        lines = [json.loads(line) async for line in resp.content if line.strip()]
    assert 0.9 <= loop.time() - started < 3
    assert lines and all(e["type"] == "BOOKMARK" for e in lines)
    assert lines[0]["object"]["kind"] == "Deployment"


async def test_fault_injection(cluster: SandboxCluster) -> None:
    base = f"{cluster.url}/api/v1/namespaces/default/configmaps"
    async with aiohttp.ClientSession() as s:
        code, _, _ = await _req(
            s, "POST", f"{cluster.url}/_sandbox/faults", {"throttle_rate": 1.0, "retry_after": 2}
        )
        assert code == 200
        code, body, headers = await _req(s, "POST", base, {"metadata": {"name": "t"}})
        assert code == 429 and headers["Retry-After"] == "2" and body["kind"] == "Status"
        await _req(s, "POST", f"{cluster.url}/_sandbox/faults", {"error_rate": 1.0})
        code, _, _ = await _req(s, "POST", base, {"metadata": {"name": "t"}})
        assert code in (500, 503)
        code, _, _ = await _req(s, "GET", base)
        assert code == 200  # reads are never faulted
        await _req(s, "POST", f"{cluster.url}/_sandbox/faults", {"write_latency": 0.3})
        loop = asyncio.get_running_loop()
        started = loop.time()
        code, _, _ = await _req(s, "POST", base, {"metadata": {"name": "t"}})
        assert code == 201 and loop.time() - started >= 0.3
        await _req(s, "POST", f"{cluster.url}/_sandbox/faults", {})
        code, _, _ = await _req(s, "POST", f"{cluster.url}/_sandbox/faults", {"bogus": 1})
        assert code == 400
    assert not cluster.faults.enabled
    codes = [
        e["code"] for e in cluster.requests if e["path"] == "/api/v1/namespaces/default/configmaps"
    ]
    assert codes[:2] == [429, codes[1]] and codes[-1] == 201


async def test_seeded_faults_are_reproducible() -> None:
    from cutover.sandbox import FaultInjector

    def draws() -> list[int | None]:
        injector = FaultInjector(error_rate=0.3, throttle_rate=0.3, seed=7)
        return [injector.decide_write("configmaps").status for _ in range(50)]

    first = draws()
    assert first == draws() and {None, 429} <= set(first)


async def test_admin_config_and_json_patch(cluster: SandboxCluster) -> None:
    base = f"{cluster.url}/api/v1/namespaces/default/configmaps"
    async with aiohttp.ClientSession() as s:
        code, _, _ = await _req(
            s, "POST", f"{cluster.url}/_sandbox/config", {"deployment_ready_delay": 1.5}
        )
        assert code == 200 and cluster.deployment_ready_delay == 1.5
        await _req(s, "POST", base, {"metadata": {"name": "j"}, "data": {"a": "1"}})
        code, obj, _ = await _req(
            s,
            "PATCH",
            f"{base}/j",
            [
                {"op": "test", "path": "/data/a", "value": "1"},
                {"op": "add", "path": "/data/b", "value": "2"},
            ],
            "application/json-patch+json",
        )
        assert code == 200 and obj["data"] == {"a": "1", "b": "2"}
        code, _, _ = await _req(
            s,
            "PATCH",
            f"{base}/j",
            [{"op": "test", "path": "/data/a", "value": "nope"}],
            "application/json-patch+json",
        )
        assert code == 422
        code, obj, _ = await _req(
            s, "PATCH", f"{base}/j", {"data": {"a": None}}, "application/merge-patch+json"
        )
        assert obj["data"] == {"b": "2"}
        code, _, _ = await _req(s, "POST", f"{cluster.url}/_sandbox/reset-log", {})
        assert cluster.requests == []
        _, stats, _ = await _req(s, "GET", f"{cluster.url}/_sandbox/stats")
        assert stats["objects"]["configmaps"] == 1


async def test_finalizer_watch_sees_modified_then_deleted(cluster: SandboxCluster) -> None:
    base = f"{cluster.url}/api/v1/namespaces/default/configmaps"
    async with aiohttp.ClientSession() as s:
        _, created, _ = await _req(
            s, "POST", base, {"metadata": {"name": "f", "finalizers": ["example.io/hold"]}}
        )
        rv = created["metadata"]["resourceVersion"]
        code, deleting, _ = await _req(s, "DELETE", f"{base}/f")
        assert code == 200 and deleting["metadata"]["deletionTimestamp"]
        code, _, _ = await _req(s, "GET", f"{base}/f")
        assert code == 200  # still there, waiting for its finalizer
        await _req(
            s,
            "PATCH",
            f"{base}/f",
            {"metadata": {"finalizers": []}},
            "application/merge-patch+json",
        )
        code, _, _ = await _req(s, "GET", f"{base}/f")
        assert code == 404
        url = f"{base}?watch=true&resourceVersion={rv}&timeoutSeconds=0.5"
        async with s.get(url) as resp:
            events = [json.loads(line) async for line in resp.content if line.strip()]
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]
    assert events[0]["object"]["metadata"]["deletionTimestamp"]
