"""Traffic routers, one module each, chosen by ``spec.traffic.router``.

The registry fails fast: an unknown kind is an error, never a fallback to another router.
"""

from __future__ import annotations

from collections.abc import Callable

from cutover.api import Router
from cutover.kube import Kube
from cutover.routers.base import Target, TrafficRouter, TrafficRouterError
from cutover.routers.gatewayapi import GatewayAPIRouter
from cutover.routers.istio import IstioRouter
from cutover.routers.nginx import NginxRouter
from cutover.routers.replicas import ReplicasRouter
from cutover.routers.service import ServiceRouter

__all__ = ["Target", "TrafficRouter", "TrafficRouterError", "router_for"]

_REGISTRY: dict[Router, Callable[[Kube], TrafficRouter]] = {
    Router.replicas: ReplicasRouter,
    Router.service: ServiceRouter,
    Router.gatewayapi: GatewayAPIRouter,
    Router.istio: IstioRouter,
    Router.nginx: NginxRouter,
}
# Kinds that are part of the API but have no router yet (none at the moment).
_PLANNED: tuple[Router, ...] = ()


def router_for(kind: Router, kube: Kube) -> TrafficRouter:
    try:
        known = Router(kind)
    except ValueError:
        known = None
    factory = _REGISTRY.get(known) if known is not None else None
    if factory is not None:
        return factory(kube)
    if known in _PLANNED:
        raise TrafficRouterError(f"router {known.value!r} is not available yet")
    names = ", ".join(sorted(r.value for r in Router))
    raise ValueError(f"unknown traffic router {str(kind)!r}; known routers: {names}")
