"""Metric providers and the registry of provider kinds.

A gate names its provider by its block (``prometheus:``, ``web:``, ``job:``, ``sql:``);
``source_for(gate)`` is that provider's :class:`GateSource` (templates, Secrets, client options)
and ``provider_for(kind, ...)`` builds its client; a source that is also a
:class:`ClusterMeasure` (``job``) measures through the API server instead. Unknown kinds fail
fast. Adding a provider is its file here, its line in ``_SOURCES``/``_REGISTRY``, its block in
``cutover.api`` and its docs page.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from cutover.api import Gate

from .base import (
    ClusterMeasure,
    GateCheck,
    GateRequest,
    GateSource,
    InvalidQuery,
    MetricProvider,
    MultipleSeries,
    NoData,
    NotYet,
    ProviderError,
    Replayable,
)
from .job import JobSource
from .prometheus import PrometheusProvider, PrometheusSource
from .sql import SqlProvider, SqlSource
from .web import WebProvider, WebSource

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
    "PrometheusProvider",
    "ProviderError",
    "Replayable",
    "SqlProvider",
    "WebProvider",
    "can_replay",
    "known_providers",
    "provider_for",
    "register_provider",
    "source_for",
    "variables",
]

_REGISTRY: dict[str, Callable[..., MetricProvider]] = {
    "prometheus": PrometheusProvider,
    "web": WebProvider,
    "sql": SqlProvider,
}
_SOURCES: dict[str, GateSource] = {
    "prometheus": PrometheusSource(),
    "web": WebSource(),
    "job": JobSource(),
    "sql": SqlSource(),
}


def source_for(gate: Gate) -> GateSource:
    """The provider a gate names by its block."""
    source = _SOURCES.get(gate.provider)
    if source is None:
        raise ValueError(
            f"unknown metric provider {gate.provider!r}; known: {', '.join(sorted(_SOURCES))}"
        )
    return source


def variables(base: Mapping[str, str], gate: Gate) -> dict[str, str]:
    """The variables of ``gate``'s templates: ``base`` plus the block's ``{{args.NAME}}``."""
    args: Mapping[str, str] = getattr(gate.source, "args", {})
    return {**base, **{f"args.{k}": v for k, v in args.items()}}


def known_providers() -> list[str]:
    """The registered provider kinds, sorted."""
    return sorted(_REGISTRY)


def can_replay(kind: str) -> bool:
    """Whether the provider registered as ``kind`` declares :class:`Replayable` (without
    building one: some providers need a cluster to be built)."""
    factory = _REGISTRY.get(kind)
    return isinstance(factory, type) and issubclass(factory, Replayable)


def register_provider(kind: str, factory: Callable[..., MetricProvider]) -> None:
    """Register a provider factory under ``kind`` (e.g. for tests or plugins)."""
    if not kind:
        raise ValueError("provider kind must not be empty")
    if kind in _REGISTRY:
        raise ValueError(f"metric provider {kind!r} is already registered")
    _REGISTRY[kind] = factory


def provider_for(kind: str, **kwargs: object) -> MetricProvider:
    """Build the provider registered as ``kind`` with ``kwargs``.

    Raises ``ValueError("unknown metric provider 'x'; known: prometheus")`` for unknown kinds.
    """
    factory = _REGISTRY.get(kind)
    if factory is None:
        raise ValueError(f"unknown metric provider {kind!r}; known: {', '.join(known_providers())}")
    return factory(**kwargs)
