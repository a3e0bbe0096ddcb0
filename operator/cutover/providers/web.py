"""The ``web`` provider: an HTTP GET or POST to a URL answering JSON, a JSONPath picking the number.

Result mapping:

* exactly one match that is a number (or a numeric string) -> its value; NaN -> :class:`NoData`;
* no match, or a match that is ``null`` -> :class:`NoData` (the gate's ``onNoData`` decides);
* several matches -> :class:`MultipleSeries`;
* connection refused, timeout, a non-2xx answer, a body that is not JSON or a match that is not
  a number -> :class:`ProviderError` (the gate's ``onError`` decides after its limit).

Every request goes through :func:`~cutover.providers.http.gate_session`, so the operator's
outbound policy applies to each connection. Redirects are not followed: a header read from a
Secret (an API key) must not travel to wherever a redirect points. Header values never appear
in messages, reprs or logs, and answers are read up to ``MAX_BODY`` bytes.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NoReturn

import requests
from jsonpath_ng.ext.parser import parse as parse_json_path

from cutover.api import Gate, SecretKeyRef, WebMethod, WebQuery
from cutover.egress import EgressPolicy, EgressRefused

from .base import GateRequest, MultipleSeries, NoData, ProviderError
from .http import gate_session

__all__ = ["MAX_BODY", "WebProvider", "WebSource", "json_path_problem"]

_LOG = logging.getLogger(__name__)
MAX_BODY = 1 << 20
_MAX_SNIPPET = 200


def json_path_problem(expression: str) -> str | None:
    """Why ``expression`` is not a JSONPath jsonpath-ng can evaluate, or None."""
    try:
        parse_json_path(expression)
    except Exception as error:  # jsonpath-ng raises its own errors and plain ones alike
        text = str(error).strip()
        return f"not a JSONPath: {text.splitlines()[0] if text else type(error).__name__}"
    return None


class WebProvider:
    """A :class:`~cutover.providers.base.MetricProvider` asking a URL; ``query(url)``."""

    kind = "web"

    def __init__(
        self,
        *,
        json_path: str,
        method: str = WebMethod.get.value,
        body: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        secret_headers: tuple[str, ...] = (),
        ca_file: str | None = None,
        insecure_skip_verify: bool = False,
        timeout: float = 5.0,
        egress: EgressPolicy | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        problem = json_path_problem(json_path)
        if problem is not None:
            raise ValueError(problem)
        self.method = WebMethod(method).value
        self.json_path = json_path
        self.timeout = float(timeout)
        self._path = parse_json_path(json_path)
        self._body = body.encode() if body is not None else None
        self._headers = dict(headers)
        # An endpoint may echo a request header into its answer, which messages quote.
        self._secrets = tuple(
            value for name, value in headers if name in secret_headers and len(value) >= 3
        )
        if body is not None:
            self._headers.setdefault("Content-Type", "application/json")
        self._headers.setdefault("Accept", "application/json")
        self._insecure = insecure_skip_verify
        self._egress = egress
        self._session = gate_session(egress)
        if insecure_skip_verify:
            self._session.verify = False
        elif ca_file is not None:
            self._session.verify = ca_file

    def __repr__(self) -> str:  # header values stay out of reprs
        return f"WebProvider(method={self.method!r}, json_path={self.json_path!r})"

    def close(self) -> None:
        self._session.close()

    def query(self, url: str) -> float:
        try:
            return self._query(url)
        except ProviderError as error:
            safe = self._redact(error.message)
            if safe == error.message:
                raise
            raise ProviderError(
                safe, error_type=error.error_type, status_code=error.status_code
            ) from None
        except (NoData, MultipleSeries) as error:
            safe = self._redact(str(error))
            if safe == str(error):
                raise
            raise type(error)(safe) from None

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        return text

    def _query(self, url: str) -> float:
        payload = self._fetch(url)
        matches = [match.value for match in self._path.find(payload)]
        if not matches:
            raise NoData(f"{self.json_path} matched nothing in the answer of {url}")
        if len(matches) > 1:
            shown = ", ".join(json.dumps(m)[:40] for m in matches[:5])
            raise MultipleSeries(f"{self.json_path} matched {len(matches)} values: {shown}")
        return _number(matches[0], self.json_path)

    def query_range(
        self, promql: str, start: datetime, end: datetime, step_seconds: float
    ) -> list[float]:
        raise ProviderError("a web gate cannot read past values", error_type="unsupported")

    def check_query(self, promql: str) -> None:
        """Nothing to ask the server: the JSONPath was checked when this provider was built."""

    def _fetch(self, url: str) -> Any:
        try:
            if self._egress is not None:
                self._egress.check_tls(url, self._insecure)
            with self._session.request(
                self.method,
                url,
                data=self._body,
                headers=self._headers,
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
            ) as response:
                raw = response.raw.read(MAX_BODY + 1, decode_content=True)
                status = response.status_code
        except EgressRefused as refusal:  # nothing was sent
            _fail(str(refusal), "egress_refused")
        except requests.Timeout:
            _fail(f"{url} did not answer within {self.timeout:g}s", "client_timeout")
        except requests.ConnectionError as error:
            _fail(f"cannot connect to {url}: {_cause(error)}", "connection")
        except requests.RequestException as error:
            _fail(f"request to {url} failed: {type(error).__name__}", "http")
        if not 200 <= status < 300:
            snippet = raw[:_MAX_SNIPPET].decode("utf-8", "replace").strip()
            detail = f": {snippet}" if snippet else ""
            _fail(f"HTTP {status} from {url}{detail}", "http", status)
        if len(raw) > MAX_BODY:
            _fail(f"the answer of {url} is larger than {MAX_BODY} bytes", "bad_response")
        try:
            return json.loads(raw)
        except ValueError:
            _fail(f"the answer of {url} is not JSON", "bad_response")


def _number(value: Any, json_path: str) -> float:
    if value is None:
        raise NoData(f"{json_path} is null")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ProviderError(
            f"{json_path} is {json.dumps(value)[:80]}, not a number", error_type="bad_response"
        )
    try:
        number = float(value)
    except ValueError:
        raise ProviderError(
            f"{json_path} is {str(value)[:80]!r}, not a number", error_type="bad_response"
        ) from None
    if math.isnan(number):
        raise NoData(f"{json_path} is NaN")
    return number


def _fail(message: str, error_type: str, status_code: int | None = None) -> NoReturn:
    _LOG.debug("web provider error: %s", message)
    raise ProviderError(message, error_type=error_type, status_code=status_code) from None


def _cause(error: BaseException) -> str:
    text = str(error)
    return "connection refused" if "Connection refused" in text else type(error).__name__


def _block(gate: Gate) -> WebQuery:
    if gate.web is None:
        raise ValueError(f"gate {gate.name!r} has no web block")
    return gate.web


def _secret_field(index: int) -> str:
    return f"headers[{index}].valueFrom"


class WebSource:
    """The ``web:`` block of a gate: a URL (and a POST body) with variables, and a JSONPath."""

    kind = "web"
    checks_query = False

    def templates(self, gate: Gate) -> list[tuple[str, str]]:
        web = _block(gate)
        found = [("web.url", web.url)]
        if web.body is not None:
            found.append(("web.body", web.body))
        found.append(("web.jsonPath", web.json_path))
        return found

    def request(self, gate: Gate, rendered: Mapping[str, str]) -> GateRequest:
        options: list[tuple[str, Any]] = [("json_path", rendered["web.jsonPath"])]
        if "web.body" in rendered:
            options.append(("body", rendered["web.body"]))
        url = rendered["web.url"]
        return GateRequest(query=url, address=url, address_field="url", options=tuple(options))

    def syntax_problem(self, field: str, text: str) -> str | None:
        if field == "web.jsonPath":
            return json_path_problem(text)
        if field == "web.body":
            try:
                json.loads(text)
            except ValueError as error:
                return f"not JSON: {error}"
        return None

    def secret_refs(self, gate: Gate) -> list[tuple[str, SecretKeyRef]]:
        return [
            (_secret_field(i), h.value_from)
            for i, h in enumerate(_block(gate).headers)
            if h.value_from is not None
        ]

    def client_options(self, gate: Gate, secrets: Mapping[str, str]) -> dict[str, Any]:
        web = _block(gate)
        headers = tuple(
            (h.name, h.value if h.value is not None else secrets[_secret_field(i)])
            for i, h in enumerate(web.headers)
        )
        secret = tuple(h.name for h in web.headers if h.value_from is not None)
        return {"method": web.method.value, "headers": headers, "secret_headers": secret}

    def describe(self, gate: Gate, request: GateRequest) -> str:
        json_path = dict(request.options)["json_path"]
        return f"{_block(gate).method.value} {request.query} -> {json_path}"
