"""A local HTTP server answering JSON, for the ``web`` gate provider's tests.

Each path answers what ``answers[path]`` says (status, JSON body or raw bytes, delay, a
redirect); every request is recorded (method, path, headers in lower case, body).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Answer", "JsonServer", "Received", "json_server"]


@dataclass(frozen=True)
class Answer:
    body: Any = None
    status: int = 200
    raw: bytes | None = None  # sent as is instead of ``body`` as JSON
    delay: float = 0.0
    location: str | None = None


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class JsonServer:
    server: ThreadingHTTPServer
    answers: dict[str, Answer] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def answer(self, path: str, answer: Answer) -> None:
        self.answers[path] = answer


def _handler(state: list[JsonServer]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            server = state[0]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            path = self.path.split("?", 1)[0]
            server.received.append(Received(self.command, self.path, headers, body))
            answer = server.answers.get(path, Answer({"error": "no such path"}, status=404))
            if answer.delay:
                time.sleep(answer.delay)
            payload = answer.raw if answer.raw is not None else json.dumps(answer.body).encode()
            try:
                self.send_response(answer.status)
                if answer.location is not None:
                    self.send_header("Location", answer.location)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:  # the client gave up (a timeout test)
                pass

        do_GET = _serve
        do_POST = _serve

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def json_server(host: str = "127.0.0.1", port: int = 0) -> Iterator[JsonServer]:
    """A server on ``port`` of ``host`` (0: any free port)."""
    state: list[JsonServer] = []
    httpd = ThreadingHTTPServer((host, port), _handler(state))
    httpd.daemon_threads = True
    state.append(JsonServer(httpd))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield state[0]
    finally:
        httpd.shutdown()
        httpd.server_close()
