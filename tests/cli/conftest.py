"""The session's control plane (with the Migration CRD installed) and a client for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.controlplane import ControlPlane

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster(control_plane: ControlPlane) -> ControlPlane:
    return control_plane


@pytest.fixture(scope="module")
def custom(cluster: ControlPlane) -> Iterator[Any]:
    from kubernetes import client, config

    api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=cluster.kubeconfig
    )
    yield client.CustomObjectsApi(api_client)
    api_client.close()
