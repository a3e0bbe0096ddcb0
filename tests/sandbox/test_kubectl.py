"""Real kubectl against a sandbox subprocess: CRDs, apply, printer columns, wait."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import yaml

from cutover.sandbox.process import SandboxProcess
from tests.sandbox.helpers import WIDGET_CRD, deployment

WIDGET = """\
apiVersion: example.io/v1
kind: Widget
metadata:
  name: {name}
spec:
  size: {size}
"""


def _crd(sandbox: SandboxProcess) -> None:
    if "widgets" not in sandbox.kubectl("api-resources", "--api-group=example.io").stdout:
        sandbox.kubectl("apply", "-f", "-", input=WIDGET_CRD)


def test_crd_discovery_and_printer_columns(sandbox: SandboxProcess) -> None:
    _crd(sandbox)
    resources = sandbox.kubectl("api-resources", "--api-group=example.io").stdout
    assert "widgets" in resources and "wid" in resources and "Widget" in resources
    sandbox.kubectl("apply", "-f", "-", input=WIDGET.format(name="w1", size=3))
    table = sandbox.kubectl("get", "wid").stdout.splitlines()
    assert table[0].split() == ["NAME", "SIZE", "PHASE", "READY"]
    assert table[1].split() == ["w1", "3", "<none>", "<none>"]
    assert "w1" in sandbox.kubectl("get", "examples").stdout  # by category


def test_generation_tracks_spec_not_status(sandbox: SandboxProcess, custom: Any) -> None:
    _crd(sandbox)
    sandbox.kubectl("apply", "-f", "-", input=WIDGET.format(name="gen", size=1))
    obj = json.loads(sandbox.kubectl("get", "wid", "gen", "-o", "json").stdout)
    assert obj["metadata"]["generation"] == 1
    sandbox.kubectl("apply", "-f", "-", input=WIDGET.format(name="gen", size=2))
    obj = custom.get_namespaced_custom_object("example.io", "v1", "default", "widgets", "gen")
    assert obj["spec"]["size"] == 2 and obj["metadata"]["generation"] == 2
    status = custom.patch_namespaced_custom_object_status(
        "example.io", "v1", "default", "widgets", "gen", {"status": {"phase": "Running"}}
    )
    assert status["metadata"]["generation"] == 2 and status["status"]["phase"] == "Running"
    # The main resource ignores status, the status subresource ignores spec.
    custom.patch_namespaced_custom_object(
        "example.io", "v1", "default", "widgets", "gen", {"status": {"phase": "Hacked"}}
    )
    custom.patch_namespaced_custom_object_status(
        "example.io", "v1", "default", "widgets", "gen", {"spec": {"size": 99}}
    )
    obj = custom.get_namespaced_custom_object("example.io", "v1", "default", "widgets", "gen")
    assert obj["status"]["phase"] == "Running" and obj["spec"]["size"] == 2


def test_custom_resources_reject_strategic_merge(sandbox: SandboxProcess, api: Any) -> None:
    _crd(sandbox)
    sandbox.kubectl("apply", "-f", "-", input=WIDGET.format(name="smp", size=1))
    result = sandbox.kubectl(
        "patch", "wid", "smp", "--type=strategic", "-p", '{"spec": {"size": 2}}', check=False
    )
    assert result.returncode != 0
    assert "unknown format" in result.stderr or "UnsupportedMediaType" in result.stderr
    sandbox.kubectl("patch", "wid", "smp", "--type=merge", "-p", '{"spec": {"size": 2}}')
    sandbox.kubectl(
        "patch",
        "wid",
        "smp",
        "--type=json",
        "-p",
        '[{"op": "replace", "path": "/spec/size", "value": 5}]',
    )
    obj = json.loads(sandbox.kubectl("get", "wid", "smp", "-o", "json").stdout)
    assert obj["spec"]["size"] == 5


def test_kubectl_wait_for_condition(sandbox: SandboxProcess, custom: Any) -> None:
    _crd(sandbox)
    sandbox.kubectl("apply", "-f", "-", input=WIDGET.format(name="waited", size=1))

    def complete_later() -> None:
        time.sleep(0.7)
        custom.patch_namespaced_custom_object_status(
            "example.io",
            "v1",
            "default",
            "widgets",
            "waited",
            {"status": {"conditions": [{"type": "Complete", "status": "True"}]}},
        )

    thread = threading.Thread(target=complete_later)
    thread.start()
    started = time.monotonic()
    result = sandbox.kubectl("wait", "--for=condition=Complete", "wid/waited", "--timeout=10s")
    thread.join()
    assert "condition met" in result.stdout
    assert time.monotonic() - started >= 0.5


def test_apply_updates_deployment_and_keeps_sidecar(sandbox: SandboxProcess, apps: Any) -> None:
    manifest = deployment("applied")
    sandbox.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
    manifest["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.27"
    manifest["spec"]["replicas"] = 4
    out = sandbox.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest)).stdout
    assert "configured" in out
    obj = apps.read_namespaced_deployment("applied", "default")
    assert [(c.name, c.image) for c in obj.spec.template.spec.containers] == [
        ("app", "nginx:1.27"),
        ("sidecar", "envoy:1.30"),
    ]
    assert obj.spec.replicas == 4 and obj.metadata.generation == 2
    log = [e for e in sandbox.requests() if e["name"] == "applied" and e["method"] == "PATCH"]
    assert log[-1]["content_type"] == "application/strategic-merge-patch+json"
    result = sandbox.kubectl("rollout", "status", "deploy/applied", "--timeout=10s")
    assert "successfully rolled out" in result.stdout


def test_server_side_apply(sandbox: SandboxProcess, core: Any) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1"}}
    sandbox.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(cm))
    cm["data"] = {"a": "2", "b": "3"}
    sandbox.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(cm))
    assert core.read_namespaced_config_map("ssa", "default").data == {"a": "2", "b": "3"}
    assert any(e["content_type"] == "application/apply-patch+yaml" for e in sandbox.requests())


def test_namespaces_labels_and_delete(sandbox: SandboxProcess) -> None:
    sandbox.kubectl("create", "namespace", "team-a")
    assert "team-a" in sandbox.kubectl("get", "ns").stdout
    sandbox.kubectl("create", "configmap", "one", "-n", "team-a", "--from-literal=k=v")
    sandbox.kubectl("label", "configmap", "one", "-n", "team-a", "color=blue")
    out = sandbox.kubectl("get", "cm", "-n", "team-a", "-l", "color=blue", "-o", "name").stdout
    assert out.strip() == "configmap/one"
    sandbox.kubectl("delete", "configmap", "one", "-n", "team-a")
    assert sandbox.kubectl("get", "cm", "-n", "team-a", "-o", "name").stdout.strip() == ""
