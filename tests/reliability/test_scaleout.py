"""Past one operator process (issue 16): a standby takes over from a killed active replica, and
three shards split the Migrations between them, each seeing only its own.

Both tests assert outcomes, never timing: every run ends where it should with exactly the ideal
replica writes (a doubled or skipped step shows as a wrong sequence), and each process did only
its share. The takeover time is printed, for docs/performance.md.
"""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import unquote

from cutover.scaleout import SHARD_LABEL, shard_of
from devtools.controlplane import ControlPlane
from tests.integration.harness import ROOT, OperatorProcess, apply_text, new_namespace, wait_for

from .support import (
    Scenario,
    app_manifest,
    list_json,
    migration_manifest,
    paced_steps,
    replica_patches,
    sequence_anomalies,
)

PEERING_CRDS = ROOT / "charts" / "cutover" / "crds" / "kopf-peering.yaml"
WEIGHTS = [25, 50, 100]


def start_migrations(cluster: ControlPlane, namespace: str, count: int, pause: str) -> list[str]:
    names = [f"m{index}" for index in range(count)]
    for name in names:
        apply_text(cluster, namespace, app_manifest(name))
        apply_text(
            cluster, namespace, migration_manifest(name, name, {"steps": paced_steps(pause)})
        )
    return names


def statuses(cluster: ControlPlane, namespace: str) -> dict[str, dict[str, object]]:
    return {
        m["metadata"]["name"]: m.get("status") or {} for m in list_json(cluster, namespace, "mig")
    }


def all_succeeded(cluster: ControlPlane, namespace: str, names: list[str]) -> bool:
    phases = {name: s.get("phase") for name, s in statuses(cluster, namespace).items()}
    return all(phases.get(name) == "Succeeded" for name in names)


def write_anomalies(
    cluster: ControlPlane, namespace: str, names: list[str], since: int
) -> list[str]:
    entries = cluster.requests(since=since)
    problems = []
    for name in names:
        scenario = Scenario("healthy", name, {}, "Succeeded", WEIGHTS)
        patches = replica_patches(entries, namespace, name)
        problems += [f"{namespace}/{name}: {p}" for p in sequence_anomalies(patches, scenario)]
    return problems


def peers(cluster: ControlPlane, namespace: str) -> dict[str, object]:
    out = cluster.kubectl("get", "-n", namespace, "kopfpeering", "cutover", "-o", "json")
    return dict(json.loads(out.stdout).get("status") or {})


def test_a_standby_takes_over_when_the_active_operator_is_killed(cluster: ControlPlane) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(PEERING_CRDS))
    cluster.wait_established(["kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"])
    namespace = new_namespace(cluster, "ha")
    apply_text(
        cluster,
        namespace,
        "apiVersion: kopf.dev/v1\nkind: KopfPeering\nmetadata:\n  name: cutover\n",
    )
    lifetime = 6
    env = {"CUTOVER_PEERING_LIFETIME": str(lifetime)}
    # The chart's RBAC with two replicas: peering rights on the KopfPeering, nothing more.
    active = OperatorProcess(
        cluster,
        namespace,
        env=env,
        chart_values={"replicas": 2},
        peering="cutover",
        name=f"{namespace}-a",
    ).start()
    standby = OperatorProcess(
        cluster,
        namespace,
        env=env,
        kubeconfig=active.kubeconfig,
        peering="cutover",
        name=f"{namespace}-b",
    )
    try:
        wait_for(lambda: len(peers(cluster, namespace)) == 1, timeout=60, what="the first peer")
        standby.start()
        # The younger replica stands by: Kopf starts every operator paused and resumes it only
        # when no live peer outranks it (and pauses every operator when two share the highest
        # priority, which is why priorities come from start times).
        wait_for(lambda: len(peers(cluster, namespace)) == 2, timeout=60, what="the second peer")
        since = cluster.stats()["last_seq"]
        names = start_migrations(cluster, namespace, 4, "3s")
        wait_for(
            lambda: (
                all(int(s.get("weight") or 0) >= 25 for s in statuses(cluster, namespace).values())
                and len(statuses(cluster, namespace)) == len(names)
            ),
            timeout=90,
            what="every run to take its first step on the active replica",
        )
        assert "Resuming operations" not in standby.log()
        active.kill()
        killed = time.monotonic()
        wait_for(
            lambda: "Resuming operations" in standby.log(),
            timeout=lifetime * 10,
            what="the standby to take over",
        )
        print(f"\ntakeover {time.monotonic() - killed:.1f}s after SIGKILL (lifetime {lifetime}s)")
        wait_for(
            lambda: all_succeeded(cluster, namespace, names),
            timeout=120,
            what=f"every run to succeed: {statuses(cluster, namespace)}",
        )
        time.sleep(1.0)  # a late doubled write would show now
        assert write_anomalies(cluster, namespace, names, since) == []
    finally:
        standby.stop()
        active.stop()


