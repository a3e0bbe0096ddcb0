"""Where the demo runs: the local control plane (the default) or a cluster the user names.

* Local: a real control plane as processes (``devtools.controlplane``: etcd, kube-apiserver,
  the controller manager, the scheduler and kwok's fake node) in ``.cluster/`` of the repo. One
  that ``make cluster`` left running there is reused (and left running); otherwise the demo
  starts its own and stops it at the end. The first start on a machine builds the binaries from
  Go modules.
* Yours: ``--kubeconfig PATH`` and/or ``--context NAME``. The demo copies that one context into a
  kubeconfig of its own (``kubectl config view --minify --flatten``) and uses only the copy: it
  never switches or edits your contexts.

Either way the operator runs with the Helm chart's RBAC for its namespace, authenticated as the
chart's ServiceAccount with a TokenRequest token, never as the admin running the demo.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devtools.controlplane import ControlPlane, ensure_built
from devtools.controlplane.cluster import BINARIES, bin_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "cutover"
DEFAULT_CLUSTER_DIR = REPO_ROOT / ".cluster"
CRD_NAME = "migrations.cutover.io"
# Pods really run on a cluster of yours: a tiny image every node can start (kind preloads it).
PLACEHOLDER_IMAGE = "registry.k8s.io/pause:3.10"
BUILD_NOTICE = (
    "First run on this machine: building the local Kubernetes control plane (etcd,"
    " kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok) from Go modules."
    " This takes tens of minutes on 2 cores, once; later runs start it in seconds."
    " (To use a cluster you already have instead: --kubeconfig PATH and/or --context NAME.)"
)
_RBAC_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
_CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding"}


class TargetError(RuntimeError):
    """The cluster cannot be used; the message says why and what to do."""


def binaries_missing() -> list[str]:
    directory = bin_dir()
    return [name for name in BINARIES if not (directory / name).is_file()]


def chart_rbac(namespace: str, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The ServiceAccount and RBAC the chart renders for an operator watching ``namespace``
    (released into that namespace, with ``values`` set too): the same objects ``helm install``
    would create. The tests and benchmarks apply these as well."""
    import helm_python as helm

    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(
            values={"watchNamespace": namespace, **(values or {})},
            name=f"cutover-{namespace}",
            namespace=namespace,
            is_install=True,
        )
    docs = []
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc and doc.get("kind") in _RBAC_KINDS:
                if doc["kind"] not in _CLUSTER_SCOPED:
                    doc.setdefault("metadata", {}).setdefault("namespace", namespace)
                docs.append(doc)
    return docs


