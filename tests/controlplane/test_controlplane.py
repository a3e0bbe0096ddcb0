"""What the local control plane enforces and does, pinned: the emulator it replaced did none of
it, and every other suite relies on it (docs/testing.md)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.controlplane import ControlPlane, read_versions
from tests.support.controlplane import (
    decide_job,
    new_namespace,
    operator_kubeconfig,
    pods_of_job,
    wait_for,
)
from tests.support.manifests import migration

pytestmark = pytest.mark.integration


@pytest.fixture
def namespace(control_plane: ControlPlane) -> str:
    return new_namespace(control_plane, "cp")


def _json(plane: ControlPlane, *args: str) -> dict[str, Any]:
    return dict(json.loads(plane.kubectl(*args, "-o", "json").stdout))


def _job(name: str, annotations: dict[str, str] | None = None) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": {"annotations": annotations or {}},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "hook", "image": "busybox"}],
                    },
                },
            },
        }
    )


def _job_state(plane: ControlPlane, namespace: str, name: str) -> str | None:
    conditions = _json(plane, "get", "-n", namespace, "job", name).get("status", {})
    for condition in conditions.get("conditions") or []:
        if condition["type"] in ("Complete", "Failed") and condition["status"] == "True":
            return str(condition["type"])
    return None


def test_the_server_reports_the_pinned_version(control_plane: ControlPlane) -> None:
    version = json.loads(control_plane.kubectl("get", "--raw", "/version").stdout)
    assert version["gitVersion"] == read_versions()["KUBERNETES_VERSION"]


def test_deployments_get_real_replicasets_and_ready_pods(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.kubectl(
        "create", "deployment", "web", "-n", namespace, "--image=nginx", "--replicas=3"
    )
    status = wait_for(
        lambda: (
            (
                s := _json(control_plane, "get", "-n", namespace, "deploy", "web").get("status", {})
            ).get("readyReplicas")
            == 3
            and s
        ),
        timeout=60,
        what="3 ready replicas",
    )
    assert status["availableReplicas"] == 3
    sets = _json(control_plane, "get", "-n", namespace, "replicasets")["items"]
    assert [s["metadata"]["ownerReferences"][0]["name"] for s in sets] == ["web"]


def test_hook_jobs_complete_fail_or_wait_as_their_pod_annotation_says(
    control_plane: ControlPlane, namespace: str
) -> None:
    plane = control_plane
    for name, outcome in (("ok", None), ("bad", "fail"), ("held", "hold")):
        annotations = {"hook.cutover.test/outcome": outcome} if outcome else None
        plane.kubectl("apply", "-n", namespace, "-f", "-", input=_job(name, annotations))
    wait_for(lambda: _job_state(plane, namespace, "ok") == "Complete", timeout=60, what="ok")
    wait_for(lambda: _job_state(plane, namespace, "bad") == "Failed", timeout=60, what="bad")
    wait_for(lambda: pods_of_job(plane, namespace, "held"), timeout=30, what="held's pod")
    assert _job_state(plane, namespace, "held") is None
    decide_job(plane, namespace, "held", "succeed")
    wait_for(lambda: _job_state(plane, namespace, "held") == "Complete", timeout=60, what="held")
    # The pod's log comes through the kube-apiserver from kwok's kubelet endpoint.
    log = plane.kubectl("logs", "-n", namespace, "job/ok").stdout
    assert "fake node" in log


def test_rbac_denies_what_the_chart_does_not_grant(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    kubeconfig = str(operator_kubeconfig(control_plane, namespace, tmp_path))
    allowed = control_plane.kubectl(
        "auth", "can-i", "patch", "deployments", "-n", namespace, kubeconfig=kubeconfig, check=False
    )
    assert allowed.stdout.strip() == "yes"
    for verb, resource, where in (
        ("create", "configmaps", namespace),
        ("get", "secrets", "kube-system"),
        ("delete", "deployments", namespace),
    ):
        denied = control_plane.kubectl(
            "auth", "can-i", verb, resource, "-n", where, kubeconfig=kubeconfig, check=False
        )
        assert denied.stdout.strip() == "no", (verb, resource, where)
    refused = control_plane.kubectl(
        "get", "secrets", "-n", "kube-system", kubeconfig=kubeconfig, check=False
    )
    assert refused.returncode != 0 and "forbidden" in refused.stderr


def test_status_moves_only_through_the_status_subresource(
    control_plane: ControlPlane, namespace: str
) -> None:
    plane = control_plane
    manifest = migration(
        "m",
        {
            "blue": {"deployment": "b"},
            "green": {"deployment": "g"},
            "traffic": {"router": "replicas", "service": "s"},
            "steps": [{"setWeight": 100}],
        },
    )
    plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    plane.kubectl(
        "patch", "-n", namespace, "mig/m", "--type=merge", "-p", '{"status": {"phase": "Failed"}}'
    )
    obj = _json(plane, "get", "-n", namespace, "mig", "m")
    assert "status" not in obj or obj["status"].get("phase") != "Failed"
    plane.kubectl(
        "patch",
        "-n",
        namespace,
        "mig/m",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"phase": "Failed"}}',
    )
    obj = _json(plane, "get", "-n", namespace, "mig", "m")
    assert obj["status"]["phase"] == "Failed"
    assert obj["metadata"]["generation"] == 1  # status writes never move the generation
    # Strategic merge patches exist for built-ins only: the server answers 415 for a custom one.
    assert (
        _raw_patch(plane, f"/apis/cutover.io/v1alpha1/namespaces/{namespace}/migrations/m") == 415
    )


def _raw_patch(plane: ControlPlane, path: str) -> int:
    config = yaml.safe_load(Path(plane.kubeconfig).read_text())
    token = config["users"][0]["user"]["token"]
    request = urllib.request.Request(
        plane.server + path,
        data=b'{"metadata": {"labels": {"a": "b"}}}',
        method="PATCH",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/strategic-merge-patch+json",
        },
    )
    context = ssl.create_default_context(cafile=str(plane.root / "pki" / "ca.crt"))
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_the_gateway_api_crd_enforces_its_cel_rules(
    control_plane: ControlPlane, third_party_crds: list[str], namespace: str
) -> None:
    assert "httproutes.gateway.networking.k8s.io" in third_party_crds
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r"},
        "spec": {
            "rules": [
                {
                    # CEL: a PathPrefix value must be an absolute path.
                    "matches": [{"path": {"type": "PathPrefix", "value": "no-slash"}}],
                    "backendRefs": [{"name": "svc", "port": 80}],
                }
            ]
        },
    }
    refused = control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-", input=json.dumps(route), check=False
    )
    assert refused.returncode != 0 and "must be an absolute path" in refused.stderr
    route["spec"]["rules"][0]["matches"][0]["path"]["value"] = "/"
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(route))
    stored = _json(control_plane, "get", "-n", namespace, "httproute", "r")
    assert stored["spec"]["rules"][0]["backendRefs"][0]["weight"] == 1  # defaulted by the CRD
