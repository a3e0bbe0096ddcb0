"""A real Kubernetes control plane as local processes: etcd, kube-apiserver, the controller
manager, kube-scheduler and kwok (fake nodes whose pods become Ready and whose Job pods complete).

Like controller-runtime's envtest and ``kwokctl --runtime=binary``, but with the controllers and the
scheduler too, so Deployments get ReplicaSets and pods and Jobs run through the Job controller.
Every request of a client (not of the control plane's own components) is written to the
kube-apiserver's audit log, which is how tests count the operator's reads and writes.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import pki as pki_module
from .faultproxy import FaultProxy

HERE = Path(__file__).resolve().parent
VERSIONS_FILE = HERE / "versions.env"
BUILD_SCRIPT = HERE / "build.sh"
STAGES_FILE = HERE / "stages" / "hook-outcome.yaml"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.1/16"
NODE_NAME = "kwok-node-0"

# Tokens of the static token file: one identity per component, so RBAC applies to each and the
# audit policy can leave the control plane's own traffic out of the log.
ADMIN_USER = "cutover-admin"
_COMPONENT_USERS = {
    "admin": (ADMIN_USER, "system:masters"),
    "kube-controller-manager": ("system:kube-controller-manager", ""),
    "kube-scheduler": ("system:kube-scheduler", ""),
    "kwok": ("kwok-controller", "system:masters"),
}
# Client verbs as HTTP methods, so a log entry reads like the request that made it.
_VERB_METHODS = {
    "create": "POST",
    "update": "PUT",
    "patch": "PATCH",
    "delete": "DELETE",
    "deletecollection": "DELETE",
}
_WRITE_METHODS = frozenset(_VERB_METHODS.values())

_AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [
        # The control plane's own traffic: controllers, scheduler, kwok, the apiserver itself.
        {
            "level": "None",
            "users": [
                "system:kube-controller-manager",
                "system:kube-scheduler",
                "kwok-controller",
                "system:apiserver",
            ],
        },
        {"level": "None", "userGroups": ["system:serviceaccounts:kube-system", "system:nodes"]},
        {"level": "None", "resources": [{"group": "coordination.k8s.io"}]},
        {"level": "None", "nonResourceURLs": ["/healthz*", "/readyz*", "/livez*", "/version"]},
        # Never a Secret's content in a log file.
        {"level": "Metadata", "resources": [{"group": "", "resources": ["secrets"]}]},
        {"level": "Request", "verbs": list(_VERB_METHODS)},
        {"level": "Metadata"},
    ],
}


class ControlPlaneError(RuntimeError):
    pass


def read_versions() -> dict[str, str]:
    """The pinned versions, with ``CUTOVER_KUBERNETES_VERSION`` (say ``v1.36.3``) in place of
    the pinned Kubernetes: to try another release without editing the pin (build.sh reads it
    too, and the cache keeps each release's binaries apart)."""
    versions = {}
    for line in VERSIONS_FILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key] = value
    override = os.environ.get("CUTOVER_KUBERNETES_VERSION", "").strip()
    if override:
        if not re.fullmatch(r"v1\.[0-9]+\.[0-9]+", override):
            raise ControlPlaneError(
                f"CUTOVER_KUBERNETES_VERSION must be a release such as v1.36.3, not {override!r}"
            )
        versions["KUBERNETES_VERSION"] = override
    return versions


# Controllers the local cluster does without: no node CIDRs to hand out, a kwok node that is
# never unhealthy, and no cloud. Kubernetes 1.37 dropped the cloud ones from the controller
# manager, and it refuses to disable a controller it does not know.
_DISABLED_CONTROLLERS = (
    "node-ipam-controller",
    "node-lifecycle-controller",
    "cloud-node-lifecycle-controller",
    "service-lb-controller",
)


def _controllers_flag(binary: Path) -> str:
    """``--controllers=*`` minus those of ``_DISABLED_CONTROLLERS`` this release has (its
    ``--help`` lists them all after "All controllers:")."""
    shown = subprocess.run([str(binary), "--help"], capture_output=True, text=True, check=False)
    listed = re.search(r"All controllers: ([^\n]*)", shown.stdout + shown.stderr)
    known = {name.strip() for name in listed.group(1).split(",")} if listed else set()
    disabled = [name for name in _DISABLED_CONTROLLERS if name in known]
    return "--controllers=" + ",".join(["*", *(f"-{name}" for name in disabled)])


