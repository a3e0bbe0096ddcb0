"""Admission webhooks and the author's rights, on the real control plane with real users.

The operator serves its webhooks on 127.0.0.1; the chart's webhook configurations are applied
with that URL instead of the in-cluster Service (the only difference from `helm install`), and
the operator writes their caBundle itself. Two users act: ``admin`` (the namespace's ``admin``
role) and ``editor`` (Migrations, Deployments and Services, but no Secrets and no Jobs).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.controlplane import ControlPlane
from tests.support.admission import free_port, operator_env, webhook_configurations
from tests.support.manifests import app_manifest, migration_body

from .gates_support import condition
from .harness import (
    OperatorProcess,
    apply_text,
    migration,
    replicas,
    wait_for,
    wait_phase,
    writes,
)

pytestmark = pytest.mark.integration
AUTHOR = "cutover.io/author"


@pytest.fixture
def namespace_prefix() -> str:
    return "adm"


@dataclass
class User:
    name: str
    username: str
    kubeconfig: Path


def apply_rbac(cluster: ControlPlane, namespace: str, kind: str, doc: dict[str, Any]) -> None:
    """Applies a Role or RoleBinding in ``namespace`` (as the cluster's admin)."""
    full = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, **doc}
    full["metadata"] = {**doc["metadata"], "namespace": namespace}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(full))


def make_user(cluster: ControlPlane, namespace: str, name: str, role: dict[str, Any] | str) -> User:
    cluster.kubectl("create", "serviceaccount", name, "-n", namespace)
    if isinstance(role, str):
        ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}
    else:
        apply_rbac(cluster, namespace, "Role", {**role, "metadata": {"name": name}})
        ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}
    subjects = [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]
    # Every user may work with Migrations; the ClusterRoles do not know the CRD.
    for binding, roleref in ((name, ref), (f"{name}-migrations", MIGRATIONS_ROLE_REF)):
        binding_doc = {"metadata": {"name": binding}, "roleRef": roleref, "subjects": subjects}
        apply_rbac(cluster, namespace, "RoleBinding", binding_doc)
    path = cluster.workdir / "users" / f"{namespace}-{name}.kubeconfig"
    path.parent.mkdir(parents=True, exist_ok=True)
    cluster.service_account_kubeconfig(namespace, name, path)
    return User(name, f"system:serviceaccount:{namespace}:{name}", path)


MIGRATIONS_ROLE_REF = {
    "apiGroup": "rbac.authorization.k8s.io",
    "kind": "Role",
    "name": "migrations",
}
EDITOR_ROLE = {
    "rules": [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["*"]},
        {"apiGroups": [""], "resources": ["services", "configmaps"], "verbs": ["*"]},
    ]
}


@dataclass
class Setup:
    cluster: ControlPlane
    namespace: str
    operator: OperatorProcess
    admin: User
    editor: User

    def kubectl(self, user: User, *args: str, manifest: Any = None) -> Any:
        return self.cluster.kubectl(
            *args,
            "-n",
            self.namespace,
            check=False,
            kubeconfig=str(user.kubeconfig),
            input=None if manifest is None else json.dumps(manifest),
        )

    def apply(self, user: User, manifest: Any) -> Any:
        return self.kubectl(user, "apply", "-f", "-", manifest=manifest)


@pytest.fixture
def setup(cluster: ControlPlane, namespace: str) -> Iterator[Setup]:
    port = free_port()
    configurations = webhook_configurations(namespace, port)
    migrations_rule = {"apiGroups": ["cutover.io"], "resources": ["migrations"], "verbs": ["*"]}
    role = {"metadata": {"name": "migrations"}, "rules": [migrations_rule]}
    apply_rbac(cluster, namespace, "Role", role)
    names = [f"{d['kind'].lower()}/{d['metadata']['name']}" for d in configurations]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(configurations))
    operator = OperatorProcess(cluster, namespace, env=operator_env(namespace, port))
    try:
        admin = make_user(cluster, namespace, "admin", "admin")
        editor = make_user(cluster, namespace, "editor", EDITOR_ROLE)
        operator.start()
        found = Setup(cluster, namespace, operator, admin, editor)

        def answering() -> bool:
            probe = migration_body(
                "probe", "probe", {"steps": [{"setWeight": 50}, {"setWeight": 1}]}
            )
            result = found.kubectl(admin, "apply", "--dry-run=server", "-f", "-", manifest=probe)
            return "validate.migrations.cutover.io" in result.stderr and "denied" in result.stderr

        wait_for(answering, timeout=60, what="the operator's admission webhooks")
        yield found
    finally:
        operator.stop()
        # No later test may meet a webhook pointing at a stopped operator.
        cluster.kubectl("delete", "--ignore-not-found", *names)


