"""Registers the `e2e` marker here because pyproject's marker list belongs to another change."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: needs kind and a Docker engine; creates a real cluster (`make e2e`)"
    )
