"""One sandbox cluster per module, with the Migration CRD installed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cutover.sandbox.process import SandboxProcess

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess() as process:
        process.kubectl("apply", "-f", str(ROOT / "crds" / "migrations.cutover.io.yaml"))
        deadline = time.monotonic() + 10
        while "migrations" not in process.kubectl("api-resources", "--api-group=cutover.io").stdout:
            assert time.monotonic() < deadline, "the Migration CRD was not served"
            time.sleep(0.1)
        yield process


@pytest.fixture(scope="module")
def custom(sandbox: SandboxProcess) -> Iterator[Any]:
    from kubernetes import client, config

    api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=sandbox.kubeconfig
    )
    yield client.CustomObjectsApi(api_client)
    api_client.close()