def run_spec(hooks: dict[str, Any] | None = None, gates: list[Any] | None = None) -> dict[str, Any]:
    return {
        "steps": [{"setWeight": 50}, {"setWeight": 100}],
        **({"hooks": hooks} if hooks else {}),
        **({"gates": gates} if gates else {}),
    }


HOOK = {
    "name": "expand",
    "jobTemplate": {
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {
                    "annotations": {
                        "hook.cutover.test/outcome": "success",
                        "hook.cutover.test/delay": "300ms",
                    }
                },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "m", "image": "busybox", "command": ["true"]}],
                },
            },
        }
    },
}
SECRET_GATE = {
    "name": "errors",
    # Never reached: the run is refused (or, for the admin, the gate errors without Prometheus).
    "prometheus": {
        "address": "http://127.0.0.1:9/",
        "query": "vector(0)",
        "auth": {"bearerToken": {"name": "prom-token", "key": "token"}},
    },
    "threshold": {"max": 1},
}


def jobs(setup: Setup, since: int = 0) -> list[str]:
    """The hook Jobs created (per the audit log, so a Job deleted since still counts)."""
    return [
        w["name"]
        for w in writes(setup.cluster, setup.namespace, "jobs", since)
        if w["verb"] == "create"
    ]


def author(setup: Setup, name: str) -> dict[str, Any]:
    annotations = migration(setup.cluster, setup.namespace, name)["metadata"]["annotations"]
    return dict(json.loads(annotations[AUTHOR]))


# Each passes the CRD's OpenAPI schema (which already refuses e.g. an unknown router name or a
# duration that does not match its pattern): only the operator's models catch them.
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"steps": [{"setWeight": 50}, {"setWeight": 10}]}, "spec.steps[1].setWeight"),
        ({"traffic": {"router": "gatewayapi", "service": "shop"}}, "spec.traffic: router"),
        (
            {
                "gates": [
                    {
                        **SECRET_GATE,
                        "interval": "500ms",
                        "prometheus": {"address": "http://p", "query": "up"},
                    }
                ]
            },
            "spec.gates[0]: interval '500ms' is shorter than 1s",
        ),
    ],
    ids=["decreasing-weights", "router-without-its-route", "gate-interval-too-short"],
)
def test_an_invalid_spec_fails_at_apply_time_with_its_field_path(
    setup: Setup, changes: dict[str, Any], field: str
) -> None:
    body = migration_body("bad", "shop", {**run_spec(), **changes})
    result = setup.apply(setup.admin, body)
    assert result.returncode != 0
    assert 'admission webhook "validate.migrations.cutover.io" denied the request' in result.stderr
    assert f"InvalidSpec: {field}" in result.stderr, result.stderr
    assert setup.kubectl(setup.admin, "get", "migration", "bad").returncode != 0


def test_the_webhook_records_the_author_and_refuses_a_forged_one(setup: Setup) -> None:
    apply_text(setup.cluster, setup.namespace, app_manifest("shop", 2))
    body = migration_body("orders", "shop", {**run_spec(), "paused": True})
    assert setup.apply(setup.editor, body).returncode == 0
    assert author(setup, "orders")["username"] == setup.editor.username

    # A metadata-only change (here: a label) keeps the author...
    labelled = setup.kubectl(setup.admin, "label", "migration", "orders", "team=shop")
    assert labelled.returncode == 0, labelled.stderr
    assert author(setup, "orders")["username"] == setup.editor.username
    # ...a spec change records whoever made it.
    body["spec"]["steps"] = [{"setWeight": 100}]
    assert setup.apply(setup.admin, body).returncode == 0
    assert author(setup, "orders")["username"] == setup.admin.username

    forged = json.dumps({"username": "system:admin", "groups": ["system:masters"]})
    for user in (setup.editor, setup.admin):
        result = setup.kubectl(
            user, "annotate", "--overwrite", "migration", "orders", f"{AUTHOR}={forged}"
        )
        assert result.returncode != 0 and "AuthorSetByUser" in result.stderr, result.stderr
    assert author(setup, "orders")["username"] == setup.admin.username
    created = migration_body("other", "shop", run_spec())
    created["metadata"]["annotations"] = {AUTHOR: forged}
    result = setup.apply(setup.editor, created)
    assert result.returncode != 0 and "AuthorSetByUser" in result.stderr, result.stderr


