"""Creating thousands of objects must not slow down with history (plain kmock stalls)."""

from __future__ import annotations

import time
from typing import Any

import pytest

COUNT = 3_000
WINDOW = 500


@pytest.mark.integration
def test_create_3000_configmaps(core: Any) -> None:
    stamps: list[float] = []
    started = time.monotonic()
    for i in range(COUNT):
        core.create_namespaced_config_map(
            "throughput", {"metadata": {"name": f"cm-{i:05d}"}, "data": {"i": str(i)}}
        )
        stamps.append(time.monotonic())
    total = stamps[-1] - started
    first_rate = WINDOW / (stamps[WINDOW - 1] - started)
    last_rate = WINDOW / (stamps[-1] - stamps[-WINDOW - 1])
    print(
        f"\ncreated {COUNT} ConfigMaps in {total:.1f}s: {COUNT / total:.0f}/s overall, "
        f"first {WINDOW}: {first_rate:.0f}/s, last {WINDOW}: {last_rate:.0f}/s"
    )
    assert total < 120
    assert last_rate >= 0.3 * first_rate
    assert len(core.list_namespaced_config_map("throughput").items) == COUNT
