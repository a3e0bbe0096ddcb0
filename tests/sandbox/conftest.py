"""Fixtures for the sandbox tests: one sandbox process per module, plus in-process clusters."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "operator"))

from cutover.sandbox import SandboxCluster
from cutover.sandbox.process import SandboxProcess


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess() as process:
        yield process


@pytest.fixture(scope="module")
def api(sandbox: SandboxProcess):  # type: ignore[no-untyped-def]
    """An official-client ApiClient bound to the module's sandbox."""
    from kubernetes import config

    api_client = config.new_client_from_config(config_file=sandbox.kubeconfig)
    yield api_client
    api_client.close()


@pytest.fixture(scope="module")
def core(api):  # type: ignore[no-untyped-def]
    from kubernetes import client

    return client.CoreV1Api(api)


@pytest.fixture(scope="module")
def apps(api):  # type: ignore[no-untyped-def]
    from kubernetes import client

    return client.AppsV1Api(api)


@pytest.fixture(scope="module")
def custom(api):  # type: ignore[no-untyped-def]
    from kubernetes import client

    return client.CustomObjectsApi(api)


@pytest.fixture()
async def cluster() -> AsyncIterator[SandboxCluster]:
    instance = SandboxCluster(deployment_ready_delay=0.2)
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()
