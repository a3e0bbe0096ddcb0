"""Error mapping of the cluster client, without a cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from cutover.cli.client import EXIT_UNREACHABLE, CliError, Cluster, Target, request_id

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:9"}}]
users: [{name: u, user: {token: t}}]
contexts:
  - {name: a, context: {cluster: c, user: u, namespace: team-a}}
  - {name: b, context: {cluster: c, user: u}}
current-context: a
"""


@pytest.fixture()
def kubeconfig(tmp_path: Path) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    return str(path)


def test_namespace_comes_from_the_context(kubeconfig: str) -> None:
    assert Cluster(Target(kubeconfig=kubeconfig)).namespace == "team-a"
    assert Cluster(Target(kubeconfig=kubeconfig, context="b")).namespace == "default"
    assert Cluster(Target(kubeconfig=kubeconfig, namespace="x")).namespace == "x"


def test_unknown_context_is_a_user_error(kubeconfig: str) -> None:
    with pytest.raises(CliError) as caught:
        Cluster(Target(kubeconfig=kubeconfig, context="nope"))
    assert caught.value.code == 1 and "bad kubeconfig" in caught.value.message


def _raising(error: Exception) -> Any:
    def call(*_args: Any, **_kwargs: Any) -> Any:
        raise error

    return call


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (
            403,
            "forbidden: you may not get migrations in namespace team-a (RBAC):"
            ' migrations.cutover.io "m" is forbidden',
        ),
        (401, "unauthorized"),
        (404, 'Migration "m" not found in namespace "team-a"'),
        (500, "cannot get migrations in namespace team-a: 500"),
    ],
)
def test_api_errors(
    kubeconfig: str, status: int, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = Cluster(Target(kubeconfig=kubeconfig))
    error = ApiException(status=status, reason="Nope")
    error.body = json.dumps({"message": 'migrations.cutover.io "m" is forbidden'})
    monkeypatch.setattr(cluster._custom, "get_namespaced_custom_object", _raising(error))
    with pytest.raises(CliError) as caught:
        cluster.get("m")
    assert caught.value.code == 1 and caught.value.message.startswith(expected)


def test_list_without_the_crd(kubeconfig: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = Cluster(Target(kubeconfig=kubeconfig))
    monkeypatch.setattr(
        cluster._custom, "list_namespaced_custom_object", _raising(ApiException(status=404))
    )
    with pytest.raises(CliError, match="install the CRD"):
        cluster.list(all_namespaces=False)


def test_connection_errors_are_exit_4(kubeconfig: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = Cluster(Target(kubeconfig=kubeconfig))
    monkeypatch.setattr(
        cluster._custom,
        "get_namespaced_custom_object",
        _raising(ConnectionRefusedError(111, "refused")),
    )
    with pytest.raises(CliError) as caught:
        cluster.get("m")
    assert caught.value.code == EXIT_UNREACHABLE


def test_request_ids_are_unique() -> None:
    ids = {request_id() for _ in range(100)}
    assert len(ids) == 100 and all(":" not in i for i in ids)
