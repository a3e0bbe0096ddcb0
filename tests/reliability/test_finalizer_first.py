"""A new run moves no traffic before Kopf's finalizer is on its Migration: one deleted before
then is gone at once, and nothing would put traffic back on blue. Kopf spawns the run's daemon
in the same cycle as it sends the finalizer, so the fault proxy holds the operator's writes to
the Migration object itself (that PATCH; not its /status) for a few seconds."""

from __future__ import annotations

import json
from typing import Any

from cutover.api import FINALIZER
from devtools.controlplane import ControlPlane
from tests.integration.harness import (
    OperatorProcess,
    apply_text,
    migration,
    new_namespace,
    wait_for,
)
from tests.support.controlplane import epoch, operator_kubeconfig

from .support import app_manifest, migration_manifest, ok_writes

HELD = 3.0  # seconds the proxy holds each write to the Migration object


def test_a_runs_first_traffic_write_waits_for_the_finalizer(cluster: ControlPlane) -> None:
    namespace = new_namespace(cluster, "finalizer")
    since = cluster.stats()["last_seq"]
    with cluster.fault_proxy() as proxy:
        kubeconfig = operator_kubeconfig(
            cluster, namespace, cluster.workdir / "operators", server=proxy.url
        )
        proxy.set_faults(write_latency=HELD, write_latency_path=r"/migrations/[^/]+$")
        operator = OperatorProcess(cluster, namespace, kubeconfig=kubeconfig).start()
        try:
            apply_text(cluster, namespace, app_manifest("shop"))
            spec = {"steps": [{"setWeight": 25}, {"pause": {}}, {"setWeight": 100}]}
            apply_text(cluster, namespace, migration_manifest("shop", "shop", spec))
            wait_for(
                lambda: _stepped_and_finalized(migration(cluster, namespace, "shop")),
                timeout=60,
                what="the first step and the finalizer",
            )
        finally:
            operator.stop()
    operator_user = f"system:serviceaccount:{namespace}:"
    mine = [
        e
        for e in ok_writes(cluster.requests(since=since), namespace)
        if str(e["user"] or "").startswith(operator_user)
    ]
    finalized = [
        e
        for e in mine
        if e["resource"] == "migrations"
        and e["subresource"] is None
        and FINALIZER in json.dumps(e["body"])
    ]
    assert finalized, "Kopf never added its finalizer"
    on_at = epoch(finalized[0]["time"])
    traffic = [e for e in mine if e["resource"] == "deployments"]
    assert traffic, "the first step wrote no Deployment"
    early = [(e["name"], round(on_at - e["received"], 2)) for e in traffic if e["received"] < on_at]
    assert early == [], f"traffic moved before the finalizer was on (seconds before): {early}"


def _stepped_and_finalized(obj: dict[str, Any]) -> bool:
    weight = (obj.get("status") or {}).get("weight")
    return weight == 25 and FINALIZER in (obj["metadata"].get("finalizers") or [])
