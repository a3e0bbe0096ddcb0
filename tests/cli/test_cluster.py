"""Every cluster command against the cluster; a thread stands in for the operator."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cutover import api
from cutover.cli import app
from devtools.controlplane import ControlPlane
from tests.support.controlplane import new_namespace, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MIGRATION = """\
apiVersion: cutover.io/v1alpha1
kind: Migration
metadata:
  name: {name}
  namespace: {namespace}
spec:
  blue: {{deployment: checkout-blue}}
  green: {{deployment: checkout-green}}
  traffic: {{router: replicas, service: checkout}}
  steps:
    - setWeight: 25
    - pause: {{}}
    - setWeight: 100
"""


def cli(cluster: ControlPlane, *args: str) -> tuple[int, str, str]:
    env = {"COLUMNS": "120", "NO_COLOR": "1", "KUBECONFIG": cluster.kubeconfig}
    result = CliRunner(env=env).invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def create(cluster: ControlPlane, name: str, namespace: str = "default") -> None:
    if namespace != "default":
        cluster.kubectl("create", "namespace", namespace, check=False)
    cluster.kubectl("apply", "-f", "-", input=MIGRATION.format(name=name, namespace=namespace))


def set_status(custom: Any, name: str, namespace: str = "default", **status: Any) -> None:
    custom.patch_namespaced_custom_object_status(
        api.GROUP, api.VERSION, namespace, api.PLURAL, name, {"status": status}
    )


def get(custom: Any, name: str, namespace: str = "default") -> dict[str, Any]:
    obj: dict[str, Any] = custom.get_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, name
    )
    return obj


@pytest.fixture()
def operator(custom: Any) -> Iterator[Callable[[str, dict[str, Any]], None]]:
    """Start a fake operator for one Migration: it handles the request annotation once."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(name: str, result: dict[str, Any]) -> None:
        def loop() -> None:
            while not stop.is_set():
                annotations = get(custom, name)["metadata"].get("annotations") or {}
                value = annotations.get(api.REQUEST_ANNOTATION)
                if value:
                    _verb, rid = value.split(":", 1)
                    set_status(custom, name, lastRequest=rid, **result)
                    return
                time.sleep(0.1)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        threads.append(thread)

    yield start
    stop.set()
    for thread in threads:
        thread.join(timeout=5)


def test_list_and_status(cluster: ControlPlane, custom: Any) -> None:
    create(cluster, "alpha")
    create(cluster, "beta", namespace="team")
    set_status(custom, "alpha", phase="Progressing", currentStepIndex=1, weight=25)
    code, out, _ = cli(cluster, "list")
    assert code == 0 and "alpha" in out and "beta" not in out
    assert out.splitlines()[0].split() == ["NAME", "PHASE", "STEP", "WEIGHT", "AGE"]
    code, out, _ = cli(cluster, "list", "-A", "-o", "json")
    rows = {(r["namespace"], r["name"]): r for r in json.loads(out)}
    assert (
        rows[("default", "alpha")]["step"] == "2/3" and rows[("default", "alpha")]["weight"] == 25
    )
    assert rows[("team", "beta")]["phase"] == "Pending"
    code, out, _ = cli(cluster, "list", "-n", "team", "-o", "yaml")
    assert code == 0 and "name: beta" in out

    set_status(custom, "alpha", phase="Paused", reason="PauseStep")
    code, out, _ = cli(cluster, "status", "alpha")
    assert code == 0 and "PAUSED" in out and "2 of 3" in out
    assert "waiting for `cutover promote`" in out
    code, out, _ = cli(cluster, "status", "alpha", "-o", "json")
    report = json.loads(out)
    assert report["status"] == "PAUSED" and report["weight"] == 25
    assert report["rollback"]["state"] == "AVAILABLE"


def test_not_found_is_a_one_liner(cluster: ControlPlane) -> None:
    code, out, err = cli(cluster, "status", "missing")
    assert out == ""
    assert code == 1
    assert err == 'error: Migration "missing" not found in namespace "default"\n'
    code, _, err = cli(cluster, "abort", "missing", "-n", "team")
    assert code == 1 and 'not found in namespace "team"' in err


def test_promote_writes_the_annotation_and_waits(
    cluster: ControlPlane, custom: Any, operator: Callable[[str, dict[str, Any]], None]
) -> None:
    create(cluster, "gamma")
    set_status(custom, "gamma", phase="Paused", reason="PauseStep", currentStepIndex=1, weight=25)
    operator("gamma", {"phase": "Progressing", "currentStepIndex": 2, "message": "promoted"})
    code, out, err = cli(cluster, "promote", "gamma")
    assert code == 0, err
    assert "promote: the run will skip to step 3 of 3 (setWeight 100%)" in out
    assert "done: gamma is Progressing: promoted" in out
    annotation = get(custom, "gamma")["metadata"]["annotations"][api.REQUEST_ANNOTATION]
    verb, rid = annotation.split(":", 1)
    assert verb == "promote" and get(custom, "gamma")["status"]["lastRequest"] == rid
    assert f"{api.REQUEST_ANNOTATION}={annotation}" in out
    # Only metadata changed: the spec a GitOps tool compares is untouched.
    assert get(custom, "gamma")["metadata"]["generation"] == 1