@dataclass
class Target:
    """A cluster to run the demo on, reached through a self-contained admin kubeconfig."""

    kubeconfig: Path
    kubectl_binary: str
    description: str
    plane: ControlPlane | None = None  # the local control plane, when that is the target
    owned: bool = False  # the demo started that control plane, and stops it
    app_image: str | None = None  # replaces the example app's images (None: keep them)
    _cluster_scoped: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    @property
    def local(self) -> bool:
        return self.plane is not None

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        cmd = [self.kubectl_binary, "--kubeconfig", str(self.kubeconfig), *args]
        try:
            return subprocess.run(
                cmd, capture_output=True, text=True, input=input, timeout=timeout, check=check
            )
        except subprocess.CalledProcessError as failed:
            said = (failed.stderr or failed.stdout).strip()
            raise TargetError(
                f"kubectl {' '.join(args)} failed ({failed.returncode}): {said}"
            ) from None

    # --- setup ---------------------------------------------------------------------------------

    def install_crd(self, path: Path) -> None:
        # Server-side apply: the CRD is larger than kubectl's last-applied annotation allows.
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
        # Not `kubectl wait`: it fails outright while the new CRD has no conditions yet.
        established = '{.status.conditions[?(@.type=="Established")].status}'
        _wait(
            lambda: (
                self.kubectl(
                    "get", "crd", CRD_NAME, "-o", f"jsonpath={established}", check=False
                ).stdout.strip()
                == "True"
            ),
            60,
            f"the {CRD_NAME} CRD to be established",
        )

    def create_namespace(self, base: str) -> str:
        """``base`` if it is free, else ``base-<suffix>`` (a previous run's may be terminating)."""
        name = base
        for _ in range(5):
            created = self.kubectl("create", "namespace", name, check=False)
            if created.returncode == 0:
                break
            if "AlreadyExists" not in created.stderr:
                raise TargetError(f"kubectl create namespace {name}: {created.stderr.strip()}")
            name = f"{base}-{uuid.uuid4().hex[:4]}"
        else:
            raise TargetError(f"could not create a namespace named {base}-*")
        # Pods need the namespace's "default" ServiceAccount (made by a controller).
        _wait(
            lambda: self.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
            30,
            f"the default ServiceAccount in {name}",
        )
        return name

    def apply_app(self, namespace: str, path: Path) -> None:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        if self.app_image:
            for doc in docs:
                if doc.get("kind") == "Deployment":
                    for container in doc["spec"]["template"]["spec"]["containers"]:
                        container["image"] = self.app_image
                        container["imagePullPolicy"] = "IfNotPresent"
        self.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs))

    def operator_kubeconfig(self, namespace: str, directory: Path) -> Path:
        """Applies the chart's RBAC for ``namespace``; returns a kubeconfig holding a token of the
        chart's ServiceAccount (the operator has those rights and no others)."""
        docs = chart_rbac(namespace)
        accounts = [d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"]
        if not accounts:
            raise TargetError("the chart rendered no ServiceAccount")
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
        self._cluster_scoped[namespace] = [
            (d["kind"].lower(), d["metadata"]["name"]) for d in docs if d["kind"] in _CLUSTER_SCOPED
        ]
        token = self.kubectl(
            "create", "token", accounts[0], "-n", namespace, "--duration=24h"
        ).stdout.strip()
        admin = yaml.safe_load(self.kubeconfig.read_text())
        cluster = _current_cluster(admin)
        user = f"{namespace}-{accounts[0]}"
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "demo", "cluster": cluster}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {
                    "name": namespace,
                    "context": {"cluster": "demo", "user": user, "namespace": namespace},
                }
            ],
            "current-context": namespace,
        }
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"operator-{namespace}.kubeconfig"
        path.write_text(yaml.safe_dump(document))
        path.chmod(0o600)
        return path

    def delete_namespace(self, namespace: str) -> None:
        """The namespace (with everything in it) and the chart's cluster-scoped RBAC for it."""
        self.kubectl(
            "delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False
        )
        for kind, name in self._cluster_scoped.pop(namespace, []):
            self.kubectl("delete", kind, name, "--ignore-not-found", check=False)


def _current_cluster(kubeconfig: dict[str, Any]) -> dict[str, Any]:
    current = kubeconfig.get("current-context")
    contexts = {c["name"]: c["context"] for c in kubeconfig.get("contexts") or []}
    clusters = {c["name"]: c["cluster"] for c in kubeconfig.get("clusters") or []}
    if current not in contexts or contexts[current].get("cluster") not in clusters:
        raise TargetError(f"the kubeconfig has no usable current context ({current!r})")
    return dict(clusters[contexts[current]["cluster"]])


def _wait(probe: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.2)
    raise TargetError(f"timed out after {timeout:g}s waiting for {what}")


# --- the two kinds of target -------------------------------------------------------------------


