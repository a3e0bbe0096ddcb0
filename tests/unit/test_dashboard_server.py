"""The dashboard's HTTP server without a cluster: its guards against other origins, its refusal
of actions unless allowed, the static files, and a clear page when the cluster is unreachable."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cutover.cli.client import Cluster, Target
from cutover.cli.dashboard.feed import Feed
from cutover.cli.dashboard.server import TOKEN_HEADER, Dashboard, Settings
from devtools.controlplane.cluster import free_port

Client = TestClient[web.Request, web.Application]
Start = Callable[[bool], Awaitable[tuple[Client, Dashboard]]]


def kubeconfig(path: Path) -> Path:
    """A kubeconfig naming a server nothing listens on."""
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "shop"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Start]:
    clients: list[Client] = []

    async def start(allow_actions: bool) -> tuple[Client, Dashboard]:
        cluster = Cluster(Target(kubeconfig=str(kubeconfig(tmp_path / "config"))))
        port = free_port()
        dashboard = Dashboard(
            cluster, Feed(cluster, False), Settings("127.0.0.1", port, allow_actions)
        )
        client = TestClient(TestServer(dashboard.app(), host="127.0.0.1", port=port))
        await client.start_server()
        clients.append(client)
        return client, dashboard

    yield start
    for client in clients:
        await client.close()


async def test_actions_are_refused_unless_allowed_and_carrying_the_pages_token(
    serve: Start,
) -> None:
    client, _ = await serve(False)
    answer = await client.post("/act/shop/checkout/pause")
    assert answer.status == 403
    assert "--allow-actions" in (await answer.json())["message"]

    client, dashboard = await serve(True)
    answer = await client.post("/act/shop/checkout/pause")  # a cross-site form sends no token
    assert answer.status == 403 and "token" in (await answer.json())["message"]
    answer = await client.post("/act/shop/checkout/pause", headers={TOKEN_HEADER: "guess"})
    assert answer.status == 403
    answer = await client.post(
        "/act/shop/checkout/promote-full", headers={TOKEN_HEADER: dashboard.token}
    )
    assert answer.status == 404  # not a button: a command-line decision
    page = await (await client.get("/")).text()
    assert re.search(rf'name="cutover-token" content="{re.escape(dashboard.token)}"', page)


async def test_a_request_naming_another_host_is_refused(serve: Start) -> None:
    client, _ = await serve(False)
    answer = await client.get("/", headers={"Host": "attacker.example:8765"})
    assert answer.status == 421
    answer = await client.get("/")
    assert answer.status == 200
    assert "script-src 'self'" in answer.headers["Content-Security-Policy"]


async def test_the_page_script_and_styles_are_served_from_the_package(serve: Start) -> None:
    client, _ = await serve(False)
    script = await client.get("/static/dashboard.js")
    assert script.status == 200 and "EventSource" in await script.text()
    styles = await client.get("/static/dashboard.css")
    assert styles.status == 200
    assert (await client.get("/static/../server.py")).status in (403, 404)


async def test_an_unreachable_cluster_is_said_on_the_page(serve: Start) -> None:
    client, _ = await serve(False)
    for _ in range(100):
        page = await (await client.get("/")).text()
        if "Cannot read Migrations" in page:
            break
        await asyncio.sleep(0.1)
    assert "cannot reach the cluster at http://127.0.0.1:" in page
    assert "Traceback" not in page