def refused(setup: Setup, name: str, spec: dict[str, Any], user: User) -> dict[str, Any]:
    """``name`` applied by ``user``; it must fail in preflight, before anything was done."""
    assert setup.apply(user, migration_body(name, "shop", spec)).returncode == 0
    obj = wait_phase(setup.cluster, setup.namespace, name, "Failed", "Progressing", timeout=60)
    assert obj["status"]["phase"] == "Failed", obj["status"]
    return obj


def again_as(setup: Setup, user: User, name: str, spec: dict[str, Any]) -> None:
    """Deletes ``name`` and applies it again, as ``user``: the same spec, another author."""
    assert setup.kubectl(user, "delete", "migration", name).returncode == 0
    wait_for(
        lambda: setup.kubectl(user, "get", "migration", name).returncode != 0,
        timeout=30,
        what=f"{name} deleted",
    )
    assert setup.apply(user, migration_body(name, "shop", spec)).returncode == 0


def test_the_editors_hook_is_refused_and_the_admins_runs(setup: Setup) -> None:
    apply_text(setup.cluster, setup.namespace, app_manifest("shop", 2))
    since = len(setup.cluster.reads())
    obj = refused(setup, "orders", run_spec(hooks={"preShift": [HOOK]}), setup.editor)
    assert (obj["status"]["phase"], obj["status"]["reason"]) == ("Failed", "Forbidden")
    invalid = condition(obj["status"], "InvalidSpec")
    assert invalid["reason"] == "Forbidden"
    assert invalid["message"].startswith("Forbidden: ")
    assert f"user '{setup.editor.username}' may not create jobs.batch" in invalid["message"]
    assert "spec.hooks.preShift[0]" in invalid["message"]
    events = setup.cluster.kubectl(
        "get", "events", "-n", setup.namespace, "--field-selector", "reason=Forbidden", "-o", "name"
    ).stdout
    assert events.strip(), "no Forbidden Event"
    assert jobs(setup, since) == []
    assert replicas(setup.cluster, setup.namespace, "shop-green") == 0
    assert replicas(setup.cluster, setup.namespace, "shop-blue") == 2
    assert obj["status"].get("weight", 0) == 0

    # The admin's identical Migration gets past preflight: its hook Job runs, traffic moves.
    again_as(setup, setup.admin, "orders", run_spec(hooks={"preShift": [HOOK]}))
    wait_phase(setup.cluster, setup.namespace, "orders", "Succeeded", timeout=90)
    assert len(jobs(setup, since)) == 1
    assert replicas(setup.cluster, setup.namespace, "shop-green") == 2


def test_a_hook_with_a_service_account_needs_the_right_to_use_it(setup: Setup) -> None:
    apply_text(setup.cluster, setup.namespace, app_manifest("shop", 2))
    setup.cluster.kubectl("create", "serviceaccount", "migrator", "-n", setup.namespace)
    # A user who may create Jobs but not act as the migrator account.
    jobs_only = make_user(
        setup.cluster,
        setup.namespace,
        "jobs-only",
        {
            "rules": [
                {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]},
                *EDITOR_ROLE["rules"],
            ]
        },
    )
    hook = json.loads(json.dumps(HOOK))
    hook["jobTemplate"]["spec"]["template"]["spec"]["serviceAccountName"] = "migrator"
    since = len(setup.cluster.reads())
    obj = refused(setup, "orders", run_spec(hooks={"preShift": [hook]}), jobs_only)
    message = condition(obj["status"], "InvalidSpec")["message"]
    assert "may not impersonate serviceaccounts/migrator" in message, message
    assert "create jobs" not in message
    assert jobs(setup, since) == []


def test_a_gate_secret_the_editor_cannot_read_is_refused(setup: Setup) -> None:
    apply_text(setup.cluster, setup.namespace, app_manifest("shop", 2))
    setup.cluster.kubectl(
        "create",
        "secret",
        "generic",
        "prom-token",
        "--from-literal=token=s3cret",
        "-n",
        setup.namespace,
    )
    since = len(setup.cluster.reads())
    obj = refused(setup, "orders", run_spec(gates=[SECRET_GATE]), setup.editor)
    message = condition(obj["status"], "InvalidSpec")["message"]
    assert f"user '{setup.editor.username}' may not get secrets/prom-token" in message, message
    assert "spec.gates[0].prometheus.auth.bearerToken" in message
    assert replicas(setup.cluster, setup.namespace, "shop-green") == 0
    assert operator_secret_reads(setup, since) == 0  # not even for the gate's preflight
    assert "s3cret" not in setup.operator.log()

    # The admin may read it: the same Migration starts and moves traffic, and only now does
    # the operator read the Secret.
    again_as(setup, setup.admin, "orders", run_spec(gates=[SECRET_GATE]))
    wait_for(
        lambda: replicas(setup.cluster, setup.namespace, "shop-green") > 0,
        timeout=60,
        what="traffic on green",
    )
    assert operator_secret_reads(setup, since) > 0


