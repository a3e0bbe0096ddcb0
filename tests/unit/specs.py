"""Spec builders shared by the unit tests."""

from __future__ import annotations

import copy
from typing import Any

from cutover.api import MigrationSpec, parse_spec

GATE: dict[str, Any] = {
    "name": "error-rate",
    "prometheus": {
        "address": "http://prometheus.monitoring:9090",
        "query": 'sum(rate(http_requests_total{deployment="{{green}}",code=~"5.."}[1m]))',
    },
    "threshold": {"max": 0.01},
    "interval": "30s",
    "failureLimit": 1,
    "inconclusiveLimit": 2,
    "consecutiveErrorLimit": 4,
    "onNoData": "inconclusive",
}

ISSUE_SPEC: dict[str, Any] = {
    "blue": {"deployment": "checkout-blue"},
    "green": {"deployment": "checkout-green"},
    "traffic": {"router": "replicas", "service": "checkout"},
    "steps": [
        {"setWeight": 10},
        {"pause": {"duration": "2m"}},
        {"setWeight": 50},
        {"pause": {}},
        {"setWeight": 100},
    ],
    "gates": [GATE],
    "rollback": {"automatic": True},
    "progressDeadline": "10m",
    "paused": False,
}


def raw(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(ISSUE_SPEC)
    spec.update(copy.deepcopy(changes))
    return spec


def spec(**changes: Any) -> MigrationSpec:
    return parse_spec(raw(**changes))


def gate(**changes: Any) -> dict[str, Any]:
    result = copy.deepcopy(GATE)
    result.update(changes)
    return result
