"""End to end on a kind cluster: the image, the chart, a Migration that completes and one that
rolls back, observed only through the cluster's API and `kubectl wait`, as a user would.

    make image e2e                      # IMAGE=cutover:0.1.0 by default
    CUTOVER_E2E_KEEP=1 make e2e         # keep the cluster afterwards for a look around

Needs `kind`, `kubectl` and a Docker engine; the kind nodes pull the demo and Prometheus images
(registry.k8s.io/pause, quay.io/prometheus/prometheus) unless they are present locally, in which
case they are loaded into the nodes. The chart is installed with a `helm` binary when there is
one, else with helm-python-sdk (the same Helm v4 code, as a library).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = os.environ.get("CUTOVER_E2E_CLUSTER", "cutover-e2e")
IMAGE = os.environ.get("CUTOVER_E2E_IMAGE", "cutover:0.1.0")
OPERATOR_NAMESPACE = "cutover-system"
RELEASE = "cutover"
# Ready as soon as it runs (no probes): the stand-in for a healthy version of the demo app.
GOOD_IMAGE = "registry.k8s.io/pause:3.10"
# A tag that does not exist: green never becomes ready, the progress deadline rolls it back.
BAD_IMAGE = "registry.k8s.io/pause:cutover-e2e-does-not-exist"
PROMETHEUS = "http://prometheus.monitoring:9090"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


def missing_tools() -> str | None:
    for tool in ("kind", "kubectl", "docker"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not on PATH"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return "`docker info` timed out"
    if info.returncode != 0:
        return "no usable Docker engine (`docker info` failed)"
    return None


def sh(*args: str, timeout: float = 300, check: bool = True, stdin: str | None = None) -> str:
    done = subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, input=stdin, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


class Cluster:
    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig

    def kubectl(self, *args: str, timeout: float = 300, stdin: str | None = None) -> str:
        return sh(
            "kubectl", "--kubeconfig", str(self.kubeconfig), *args, timeout=timeout, stdin=stdin
        )

    def apply(self, docs: list[dict[str, Any]], namespace: str | None = None) -> None:
        ns = ["--namespace", namespace] if namespace else []
        self.kubectl("apply", *ns, "-f", "-", stdin=yaml.safe_dump_all(docs))

    def wait(self, namespace: str, what: str, condition: str, timeout: int = 300) -> None:
        self.kubectl(
            "wait",
            "--namespace",
            namespace,
            f"--for={condition}",
            what,
            f"--timeout={timeout}s",
            timeout=timeout + 30,
        )

    def get(self, namespace: str, what: str) -> dict[str, Any]:
        out = self.kubectl("get", "--namespace", namespace, what, "-o", "yaml")
        found: dict[str, Any] = yaml.safe_load(out)
        return found


def load_image(image: str) -> None:
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0:
        sh("kind", "load", "docker-image", image, "--name", CLUSTER, timeout=600)


def install_chart(cluster: Cluster) -> None:
    repository, _, tag = IMAGE.rpartition(":")
    values: dict[str, Any] = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "metrics": {"enabled": True},
    }
    chart = ROOT / "charts" / "cutover"
    if shutil.which("helm"):
        sh(
            "helm",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "install",
            RELEASE,
            str(chart),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--create-namespace",
            "--set-json",
            f"image={json.dumps(values['image'])}",
            "--wait",
            "--timeout",
            "5m",
            timeout=400,
        )
        return
    helm = pytest.importorskip("helm_python", reason="neither helm nor helm-python-sdk")
    with helm.Config(kubeconfig_path=cluster.kubeconfig, namespace=OPERATOR_NAMESPACE) as config:
        config.install(
            str(chart),
            RELEASE,
            values,
            namespace=OPERATOR_NAMESPACE,
            create_namespace=True,
            wait="watcher",
            timeout=300,
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if problem := missing_tools():
        pytest.skip(f"kind end-to-end test: {problem}")
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode:
        pytest.skip(
            f"operator image {IMAGE} not built: run `make image` (or set CUTOVER_E2E_IMAGE)"
        )
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    existing = sh("kind", "get", "clusters").split()
    if CLUSTER not in existing:
        sh("kind", "create", "cluster", "--name", CLUSTER, "--wait", "180s", timeout=600)
    kubeconfig.write_text(sh("kind", "get", "kubeconfig", "--name", CLUSTER))
    try:
        for image in (IMAGE, GOOD_IMAGE, "quay.io/prometheus/prometheus:v2.53.0"):
            load_image(image)
        handle = Cluster(kubeconfig)
        # Prometheus first, so the operator's gates can reach it from the start.
        handle.kubectl("apply", "-f", str(ROOT / "tests" / "e2e" / "manifests" / "prometheus.yaml"))
        install_chart(handle)
        handle.wait("monitoring", "deployment/prometheus", "condition=Available")
        handle.wait(OPERATOR_NAMESPACE, f"deployment/{RELEASE}", "condition=Available")
        yield handle
    finally:
        if not os.environ.get("CUTOVER_E2E_KEEP"):
            sh("kind", "delete", "cluster", "--name", CLUSTER, timeout=300, check=False)


def demo_app(green_image: str) -> list[dict[str, Any]]:
    """examples/replicas/app.yaml with images that exist (the example's are placeholders)."""
    docs = list(yaml.safe_load_all((ROOT / "examples" / "replicas" / "app.yaml").read_text()))
    for doc in docs:
        if doc["kind"] == "Deployment":
            (container,) = doc["spec"]["template"]["spec"]["containers"]
            green = doc["metadata"]["name"].endswith("-green")
            container["image"] = green_image if green else GOOD_IMAGE
    return docs


def demo_migration(gate_query: str, progress_deadline: str) -> dict[str, Any]:
    """examples/replicas/migration.yaml plus one Prometheus gate."""
    doc: dict[str, Any] = yaml.safe_load(
        (ROOT / "examples" / "replicas" / "migration.yaml").read_text()
    )
    doc["spec"]["progressDeadline"] = progress_deadline
    doc["spec"]["gates"] = [
        {
            "name": "e2e",
            "prometheus": {"address": PROMETHEUS, "query": gate_query},
            "threshold": {"max": 0.5},
            "interval": "5s",
            "onNoData": "inconclusive",
        }
    ]
    return doc


def namespace(cluster: Cluster, name: str) -> str:
    cluster.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])
    return name