def test_request_without_an_operator_exits_3(cluster: ControlPlane, custom: Any) -> None:
    create(cluster, "delta")
    set_status(custom, "delta", phase="Progressing", weight=25)
    code, out, err = cli(cluster, "abort", "delta", "--wait-timeout", "1s")
    assert code == 3
    assert "abort: all traffic will return to blue (checkout-blue)" in out
    assert "the operator did not act on the abort request within 1s" in err
    assert len(err.strip().splitlines()) == 1
    annotations = get(custom, "delta")["metadata"]["annotations"]
    assert annotations[api.REQUEST_ANNOTATION].startswith("abort:")
    code, out, _ = cli(cluster, "pause", "delta", "--no-wait")
    assert code == 0 and "requested" in out and "note: replacing a request" in out


@pytest.mark.parametrize(
    ("phase", "verb", "message"),
    [
        ("Progressing", "retry", "retry has no effect in phase Progressing"),
        ("Succeeded", "promote", "promote has no effect in phase Succeeded"),
        ("RolledBack", "abort", "abort has no effect in phase RolledBack"),
        ("Progressing", "resume", "resume has no effect in phase Progressing"),
    ],
)
def test_impossible_requests_are_refused(
    cluster: ControlPlane, custom: Any, phase: str, verb: str, message: str
) -> None:
    create(cluster, "epsilon")
    set_status(custom, "epsilon", phase=phase)
    code, _, err = cli(cluster, verb, "epsilon")
    assert code == 1 and message in err
    annotations = get(custom, "epsilon")["metadata"].get("annotations") or {}
    assert api.REQUEST_ANNOTATION not in annotations


def test_every_verb_reports_success(
    cluster: ControlPlane, custom: Any, operator: Callable[[str, dict[str, Any]], None]
) -> None:
    cases = [
        ("pause", [], "Progressing", "Paused"),
        ("resume", [], "Paused", "Progressing"),
        ("promote", ["--full"], "Progressing", "Succeeded"),
        ("retry", [], "RolledBack", "Pending"),
        ("abort", [], "Paused", "RolledBack"),
    ]
    for index, (verb, extra, before, after) in enumerate(cases):
        name = f"verb-{index}"
        create(cluster, name)
        set_status(custom, name, phase=before, weight=25)
        operator(name, {"phase": after})
        code, out, err = cli(cluster, verb, name, *extra)
        assert code == 0, (verb, out, err)
        assert f"done: {name} is {after}" in out
        expected = "promote-full" if extra else verb
        annotation = get(custom, name)["metadata"]["annotations"][api.REQUEST_ANNOTATION]
        assert annotation.startswith(f"{expected}:")