def _feature_gates(raw: str) -> list[str]:
    return [f"--feature-gates={raw.strip()}"] if raw.strip() else []


def cache_root() -> Path:
    base = os.environ.get("CUTOVER_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cutover"
    )
    return Path(base) / "controlplane"


def bin_dir() -> Path:
    v = read_versions()
    key = f"k8s-{v['KUBERNETES_VERSION']}-etcd-{v['ETCD_VERSION']}-kwok-{v['KWOK_VERSION']}"
    return cache_root() / "bin" / key


BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
)


def ensure_built(*, quiet: bool = False) -> Path:
    """The cached binaries, built first if any is missing (tens of minutes, once per machine)."""
    directory = bin_dir()
    if all((directory / name).is_file() for name in BINARIES):
        return directory
    out = subprocess.DEVNULL if quiet else None
    subprocess.run([str(BUILD_SCRIPT)], check=True, stdout=out)
    return directory


def module_dir(module: str, version: str) -> Path:
    """The pinned Go module's source, from the module cache (downloaded on first use)."""
    result = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
        env={**os.environ, "GOFLAGS": "", "GO111MODULE": "on"},
    )
    return Path(json.loads(result.stdout)["Dir"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def host_address() -> str:
    """An address the host owns that is not loopback: kube-apiserver refuses 127.0.0.1 as the
    advertise address. Nothing is sent to it (the endpoint reconciler is off)."""
    with contextlib.suppress(OSError, FileNotFoundError, subprocess.SubprocessError):
        out = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "scope", "global"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in out.splitlines():
            parts = line.split()
            if "inet" in parts:
                return parts[parts.index("inet") + 1].split("/")[0]
    with contextlib.suppress(OSError):
        address = socket.gethostbyname(socket.gethostname())
        if not address.startswith("127."):
            return address
    return "10.255.255.254"


@dataclass
class Component:
    name: str
    argv: list[str]
    log: Path
    pid: int | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)


class ControlPlane:
    """One control plane in ``root`` (certificates, etcd data, kubeconfigs, logs, state.json)."""

    def __init__(self, root: Path | str, *, detach: bool = False) -> None:
        self.root = Path(root).resolve()
        self.detach = detach
        self.logs = self.root / "logs"
        self.components: list[Component] = []
        self.ports: dict[str, int] = {}
        self._audit_offset = 0
        self._audit_seq = 0
        self._audit_entries: list[dict[str, Any]] = []
        self._audit_counts: Counter[tuple[str, str, int]] = Counter()
        self.bin = bin_dir()

    # --- paths ---------------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> str:
        return str(self.root / "kubeconfig")

    @property
    def audit_log(self) -> Path:
        return self.logs / "audit.log"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def workdir(self) -> Path:
        return self.root

    # --- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 90.0) -> None:
        self.bin = ensure_built()
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        started = time.monotonic()
        address = host_address()
        pki = pki_module.generate(self.root / "pki", ["127.0.0.1", address, "10.96.0.1"])
        tokens = self._write_tokens()
        for name in ("etcd_client", "etcd_peer", "apiserver", "kwok"):
            self.ports[name] = free_port()
        for component in _COMPONENT_USERS:
            self._write_kubeconfig(
                self.root / f"{component}.kubeconfig", tokens[component], pki.ca_cert
            )
        shutil.copyfile(self.root / "admin.kubeconfig", self.kubeconfig)
        policy = self.root / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump(_AUDIT_POLICY))
        self.audit_log.unlink(missing_ok=True)
        self._audit_offset = 0

        etcd_data = self.root / "etcd"
        shutil.rmtree(etcd_data, ignore_errors=True)
        self._spawn(
            "etcd",
            [
                "--name=cutover",
                f"--data-dir={etcd_data}",
                f"--listen-client-urls=http://127.0.0.1:{self.ports['etcd_client']}",
                f"--advertise-client-urls=http://127.0.0.1:{self.ports['etcd_client']}",
                f"--listen-peer-urls=http://127.0.0.1:{self.ports['etcd_peer']}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{self.ports['etcd_peer']}",
                f"--initial-cluster=cutover=http://127.0.0.1:{self.ports['etcd_peer']}",
                "--unsafe-no-fsync",
                "--quota-backend-bytes=8589934592",
                "--log-level=warn",
            ],
        )
        self._wait(
            lambda: self._http_ok(f"http://127.0.0.1:{self.ports['etcd_client']}/health"),
            "etcd",
            started + timeout,
        )
        self._spawn("kube-apiserver", self._apiserver_args(pki, tokens, address, policy))
        self._wait(
            lambda: self._http_ok(f"{self.server}/readyz", token=tokens["admin"], ca=pki.ca_cert),
            "kube-apiserver /readyz",
            started + timeout,
        )
        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={self.root / 'kube-controller-manager.kubeconfig'}",
                "--leader-elect=false",
                "--secure-port=0",
                f"--root-ca-file={pki.ca_cert}",
                f"--service-account-private-key-file={pki.sa_private_key}",
                "--use-service-account-credentials=true",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # The kwok node is never unhealthy; a fast GC keeps namespaces short-lived.
                _controllers_flag(self.bin / "kube-controller-manager"),
                "--concurrent-deployment-syncs=10",
                "--concurrent-replicaset-syncs=10",
                "--concurrent-job-syncs=10",
                "--kube-api-qps=500",
                "--kube-api-burst=1000",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                f"--kubeconfig={self.root / 'kube-scheduler.kubeconfig'}",
                "--leader-elect=false",
                "--secure-port=0",
                "--kube-api-qps=500",
                "--kube-api-burst=1000",
            ],
        )
        self._spawn(
            "kwok",
            [
                f"--kubeconfig={self.root / 'kwok.kubeconfig'}",
                f"--config={self._write_kwok_config()}",
                "--manage-all-nodes=true",
                f"--cidr={POD_CIDR}",
                # kwok serves the kubelet API (pod logs) for its node on loopback, so
                # `kubectl logs` and the operator's hook-log reads go the real path.
                "--node-ip=127.0.0.1",
                f"--node-port={self.ports['kwok']}",
                f"--server-address=127.0.0.1:{self.ports['kwok']}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
            ],
        )
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump(_node_manifest()))
        # Admission taints a new node not-ready; the node lifecycle controller, which would lift
        # it, is off (kwok's node never fails), so lift it here as that controller would.
        self.kubectl("taint", "node", NODE_NAME, "node.kubernetes.io/not-ready:NoSchedule-")
        self._wait(self._node_ready, f"node {NODE_NAME} Ready", started + timeout)
        # Pods can only be created once the ServiceAccount controller made "default".
        self._wait(
            lambda: (
                self.kubectl("get", "sa", "default", "-n", "default", check=False).returncode == 0
            ),
            "the default ServiceAccount",
            started + timeout,
        )
        self._save_state()

    def stop(self) -> None:
        for component in reversed(self.components):
            _terminate(component)
        self.components.clear()
        self.state_file.unlink(missing_ok=True)

    # --- components ----------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> Component:
        component = Component(name, [str(self.bin / name), *args], self.logs / f"{name}.log")
        self._launch(component)
        self.components.append(component)
        return component

    def _launch(self, component: Component) -> None:
        with component.log.open("ab") as out:
            component.proc = subprocess.Popen(
                component.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                # A test session that dies (SIGKILL, timeout) takes its control plane with it;
                # `make cluster` (detach) leaves it running until `make cluster-down`.
                preexec_fn=None if self.detach else _die_with_parent,
            )
        component.pid = component.proc.pid

    def restart(self, name: str, timeout: float = 60.0) -> None:
        """Kills one component (SIGKILL, as a crash) and starts it again with the same flags."""
        component = next(c for c in self.components if c.name == name)
        _terminate(component, sig=signal.SIGKILL)
        self._launch(component)
        deadline = time.monotonic() + timeout
        if name == "kube-apiserver":
            self._wait(
                lambda: self.kubectl("get", "--raw", "/readyz", check=False).returncode == 0,
                "kube-apiserver /readyz",
                deadline,
            )
        elif name == "etcd":
            self._wait(
                lambda: self._http_ok(f"http://127.0.0.1:{self.ports['etcd_client']}/health"),
                "etcd",
                deadline,
            )
        self._save_state()

    def pause(self, name: str) -> None:
        """SIGSTOP: the component hangs with its sockets open, as a stuck process does."""
        component = next(c for c in self.components if c.name == name)
        if component.pid:
            os.kill(component.pid, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        component = next(c for c in self.components if c.name == name)
        if component.pid:
            os.kill(component.pid, signal.SIGCONT)

    def _apiserver_args(
        self, pki: pki_module.Pki, tokens: dict[str, str], address: str, policy: Path
    ) -> list[str]:
        return [
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd_client']}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports['apiserver']}",
            f"--advertise-address={address}",
            "--endpoint-reconciler-type=none",
            f"--cert-dir={self.root / 'pki'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--token-auth-file={self.root / 'tokens.csv'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.sa_public_key}",
            f"--service-account-signing-key-file={pki.sa_private_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-maxsize=0",
            "--audit-log-mode=blocking",
            "--kubelet-preferred-address-types=InternalIP",
            "--max-requests-inflight=800",
            "--max-mutating-requests-inflight=400",
            # Features to try, e.g. ShardedListAndWatch=true on 1.36 (comma-separated).
            *_feature_gates(os.environ.get("CUTOVER_FEATURE_GATES", "")),
        ]

    def _write_tokens(self) -> dict[str, str]:
        path = self.root / "tokens.csv"
        if path.exists():
            rows = [line.split(",") for line in path.read_text().splitlines() if line]
            by_user = {row[1]: row[0] for row in rows}
            return {c: by_user[user] for c, (user, _) in _COMPONENT_USERS.items()}
        tokens = {c: os.urandom(24).hex() for c in _COMPONENT_USERS}
        lines = []
        for component, (user, group) in _COMPONENT_USERS.items():
            groups = f',"{group}"' if group else ""
            lines.append(f"{tokens[component]},{user},{user}{groups}")
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)
        return tokens

    def _write_kubeconfig(self, path: Path, token: str, ca: Path) -> None:
        path.write_text(
            yaml.safe_dump(
                kubeconfig_document(
                    self.server, ca.read_text(), token, user=path.stem, context="cutover-local"
                )
            )
        )
        path.chmod(0o600)

    def _write_kwok_config(self) -> Path:
        versions = read_versions()
        source = module_dir("sigs.k8s.io/kwok", versions["KWOK_VERSION"])
        # kwok's own "fast" stages (node Ready; pod Ready; Job pod Succeeded; deletion), read from
        # the pinned module, then ours for hook outcomes.
        parts = [
            (source / "kustomize/stage/node/fast/node-initialize.yaml").read_text(),
            (source / "kustomize/stage/pod/fast/pod-ready.yaml").read_text(),
            (source / "kustomize/stage/pod/fast/pod-complete.yaml").read_text(),
            (source / "kustomize/stage/pod/fast/pod-delete.yaml").read_text(),
            STAGES_FILE.read_text(),
            yaml.safe_dump(self._pod_logs()),
        ]
        path = self.root / "kwok.yaml"
        path.write_text("\n---\n".join(p.strip() for p in parts) + "\n")
        return path

    def _pod_logs(self) -> dict[str, Any]:
        """What every pod's container "printed": a CRI-format log file kwok serves."""
        path = self.root / "pod.log"
        stamp = "2026-01-01T00:00:00.000000000Z"
        lines = [
            "kwok: this pod runs on a fake node of the local control plane",
            "kwok: no container ran; the outcome came from its kwok stage",
        ]
        path.write_text("".join(f"{stamp} stdout F {line}\n" for line in lines))
        return {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "ClusterLogs",
            "metadata": {"name": "every-pod"},
            "spec": {"logs": [{"logsFile": str(path), "follow": False}]},
        }

    def _node_ready(self) -> bool:
        result = self.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if result.returncode != 0:
            return False
        conditions = json.loads(result.stdout).get("status", {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _save_state(self) -> None:
        state = {
            "ports": self.ports,
            "kubeconfig": self.kubeconfig,
            "components": [
                {"name": c.name, "pid": c.pid, "argv": c.argv, "log": str(c.log)}
                for c in self.components
            ],
        }
        self.state_file.write_text(json.dumps(state, indent=2))

    @classmethod
    def attach(cls, root: Path | str) -> ControlPlane:
        """The control plane a previous ``up`` left running in ``root``."""
        plane = cls(root, detach=True)
        state = json.loads(plane.state_file.read_text())
        plane.ports = {k: int(v) for k, v in state["ports"].items()}
        for c in state["components"]:
            plane.components.append(Component(c["name"], c["argv"], Path(c["log"]), c["pid"]))
        return plane

    # --- waiting -------------------------------------------------------------------------------

    def _wait(self, probe: Any, what: str, deadline: float) -> None:
        while time.monotonic() < deadline:
            for component in self.components:
                if component.proc is not None and component.proc.poll() is not None:
                    tail = component.log.read_text(errors="replace")[-3000:]
                    self.stop()
                    raise ControlPlaneError(f"{component.name} exited early:\n{tail}")
            with contextlib.suppress(Exception):
                if probe():
                    return
            time.sleep(0.2)
        self.stop()
        raise ControlPlaneError(f"timed out waiting for {what}; logs in {self.logs}")

    @staticmethod
    def _http_ok(url: str, token: str | None = None, ca: Path | None = None) -> bool:
        request = urllib.request.Request(url)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        context = ssl.create_default_context(cafile=str(ca)) if ca else None
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    # --- clients -------------------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 60,
        kubeconfig: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [
            str(self.bin / "kubectl"),
            "--kubeconfig",
            kubeconfig or self.kubeconfig,
            "--cache-dir",
            str(self.root / "kube-cache"),
            *args,
        ]
        result = subprocess.run(
            cmd, capture_output=True, text=True, input=input, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise ControlPlaneError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    @property
    def kubectl_binary(self) -> str:
        return str(self.bin / "kubectl")

    def service_account_kubeconfig(
        self, namespace: str, name: str, path: Path, *, server: str | None = None
    ) -> Path:
        """A kubeconfig that authenticates as the ServiceAccount, with a TokenRequest token."""
        token = self.kubectl(
            "create", "token", name, "-n", namespace, "--duration=24h"
        ).stdout.strip()
        ca = (self.root / "pki" / "ca.crt").read_text()
        document = kubeconfig_document(
            server or self.server, ca, token, user=f"{namespace}-{name}", context=namespace
        )
        document["contexts"][0]["context"]["namespace"] = namespace
        path.write_text(yaml.safe_dump(document))
        path.chmod(0o600)
        return path

    def install_third_party_crds(self) -> list[str]:
        """Gateway API (standard channel) and Istio's VirtualService/DestinationRule, applied from
        the pinned upstream modules with their OpenAPI and CEL rules; returns the CRD names."""
        versions = read_versions()
        gateway = module_dir("sigs.k8s.io/gateway-api", versions["GATEWAY_API_VERSION"])
        istio = module_dir("istio.io/api", versions["ISTIO_API_VERSION"])
        docs: list[dict[str, Any]] = []
        for path in sorted((gateway / "config/crd/standard").glob("*.yaml")):
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
        wanted = {"virtualservices.networking.istio.io", "destinationrules.networking.istio.io"}
        istio_docs = yaml.safe_load_all(
            (istio / "kubernetes/customresourcedefinitions.gen.yaml").read_text()
        )
        docs += [d for d in istio_docs if d and d.get("metadata", {}).get("name") in wanted]
        names = [d["metadata"]["name"] for d in docs if d.get("kind") == "CustomResourceDefinition"]
        # Server-side: these CRDs are too large for kubectl's last-applied annotation.
        self.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump_all(docs)
        )
        self.wait_established(names)
        return names

    def wait_established(self, names: list[str], timeout: float = 60.0) -> None:
        """Polls each CRD until it is Established: `kubectl wait` right after an apply can fail
        at once, before the CRD has any conditions."""

        def established() -> bool:
            out = self.kubectl("get", "crd", *names, "-o", "json", check=False)
            if out.returncode != 0:
                return False
            found = json.loads(out.stdout)
            items = found.get("items") if "items" in found else [found]
            return len(items) == len(names) and all(
                any(
                    c["type"] == "Established" and c["status"] == "True"
                    for c in (item.get("status") or {}).get("conditions") or []
                )
                for item in items
            )

        deadline = time.monotonic() + timeout
        while not established():
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"CRDs not Established after {timeout}s: {names}")
            time.sleep(0.2)

    def fault_proxy(self) -> FaultProxy:
        """A fault-injecting proxy in front of this kube-apiserver (started by the caller)."""
        pki = self.root / "pki"
        return FaultProxy(self.server, pki / "ca.crt", pki / "apiserver.crt", pki / "apiserver.key")

    # --- the audit log: what clients asked, in order -------------------------------------------

    def _read_audit(self) -> None:
        # Audit events are written after the response: wait until the file stops growing.
        previous = -1
        for _ in range(20):
            size = self.audit_log.stat().st_size if self.audit_log.exists() else 0
            if size == previous:
                break
            previous = size
            time.sleep(0.05)
        if not self.audit_log.exists():
            return
        with self.audit_log.open("rb") as f:
            f.seek(self._audit_offset)
            chunk = f.read()
        end = chunk.rfind(b"\n")
        if end < 0:
            return
        self._audit_offset += end + 1
        for raw in chunk[: end + 1].splitlines():
            if not raw.strip():
                continue
            event = json.loads(raw)
            entry = _audit_entry(event)
            self._audit_seq += 1
            entry["seq"] = self._audit_seq
            self._audit_counts[
                (entry["verb"], entry["resource"] or entry["path"], entry["code"])
            ] += 1
            self._audit_entries.append(entry)

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        """Every write a client made (after ``since``), oldest first, with its request body."""
        return [e for e in self.reads(since) if e["method"] in _WRITE_METHODS]

    def reads(self, since: int = 0) -> list[dict[str, Any]]:
        """Every request a client made, reads included, after ``since``, oldest first."""
        self._read_audit()
        # seq is the position in the list plus one: slice instead of scanning.
        return self._audit_entries[max(since, 0) :]

    def stats(self) -> dict[str, Any]:
        self._read_audit()
        return {
            "total": sum(self._audit_counts.values()),
            "last_seq": self._audit_seq,
            "by_verb_resource_code": [
                {"verb": verb, "resource": resource, "code": code, "count": count}
                for (verb, resource, code), count in sorted(self._audit_counts.items())
            ],
        }


def _audit_entry(event: dict[str, Any]) -> dict[str, Any]:
    ref = event.get("objectRef") or {}
    verb = str(event.get("verb", ""))
    body = event.get("requestObject")
    name = ref.get("name")
    if not name and isinstance(body, dict):
        name = (body.get("metadata") or {}).get("name")
    received = event.get("requestReceivedTimestamp")
    return {
        "time": event.get("stageTimestamp"),
        "received": _epoch(received) if received else 0.0,
        "method": _VERB_METHODS.get(verb, "GET"),
        "verb": verb,
        "path": str(event.get("requestURI", "")).split("?")[0],
        "uri": event.get("requestURI", ""),
        "group": ref.get("apiGroup") or None,
        "version": ref.get("apiVersion"),
        "resource": ref.get("resource"),
        "namespace": ref.get("namespace"),
        "name": name,
        "subresource": ref.get("subresource"),
        "code": int((event.get("responseStatus") or {}).get("code", 0)),
        "body": body,
        "user": (event.get("user") or {}).get("username"),
        "user_agent": event.get("userAgent"),
    }


def _epoch(timestamp: str) -> float:
    return datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def kubeconfig_document(
    server: str, ca_pem: str, token: str, *, user: str, context: str
) -> dict[str, Any]:
    import base64

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "cutover-local",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem.encode()).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": "cutover-local", "user": user}}],
        "current-context": context,
    }


def _node_manifest() -> dict[str, Any]:
    # Room for bench/concurrency.py at 1,000 Migrations: 10,000 blue pods plus green's (at
    # 5,000 half the greens stayed Pending and their runs hit the progress deadline).
    capacity = {"cpu": "640", "memory": "5Ti", "pods": "30000"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE_NAME,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": NODE_NAME,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
        "spec": {},
        "status": {"allocatable": capacity, "capacity": capacity},
    }


def _terminate(component: Component, sig: signal.Signals = signal.SIGTERM) -> None:
    pid = component.pid
    if not pid:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGCONT)
        os.killpg(pid, sig)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if component.proc is not None:
            if component.proc.poll() is not None:
                break
        elif not _alive(pid):
            break
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        if component.proc is not None:
            component.proc.wait(5)
    component.pid = None


def _die_with_parent() -> None:
    """In the child, before exec: Linux sends SIGKILL when the parent process goes away."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_PR_SET_PDEATHSIG = 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie of ours still answers kill(0); treat it as gone.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    return True


if __name__ == "__main__":  # pragma: no cover - use `python -m devtools.controlplane`
    sys.exit("run: python -m devtools.controlplane up|down")