def replicas(cluster: Cluster, ns: str, deployment: str) -> int:
    return int(cluster.get(ns, f"deployment/{deployment}")["spec"].get("replicas", 1))


def run_demo(
    cluster: Cluster, name: str, image: str, query: str, deadline: str, condition: str
) -> tuple[str, dict[str, Any]]:
    """The demo app with ``image`` in namespace ``name`` and its Migration gated on ``query``;
    the namespace and the Migration's status once ``condition`` holds."""
    ns = namespace(cluster, name)
    cluster.apply(demo_app(image), ns)
    cluster.wait(ns, "deployment/checkout-blue", "condition=Available")
    cluster.apply([demo_migration(query, deadline)], ns)
    cluster.wait(ns, "migration/checkout", f"condition={condition}", timeout=600)
    return ns, cluster.get(ns, "migration/checkout")["status"]


@pytest.mark.parametrize(
    ("name", "image", "deadline", "condition", "phase", "weight", "blue", "green"),
    [
        pytest.param(
            "e2e-good", GOOD_IMAGE, "2m", "Complete", "Succeeded", 100, 0, 4, id="healthy-completes"
        ),
        pytest.param(
            "e2e-bad", BAD_IMAGE, "30s", "RolledBack", "RolledBack", 0, 4, 0, id="bad-rolls-back"
        ),
    ],
)
def test_a_green_completes_or_rolls_back_by_its_health(
    cluster: Cluster,
    name: str,
    image: str,
    deadline: str,
    condition: str,
    phase: str,
    weight: int,
    blue: int,
    green: int,
) -> None:
    """A healthy green takes all the traffic; one that never becomes ready is rolled back to
    blue at its progress deadline."""
    ns, status = run_demo(cluster, name, image, "vector(0)", deadline, condition)
    assert status["phase"] == phase
    assert status["weight"] == weight
    assert replicas(cluster, ns, "checkout-green") == green
    assert replicas(cluster, ns, "checkout-blue") == blue


def test_a_failing_gate_rolls_back(cluster: Cluster) -> None:
    # vector(1) > max 0.5: the first check fails and failureLimit 0 rolls back.
    _, status = run_demo(cluster, "e2e-gate", GOOD_IMAGE, "vector(1)", "2m", "RolledBack")
    gates = {g["name"]: g for g in status.get("gates", [])}
    assert gates["e2e"]["lastVerdict"] == "Failed"


def test_operator_metrics_are_scraped(cluster: Cluster) -> None:
    # Through the API server's service proxy: no port-forward to manage.
    path = f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/services/{RELEASE}-metrics:9090/proxy/metrics"
    deadline = time.monotonic() + 60
    while True:
        body = cluster.kubectl("get", "--raw", path)
        if 'cutover_migrations{phase="Succeeded"} 1.0' in body or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert "cutover_build_info" in body
    assert 'cutover_migrations{phase="Succeeded"} 1.0' in body
    assert "cutover_rollbacks_total" in body
