"""A local HTTP listener that records every request reaching it: the proof that a refused gate
address was sent nothing, and that credentials did not follow a redirect.

It answers every GET like Prometheus answering a scalar query (``0.5``), or with a redirect
to ``redirect`` when that is set.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["ANSWER", "Listener", "Start", "listeners"]

ANSWER = 0.5


@dataclass
class Listener:
    host: str
    server: ThreadingHTTPServer
    # The headers of every request received, names in lower case.
    requests: list[dict[str, str]] = field(default_factory=list)
    redirect: str | None = None
    scheme: str = "http"

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def _start(host: str, tls: tuple[Path, Path] | None) -> Listener:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            listener.requests.append({k.lower(): v for k, v in self.headers.items()})
            if listener.redirect is not None:
                self.send_response(302)
                self.send_header("Location", listener.redirect + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            result = {"resultType": "scalar", "result": [1, str(ANSWER)]}
            body = json.dumps({"status": "success", "data": result}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    listener = Listener(host, ThreadingHTTPServer((host, 0), Handler))
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        listener.server.socket = context.wrap_socket(listener.server.socket, server_side=True)
        listener.scheme = "https"
    threading.Thread(target=listener.server.serve_forever, daemon=True).start()
    return listener


Start = Callable[..., Listener]


@contextmanager
def listeners() -> Iterator[Start]:
    """``start(host, tls=(cert, key))`` starts a listener on a free port of ``host`` (HTTPS
    with ``tls``); all stop on exit."""
    started: list[Listener] = []

    def start(host: str, tls: tuple[Path, Path] | None = None) -> Listener:
        started.append(_start(host, tls))
        return started[-1]

    try:
        yield start
    finally:
        for listener in started:
            listener.server.shutdown()
            listener.server.server_close()
