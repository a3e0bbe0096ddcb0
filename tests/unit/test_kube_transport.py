"""The operator's requests go where the kubeconfig says: through its proxy (``proxy-url``),
straight to the API server for hosts ``no_proxy`` names, and with the client's auth header."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp.web
import kubernetes.client
import pytest

from cutover.kube import Kube


class Recorder:
    """A tiny HTTP server that answers every request with an empty ConfigMap list."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []  # (method, target, Authorization)

    async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        # A forward proxy is sent the absolute URL; a server, the path.
        self.seen.append(
            (request.method, str(request.raw_path), request.headers.get("Authorization", ""))
        )
        return aiohttp.web.json_response({"kind": "ConfigMap", "metadata": {"name": "cm"}})


@pytest.fixture()
async def servers() -> AsyncIterator[tuple[str, Recorder, str, Recorder]]:
    """(API server URL, its recorder, proxy URL, its recorder), both on loopback."""
    runners, urls, recorders = [], [], []
    for _ in range(2):
        recorder = Recorder()
        app = aiohttp.web.Application()
        app.router.add_route("*", "/{tail:.*}", recorder.handle)
        runner = aiohttp.web.AppRunner(app)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        runners.append(runner)
        urls.append(f"http://127.0.0.1:{port}")
        recorders.append(recorder)
    yield urls[0], recorders[0], urls[1], recorders[1]
    for runner in runners:
        await runner.cleanup()


def _kube(host: str, proxy: str, no_proxy: str | None) -> Kube:
    configuration = kubernetes.client.Configuration()
    configuration.host = host
    configuration.proxy = proxy
    configuration.no_proxy = no_proxy
    configuration.api_key = {"authorization": "sekrit"}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return Kube(kubernetes.client.ApiClient(configuration), retries=0, timeout=5)


async def test_requests_go_through_the_kubeconfigs_proxy_with_the_clients_token(
    servers: tuple[str, Recorder, str, Recorder],
) -> None:
    api_url, api, proxy_url, proxy = servers
    kube = _kube(api_url, proxy_url, None)
    try:
        found = await kube.get("", "v1", "configmaps", "shop", "cm")
    finally:
        await kube.close()
    assert found is not None and found["metadata"]["name"] == "cm"
    assert proxy.seen == [
        ("GET", f"{api_url}/api/v1/namespaces/shop/configmaps/cm", "Bearer sekrit")
    ]
    assert api.seen == []


async def test_a_host_no_proxy_names_is_reached_directly(
    servers: tuple[str, Recorder, str, Recorder],
) -> None:
    api_url, api, proxy_url, proxy = servers
    kube = _kube(api_url, proxy_url, "localhost,127.0.0.1")
    try:
        await kube.get("", "v1", "configmaps", "shop", "cm")
    finally:
        await kube.close()
    assert api.seen == [("GET", "/api/v1/namespaces/shop/configmaps/cm", "Bearer sekrit")]
    assert proxy.seen == []
