"""Session-wide fixtures: one real control plane, started the first time a test asks for it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from devtools.controlplane import ControlPlane
from tests.support.controlplane import session_root, start_session_plane

# CUTOVER_STRICT_SKIPS=1 (set by .ci/run): a skip not in its allow-list fails the session.
pytest_plugins = ["tests.support.strict_skips"]

# `make mutation` judges each mutant on the same examples every run: no shared example database,
# derandomised draws (devtools/mutation.py sets the profile).
settings.register_profile("mutation", derandomize=True, database=None)
settings.load_profile(os.environ.get("CUTOVER_HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = start_session_plane(session_root(tmp_path_factory.mktemp("controlplane")))
    yield plane  # pytest resumes the generator after the session, whatever the outcome
    plane.stop()


@pytest.fixture(scope="session")
def third_party_crds(control_plane: ControlPlane) -> list[str]:
    """Gateway API's and Istio's real CRDs (pinned upstream modules), with their CEL rules."""
    return control_plane.install_third_party_crds()
