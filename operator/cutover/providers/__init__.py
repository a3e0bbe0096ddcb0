"""Metric providers and a small registry of provider kinds.

``provider_for("prometheus", address=...)`` builds a provider; unknown kinds fail fast.
"""

from __future__ import annotations

from collections.abc import Callable

from .base import InvalidQuery, MetricProvider, MultipleSeries, NoData, ProviderError
from .prometheus import PrometheusProvider

__all__ = [
    "InvalidQuery",
    "MetricProvider",
    "MultipleSeries",
    "NoData",
    "PrometheusProvider",
    "ProviderError",
    "known_providers",
    "provider_for",
    "register_provider",
]

_REGISTRY: dict[str, Callable[..., MetricProvider]] = {
    "prometheus": PrometheusProvider,
}


def known_providers() -> list[str]:
    """The registered provider kinds, sorted."""
    return sorted(_REGISTRY)


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
