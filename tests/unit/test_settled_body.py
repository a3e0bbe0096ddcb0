"""Kopf keeps the latest body of every Migration for as long as the Migration exists. Once a run
has settled and its daemon is gone, the operator drops the spec and the status from that body,
all but what decides whether a daemon is needed again."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any, cast

import kopf
import pytest

from cutover import handlers
from cutover.kube import Kube
from cutover.reconciler import Stores, needs_attention, shed_settled_body
from cutover.wakeups import Wakeups

UID = "m1"
HISTORY = [
    {"step": i, "weight": w, "at": f"2026-11-30T10:0{i}:00Z", "message": "x" * 200}
    for i, w in enumerate((10, 50, 100))
]
CONDITIONS = [
    {"type": t, "status": "True", "reason": "Succeeded", "message": "y" * 200}
    for t in ("Ready", "Progressing", "Completed")
]
SUCCEEDED: dict[str, Any] = {
    "apiVersion": "cutover.io/v1alpha1",
    "kind": "Migration",
    "metadata": {
        "name": "checkout",
        "namespace": "shop",
        "uid": UID,
        "generation": 2,
        "finalizers": ["cutover.io/finalizer"],
        "annotations": {"team": "payments"},
    },
    "spec": {"blue": {"deployment": "checkout-blue"}, "green": {"deployment": "checkout-v2"}},
    "status": {
        "phase": "Succeeded",
        "observedGeneration": 2,
        "currentStepIndex": 3,
        "history": HISTORY,
        "conditions": CONDITIONS,
        "preview": {"service": "checkout-preview", "serviceDeleted": True},
    },
}


def _with(status: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    body = copy.deepcopy(SUCCEEDED)
    body["status"].update(status)
    body["metadata"].update(metadata)
    return body


async def _poke(raw: dict[str, Any], wakeups: Wakeups) -> None:
    stores = Stores(cast(Kube, None))  # the handler only applies the event; nothing is read
    memo = SimpleNamespace(context=SimpleNamespace(stores=stores, wakeups=wakeups))
    await handlers.poke(type="MODIFIED", body=kopf.Body(raw), uid=UID, memo=memo)


async def test_a_finished_run_keeps_only_what_decides_on_a_daemon() -> None:
    raw = copy.deepcopy(SUCCEEDED)
    kept_for_daemon = kopf.Body(raw)  # what Kopf holds: another view of the event's dict

    await _poke(raw, Wakeups())

    assert dict(kept_for_daemon.status) == {
        "phase": "Succeeded",
        "observedGeneration": 2,
        "preview": {"service": "checkout-preview", "serviceDeleted": True},
    }
    assert raw["spec"] == {}
    assert raw["metadata"] == SUCCEEDED["metadata"]


@pytest.mark.parametrize(
    ("why", "raw"),
    [
        ("still progressing", _with({"phase": "Progressing"})),
        ("spec changed since", _with({}, generation=3)),
        ("a retry requested", _with({}, annotations={"cutover.io/request": "retry:1"})),
        ("rollback window open", _with({"rollbackWindowEndsAt": "2026-11-30T11:00:00Z"})),
        ("preview not deleted", _with({"preview": {"service": "checkout-preview"}})),
        ("being deleted", _with({}, deletionTimestamp="2026-11-30T10:10:00Z")),
    ],
)
async def test_a_body_something_still_reads_is_left_whole(why: str, raw: dict[str, Any]) -> None:
    before = copy.deepcopy(raw)
    await _poke(raw, Wakeups())
    assert raw == before, why


async def test_a_settled_run_whose_daemon_is_still_ending_is_left_whole() -> None:
    """Its last reconcile may still read the status (e.g. for the notifications after the
    final write): the daemon sheds it itself as it ends."""
    raw = copy.deepcopy(SUCCEEDED)
    wakeups = Wakeups()
    wakeups.event(UID)  # the daemon's
    await _poke(raw, wakeups)
    assert raw == SUCCEEDED

    wakeups.forget(UID)
    await _poke(raw, wakeups)
    assert set(raw["status"]) == {"phase", "observedGeneration", "preview"} and raw["spec"] == {}


@pytest.mark.parametrize(
    "status",
    [
        {"phase": "Succeeded"},
        {"phase": "RolledBack", "rollbackWindowEndsAt": "2026-11-30T11:00:00Z"},
        {"phase": "Failed", "observedGeneration": 1},
        {"phase": "Aborted", "preview": {"service": "p"}},
        {"phase": "Paused"},
        {"phase": "Succeeded", "observedGeneration": 2, "preview": {"serviceDeleted": True}},
    ],
)
def test_the_daemon_filter_answers_the_same_before_and_after(status: dict[str, Any]) -> None:
    raw = _with(status)
    raw["status"] = {**status, "history": HISTORY, "conditions": CONDITIONS}
    before = needs_attention(raw)
    shed_settled_body(raw)
    assert needs_attention(raw) == before
