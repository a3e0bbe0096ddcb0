"""HTTP exchanges with the API server on the event loop (aiohttp), for ``cutover.kube``.

The official client's urllib3 pool is blocking, so requests used to run on 64 threads. Here a
request is a coroutine: no thread, and the pool is one aiohttp connector with a connection per
request in flight. At 1,000 Migrations that took the operator from 0.26-0.29 to 0.23 of a core
(docs/performance.md, "Requests without threads"). What to send (URL, auth headers, refreshed
tokens) still comes from the official client's configuration, in ``cutover.kube``; this module
knows nothing of Kubernetes.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping

import aiohttp

Response = tuple[int, dict[str, str], bytes]
# An idle connection is kept this long (aiohttp's default is 15 s): a run's 5-30 s pauses would
# otherwise cost a TLS handshake per step. Under the kube-apiserver's own 90 s idle timeout.
_KEEPALIVE_SECONDS = 60.0


class NoResponse(ConnectionError):
    """The exchange ended without a whole response (refused, reset, cut short)."""


class HttpTransport:
    """Sends one request and reads the whole response, on whichever loop awaits it.

    A session belongs to the loop it was made on; a caller on another loop (a test, a CLI
    command run with ``asyncio.run``) gets a session of its own, and the old one is dropped.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None,
        server_hostname: str | None = None,
        proxy: str | None = None,
        proxy_headers: Mapping[str, str] | None = None,
        timeout: float,
        connections: int,
    ) -> None:
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._server_hostname = server_hostname
        self._proxy = proxy
        self._proxy_headers = dict(proxy_headers) if proxy_headers else None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._connections = max(connections, 1)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _session_here(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._connections, ssl=self._ssl, keepalive_timeout=_KEEPALIVE_SECONDS
            )
            # The API server's errors come as JSON bodies with any status; none is raised here.
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, raise_for_status=False
            )
            self._loop = loop
        return self._session

    async def send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> Response:
        """One exchange; an ``OSError`` (``NoResponse``, ``TimeoutError``) when none came."""
        session = self._session_here()
        try:
            async with session.request(
                method,
                url,
                data=body,
                headers=dict(headers),
                proxy=self._proxy,
                proxy_headers=self._proxy_headers,
                server_hostname=self._server_hostname,
            ) as response:
                data = await response.read()
                return response.status, dict(response.headers), data
        except aiohttp.ClientError as error:
            raise NoResponse(f"{type(error).__name__}: {error}") from error

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
