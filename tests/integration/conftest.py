from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from devtools.controlplane import ControlPlane

from .harness import OperatorProcess, new_namespace


@pytest.fixture(scope="module")
def cluster(control_plane: ControlPlane) -> ControlPlane:
    return control_plane


@pytest.fixture
def namespace_prefix() -> str:
    """How a module's test namespaces are named (``<prefix>-<random>``); modules override it."""
    return "t"


@pytest.fixture
def namespace(cluster: ControlPlane, namespace_prefix: str) -> str:
    return new_namespace(cluster, namespace_prefix)


@pytest.fixture
def chart_values() -> dict[str, Any] | None:
    """Chart values the operator's RBAC is rendered with (None: the chart's defaults)."""
    return None


@pytest.fixture
def operator(
    cluster: ControlPlane, namespace: str, chart_values: dict[str, Any] | None
) -> Iterator[OperatorProcess]:
    """The real operator watching ``namespace``, stopped when the test ends."""
    process = OperatorProcess(cluster, namespace, chart_values=chart_values).start()
    yield process
    process.stop()
