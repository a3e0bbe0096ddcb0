"""Prometheus metric provider, built on ``prometheus_api_client.PrometheusConnect``.

Result mapping (HTTP API v1):

* instant vector with exactly one sample -> its value; scalar result -> its value;
* empty vector / matrix, NaN value -> :class:`NoData`; ``+Inf`` / ``-Inf`` are values;
* two or more series -> :class:`MultipleSeries` (message lists the label sets, truncated);
* connection refused, client timeout, HTTP error, ``status: error`` -> :class:`ProviderError`
  carrying Prometheus' ``error`` text when the response has one (``bad_data`` ->
  :class:`InvalidQuery`).

No retries are made here (a health gate should see an outage, not hide it behind back-off);
callers decide how many consecutive failures they tolerate.  Credentials never appear in
messages, reprs or logs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException

from cutover.api import Gate, PrometheusQuery, SecretKeyRef
from cutover.core.promql import syntax_problem
from cutover.egress import EgressPolicy, EgressRefused

from .base import GateRequest, InvalidQuery, MultipleSeries, NoData, ProviderError
from .http import gate_session

__all__ = ["PrometheusProvider", "PrometheusSource"]

_LOG = logging.getLogger(__name__)
_MAX_LISTED_SERIES = 5
_MAX_MESSAGE = 600
_REDACTED = "<redacted>"
# Points per range query of a replay: under Prometheus' limit of 11,000 per series.
REPLAY_POINTS = 10_000


class _HTTPStatusError(Exception):
    """Raised from a response hook for every non-200 answer, carrying the raw body."""

    def __init__(self, status_code: int, body: bytes) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        self.body = body


def _raise_on_error_status(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    if response.status_code != 200:
        raise _HTTPStatusError(response.status_code, response.content)


def _strip_userinfo(address: str) -> tuple[str, tuple[str, str] | None]:
    """Remove ``user:password@`` from an address, returning it separately."""
    parts = urlsplit(address)
    if parts.username is None and parts.password is None:
        return address, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, (parts.username or "", parts.password or "")


def _format_labels(metric: Mapping[str, Any]) -> str:
    name = str(metric.get("__name__", ""))
    labels = ", ".join(
        f"{key}={json.dumps(str(value))}"
        for key, value in sorted(metric.items())
        if key != "__name__"
    )
    return f"{name}{{{labels}}}"


def _parse_value(raw: Any) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise ProviderError(
            f"Prometheus returned a non-numeric sample value {str(raw)[:80]!r}",
            error_type="bad_response",
        ) from None


class PrometheusProvider:
    """A :class:`~cutover.providers.base.MetricProvider` backed by Prometheus' HTTP API."""

    kind = "prometheus"

    def __init__(
        self,
        address: str,
        *,
        bearer_token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        ca_file: str | None = None,
        insecure_skip_verify: bool = False,
        timeout: float = 5.0,
        egress: EgressPolicy | None = None,
    ) -> None:
        if not address:
            raise ValueError("Prometheus address must not be empty")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        address, userinfo = _strip_userinfo(address.rstrip("/"))
        if userinfo is not None and basic_auth is None:
            basic_auth = userinfo
        if bearer_token is not None and basic_auth is not None:
            raise ValueError("use either bearer_token or basic_auth, not both")
        self.address = address
        self.timeout = float(timeout)
        self._secrets = tuple(
            s
            for s in (bearer_token, *(basic_auth or ()))
            if s and len(s) >= 3  # redacting a 1-2 char string would mangle messages
        )
        if egress is not None:
            # Raises EgressRefused: the operator decides whether TLS may be skipped.
            egress.check_tls(address, insecure_skip_verify)
        # Every request through ``egress`` (when given); credentials never follow a redirect
        # to another origin.
        session = gate_session(egress)
        if insecure_skip_verify:
            session.verify = False
        elif ca_file is not None:
            session.verify = ca_file
        session.hooks["response"].append(_raise_on_error_status)
        headers = {"Authorization": f"Bearer {bearer_token}"} if bearer_token else None
        self._client = PrometheusConnect(
            url=address,
            headers=headers,
            auth=basic_auth,
            session=session,
            retry=False,  # no hidden retries/back-off: surface failures immediately
            timeout=self.timeout,  # annotated int upstream, passed through to requests
        )
        self._auth_kind = "bearer" if bearer_token else "basic" if basic_auth else "none"

    def __repr__(self) -> str:
        return (
            f"PrometheusProvider(address={self.address!r}, auth={self._auth_kind}, "
            f"timeout={self.timeout!r})"
        )

    def close(self) -> None:
        """Release the underlying HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> PrometheusProvider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- MetricProvider -------------------------------------------------------------------

    def query(self, promql: str) -> float:
        result = self._call(
            "query", lambda: self._client.custom_query(promql, params=self._server_params())
        )
        if _is_scalar(result):
            value = _parse_value(result[1])
            if math.isnan(value):
                raise NoData(f"query returned NaN: {_short(promql)}")
            return value
        series = self._series(result, promql)
        samples = series.get("value")
        if not isinstance(samples, list) or len(samples) != 2:
            raise NoData(f"query returned a series without a sample: {_short(promql)}")
        value = _parse_value(samples[1])
        if math.isnan(value):
            raise NoData(f"query returned NaN for {_format_labels(series.get('metric', {}))}")
        return value

    def query_range(
        self, promql: str, start: datetime, end: datetime, step_seconds: float
    ) -> list[float]:
        """Values of the single series, oldest first; NaN points are dropped.

        Prometheus' range API takes whole-second start/end (rounded by the client library);
        use timezone-aware datetimes.
        """
        _check_range(start, end, step_seconds)
        values = [value for _, value in self._range(promql, start, end, step_seconds)]
        if not values:
            raise NoData(f"range query returned no samples: {_short(promql)}")
        return values

    def replay(
        self, query: str, start: datetime, end: datetime, step_seconds: float
    ) -> list[tuple[float, float]]:
        """(unix time, value) of the query's single series at ``start``, ``start + step`` ...
        ``end``, oldest first; times without a sample (or NaN) are left out.

        Prometheus defines a range query as the expression evaluated as an instant query at
        each step, so the point at ``t`` is what a check at ``t`` would have read. It refuses
        more than 11,000 points per series, so a long span is asked in chunks of
        ``REPLAY_POINTS``: one query per chunk, not one per check.
        """
        _check_range(start, end, step_seconds)
        points: list[tuple[float, float]] = []
        chunk = timedelta(seconds=step_seconds * (REPLAY_POINTS - 1))
        at = start
        while at <= end:
            until = min(at + chunk, end)
            with contextlib.suppress(NoData):  # a chunk without samples: none in that span
                points.extend(self._range(query, at, until, step_seconds))
            at = until + timedelta(seconds=step_seconds)
        return points

    def check_query(self, promql: str) -> None:
        """Run ``promql`` as an instant query; raise ProviderError if Prometheus rejects it.

        Syntax errors raise :class:`InvalidQuery` (``bad_data``) with Prometheus' message.
        Connection problems and evaluation errors also raise ProviderError: a query that
        cannot be checked is not accepted.  No data / several series are fine here.
        """
        with contextlib.suppress(NoData, MultipleSeries):
            self.query(promql)

    # -- internals --------------------------------------------------------------------------

    def _range(
        self, promql: str, start: datetime, end: datetime, step_seconds: float
    ) -> list[tuple[float, float]]:
        """(time, value) points of the single series, NaN dropped; NoData for no series."""
        result = self._call(
            "query_range",
            lambda: self._client.custom_query_range(
                promql,
                start_time=start,
                end_time=end,
                step=f"{step_seconds:g}",
                params=self._server_params(),
            ),
        )
        if _is_scalar(result):  # not returned by Prometheus for range queries; be lenient
            points = [(float(result[0]), _parse_value(result[1]))]
        else:
            series = self._series(result, promql)
            raw = series.get("values")
            if not isinstance(raw, list):
                raise ProviderError(
                    "Prometheus returned a range result without values", error_type="bad_response"
                )
            points = [(_parse_time(point[0]), _parse_value(point[1])) for point in raw]
        return [(at, value) for at, value in points if not math.isnan(value)]

    def _server_params(self) -> dict[str, str]:
        # Ask Prometheus to give up on its side too, so slow queries don't pile up.
        return {"timeout": f"{self.timeout:g}s"}

    def _series(self, result: Any, promql: str) -> Mapping[str, Any]:
        if not isinstance(result, list):
            raise ProviderError(
                f"unexpected Prometheus result of type {type(result).__name__}",
                error_type="bad_response",
            )
        if not result:
            raise NoData(f"query returned no series: {_short(promql)}")
        if len(result) > 1:
            listed = ", ".join(
                _format_labels(s.get("metric", {}) if isinstance(s, Mapping) else {})
                for s in result[:_MAX_LISTED_SERIES]
            )
            more = len(result) - _MAX_LISTED_SERIES
            suffix = f", ... and {more} more" if more > 0 else ""
            message = f"query returned {len(result)} series, expected 1: {listed}{suffix}"
            raise MultipleSeries(self._redact(_truncate(message)))
        series = result[0]
        if not isinstance(series, Mapping):
            raise ProviderError("unexpected Prometheus series format", error_type="bad_response")
        return series

    def _call(self, endpoint: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except EgressRefused as exc:  # no request was sent
            self._fail(str(exc), error_type="egress_refused", cause=exc)
        except _HTTPStatusError as exc:
            self._raise_api_error(exc.status_code, exc.body)
        except PrometheusApiClientException as exc:  # only if the hook was bypassed
            self._fail(f"Prometheus {endpoint} failed: {exc}", error_type="http", cause=exc)
        except requests.exceptions.JSONDecodeError as exc:
            self._fail(
                f"Prometheus returned a non-JSON {endpoint} response: {exc}",
                error_type="bad_response",
                cause=exc,
            )
        except requests.Timeout as exc:
            self._fail(
                f"Prometheus at {self.address} did not answer within {self.timeout:g}s",
                error_type="client_timeout",
                cause=exc,
            )
        except requests.ConnectionError as exc:
            self._fail(
                f"cannot connect to Prometheus at {self.address}: {_root_cause(exc)}",
                error_type="connection",
                cause=exc,
            )
        except requests.RequestException as exc:
            self._fail(f"Prometheus {endpoint} request failed: {exc}", error_type="http", cause=exc)
        except (ValueError, KeyError, TypeError) as exc:  # invalid JSON / missing fields
            self._fail(
                f"Prometheus returned a malformed {endpoint} response: {exc}",
                error_type="bad_response",
                cause=exc,
            )

    def _raise_api_error(self, status_code: int, body: bytes) -> NoReturn:
        error_text: str | None = None
        error_type: str | None = None
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if isinstance(payload, Mapping) and payload.get("status") == "error":
            error_text = str(payload.get("error") or "") or None
            error_type = str(payload.get("errorType") or "") or None
        if error_text is None:
            snippet = body[:200].decode("utf-8", "replace").strip()
            error_text = f"HTTP {status_code} from Prometheus at {self.address}" + (
                f": {snippet}" if snippet else ""
            )
        cls = InvalidQuery if error_type == "bad_data" else ProviderError
        message = self._redact(_truncate(error_text))
        _LOG.debug("Prometheus error (HTTP %s, %s): %s", status_code, error_type, message)
        raise cls(message, error_type=error_type or "http", status_code=status_code)

    def _fail(self, message: str, *, error_type: str, cause: BaseException) -> NoReturn:
        safe = self._redact(_truncate(message))
        error = ProviderError(safe, error_type=error_type)
        _LOG.debug("Prometheus provider error: %s", safe)
        if self._redact(str(cause)) == str(cause):
            raise error from cause
        raise error from None

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text


def _check_range(start: datetime, end: datetime, step_seconds: float) -> None:
    if not step_seconds > 0:
        raise ValueError(f"step_seconds must be positive, got {step_seconds!r}")
    if end < start:
        raise ValueError("end must not be before start")


def _parse_time(raw: Any) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise ProviderError(
            f"Prometheus returned a non-numeric sample time {str(raw)[:80]!r}",
            error_type="bad_response",
        ) from None


def _is_scalar(result: Any) -> bool:
    """Scalar/string results are ``[<unix time>, "<value>"]``; vectors are lists of dicts."""
    return (
        isinstance(result, Sequence)
        and not isinstance(result, str)
        and len(result) == 2
        and isinstance(result[0], int | float)
        and isinstance(result[1], str)
    )


def _root_cause(exc: BaseException) -> str:
    seen: set[int] = set()
    current: BaseException = exc
    while id(current) not in seen:
        seen.add(id(current))
        reason = getattr(current, "reason", None)
        inner = reason if isinstance(reason, BaseException) else None
        if inner is None and current.args and isinstance(current.args[0], BaseException):
            inner = current.args[0]
        if inner is None:
            inner = current.__cause__ or current.__context__
        if inner is None:
            break
        current = inner
    text = str(current)
    if "Connection refused" in text or isinstance(current, ConnectionRefusedError):
        return "connection refused"
    return text or type(current).__name__


def _short(promql: str) -> str:
    return promql if len(promql) <= 120 else promql[:117] + "..."


def _truncate(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."


def _block(gate: Gate) -> PrometheusQuery:
    if gate.prometheus is None:
        raise ValueError(f"gate {gate.name!r} has no prometheus block")
    return gate.prometheus


class PrometheusSource:
    """The ``prometheus:`` block of a gate: a PromQL query (and a baseline for ``compare``)."""

    kind = "prometheus"
    checks_query = True

    def templates(self, gate: Gate) -> list[tuple[str, str]]:
        found = [("prometheus.query", _block(gate).query)]
        if gate.compare is not None:
            found.append(("compare.baseline", gate.compare.baseline))
        return found

    def request(self, gate: Gate, rendered: Mapping[str, str]) -> GateRequest:
        return GateRequest(
            query=rendered["prometheus.query"],
            baseline=rendered.get("compare.baseline"),
            address=_block(gate).address,
        )

    def syntax_problem(self, field: str, text: str) -> str | None:
        return syntax_problem(text)

    def secret_refs(self, gate: Gate) -> list[tuple[str, SecretKeyRef]]:
        auth = _block(gate).auth
        if auth is None:
            return []
        refs = [
            ("auth.bearerToken", auth.bearer_token),
            ("auth.username", auth.username),
            ("auth.password", auth.password),
        ]
        return [(field, ref) for field, ref in refs if ref is not None]

    def client_options(self, gate: Gate, secrets: Mapping[str, str]) -> dict[str, Any]:
        options: dict[str, Any] = {"address": _block(gate).address}
        if "auth.bearerToken" in secrets:
            options["bearer_token"] = secrets["auth.bearerToken"]
        elif "auth.username" in secrets and "auth.password" in secrets:
            options["basic_auth"] = (secrets["auth.username"], secrets["auth.password"])
        return options

    def describe(self, gate: Gate, request: GateRequest) -> str:
        return request.query
