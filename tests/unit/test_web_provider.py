"""The ``web`` provider against a real local HTTP server, alone and through the GateChecker."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from cutover.api import parse_spec
from cutover.core.gates import Reading, ReadingKind
from cutover.egress import EgressPolicy
from cutover.gatecheck import GateChecker
from cutover.kube import Kube
from cutover.providers import MultipleSeries, NoData, ProviderError, provider_for
from cutover.providers.web import MAX_BODY, WebProvider
from tests.support.json_server import Answer, JsonServer, json_server

from .test_gatecheck import FakeKube

API_KEY = "k3y-never-shown-9a8b7c"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def server() -> Iterator[JsonServer]:
    with json_server() as running:
        yield running


def web(server: JsonServer, json_path: str = "$.data.errorRate", **options: Any) -> WebProvider:
    provider = provider_for("web", json_path=json_path, timeout=2.0, **options)
    assert isinstance(provider, WebProvider)
    return provider


def test_a_get_returns_the_number_the_json_path_picks(server: JsonServer) -> None:
    server.answer("/health", Answer({"data": {"errorRate": 0.02, "other": 7}}))
    provider = web(server, headers=(("X-Api-Key", API_KEY),))
    assert provider.query(f"{server.url}/health?app=checkout") == 0.02
    (request,) = server.received
    assert (request.method, request.path) == ("GET", "/health?app=checkout")
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["accept"] == "application/json"
    assert API_KEY not in repr(provider)


def test_a_post_sends_its_json_body(server: JsonServer) -> None:
    server.answer("/query", Answer({"result": [{"value": "0.5"}]}))
    provider = web(server, "$.result[0].value", method="POST", body='{"app": "checkout"}')
    assert provider.query(f"{server.url}/query") == 0.5  # a numeric string is a number
    (request,) = server.received
    assert request.method == "POST" and json.loads(request.body) == {"app": "checkout"}
    assert request.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("body", "expected", "says"),
    [
        ({"data": {}}, NoData, "matched nothing"),
        ({"data": {"errorRate": None}}, NoData, "is null"),
        ({"data": {"errorRate": "NaN"}}, NoData, "is NaN"),
        ({"data": {"errorRate": "high"}}, ProviderError, "not a number"),
        ({"data": {"errorRate": True}}, ProviderError, "not a number"),
        ({"data": {"errorRate": {"v": 1}}}, ProviderError, "not a number"),
    ],
)
def test_answers_without_one_number_map_to_no_data_or_error(
    server: JsonServer, body: Any, expected: type[Exception], says: str
) -> None:
    server.answer("/h", Answer(body))
    with pytest.raises(expected, match=says):
        web(server).query(f"{server.url}/h")


def test_several_matches_are_several_series(server: JsonServer) -> None:
    server.answer("/h", Answer({"pods": [{"rate": 0.1}, {"rate": 0.2}]}))
    with pytest.raises(MultipleSeries, match="matched 2 values"):
        web(server, "$.pods[*].rate").query(f"{server.url}/h")
    assert web(server, "$.pods[?rate > 0.15].rate").query(f"{server.url}/h") == 0.2


@pytest.mark.parametrize(
    ("answer", "error_type", "says"),
    [
        (Answer({"error": "down"}, status=503), "http", "HTTP 503"),
        (Answer(raw=b"<html>oops</html>"), "bad_response", "not JSON"),
        (Answer(raw=b"[" + b"0," * MAX_BODY + b"0]"), "bad_response", "larger than"),
        (Answer(status=302, location="http://elsewhere.invalid/"), "http", "HTTP 302"),
    ],
)
def test_bad_answers_are_provider_errors_without_the_secret_header(
    server: JsonServer, answer: Answer, error_type: str, says: str
) -> None:
    server.answer("/h", answer)
    with pytest.raises(ProviderError, match=says) as info:
        web(server, headers=(("Authorization", f"Bearer {API_KEY}"),)).query(f"{server.url}/h")
    assert info.value.error_type == error_type
    assert API_KEY not in str(info.value)
    assert len(server.received) == 1  # a redirect is not followed


def test_a_slow_answer_is_a_client_timeout(server: JsonServer) -> None:
    server.answer("/slow", Answer({"data": {"errorRate": 0}}, delay=3))
    provider = provider_for("web", json_path="$.data.errorRate", timeout=0.2)
    with pytest.raises(ProviderError) as info:
        provider.query(f"{server.url}/slow")
    assert info.value.error_type == "client_timeout"


def test_a_closed_port_is_a_connection_error(server: JsonServer) -> None:
    url = server.url
    server.server.server_close()
    with pytest.raises(ProviderError) as info:
        web(server).query(f"{url}/h")
    assert info.value.error_type == "connection"


def test_the_outbound_policy_applies_before_anything_is_sent(server: JsonServer) -> None:
    strict = EgressPolicy.build(allowed_hosts="10.0.0.0/8")
    with pytest.raises(ProviderError) as info:
        web(server, egress=strict).query(f"{server.url}/h")
    assert info.value.error_type == "egress_refused"
    with pytest.raises(ProviderError) as info:
        web(server, egress=EgressPolicy.build(), insecure_skip_verify=True).query(
            "https://127.0.0.1:1/h"
        )
    assert info.value.error_type == "egress_refused" and "insecureSkipVerify" in str(info.value)
    assert server.received == []


def test_a_bad_json_path_is_refused_when_the_provider_is_built() -> None:
    with pytest.raises(ValueError, match="not a JSONPath"):
        provider_for("web", json_path="$.[oops")


def test_a_web_gate_cannot_replay_past_values(server: JsonServer) -> None:
    with pytest.raises(ProviderError, match="cannot read past values"):
        web(server).query_range(f"{server.url}/h", NOW, NOW, 1.0)


# --- through the GateChecker ---


def web_spec(server: JsonServer, **web_block: Any) -> Any:
    block = {
        "url": server.url + "/apps/{{namespace}}/{{green}}?window={{args.window}}",
        "jsonPath": "$.data.errorRate",
        "args": {"window": "5m"},
        "headers": [
            {"name": "X-Api-Key", "valueFrom": {"name": "health-api", "key": "key"}},
            {"name": "X-Team", "value": "payments"},
        ],
        **web_block,
    }
    return parse_spec(
        {
            "blue": {"deployment": "checkout-blue"},
            "green": {"deployment": "checkout-green"},
            "traffic": {"router": "service", "service": "checkout"},
            "steps": [{"setWeight": 100}],
            "gates": [{"name": "health", "web": block, "threshold": {"max": 0.05}}],
        }
    )


def checker(kube: FakeKube) -> GateChecker:
    return GateChecker(cast(Kube, kube), egress=EgressPolicy.build())


async def test_a_web_gate_reads_its_header_from_a_secret_and_renders_its_url(
    server: JsonServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.answer("/apps/shop/checkout-green", Answer({"data": {"errorRate": 0.01}}))
    kube = FakeKube({("shop", "health-api", "key"): API_KEY})
    gates = checker(kube)
    try:
        spec = web_spec(server)
        assert await gates.preflight(spec, "shop", "checkout") == []
        readings = await gates.measure(spec, "shop", "checkout", spec.gates, NOW)
    finally:
        gates.close()
    assert readings == {"health": Reading.of(0.01)}
    request = server.received[-1]
    assert request.path == "/apps/shop/checkout-green?window=5m"
    assert request.headers["x-api-key"] == API_KEY and request.headers["x-team"] == "payments"
    assert API_KEY not in caplog.text


async def test_web_gate_problems_are_named_by_field_before_the_run(server: JsonServer) -> None:
    kube = FakeKube({})
    gates = checker(kube)
    try:
        spec = web_spec(server, url=server.url + "/{{colour}}", jsonPath="$.[oops")
        problems = await gates.preflight(spec, "shop", "checkout")
        refused = web_spec(server, url="http://169.254.169.254/latest")
        refusals = await gates.preflight(refused, "shop", "checkout")
    finally:
        gates.close()
    assert problems[0].startswith("spec.gates[0].web.url: unknown template variable(s): colour")
    assert problems[1] == (
        "spec.gates[0].web.headers[0].valueFrom: Secret shop/health-api not found"
    )
    assert len(refusals) == 1 and refusals[0].startswith("spec.gates[0].web.url: gate 'health'")
    assert server.received == []


async def test_a_failing_endpoint_is_an_error_reading_without_the_secret(
    server: JsonServer,
) -> None:
    echoed = "the-echoed-secret-value"
    server.answer("/apps/shop/checkout-green", Answer({"error": f"bad key {echoed}"}, status=500))
    gates = checker(FakeKube({("shop", "health-api", "key"): echoed}))
    try:
        spec = web_spec(server)
        readings = await gates.measure(spec, "shop", "checkout", spec.gates, NOW)
    finally:
        gates.close()
    reading = readings["health"]
    assert reading.kind is ReadingKind.error and "HTTP 500" in reading.message
    assert "bad key <redacted>" in reading.message and echoed not in reading.message


def test_an_echoed_secret_header_is_redacted_from_every_message(server: JsonServer) -> None:
    server.answer("/multi", Answer({"v": [{"x": API_KEY}, {"x": API_KEY}]}))
    server.answer("/text", Answer({"v": [{"x": API_KEY}]}))
    headers = (("X-Api-Key", API_KEY), ("X-Team", "payments"))
    provider = web(server, "$.v[*].x", headers=headers, secret_headers=("X-Api-Key",))
    with pytest.raises(MultipleSeries) as several:
        provider.query(f"{server.url}/multi")
    with pytest.raises(ProviderError) as text:
        provider.query(f"{server.url}/text")
    for error in (several.value, text.value):
        assert API_KEY not in str(error) and "<redacted>" in str(error)
    assert text.value.error_type == "bad_response"