def _flip_later(custom: Any, name: str, phase: str) -> threading.Thread:
    def flip() -> None:
        time.sleep(1.0)
        set_status(custom, name, phase=phase)

    thread = threading.Thread(target=flip, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(("phase", "code"), [("Succeeded", 0), ("RolledBack", 1)])
def test_watch_exits_on_terminal_phase(
    cluster: ControlPlane, custom: Any, phase: str, code: int
) -> None:
    name = f"watch-{phase.lower()}"
    create(cluster, name)
    set_status(custom, name, phase="Progressing", weight=25)
    thread = _flip_later(custom, name, phase)
    result, out, _ = cli(
        cluster, "status", name, "--watch", "--timeout", "20s", "--interval", "200ms"
    )
    thread.join()
    assert result == code  # not 2: the watch ended on the phase, not on its timeout
    assert ("COMPLETED" if code == 0 else "ROLLED_BACK") in out


def test_watch_times_out_with_2(cluster: ControlPlane, custom: Any) -> None:
    create(cluster, "watch-timeout")
    set_status(custom, "watch-timeout", phase="Progressing")
    code, out, err = cli(
        cluster,
        "status",
        "watch-timeout",
        "-w",
        "--timeout",
        "1s",
        "--interval",
        "200ms",
        "-o",
        "json",
    )
    assert code == 5 and "timed out" in err  # not click's usage-error 2
    assert json.loads(out)["phase"] == "Progressing"


def test_watch_waits_for_a_migration_not_created_yet(cluster: ControlPlane, custom: Any) -> None:
    def create_later() -> None:
        time.sleep(1.0)
        create(cluster, "late")
        time.sleep(0.5)
        set_status(custom, "late", phase="Succeeded", weight=100)

    thread = threading.Thread(target=create_later, daemon=True)
    thread.start()
    code, out, err = cli(
        cluster, "status", "late", "--watch", "--timeout", "30s", "--interval", "200ms"
    )
    thread.join()
    assert code == 0, err
    assert "waiting for Migration late to be created" in err and "COMPLETED" in out
    code, _, err = cli(cluster, "status", "never", "--watch", "--timeout", "1s")
    assert code == 5 and "never was not created within 1s" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_unreachable_cluster_exits_4_without_traceback(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        f"""\
apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{_free_port()}"}}}}]
users: [{{name: u, user: {{}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u, namespace: ns1}}}}]
current-context: x
"""
    )
    env = {k: v for k, v in os.environ.items() if k != "CUTOVER_DEBUG"}
    result = subprocess.run(
        [str(BIN / "cutover"), "status", "anything", "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 4
    assert result.stderr.startswith("error: cannot reach the cluster at http://127.0.0.1:")
    # What a person can act on, not urllib3's retry dump.
    assert result.stderr.rstrip().endswith(": connection refused"), result.stderr
    assert "HTTPConnectionPool" not in result.stderr and "Max retries" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    # With CUTOVER_DEBUG=1 the traceback is shown for debugging.
    debug = subprocess.run(
        [str(BIN / "cutover"), "list", "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        env={**env, "CUTOVER_DEBUG": "1"},
        timeout=30,
        check=False,
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_bad_kubeconfig_is_a_user_error(tmp_path: Path) -> None:
    bad = tmp_path / "kubeconfig"
    bad.write_text("apiVersion: v1\nkind: Config\ncurrent-context: nowhere\n")
    result = CliRunner().invoke(app, ["list", "--kubeconfig", str(bad)])
    assert result.exit_code == 1 and result.stderr.startswith("error: bad kubeconfig")
    result = CliRunner().invoke(app, ["list", "--kubeconfig", str(tmp_path / "none")])
    assert result.exit_code == 1 and "does not exist" in result.stderr


def test_kubectl_plugin(cluster: ControlPlane, custom: Any) -> None:
    create(cluster, "plugin")
    set_status(custom, "plugin", phase="Succeeded", currentStepIndex=3, weight=100)
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "KUBECONFIG": cluster.kubeconfig,
        "COLUMNS": "120",
    }
    result = subprocess.run(
        [cluster.kubectl_binary, "cutover", "status", "plugin"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "COMPLETED" in result.stdout and "3 of 3" in result.stdout
    assert "100%" in result.stdout


def _paused_for_user(
    cluster: ControlPlane, custom: Any, name: str, verbs: list[str], path: Path
) -> tuple[str, str]:
    """A new namespace with a Migration ``name`` paused at a step, and the kubeconfig of a user
    allowed exactly ``verbs`` on Migrations there."""
    namespace = new_namespace(cluster, "cli")
    create(cluster, name, namespace=namespace)
    set_status(custom, name, namespace=namespace, phase="Paused", reason="PauseStep")
    return namespace, _cli_user(cluster, namespace, verbs, path)


def _cli_user(cluster: ControlPlane, namespace: str, verbs: list[str], path: Path) -> str:
    """A ServiceAccount allowed exactly ``verbs`` on Migrations in ``namespace``."""
    manifest = f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: cli-user, namespace: {namespace}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: cli-user, namespace: {namespace}}}
rules:
  - apiGroups: [cutover.io]
    resources: [migrations]
    verbs: {json.dumps(verbs)}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: cli-user, namespace: {namespace}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: cli-user}}
subjects: [{{kind: ServiceAccount, name: cli-user, namespace: {namespace}}}]
"""
    cluster.kubectl("apply", "-f", "-", input=manifest)
    return str(cluster.service_account_kubeconfig(namespace, "cli-user", path))


def test_the_cli_works_with_only_the_documented_verbs(
    cluster: ControlPlane, custom: Any, tmp_path: Path
) -> None:
    namespace, kubeconfig = _paused_for_user(
        cluster, custom, "delta", ["get", "list", "patch"], tmp_path / "user"
    )
    as_user = ["--kubeconfig", kubeconfig, "-n", namespace]
    code, out, err = cli(cluster, "status", "delta", *as_user)
    assert code == 0 and "PAUSED" in out, err
    code, out, err = cli(cluster, "list", *as_user)
    assert code == 0 and "delta" in out, err
    code, out, err = cli(cluster, "promote", "delta", "--no-wait", *as_user)
    assert code == 0 and "requested (cutover.io/request=promote:" in out, err
    annotations = get(custom, "delta", namespace)["metadata"]["annotations"]
    assert annotations[api.REQUEST_ANNOTATION].startswith("promote:")


def test_a_missing_verb_is_a_clear_error_not_a_traceback(
    cluster: ControlPlane, custom: Any, tmp_path: Path
) -> None:
    namespace, kubeconfig = _paused_for_user(
        cluster, custom, "epsilon", ["get"], tmp_path / "reader"
    )
    code, out, err = cli(
        cluster, "abort", "epsilon", "--no-wait", "--kubeconfig", kubeconfig, "-n", namespace
    )
    assert code == 1 and out.count("requested") == 0
    assert err.startswith("error:") and "forbidden" in err.lower() and "Traceback" not in err
    code, _, err = cli(cluster, "list", "--kubeconfig", kubeconfig, "-n", namespace)
    assert code == 1 and "forbidden" in err.lower()
    assert api.REQUEST_ANNOTATION not in (
        get(custom, "epsilon", namespace)["metadata"].get("annotations") or {}
    )


def test_plan_live_says_what_applying_the_file_does(
    cluster: ControlPlane, custom: Any, tmp_path: Path
) -> None:
    namespace = new_namespace(cluster, "plan")
    manifest = MIGRATION.format(name="zeta", namespace=namespace)
    path = tmp_path / "zeta.yaml"
    path.write_text(manifest)
    kube = ["--kubeconfig", cluster.kubeconfig]
    code, out, err = cli(cluster, "plan", "-f", str(path), "--live", *kube)
    assert code == 0, err
    assert "Applying it now: a new Migration" in out

    create(cluster, "zeta", namespace=namespace)
    set_status(
        custom,
        "zeta",
        namespace=namespace,
        phase="Succeeded",
        weight=100,
        liveDeployment="checkout-green",
    )
    # Only a step changed: after success nothing moves.
    path.write_text(manifest.replace("setWeight: 25", "setWeight: 10"))
    code, out, _ = cli(cluster, "plan", "-f", str(path), "--live", *kube)
    assert code == 0 and "Applying it now: nothing moves: checkout-green keeps all" in out
    # A new green against the retired blue: refused, and the plan says why.
    path.write_text(manifest.replace("checkout-green", "checkout-v3"))
    code, out, _ = cli(cluster, "plan", "-f", str(path), "--live", "-o", "json", *kube)
    change = json.loads(out)[0]
    assert change["change_effect"] == "Refused"
    assert "set spec.blue to checkout-green" in change["change"]


def test_status_shows_each_version_from_the_cluster(
    cluster: ControlPlane, custom: Any, tmp_path: Path
) -> None:
    namespace = new_namespace(cluster, "sides")
    cluster.kubectl(
        "create", "deployment", "checkout-blue", "-n", namespace, "--image=shop:1.4", "--replicas=2"
    )
    create(cluster, "eta", namespace=namespace)
    wait_for(
        lambda: "2/2 ready" in cli(cluster, "status", "eta", "-n", namespace)[1],
        timeout=60,
        what="blue's pods ready",
    )
    code, out, _ = cli(cluster, "status", "eta", "-n", namespace)
    assert code == 0
    assert "blue checkout-blue: 2/2 ready, image shop:1.4" in out
    assert "green checkout-green: not found" in out
    # A user who may not read Deployments still gets the report, without the versions.
    kubeconfig = _cli_user(cluster, namespace, ["get"], tmp_path / "reader")
    code, out, err = cli(cluster, "status", "eta", "-n", namespace, "--kubeconfig", kubeconfig)
    assert code == 0, err
    assert "Versions:" not in out and "Tasks:" in out


def test_plan_live_resolves_gate_templates_from_the_cluster(
    cluster: ControlPlane, tmp_path: Path
) -> None:
    namespace = new_namespace(cluster, "plantpl")
    example = ROOT / "examples" / "templates"
    namespaced, shared = yaml.safe_load_all((example / "templates.yaml").read_text())
    shared["metadata"]["name"] = f"p99-latency-{namespace}"
    cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all([namespaced, shared])
    )
    migration = yaml.safe_load((example / "migration.yaml").read_text())
    migration["metadata"]["namespace"] = namespace
    migration["spec"]["gates"][1]["templateRef"]["name"] = shared["metadata"]["name"]
    path = tmp_path / "migration.yaml"
    path.write_text(yaml.safe_dump(migration))
    try:
        code, out, err = cli(
            cluster, "plan", "-f", str(path), "--live", "--require-templates", "-o", "json"
        )
    finally:
        cluster.kubectl("delete", "clustergatetemplate", shared["metadata"]["name"])

    assert code == 0, err
    gates = {g["name"]: g for g in json.loads(out)[0]["gates"]}
    assert gates["errors"]["query"].startswith(
        f"GET http://health.monitoring:8080/errors/{namespace}/checkout-green?route=checkout"
    )
    assert gates["latency"]["template"] == f"ClusterGateTemplate 'p99-latency-{namespace}'"
    assert gates["latency"]["threshold"] == "<= 0.5"
