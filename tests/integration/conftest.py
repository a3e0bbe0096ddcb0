from __future__ import annotations

import pytest

from devtools.controlplane import ControlPlane


@pytest.fixture(scope="module")
def cluster(control_plane: ControlPlane) -> ControlPlane:
    return control_plane
