"""Fixtures for the router and Kube tests, on the session's real control plane.

Each test gets a fresh namespace. The routers run as the operator does in a cluster: their
``Kube`` authenticates with a token of the chart's ServiceAccount, bound to exactly the RBAC rules
the Helm chart renders for that namespace, so a write the chart does not grant fails the test.
Test setup (Deployments, Services, routes, edits "by someone else") goes through ``admin``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import config

from cutover.kube import Kube
from devtools.controlplane import ControlPlane
from tests.routers.support import Audit
from tests.support.controlplane import forbidden_requests, new_namespace, operator_kubeconfig


def kube_for(kubeconfig: Path | str, **kw: Any) -> Kube:
    """A ``Kube`` that owns its API client. A generous rate limit: the tests poll the API far
    faster than the operator would."""
    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    instance = Kube(api_client, **{"max_in_flight": 4, "qps": 1000, "burst": 1000, **kw})
    instance._owns_client = True
    return instance


@pytest.fixture()
def ns(control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    namespace = new_namespace(control_plane, "routers")
    yield namespace
    control_plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture()
def operator_values() -> dict[str, Any]:
    """Helm values for the operator's RBAC; the chart's defaults unless a module overrides it."""
    return {}


@pytest.fixture()
def operator_kubeconfig_path(
    control_plane: ControlPlane, ns: str, operator_values: dict[str, Any], tmp_path: Path
) -> Path:
    return operator_kubeconfig(control_plane, ns, tmp_path, values=operator_values)


@pytest.fixture()
def operator_user(control_plane: ControlPlane, operator_kubeconfig_path: Path) -> str:
    """The operator's identity as the API server sees it (and as its audit log names it)."""
    result = control_plane.kubectl(
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
        kubeconfig=str(operator_kubeconfig_path),
    )
    user = result.stdout.strip()
    assert user.startswith("system:serviceaccount:"), user
    return user


@pytest.fixture()
def expected_denials() -> list[str]:
    """Requests a test expects RBAC to deny, as ``"<verb> <resource>"``; any other denial of
    the operator's identity fails the test: the chart would be missing a rule."""
    return []


@pytest.fixture()
async def kube(
    control_plane: ControlPlane,
    operator_kubeconfig_path: Path,
    operator_user: str,
    expected_denials: list[str],
) -> AsyncIterator[Kube]:
    """The operator's client: the chart's ServiceAccount and nothing more."""
    since = int(control_plane.stats()["last_seq"])
    instance = kube_for(operator_kubeconfig_path)
    try:
        yield instance
    finally:
        await instance.close()
    denied = [
        request
        for request in forbidden_requests(control_plane, operator_user, since)
        if " ".join(request.split()[:2]).rstrip("/") not in expected_denials
    ]
    assert denied == [], f"the chart's RBAC denied the operator: {denied}"


@pytest.fixture()
async def admin(control_plane: ControlPlane) -> AsyncIterator[Kube]:
    """Cluster admin, for test setup and for edits by people or other controllers."""
    instance = kube_for(control_plane.kubeconfig)
    try:
        yield instance
    finally:
        await instance.close()


@pytest.fixture()
def audit(control_plane: ControlPlane, ns: str, operator_user: str) -> Audit:
    """The operator's successful writes in the test's namespace, from the API server's audit log."""
    return Audit(control_plane, ns, operator_user)
