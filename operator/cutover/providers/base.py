"""The metric-provider protocol and the errors every provider raises.

Providers are blocking (synchronous); the operator calls them through a bounded thread-pool
executor.  Error messages never contain credentials.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from cutover.api import Gate, SecretKeyRef

if TYPE_CHECKING:
    from cutover.kube import Kube

__all__ = [
    "ClusterMeasure",
    "GateCheck",
    "GateRequest",
    "GateSource",
    "InvalidQuery",
    "MetricProvider",
    "MultipleSeries",
    "NoData",
    "NotYet",
    "ProviderError",
    "Replayable",
]


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


class NotYet(Exception):
    """The measurement is still under way (a gate's Job is running): no verdict yet."""


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


@runtime_checkable
class Replayable(Protocol):
    """Optional capability of a provider: answering a gate's query as it would have been
    answered in the past, which ``cutover backtest`` replays a gate with.

    A provider declares it by having ``replay``; one without it (a web endpoint, a Job) is
    reported by the backtest as unable to replay, and nothing else needs to know."""

    def replay(
        self, query: str, start: datetime, end: datetime, step_seconds: float
    ) -> list[tuple[float, float]]:
        """(unix time, value) of the answer a check at ``start``, ``start + step`` ... ``end``
        would have had, oldest first; times without an answer are left out.

        As few requests as the provider allows (not one per time). Raises MultipleSeries or
        ProviderError (InvalidQuery for a query the provider rejects)."""
        ...


@dataclass(frozen=True)
class GateRequest:
    """What one check of a gate asks its provider, after its variables were substituted.

    ``address`` is what the outbound policy checks (``address_field`` names it in the gate's
    block); ``options`` are the rendered, non-secret client options beyond the block's own
    (e.g. a web gate's body), part of what a client is reused for."""

    query: str
    baseline: str | None = None
    address: str = ""
    address_field: str = "address"
    options: tuple[tuple[str, Any], ...] = field(default=())


class GateSource(Protocol):
    """A provider's gate block: how a gate naming ``kind`` is checked, linted and planned.

    One per provider file, registered in ``cutover.providers``; gatecheck and the CLI only
    dispatch to it. ``templates`` paths are relative to the gate (``prometheus.query``)."""

    kind: str
    # Whether preflight asks the provider to check its query (``check_query``).
    checks_query: bool

    def templates(self, gate: Gate) -> list[tuple[str, str]]:
        """(field, template) for every text with variables, in the order they are rendered."""
        ...

    def request(self, gate: Gate, rendered: Mapping[str, str]) -> GateRequest:
        """The request of a check from the rendered ``templates``."""
        ...

    def syntax_problem(self, field: str, text: str) -> str | None:
        """What is wrong with a rendered text without asking anyone, or None."""
        ...

    def secret_refs(self, gate: Gate) -> list[tuple[str, SecretKeyRef]]:
        """(field within the block, reference) of every Secret the gate reads, CA excluded."""
        ...

    def client_options(self, gate: Gate, secrets: Mapping[str, str]) -> dict[str, Any]:
        """The provider factory's keyword arguments from the block and its Secrets' values
        (keyed like ``secret_refs``); the caller adds ``egress``, ``timeout``, TLS and CA."""
        ...

    def describe(self, gate: Gate, request: GateRequest) -> str:
        """One line for ``cutover plan``: what a check asks."""
        ...


@dataclass(frozen=True)
class GateCheck:
    """Which check of which run asks: what a provider acting in the cluster names and owns its
    objects by. ``evaluation`` counts the run's recorded checks of the gate from 1, so it stays
    the same until a check is recorded: a restarted operator asks about the same object."""

    namespace: str
    migration: str
    uid: str
    run_id: str
    gate: str
    evaluation: int


@runtime_checkable
class ClusterMeasure(Protocol):
    """A provider whose measurement is an object in the cluster (a Job), not a query: gatecheck
    hands it the API client and the check instead of building a ``MetricProvider``."""

    async def measure_in_cluster(
        self, kube: Kube, gate: Gate, check: GateCheck
    ) -> tuple[float, str]:
        """The value of this check and what the provider knows about it (e.g. why a Job
        failed, or ""); raises NotYet while it runs, ProviderError if it cannot tell."""
        ...
