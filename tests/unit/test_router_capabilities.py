"""What each router can do is data the models and the core ask (api.ROUTER_CAPABILITIES)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cutover.api import ROUTER_CAPABILITIES, MigrationSpec, Router, Shift
from cutover.core.plan import green_replicas_needed


def spec(router: Router, **traffic: object) -> MigrationSpec:
    blocks = {
        Router.service: {"service": "app"},
        Router.gatewayapi: {"gatewayAPI": {"httpRoute": "app"}},
        Router.istio: {"istio": {"virtualService": "app"}},
        Router.nginx: {"nginx": {"ingress": "app"}},
    }
    return MigrationSpec.model_validate(
        {
            "blue": {"deployment": "app-blue"},
            "green": {"deployment": "app-green"},
            "traffic": {"router": router.value, **blocks.get(router, {}), **traffic},
            "steps": [{"setWeight": 100}],
        }
    )


def test_every_router_says_what_it_can_do() -> None:
    assert set(ROUTER_CAPABILITIES) == set(Router)


@pytest.mark.parametrize("router", list(Router))
def test_green_is_sized_by_how_the_router_shifts(router: Router) -> None:
    needed = green_replicas_needed(spec(router), total=4, weight=25)
    # Pods decide the split: a quarter of the pods; otherwise green is full size up front.
    assert needed == (1 if router.capabilities.shift is Shift.pods else 4)


@pytest.mark.parametrize("router", list(Router))
def test_only_routers_that_see_requests_accept_stickiness(router: Router) -> None:
    sticky = {"stickiness": {"cookie": {"name": "cutover"}}}
    if router.capabilities.sees_requests:
        assert spec(router, **sticky).traffic.stickiness is not None
    else:
        with pytest.raises(ValidationError, match="cannot keep users on green; use gatewayapi"):
            spec(router, **sticky)