def local_target(
    root: Path, say: Callable[[str], None], on_start: Callable[[ControlPlane], None]
) -> Target:
    """The control plane in ``root``: the running one if ``root/state.json`` says so, else a new
    one (built first if this machine has no binaries yet). ``on_start`` is called with a new
    plane *before* it starts, so the caller can stop it even if the start is interrupted."""
    if (root / "state.json").exists():
        plane = ControlPlane.attach(root)
        ready = plane.kubectl("get", "--raw", "/readyz", check=False, timeout=10)
        if ready.returncode != 0:
            raise TargetError(
                f"{root}/state.json describes a control plane that does not answer"
                f" ({(ready.stderr or ready.stdout).strip()[:200]}). Stop it with"
                f" `python -m devtools.controlplane down --dir {root}` and run the demo again."
            )
        say(f"Using the control plane already running in {root} at {plane.server}")
        return Target(
            Path(plane.kubeconfig), plane.kubectl_binary, f"the control plane in {root}", plane
        )
    missing = binaries_missing()
    if missing:
        say(BUILD_NOTICE)
        if shutil.which("go") is None:
            raise TargetError(
                "building the control plane needs Go 1.25 or newer (https://go.dev/dl/) on PATH;"
                " or run the demo on a cluster you have:"
                " make demo DEMO_ARGS='--kubeconfig ~/.kube/config --context NAME'"
            )
        try:
            ensure_built()
        except subprocess.CalledProcessError as error:
            raise TargetError(
                f"building the control plane failed (exit {error.returncode}); its output is"
                " above. Run devtools/controlplane/build.sh to retry (it resumes)."
            ) from error
    elif shutil.which("go") is None:
        # ControlPlane.start reads kwok's stage files from the Go module cache.
        raise TargetError("starting the local control plane needs Go on PATH")
    say(f"Starting a local Kubernetes control plane in {root} (stopped when the demo ends)...")
    plane = ControlPlane(root)
    on_start(plane)
    started = time.monotonic()
    plane.start()
    say(f"  control plane ready in {time.monotonic() - started:.1f}s at {plane.server}")
    return Target(
        Path(plane.kubeconfig),
        plane.kubectl_binary,
        f"a local control plane in {root}",
        plane,
        owned=True,
    )


def default_kubectl() -> str | None:
    found = shutil.which("kubectl")
    if found:
        return found
    built = bin_dir() / "kubectl"
    return str(built) if built.is_file() else None


def user_target(
    kubeconfig: str | None,
    context: str | None,
    kubectl: str | None,
    workdir: Path,
    app_image: str | None,
) -> Target:
    """The cluster of ``--kubeconfig``/``--context``, through a copy of that one context."""
    binary = kubectl or default_kubectl()
    if binary is None or (shutil.which(binary) is None and not Path(binary).is_file()):
        raise TargetError(
            f"kubectl not found ({binary or 'not on PATH'}): install kubectl"
            " (https://kubernetes.io/docs/tasks/tools/) or pass --kubectl PATH"
        )
    args = [binary, "config", "view", "--minify", "--flatten", "--raw", "-o", "json"]
    if kubeconfig:
        args += ["--kubeconfig", str(Path(kubeconfig).expanduser())]
    if context:
        args += ["--context", context]
    viewed = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    if viewed.returncode != 0:
        raise TargetError(f"reading the kubeconfig failed: {viewed.stderr.strip()}")
    document = json.loads(viewed.stdout)
    contexts = document.get("contexts") or []
    if not contexts:
        raise TargetError(
            f"no context {context!r} in {kubeconfig or 'the default kubeconfig'}"
            if context
            else f"{kubeconfig or 'the default kubeconfig'} has no current context"
        )
    name = context or contexts[0]["name"]
    document["current-context"] = name
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "admin.kubeconfig"
    path.write_text(yaml.safe_dump(document))
    path.chmod(0o600)
    target = Target(
        path,
        binary,
        f"context {name} of {kubeconfig or 'your default kubeconfig'}",
        app_image=app_image or PLACEHOLDER_IMAGE,
    )
    version = target.kubectl("version", "-o", "json", check=False, timeout=30)
    if version.returncode != 0 or '"serverVersion"' not in version.stdout:
        raise TargetError(
            f"the cluster of {target.description} does not answer:"
            f" {(version.stderr or version.stdout).strip()[:300]}"
        )
    return target
