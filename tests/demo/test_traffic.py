"""The traffic simulator's routing model and error script, without a cluster."""

from __future__ import annotations

from typing import Any

import pytest

from devtools.demo.traffic import ErrorScript, compute_shares, ready_pods


def deployment(name: str, version: str, replicas: int, ready: int | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "template": {"metadata": {"labels": {"app": "checkout", "version": version}}},
        },
        "status": {"readyReplicas": replicas if ready is None else ready},
    }


def service(name: str, **selector: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"selector": selector}}


BOTH = service("checkout", app="checkout")


def test_replica_split_follows_ready_pods() -> None:
    shares = compute_shares(
        "checkout",
        [deployment("blue", "blue", 3), deployment("green", "green", 1)],
        [BOTH],
    )
    assert shares.by_deployment == {"blue": 0.75, "green": 0.25}
    assert "selector app=checkout" in shares.source


def test_pods_not_ready_get_no_traffic_and_scaled_down_pods_leave_at_once() -> None:
    # green asked for 2 but only 1 is ready; blue scaled 3 -> 2 before its status caught up.
    blue = deployment("blue", "blue", 2, ready=3)
    green = deployment("green", "green", 2, ready=1)
    assert ready_pods(blue) == 2 and ready_pods(green) == 1
    shares = compute_shares("checkout", [blue, green], [BOTH])
    assert shares.by_deployment == pytest.approx({"blue": 2 / 3, "green": 1 / 3})


def test_service_selector_picks_one_version() -> None:
    shares = compute_shares(
        "checkout",
        [deployment("blue", "blue", 4), deployment("green", "green", 4)],
        [service("checkout", app="checkout", version="green")],
    )
    assert shares.by_deployment == {"green": 1.0}


def test_httproute_weights_split_between_backend_services() -> None:
    route = {
        "metadata": {"name": "checkout"},
        "spec": {
            "rules": [
                {
                    "backendRefs": [
                        {"name": "checkout-blue", "weight": 90},
                        {"name": "checkout-green", "weight": 10},
                    ]
                }
            ]
        },
    }
    shares = compute_shares(
        "checkout",
        [deployment("blue", "blue", 4), deployment("green", "green", 4)],
        [
            BOTH,
            service("checkout-blue", app="checkout", version="blue"),
            service("checkout-green", app="checkout", version="green"),
        ],
        [route],
    )
    assert shares.by_deployment == pytest.approx({"blue": 0.9, "green": 0.1})
    assert shares.source.startswith("HTTPRoute")


def test_no_ready_pod_means_no_traffic() -> None:
    shares = compute_shares("checkout", [deployment("blue", "blue", 0)], [BOTH])
    assert shares.by_deployment == {}
    assert compute_shares("missing", [deployment("blue", "blue", 1)], [BOTH]).by_deployment == {}


def test_error_script_trips_at_the_second_step_and_stays_bad() -> None:
    script = ErrorScript(healthy=0.005, bad=0.3)
    assert script.green_error_ratio(0.0) == 0.005
    assert script.green_error_ratio(0.25) == 0.005
    assert script.green_error_ratio(0.5) == 0.3
    assert script.green_error_ratio(0.0) == 0.3  # rolled back: still a bad release
    healthy = ErrorScript(healthy=0.005)
    assert healthy.green_error_ratio(1.0) == 0.005
