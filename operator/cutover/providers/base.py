"""The metric-provider protocol and the errors every provider raises.

Providers are blocking (synchronous); the operator calls them through a bounded thread-pool
executor.  Error messages never contain credentials.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

__all__ = ["InvalidQuery", "MetricProvider", "MultipleSeries", "NoData", "ProviderError"]


class NoData(Exception):
    """The query returned no usable sample: empty vector/matrix, NaN, or no samples."""


class MultipleSeries(Exception):
    """The query returned more than one series where exactly one was expected."""


class ProviderError(Exception):
    """The provider could not answer: connection error, timeout, HTTP error, PromQL error.

    ``str(err)`` is Prometheus' own error text when there is one.  ``error_type`` is
    Prometheus' ``errorType`` (``bad_data``, ``execution``, ``timeout``, ``canceled``,
    ``internal``, ``unavailable``, ...) or a provider-side one (``connection``,
    ``client_timeout``, ``http``, ``bad_response``, ``egress_refused`` when the operator's
    outbound policy refused the address and nothing was sent); ``status_code`` is the HTTP
    status when a response was received.
    """

    def __init__(
        self, message: str, *, error_type: str | None = None, status_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.status_code = status_code


class InvalidQuery(ProviderError):
    """The query is not valid PromQL (Prometheus answered ``errorType: bad_data``)."""


@runtime_checkable
class MetricProvider(Protocol):
    """A source of metric values, queried with the provider's query language."""

    def query(self, promql: str) -> float:
        """Evaluate an instant query; return the value of its single sample.

        Raises NoData, MultipleSeries or ProviderError.
        """
        ...

    def query_range(
        self, promql: str, start: datetime, end: datetime, step_seconds: float
    ) -> list[float]:
        """Evaluate a range query; return the values of its single series, oldest first.

        Raises NoData, MultipleSeries or ProviderError, like :meth:`query`.
        """
        ...

    def check_query(self, promql: str) -> None:
        """Raise ProviderError (InvalidQuery for syntax errors) if ``promql`` is not valid.

        Returns normally when the query is valid, even if it currently has no data or
        several series.
        """
        ...
