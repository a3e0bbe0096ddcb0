"""PrometheusProvider against recorded Prometheus 2.42 API responses served over real HTTP."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import math
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import requests.adapters
import urllib3.util.connection

from cutover.providers import (
    InvalidQuery,
    MetricProvider,
    MultipleSeries,
    NoData,
    PrometheusProvider,
    ProviderError,
    Replayable,
    can_replay,
    known_providers,
    provider_for,
)
from cutover.providers.prometheus import REPLAY_POINTS

FIXTURES = Path(__file__).parent / "fixtures" / "prometheus"
MANIFEST: dict[str, Any] = json.loads((FIXTURES / "manifest.json").read_text())
TOKEN = "s3cr3t-T0KEN-value"
PASSWORD = "hunter2-P4SSWORD"


@dataclass
class Canned:
    status: int
    body: bytes
    content_type: str = "application/json"
    delay: float = 0.0
    # Held back until the test sets it (bounded by ``delay``), so "the client gave up before
    # the server answered" is an order of events, not a stopwatch reading.
    release: threading.Event | None = None


def recorded(name: str) -> Canned:
    meta = MANIFEST[name]
    return Canned(meta["status"], (FIXTURES / f"{name}.json").read_bytes(), meta["content_type"])


@dataclass
class FakePrometheus:
    """Serves canned responses keyed by the ``query`` parameter; records requests."""

    server: ThreadingHTTPServer
    responses: dict[str, Canned] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)  # queries whose response was sent

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def serve(self, query: str, canned: Canned) -> str:
        self.responses[query] = canned
        return query


class _Handler(BaseHTTPRequestHandler):
    fake: ClassVar[FakePrometheus]

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.fake.requests.append(
            {"path": parts.path, "params": params, "headers": dict(self.headers.items())}
        )
        canned = self.fake.responses.get(params.get("query", ""))
        if canned is None:
            canned = Canned(404, b"404 page not found\n", "text/plain; charset=utf-8")
        if canned.release is not None:
            canned.release.wait(timeout=canned.delay or None)
        elif canned.delay:
            time.sleep(canned.delay)
        self.fake.answered.append(params.get("query", ""))
        self.send_response(canned.status)
        self.send_header("Content-Type", canned.content_type)
        self.send_header("Content-Length", str(len(canned.body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(canned.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake() -> Iterator[FakePrometheus]:
    class Handler(_Handler):
        pass

    handler = Handler
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    fake = FakePrometheus(server)
    handler.fake = fake
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def provider(fake: FakePrometheus) -> Iterator[PrometheusProvider]:
    with PrometheusProvider(fake.url, timeout=2.0) as p:
        yield p


# -- instant queries ------------------------------------------------------------------------


def test_one_series_returns_its_value(fake: FakePrometheus, provider: PrometheusProvider) -> None:
    q = fake.serve("ratio", recorded("vector_1_series"))
    assert provider.query(q) == pytest.approx(0.20022371364653246)
    request = fake.requests[-1]
    assert request["path"] == "/api/v1/query"
    assert request["params"]["query"] == "ratio"
    assert request["params"]["timeout"] == "2s"  # server-side timeout too


def test_one_series_with_labels(fake: FakePrometheus, provider: PrometheusProvider) -> None:
    assert provider.query(fake.serve("up", recorded("vector_1_series_labels"))) == 1.0


def test_scalar_result(fake: FakePrometheus, provider: PrometheusProvider) -> None:
    assert provider.query(fake.serve("s", recorded("scalar"))) == 0.25


@pytest.mark.parametrize("name", ["vector_0_series", "vector_nan", "scalar_nan"])
def test_no_data(fake: FakePrometheus, provider: PrometheusProvider, name: str) -> None:
    with pytest.raises(NoData):
        provider.query(fake.serve("q", recorded(name)))


def test_multiple_series(fake: FakePrometheus, provider: PrometheusProvider) -> None:
    with pytest.raises(MultipleSeries) as info:
        provider.query(fake.serve("q", recorded("vector_2_series")))
    message = str(info.value)
    assert "2 series" in message
    assert 'code="200"' in message and 'code="500"' in message
    assert "http_requests_total{" in message


def test_multiple_series_message_is_truncated(
    fake: FakePrometheus, provider: PrometheusProvider
) -> None:
    result = [
        {"metric": {"pod": f"pod-{i}-" + "x" * 50}, "value": [1.0, str(i)]} for i in range(40)
    ]
    body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}})
    with pytest.raises(MultipleSeries) as info:
        provider.query(fake.serve("q", Canned(200, body.encode())))
    message = str(info.value)
    assert "40 series" in message
    assert "pod-0-" in message and "pod-39-" not in message
    assert len(message) <= 600


@pytest.mark.parametrize(
    ("name", "expected"), [("vector_plus_inf", math.inf), ("vector_minus_inf", -math.inf)]
)
def test_infinities_are_values(
    fake: FakePrometheus, provider: PrometheusProvider, name: str, expected: float
) -> None:
    assert provider.query(fake.serve("q", recorded(name))) == expected


def test_string_result_is_a_provider_error(
    fake: FakePrometheus, provider: PrometheusProvider
) -> None:
    with pytest.raises(ProviderError, match="non-numeric"):
        provider.query(fake.serve("q", recorded("string")))


# -- errors ---------------------------------------------------------------------------------


def test_bad_data_carries_prometheus_error_text(
    fake: FakePrometheus, provider: PrometheusProvider
) -> None:
    with pytest.raises(InvalidQuery) as info:
        provider.query(fake.serve("q", recorded("error_bad_data_400")))
    assert str(info.value) == (
        'invalid parameter "query": 1:34: parse error: unclosed left parenthesis'
    )
    assert info.value.error_type == "bad_data"
    assert info.value.status_code == 400
    assert isinstance(info.value, ProviderError)


def test_execution_error_422(fake: FakePrometheus, provider: PrometheusProvider) -> None:
    with pytest.raises(ProviderError) as info:
        provider.query(fake.serve("q", recorded("error_execution_422")))
    assert not isinstance(info.value, InvalidQuery)
    assert str(info.value).startswith("found duplicate series for the match group")
    assert (info.value.error_type, info.value.status_code) == ("execution", 422)


def test_prometheus_timeout_503(fake: FakePrometheus, provider: PrometheusProvider) -> None:
    with pytest.raises(ProviderError) as info:
        provider.query(fake.serve("q", recorded("error_timeout_503")))
    assert str(info.value) == "query timed out in query execution"
    assert (info.value.error_type, info.value.status_code) == ("timeout", 503)


def test_proxy_503_html_body(fake: FakePrometheus, provider: PrometheusProvider) -> None:
    body = (FIXTURES / "handwritten_proxy_503.html").read_bytes()
    with pytest.raises(ProviderError) as info:
        provider.query(fake.serve("q", Canned(503, body, "text/html")))
    assert str(info.value).startswith(f"HTTP 503 from Prometheus at {fake.url}")
    assert "503 Service Temporarily Unavailable" in str(info.value)
    assert (info.value.error_type, info.value.status_code) == ("http", 503)


def test_no_retries_on_503(fake: FakePrometheus, provider: PrometheusProvider) -> None:
    with pytest.raises(ProviderError):
        provider.query(fake.serve("q", recorded("error_timeout_503")))
    assert len(fake.requests) == 1


def test_malformed_json(fake: FakePrometheus, provider: PrometheusProvider) -> None:
    with pytest.raises(ProviderError) as info:
        provider.query(fake.serve("q", Canned(200, b"<html>not json</html>", "text/html")))
    assert info.value.error_type == "bad_response"


def test_connection_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Count the TCP connection attempts: a retry or back-off would show as a second one.
    attempts: list[tuple[str, int]] = []
    real_connect = urllib3.util.connection.create_connection

    def counting_connect(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        attempts.append(address)
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", counting_connect)
    provider = PrometheusProvider(f"http://127.0.0.1:{port}", timeout=1.0)
    with pytest.raises(ProviderError) as info:
        provider.query("up")
    assert attempts == [("127.0.0.1", port)]  # one attempt: no retry, no back-off
    assert info.value.error_type == "connection"
    assert (
        str(info.value) == f"cannot connect to Prometheus at http://127.0.0.1:{port}: "
        "connection refused"
    )


def test_client_timeout(fake: FakePrometheus, monkeypatch: pytest.MonkeyPatch) -> None:
    # The server holds its answer until the test releases it (30 s at most): the query can
    # only end before that if the client gave up by itself.
    release = threading.Event()
    body = (FIXTURES / "scalar.json").read_bytes()
    q = fake.serve("slow", Canned(200, body, delay=30.0, release=release))
    timeouts: list[object] = []
    real_send = requests.adapters.HTTPAdapter.send

    def recording_send(adapter: requests.adapters.HTTPAdapter, request: Any, **kwargs: Any) -> Any:
        timeouts.append(kwargs.get("timeout"))
        return real_send(adapter, request, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", recording_send)
    provider = PrometheusProvider(fake.url, timeout=0.3)
    try:
        with pytest.raises(ProviderError) as info:
            provider.query(q)
        assert fake.answered == []  # gave up while the server was still holding the answer
    finally:
        release.set()
    assert timeouts == [0.3]  # the configured timeout reached the HTTP layer, once
    assert len(fake.requests) == 1  # and the timeout was not retried
    assert info.value.error_type == "client_timeout"
    assert "did not answer within 0.3s" in str(info.value)


# -- range queries --------------------------------------------------------------------------

END = datetime(2026, 11, 26, 8, 0, 0, tzinfo=UTC)
START = END - timedelta(seconds=10)


def test_range_single_series(fake: FakePrometheus, provider: PrometheusProvider) -> None:
    q = fake.serve("ratio", recorded("matrix_1_series"))
    values = provider.query_range(q, START, END, 2.0)
    expected = [
        float(v)
        for _, v in json.loads((FIXTURES / "matrix_1_series.json").read_bytes())["data"]["result"][
            0
        ]["values"]
    ]
    assert values == expected and len(values) >= 5
    params = fake.requests[-1]["params"]
    assert fake.requests[-1]["path"] == "/api/v1/query_range"
    assert (params["start"], params["end"], params["step"]) == (
        str(int(START.timestamp())),
        str(int(END.timestamp())),
        "2",
    )


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("matrix_0_series", NoData),
        ("matrix_nan", NoData),
        ("matrix_2_series", MultipleSeries),
        ("error_bad_data_400", InvalidQuery),
        ("error_timeout_503", ProviderError),
    ],
)
def test_range_errors(
    fake: FakePrometheus, provider: PrometheusProvider, name: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        provider.query_range(fake.serve("q", recorded(name)), START, END, 2.0)


def test_range_drops_nan_points(fake: FakePrometheus, provider: PrometheusProvider) -> None:
    result = [{"metric": {}, "values": [[1.0, "NaN"], [2.0, "0.5"], [3.0, "+Inf"]]}]
    body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}})
    assert provider.query_range(fake.serve("q", Canned(200, body.encode())), START, END, 1) == [
        0.5,
        math.inf,
    ]


def test_range_argument_validation(provider: PrometheusProvider) -> None:
    with pytest.raises(ValueError, match="step_seconds"):
        provider.query_range("up", START, END, 0)
    with pytest.raises(ValueError, match="end"):
        provider.query_range("up", END, START, 1)


def test_replay_asks_one_range_query_per_chunk_of_points(
    fake: FakePrometheus, provider: PrometheusProvider
) -> None:
    result = [{"metric": {}, "values": [[1.0, "0.5"], [2.0, "NaN"]]}]
    body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}})
    q = fake.serve("ratio", Canned(200, body.encode()))
    start = END - timedelta(seconds=2 * REPLAY_POINTS + 500)

    points = provider.replay(q, start, END, 1.0)

    # Prometheus refuses more than 11,000 points per series: 3 queries of <= 10,000, not 20,501.
    spans = [(int(r["params"]["start"]), int(r["params"]["end"])) for r in fake.requests]
    first = int(start.timestamp())
    assert spans == [
        (first, first + REPLAY_POINTS - 1),
        (first + REPLAY_POINTS, first + 2 * REPLAY_POINTS - 1),
        (first + 2 * REPLAY_POINTS, int(END.timestamp())),
    ]
    assert all(r["path"] == "/api/v1/query_range" for r in fake.requests)
    assert points == [(1.0, 0.5)] * 3  # times kept, NaN left out


def test_replay_of_a_span_without_samples_is_empty_not_an_error(
    fake: FakePrometheus, provider: PrometheusProvider
) -> None:
    assert provider.replay(fake.serve("q", recorded("matrix_0_series")), START, END, 2.0) == []


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("matrix_2_series", MultipleSeries),
        ("error_bad_data_400", InvalidQuery),
        ("error_timeout_503", ProviderError),
    ],
)
def test_replay_errors(
    fake: FakePrometheus, provider: PrometheusProvider, name: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        provider.replay(fake.serve("q", recorded(name)), START, END, 2.0)


def test_only_providers_that_declare_replay_can_replay() -> None:
    assert isinstance(PrometheusProvider("http://127.0.0.1:9"), Replayable)
    assert can_replay("prometheus")
    assert not can_replay("web")
    assert not can_replay("no-such-provider")


# -- check_query ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["vector_0_series", "vector_1_series", "vector_2_series", "vector_nan", "scalar"]
)
def test_check_query_accepts_valid_queries(
    fake: FakePrometheus, provider: PrometheusProvider, name: str
) -> None:
    provider.check_query(fake.serve("q", recorded(name)))


def test_check_query_rejects_parse_errors(
    fake: FakePrometheus, provider: PrometheusProvider
) -> None:
    with pytest.raises(InvalidQuery, match="unclosed left parenthesis"):
        provider.check_query(fake.serve("q", recorded("error_bad_data_400")))


def test_check_query_when_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ProviderError, match="connection refused"):
        PrometheusProvider(f"http://127.0.0.1:{port}").check_query("up")


# -- credentials ----------------------------------------------------------------------------


def _everything_said(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc)


def test_bearer_token_is_sent_and_never_leaked(
    fake: FakePrometheus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = PrometheusProvider(fake.url, bearer_token=TOKEN, timeout=0.3)
    assert provider.query(fake.serve("ok", recorded("scalar"))) == 0.25
    assert fake.requests[-1]["headers"]["Authorization"] == f"Bearer {TOKEN}"
    # an (unusual) upstream that echoes the credential back in its error text
    echo = json.dumps({"status": "error", "errorType": "bad_data", "error": f"bad {TOKEN}"})
    fake.serve("echo", Canned(400, echo.encode()))
    fake.serve("slow", Canned(200, b"{}", delay=1.0))
    said = [repr(provider), str(provider)]
    for q, exc_type in [
        ("echo", InvalidQuery),
        ("slow", ProviderError),
        ("missing", ProviderError),
    ]:
        with pytest.raises(exc_type) as info:
            provider.query(q)
        said.append(_everything_said(info.value))
    with pytest.raises(ProviderError) as info2:
        PrometheusProvider("http://127.0.0.1:1", bearer_token=TOKEN).query("up")
    said.append(_everything_said(info2.value))
    said.append(caplog.text)
    assert "bad <redacted>" in said[2]
    for text in said:
        assert TOKEN not in text
    assert "auth=bearer" in repr(provider)


def test_basic_auth_is_sent_and_never_leaked(
    fake: FakePrometheus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = PrometheusProvider(fake.url, basic_auth=("alice", PASSWORD))
    assert provider.query(fake.serve("ok", recorded("scalar"))) == 0.25
    expected = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert fake.requests[-1]["headers"]["Authorization"] == f"Basic {expected}"
    with pytest.raises(ProviderError) as info:
        provider.query(fake.serve("bad", recorded("error_bad_data_400")))
    said = [repr(provider), _everything_said(info.value), caplog.text]
    for text in said:
        assert PASSWORD not in text


def test_userinfo_in_address_becomes_basic_auth(fake: FakePrometheus) -> None:
    host_port = fake.url.removeprefix("http://")
    provider = PrometheusProvider(f"http://alice:{PASSWORD}@{host_port}/")
    assert PASSWORD not in repr(provider)
    assert provider.address == fake.url
    assert provider.query(fake.serve("ok", recorded("scalar"))) == 0.25
    assert fake.requests[-1]["headers"]["Authorization"].startswith("Basic ")


def test_token_and_basic_auth_are_exclusive() -> None:
    with pytest.raises(ValueError, match="not both"):
        PrometheusProvider("http://x", bearer_token="t", basic_auth=("u", "p"))


# -- registry -------------------------------------------------------------------------------


def test_provider_for_prometheus(fake: FakePrometheus) -> None:
    provider = provider_for("prometheus", address=fake.url, timeout=1.0)
    assert isinstance(provider, PrometheusProvider)
    assert isinstance(provider, MetricProvider)
    assert provider.query(fake.serve("ok", recorded("scalar"))) == 0.25


@pytest.mark.parametrize("kind", ["x", "Prometheus", "", "datadog"])
def test_provider_for_unknown_kind(kind: str) -> None:
    with pytest.raises(ValueError) as info:
        provider_for(kind, address="http://x")
    assert str(info.value) == f"unknown metric provider {kind!r}; known: prometheus, sql, web"
    assert known_providers() == ["prometheus", "sql", "web"]


def test_unauthorized_plain_text(fake: FakePrometheus) -> None:
    body = (FIXTURES / "handwritten_401.txt").read_bytes()
    provider = PrometheusProvider(fake.url, bearer_token="wrong-token-value")
    with pytest.raises(ProviderError) as info:
        provider.query(fake.serve("q", Canned(401, body, "text/plain")))
    assert str(info.value) == f"HTTP 401 from Prometheus at {fake.url}: Unauthorized"
    assert (info.value.error_type, info.value.status_code) == ("http", 401)
