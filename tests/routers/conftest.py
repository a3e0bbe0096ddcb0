"""Fixtures for the router and Kube tests: an in-process sandbox and a ``Kube`` bound to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes import config

from cutover.kube import Kube
from cutover.sandbox import SandboxCluster


@pytest.fixture()
async def cluster() -> AsyncIterator[SandboxCluster]:
    # A short readiness delay keeps the tests fast while still showing "not ready yet" states.
    instance = SandboxCluster(deployment_ready_delay=0.02)
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()


@pytest.fixture()
async def kube(cluster: SandboxCluster, tmp_path: Path) -> AsyncIterator[Kube]:
    path = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    api_client = config.new_client_from_config(config_file=str(path))
    # A generous limit: the tests poll the sandbox far faster than the operator would.
    instance = Kube(api_client, max_workers=4, qps=1000, burst=1000)
    try:
        yield instance
    finally:
        instance.close()
        api_client.close()
