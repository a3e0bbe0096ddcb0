"""The real control plane under the tests: one per session, a namespace per test, and the
operator's identity bound to exactly the RBAC rules the Helm chart renders."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from devtools.controlplane import ControlPlane
from devtools.demo.cluster import chart_rbac

ROOT = Path(__file__).resolve().parents[2]
MIGRATION_CRD = ROOT / "crds" / "migrations.cutover.io.yaml"
# Every CRD of cutover.io: the operator watches Migrations and both kinds of gate template.
CRDS = ROOT / "crds"
OPERATOR_SERVICE_ACCOUNT = "cutover"


def epoch(stamp: str) -> float:
    """A time as the API server writes it (status fields, the audit log's stageTimestamp: RFC
    3339, "Z" for UTC), in seconds since the epoch."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def start_session_plane(root: Path) -> ControlPlane:
    plane = ControlPlane(root)
    plane.start()
    plane.kubectl("apply", "--server-side", "-f", str(CRDS))
    plane.wait_established(sorted(p.name.removesuffix(".yaml") for p in CRDS.glob("*.yaml")))
    return plane


def new_namespace(plane: ControlPlane, prefix: str = "t", *, name: str | None = None) -> str:
    namespace = name or f"{prefix}-{uuid.uuid4().hex[:8]}"
    plane.kubectl("create", "namespace", namespace)
    # Pods need the namespace's "default" ServiceAccount, made by the ServiceAccount controller.
    wait_for(
        lambda: plane.kubectl("get", "sa", "default", "-n", namespace, check=False).returncode == 0,
        timeout=30,
        what=f"the default ServiceAccount in {namespace}",
    )
    return namespace


def operator_kubeconfig(
    plane: ControlPlane,
    namespace: str,
    directory: Path,
    *,
    values: dict[str, Any] | None = None,
    server: str | None = None,
) -> Path:
    """Applies the chart's RBAC for ``namespace`` and returns a kubeconfig holding a token of the
    chart's ServiceAccount: the operator under test has those rights and no others."""
    docs = chart_rbac(namespace, values)
    accounts = [d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"]
    assert accounts, "the chart rendered no ServiceAccount"
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    directory.mkdir(parents=True, exist_ok=True)
    return plane.service_account_kubeconfig(
        namespace, accounts[0], directory / f"operator-{namespace}.kubeconfig", server=server
    )


def wait_for(
    probe: Callable[[], Any], *, timeout: float = 30, interval: float = 0.2, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as error:
            last = error
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}: last={last!r}")


def forbidden_requests(plane: ControlPlane, user_prefix: str, since: int = 0) -> list[str]:
    """Requests by the operator's identity that RBAC denied: each one is a chart defect."""
    return [
        f"{e['verb']} {e['resource']}/{e.get('subresource') or ''} in {e['namespace']}"
        for e in plane.reads(since)
        if e["code"] == 403 and str(e.get("user") or "").startswith(user_prefix)
    ]


def pods_of_job(plane: ControlPlane, namespace: str, job: str) -> list[dict[str, Any]]:
    out = plane.kubectl("get", "pods", "-n", namespace, "-l", f"job-name={job}", "-o", "json")
    return list(json.loads(out.stdout)["items"])


def decide_job(plane: ControlPlane, namespace: str, job: str, outcome: str) -> None:
    """Ends a held hook Job the way its container would: kwok's stage follows the annotation."""
    pods = wait_for(lambda: pods_of_job(plane, namespace, job), timeout=30, what=f"{job}'s pod")
    for pod in pods:
        plane.kubectl(
            "annotate",
            "-n",
            namespace,
            f"pod/{pod['metadata']['name']}",
            f"hook.cutover.test/outcome={outcome}",
            "--overwrite",
        )


def session_root(tmp_root: Path) -> Path:
    override = os.environ.get("CUTOVER_TEST_CLUSTER_DIR")
    return Path(override) if override else tmp_root
