from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cutover.sandbox.process import SandboxProcess

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(deployment_delay=0.3) as process:
        process.kubectl("apply", "-f", str(ROOT / "crds" / "migrations.cutover.io.yaml"))
        yield process
