"""Helpers for gate tests: apps behind the replicas router, Migration manifests, Events, timing.

Every app lives in its own namespace, and the traffic exporter labels its series with
``<namespace>/<deployment>``: queries select them with ``deployment="{{namespace}}/{{green}}"``,
so no two tests (or runs of the benchmark) ever share a series.
"""

from __future__ import annotations

import json
from typing import Any

from devtools.controlplane import ControlPlane
from tests.support import manifests
from tests.support.manifests import migration_body
from tests.support.patches import replicas_patched

from .harness import apply_text, get, writes

# Green's (or blue's) share of failed requests over the last 5 s (scrape interval 1 s).
_ERROR_RATIO = (
    'sum(rate(http_requests_total{deployment="{{namespace}}/{{SIDE}}",code="500"}[5s]))'
    ' / sum(rate(http_requests_total{deployment="{{namespace}}/{{SIDE}}"}[5s]))'
)
GREEN_ERROR_RATIO = _ERROR_RATIO.replace("SIDE", "green")
BLUE_ERROR_RATIO = _ERROR_RATIO.replace("SIDE", "blue")
# p99 latency over the last 5 s.
_LATENCY_P99 = (
    "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket"
    '{deployment="{{namespace}}/{{SIDE}}"}[5s])))'
)
GREEN_P99 = _LATENCY_P99.replace("SIDE", "green")
BLUE_P99 = _LATENCY_P99.replace("SIDE", "blue")


def series(namespace: str, deployment: str) -> str:
    """The exporter's ``deployment`` label for a Deployment of a test namespace."""
    return f"{namespace}/{deployment}"


def app_manifest(app: str, blue_replicas: int = 2) -> str:
    """``<app>-blue`` (serving), ``<app>-green`` (at zero) and one Service selecting both."""
    return manifests.app_manifest(app, blue_replicas)


def migration_manifest(
    name: str,
    app: str,
    gates: list[dict[str, Any]],
    steps: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> str:
    defaults = {"steps": steps or [{"setWeight": 50}, {"setWeight": 100}], "gates": gates}
    return json.dumps(migration_body(name, app, defaults | {"progressDeadline": "1m"} | spec))


def gate(
    name: str, address: str, query: str, *, interval: str = "1s", **fields: Any
) -> dict[str, Any]:
    """A gate manifest; ``prometheus`` options go in ``fields['prometheus']`` (merged)."""
    prometheus = {"address": address, "query": query, **fields.pop("prometheus", {})}
    return {"name": name, "interval": interval, "prometheus": prometheus, **fields}


def start_app(
    cluster: ControlPlane,
    namespace: str,
    app: str,
    name: str,
    gates: list[dict[str, Any]],
    steps: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> None:
    apply_text(cluster, namespace, app_manifest(app))
    apply_text(cluster, namespace, migration_manifest(name, app, gates, steps, **spec))


def status(cluster: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    obj = get(cluster, namespace, "migrations.cutover.io", name)
    return dict(obj.get("status") or {})


def condition(state: dict[str, Any], type_: str) -> dict[str, Any]:
    found = [c for c in state.get("conditions", []) if c["type"] == type_]
    assert found, f"no {type_} condition in {state}"
    return dict(found[0])


def gate_record(state: dict[str, Any], name: str) -> dict[str, Any]:
    found = [g for g in state.get("gates", []) if g["name"] == name]
    assert found, f"no gate {name} in {state.get('gates')}"
    return dict(found[0])


def events(cluster: ControlPlane, namespace: str, about: str | None = None) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "-n", namespace, "events", "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(out).get("items", [])
    return [e for e in items if about is None or e["involvedObject"].get("name") == about]


def replica_writes(
    cluster: ControlPlane, namespace: str, since: int = 0
) -> list[tuple[str, int, float]]:
    """(deployment, replicas, wall time) of every replica change written in ``namespace``."""
    found = []
    for entry in writes(cluster, namespace, "deployments", since=since):
        count = replicas_patched(entry.get("body"))
        if entry["method"] == "PATCH" and count is not None:
            found.append((str(entry["name"]), int(count), float(entry["received"])))
    return found


def first_write_of(
    cluster: ControlPlane, namespace: str, deployment: str, replicas: int, after: float
) -> float | None:
    """Wall time of the first PATCH setting ``deployment`` to ``replicas`` after ``after``."""
    for name, count, when in replica_writes(cluster, namespace):
        if name == deployment and count == replicas and when >= after:
            return when
    return None
