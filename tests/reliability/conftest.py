"""Reliability and security suite (issue 9): crash, API faults, Prometheus faults, hostile input.

``make test`` runs the short version; ``make soak`` (``CUTOVER_SOAK=1``) scales the counts up.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.controlplane import ControlPlane
from tests.support.fixtures import *  # noqa: F403 -- the session Prometheus fixtures

ROOT = Path(__file__).resolve().parents[2]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "reliability: reliability and security suite (tests/reliability)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture(scope="module")
def cluster(control_plane: ControlPlane) -> ControlPlane:
    return control_plane