def namespaces_one_per_shard(cluster: ControlPlane, shards: int) -> list[str]:
    chosen: dict[int, str] = {}
    while len(chosen) < shards:
        name = f"shard-{uuid.uuid4().hex[:8]}"
        chosen.setdefault(shard_of(name, shards), name)
    return [new_namespace(cluster, name=chosen[index]) for index in range(shards)]


def test_three_shards_split_the_migrations_and_each_watches_only_its_own(
    cluster: ControlPlane,
) -> None:
    shards = 3
    namespaces = namespaces_one_per_shard(cluster, shards)
    since = cluster.stats()["last_seq"]
    # Cluster-wide RBAC, as every shard of a real install watches the whole cluster through its
    # label selector. The processes watch only this test's namespaces (shard-*): the session's
    # control plane holds other tests' finished Migrations, which are not this test's to run.
    first = OperatorProcess(
        cluster,
        namespaces[0],
        chart_values={"watchNamespace": ""},
        watch="shard-*",
        env={"CUTOVER_SHARDS": str(shards), "CUTOVER_SHARD": "0"},
        name=f"{namespaces[0]}-shard0",
    )
    operators = [first] + [
        OperatorProcess(
            cluster,
            namespaces[0],
            kubeconfig=first.kubeconfig,
            watch="shard-*",
            env={"CUTOVER_SHARDS": str(shards), "CUTOVER_SHARD": str(index)},
            name=f"{namespaces[0]}-shard{index}",
        )
        for index in range(1, shards)
    ]
    try:
        for operator in operators:
            operator.start()
        # No webhook here: shard 0 labels the unlabelled Migrations for their owners.
        names = {ns: start_migrations(cluster, ns, 2, "1s") for ns in namespaces}
        for index, ns in enumerate(namespaces):
            wait_for(
                lambda ns=ns: all_succeeded(cluster, ns, names[ns]),
                timeout=120,
                what=f"every run in {ns} (shard {index}) to succeed",
            )
            labels = {
                m["metadata"]["labels"].get(SHARD_LABEL) for m in list_json(cluster, ns, "mig")
            }
            assert labels == {str(index)}, (ns, labels)
        time.sleep(1.0)
        for ns in namespaces:
            assert write_anomalies(cluster, ns, names[ns], since) == []
        # Each process handled its own namespace's Migrations and never another shard's.
        for index, operator in enumerate(operators):
            log = operator.log()
            for other, ns in enumerate(namespaces):
                seen = f"[{ns}/m0]" in log
                assert seen == (other == index), (index, ns, seen)
        # The API server did the filtering: each process listed every shard namespace's
        # Migrations with its own shard's selector (a watch is audited only when it ends; the
        # lists without one are the claims check), and the sweeper asked for the unlabelled.
        lists = [
            (e.get("path"), unquote(e["uri"]))
            for e in cluster.reads(since)
            if e.get("verb") in ("list", "watch")
            and e.get("resource") == "migrations"
            and str(e.get("user") or "").startswith("system:serviceaccount:")
        ]
        sweep = f"{SHARD_LABEL} notin (0,1,2)"
        assert any(uri.endswith(f"labelSelector={sweep}") for _, uri in lists), lists
        owners = {f"{SHARD_LABEL}={index}" for index in range(shards)}
        for ns in namespaces:
            path = f"/apis/cutover.io/v1alpha1/namespaces/{ns}/migrations"
            selectors = {
                uri.split("labelSelector=")[1].split("&")[0]
                for where, uri in lists
                if where == path and "labelSelector=" in uri
            }
            assert selectors == owners, (ns, lists)
    finally:
        for operator in operators:
            operator.stop()
