"""What Kopf keeps of each Migration for its daemon's life is the latest event's body: the
operator drops its managedFields (half of it in memory) when the event handler sees it."""

from __future__ import annotations

import copy
from typing import Any

import kopf

from cutover.handlers import shed_managed_fields

RAW: dict[str, Any] = {
    "apiVersion": "cutover.io/v1alpha1",
    "kind": "Migration",
    "metadata": {
        "name": "checkout",
        "namespace": "shop",
        "finalizers": ["cutover.io/finalizer"],
        "managedFields": [
            {"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {}}},
            {"manager": "kopf", "operation": "Update", "subresource": "status"},
        ],
    },
    "spec": {"blue": {"deployment": "checkout-blue"}, "green": {"deployment": "checkout-v2"}},
    "status": {"phase": "Progressing", "currentStepIndex": 1},
}


def test_the_body_kept_for_the_daemon_loses_managed_fields_and_nothing_else() -> None:
    raw = copy.deepcopy(RAW)
    seen_by_handler = kopf.Body(raw)
    kept_for_daemon = kopf.Body(raw)  # Kopf's daemon body: another view of the same dict

    shed_managed_fields(seen_by_handler)

    assert "managedFields" not in kept_for_daemon.metadata
    expected = copy.deepcopy(RAW)
    del expected["metadata"]["managedFields"]
    assert dict(kept_for_daemon) == expected
    assert list(kept_for_daemon.metadata["finalizers"]) == ["cutover.io/finalizer"]


def test_a_body_without_managed_fields_is_left_as_it_is() -> None:
    raw = copy.deepcopy(RAW)
    del raw["metadata"]["managedFields"]
    shed_managed_fields(kopf.Body(raw))
    assert raw["metadata"]["name"] == "checkout" and raw["spec"] == RAW["spec"]
