"""4b. Hostile input and broken clusters through the real operator (see docs/reliability.md).

One operator watches one namespace holding, at once: ~20 invalid or unstartable Migrations, a
healthy one (it must complete), two Migrations claiming the same Deployments (the second is
refused), and runs whose green Deployment, blue Deployment or Service is deleted mid-run.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

from devtools.controlplane import ControlPlane
from tests.integration.harness import (
    OperatorProcess,
    apply_text,
    new_namespace,
    replicas,
    wait_for,
)
from tests.support.manifests import migration

from .support import (
    TERMINAL,
    app_manifest,
    list_json,
    migration_manifest,
    ok_writes,
    paced_steps,
)

BASE: dict[str, Any] = {
    "blue": {"deployment": "inv-blue"},
    "green": {"deployment": "inv-green"},
    "traffic": {"router": "replicas", "service": "inv"},
    "steps": [{"setWeight": 50}, {"setWeight": 100}],
}
GATE = {
    "name": "errors",
    "prometheus": {"address": "http://127.0.0.1:9", "query": "vector(0)"},
    "threshold": {"max": 1},
}


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    node: Any = spec
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
    node[path[-1]] = value
    return spec


# (name, spec, the condition that must say why)
INVALID: list[tuple[str, dict[str, Any]]] = [
    ("slash-blue", _with(("blue", "deployment"), "other/checkout")),
    ("slash-green", _with(("green", "deployment"), "kube-system/coredns")),
    ("dotdot", _with(("blue", "deployment"), "../inv-blue")),
    ("unicode", _with(("green", "deployment"), "grün‮")),
    ("type-steps", _with(("steps",), "all of them")),
    ("type-weight", _with(("steps", 0, "setWeight"), "fifty")),
    ("huge-weight", _with(("steps", 0, "setWeight"), 10**18)),
    ("many-steps", _with(("steps",), [{"setWeight": 100}] * 10_000)),
    ("no-steps", _with(("steps",), [])),
    ("decreasing", _with(("steps",), [{"setWeight": 60}, {"setWeight": 10}])),
    ("same", _with(("green", "deployment"), "inv-blue")),
    ("router", _with(("traffic", "router"), "carrier-pigeon")),
    ("gate-injection", _with(("gates",), [{**GATE, "name": '"}) or vector(1) #'}])),
    (
        "query-arg-key",
        _with(
            ("gates",),
            [
                {
                    **GATE,
                    "prometheus": {
                        **GATE["prometheus"],
                        "args": {'a"}) or vector(1) #': "x"},
                        "query": "vector({{args.a}})",
                    },
                }
            ],
        ),
    ),
    (
        "secret-slash",
        _with(
            ("gates",),
            [
                {
                    **GATE,
                    "prometheus": {
                        **GATE["prometheus"],
                        "auth": {"bearerToken": {"name": "kube-system/token", "key": "t"}},
                    },
                }
            ],
        ),
    ),
    ("duration", _with(("progressDeadline",), "forever")),
    ("extra-field", _with(("traffic", "namespace"), "other")),
    ("null-blue", _with(("blue",), None)),
]
# Parse, but cannot start: PreflightFailed, nothing written.
UNSTARTABLE: list[tuple[str, dict[str, Any]]] = [
    ("missing-blue", _with(("blue", "deployment"), "nope-blue")),
    ("missing-service", _with(("traffic", "service"), "nope")),
    (
        "missing-secret",
        _with(
            ("gates",),
            [
                {
                    **GATE,
                    "prometheus": {
                        **GATE["prometheus"],
                        "auth": {"bearerToken": {"name": "not-there", "key": "t"}},
                    },
                }
            ],
        ),
    ),
]
SLOW = paced_steps("3s")


def _raw_migration(name: str, spec: dict[str, Any]) -> str:
    return json.dumps(migration(name, spec))


def _status(items: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    return dict((items.get(name) or {}).get("status") or {})


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), {})


def test_hostile_input_and_broken_clusters_through_the_operator(
    cluster: ControlPlane,
) -> None:
    namespace = new_namespace(cluster, "hostile")
    for app in ("inv", "ok", "claim", "gone-green", "gone-blue", "gone-svc"):
        apply_text(cluster, namespace, app_manifest(app))
    since = cluster.stats()["last_seq"]
    operator = OperatorProcess(cluster, namespace).start()
    rejected: dict[str, str] = {}
    try:
        for name, spec in INVALID + UNSTARTABLE:
            result = cluster.kubectl(
                "apply", "-n", namespace, "-f", "-", input=_raw_migration(name, spec), check=False
            )
            if result.returncode != 0:  # the CRD schema refused it at the door: also fine
                rejected[name] = result.stderr.strip()[:200]
        apply_text(cluster, namespace, migration_manifest("ok", "ok", {"steps": SLOW}))
        apply_text(cluster, namespace, migration_manifest("claim-1", "claim", {"steps": SLOW}))
        wait_for(
            lambda: (
                _status(
                    {m["metadata"]["name"]: m for m in list_json(cluster, namespace, "mig")},
                    "claim-1",
                ).get("phase")
                in ("Progressing", *TERMINAL)
            ),
            timeout=30,
        )
        apply_text(cluster, namespace, migration_manifest("claim-2", "claim", {"steps": SLOW}))
        for app in ("gone-green", "gone-blue", "gone-svc"):
            apply_text(cluster, namespace, migration_manifest(app, app, {"steps": SLOW}))

        deleted: set[str] = set()

        def settled() -> bool:
            items = {m["metadata"]["name"]: m for m in list_json(cluster, namespace, "mig")}
            for app, kind, obj in (
                ("gone-green", "deployment", "gone-green-green"),
                ("gone-blue", "deployment", "gone-blue-blue"),
                ("gone-svc", "service", "gone-svc"),
            ):
                if app not in deleted and _status(items, app).get("weight") == 25:
                    cluster.kubectl("delete", "-n", namespace, kind, obj, "--wait=false")
                    deleted.add(app)
            names = [n for n, _ in INVALID + UNSTARTABLE if n not in rejected]
            # Green deleted: the rollback finishes without it (blue gets its size back).
            names += ["ok", "claim-1", "claim-2", "gone-svc", "gone-green"]
            done = all(_status(items, n).get("phase") in TERMINAL for n in names)
            held = _status(items, "gone-blue").get("reason") == "BlueMissing"
            return done and held

        try:
            wait_for(settled, timeout=60, interval=0.3, what="every Migration settled")
        except AssertionError:
            for m in list_json(cluster, namespace, "mig"):
                st = m.get("status") or {}
                print(m["metadata"]["name"], st.get("phase"), st.get("reason"), st.get("message"))
            print("rejected:", rejected)
            raise
        time.sleep(1.0)
        items = {m["metadata"]["name"]: m for m in list_json(cluster, namespace, "mig")}
    finally:
        operator.stop()

    problems = []
    for name, _ in INVALID:
        if name in rejected:
            continue
        status = _status(items, name)
        invalid = _condition(status, "InvalidSpec")
        if status.get("phase") != "Failed" or invalid.get("status") != "True":
            problems.append(f"{name}: {status.get('phase')} {invalid}")
        elif not invalid.get("message", "").startswith("spec"):
            problems.append(f"{name}: unclear message {invalid.get('message')!r}")
    for name, _ in UNSTARTABLE:
        status = _status(items, name)
        if status.get("phase") != "Failed" or status.get("reason") != "PreflightFailed":
            problems.append(f"{name}: {status.get('phase')} {status.get('reason')}")
    # The second claim on the same Deployments is refused, naming the first.
    claim = _status(items, "claim-2")
    if claim.get("reason") != "PreflightFailed" or "claim-1" not in claim.get("message", ""):
        problems.append(
            f"claim-2: {claim.get('phase')} {claim.get('reason')} {claim.get('message')}"
        )
    for name, phase, reason in (
        ("ok", "Succeeded", "Succeeded"),
        ("claim-1", "Succeeded", "Succeeded"),
        ("gone-green", "RolledBack", "TrafficRestored"),
        ("gone-svc", "Succeeded", "Succeeded"),
        ("gone-blue", "Paused", "BlueMissing"),
    ):
        status = _status(items, name)
        if (status.get("phase"), status.get("reason")) != (phase, reason):
            problems.append(
                f"{name}: {status.get('phase')}/{status.get('reason')}, want {phase}/{reason}"
            )
    # Nothing but the runs that may move touched a Deployment or a Service.
    touched = {
        (e["resource"], str(e.get("name")))
        for e in ok_writes(cluster.requests(since=since), namespace)
        if e["resource"] in ("deployments", "services") and e["method"] in ("PATCH", "PUT")
    }
    allowed = {"ok", "claim", "gone-green", "gone-blue", "gone-svc"}
    stray = {t for t in touched if t[1].rsplit("-", 1)[0] not in allowed and t[1] not in allowed}
    if stray:
        problems.append(f"writes to objects of invalid Migrations: {sorted(stray)}")
    # Every start's claims check (claim-2's refusal included) read the Migrations the watch
    # delivered: the namespace was listed by Kopf's watch and once for the store, not per start.
    listed = [
        e["uri"]
        for e in cluster.reads(since)
        if e.get("verb") == "list"
        and e.get("resource") == "migrations"
        and e.get("namespace") == namespace
        and str(e.get("user") or "").startswith("system:serviceaccount:")
    ]
    if len(listed) > 2:
        problems.append(f"{len(listed)} LISTs of Migrations for ~30 starts: {listed}")
    rolled = _condition(_status(items, "gone-green"), "RolledBack")
    if rolled.get("reason") != "GreenMissing":
        problems.append(f"gone-green: RolledBack condition {rolled}")
    if replicas(cluster, namespace, "gone-green-blue") != 4:
        problems.append("gone-green: blue did not get its size back")
    print(
        f"\n[hostile-operator] invalid={len(INVALID)} unstartable={len(UNSTARTABLE)}"
        f" schema-rejected={len(rejected)} problems={len(problems)}"
    )
    assert problems == [], problems