def operator_secret_reads(setup: Setup, since: int) -> int:
    """Requests of the operator's ServiceAccount for the gate's Secret, from the audit log."""
    operator = f"system:serviceaccount:{setup.namespace}:cutover-"
    return sum(
        1
        for entry in setup.cluster.reads(since)
        if entry["resource"] == "secrets"
        and entry["name"] == "prom-token"
        and str(entry["user"]).startswith(operator)
    )


def test_a_new_migration_carries_the_finalizer_from_its_creation(setup: Setup) -> None:
    """The mutating webhook puts the operator's finalizer on at creation: a run waits for it
    before any write, and Kopf, finding it there, sends no PATCH to add it."""
    apply_text(setup.cluster, setup.namespace, app_manifest("shop", 2))
    since = setup.cluster.stats()["last_seq"]
    assert setup.apply(setup.admin, migration_body("shop", "shop", run_spec())).returncode == 0
    wait_for(
        lambda: (migration(setup.cluster, setup.namespace, "shop").get("status") or {}).get(
            "weight"
        ),
        timeout=60,
        what="the first step",
    )
    assert (
        "cutover.io/finalizer"
        in migration(setup.cluster, setup.namespace, "shop")["metadata"]["finalizers"]
    )
    operator = f"system:serviceaccount:{setup.namespace}:"
    added = [
        e
        for e in setup.cluster.requests(since)
        if e["resource"] == "migrations"
        and e["subresource"] is None
        and e["method"] == "PATCH"
        and str(e["user"]).startswith(operator)
        and "finalizers" in json.dumps(e["body"])
    ]
    assert added == [], added


def test_deleting_works_with_the_operator_stopped(setup: Setup) -> None:
    apply_text(setup.cluster, setup.namespace, app_manifest("shop", 2))
    for name in ("first", "second"):
        body = migration_body(name, "shop", {**run_spec(), "paused": True})
        body["spec"]["blue"]["deployment"] = f"{name}-blue"  # two claimants need two apps
        body["spec"]["green"]["deployment"] = f"{name}-green"
        assert setup.apply(setup.admin, body).returncode == 0

    def finalized() -> bool:
        return all(
            "cutover.io/finalizer"
            in (migration(setup.cluster, setup.namespace, name)["metadata"].get("finalizers") or [])
            for name in ("first", "second")
        )

    # Both carry the operator's finalizer: without the operator, nothing would remove it.
    wait_for(finalized, timeout=30, what="the operator's finalizers")
    setup.operator.stop()
    # Changes wait for the operator (failurePolicy Fail)...
    labelled = setup.kubectl(setup.admin, "label", "migration", "first", "x=y")
    assert labelled.returncode != 0 and "failed calling webhook" in labelled.stderr
    # ...deletions do not: the finalizer of a Migration being deleted may be removed by hand.
    deleted = setup.kubectl(setup.admin, "delete", "migration", "first", "--wait=false")
    assert deleted.returncode == 0, deleted.stderr
    removed = setup.kubectl(
        setup.admin,
        "patch",
        "migration",
        "first",
        "--type=merge",
        "-p",
        '{"metadata":{"finalizers":null}}',
    )
    assert removed.returncode == 0, removed.stderr
    wait_for(
        lambda: setup.kubectl(setup.admin, "get", "migration", "first").returncode != 0,
        timeout=30,
        what="first deleted",
    )
    # The namespace goes too (its controller deletes the Migration; the finalizer, by hand).
    setup.cluster.kubectl("delete", "namespace", setup.namespace, "--wait=false")
    wait_for(
        lambda: migration(setup.cluster, setup.namespace, "second")["metadata"].get(
            "deletionTimestamp"
        ),
        timeout=60,
        what="the namespace controller deleting second",
    )
    setup.cluster.kubectl(
        "patch",
        "migration",
        "second",
        "-n",
        setup.namespace,
        "--type=merge",
        "-p",
        '{"metadata":{"finalizers":null}}',
    )
    wait_for(
        lambda: (
            setup.cluster.kubectl("get", "namespace", setup.namespace, check=False).returncode != 0
        ),
        timeout=90,
        what="the namespace deleted",
    )
