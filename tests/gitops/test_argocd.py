"""The Argo CD health check and actions, run by a real Lua 5.1 (Argo CD's gopher-lua speaks 5.1).

Statuses are built with the operator's own status model, so a renamed field or a new phase shows
up here rather than as a silently "Unknown" application in Argo CD.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from cutover import api
from cutover.api import (
    Condition,
    ConditionType,
    MigrationStatus,
    Phase,
)

lupa = pytest.importorskip("lupa", reason="lupa (Lua in Python) is not installed")

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "integrations" / "argocd"
HEALTH = (ARGOCD / "health.lua").read_text()
VERBS = ["promote", "promote-full", "pause", "resume", "abort", "retry", "undo"]
NOW = datetime(2026, 1, 1, tzinfo=UTC)


try:
    from lupa import lua51 as lua_module
except ImportError:  # a lupa build without 5.1: the scripts use nothing newer anyway
    lua_module = lupa


def runtime() -> Any:
    lua = lua_module.LuaRuntime(unpack_returned_tuples=True)
    # Argo CD offers no file, module or debug access to these scripts: neither do we.
    lua.execute("io = nil; debug = nil; package = nil; require = nil; dofile = nil")
    return lua


def to_python(value: Any) -> Any:
    if lua_module.lua_type(value) == "table":
        items = dict(value.items())
        if items and all(isinstance(k, int) for k in items):
            return [to_python(items[i]) for i in sorted(items)]
        return {k: to_python(v) for k, v in items.items()}
    return value


def run(script: str, obj: dict[str, Any]) -> Any:
    lua = runtime()
    lua.globals().obj = lua.table_from(obj, recursive=True)
    return to_python(lua.execute(script))


def migration(status: MigrationStatus | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": "checkout", "namespace": "shop", "generation": generation},
        "spec": {"blue": {"deployment": "checkout-blue"}},
    }
    if status is not None:
        obj["status"] = status.to_dict()
    return obj


def status(phase: Phase, message: str = "", generation: int = 1, **extra: Any) -> MigrationStatus:
    return MigrationStatus(phase=phase, message=message, observed_generation=generation, **extra)


EXPECTED = {
    Phase.pending: "Progressing",
    Phase.progressing: "Progressing",
    Phase.rolling_back: "Progressing",
    Phase.paused: "Suspended",
    Phase.rolled_back: "Degraded",
    Phase.failed: "Degraded",
    Phase.succeeded: "Healthy",
}


def test_every_phase_is_mapped() -> None:
    assert set(EXPECTED) == set(Phase)


@pytest.mark.parametrize("phase", list(Phase), ids=lambda p: p.value)
def test_phase_maps_to_health(phase: Phase) -> None:
    health = run(HEALTH, migration(status(phase, message=f"the {phase.value} message")))
    assert health == {"status": EXPECTED[phase], "message": f"the {phase.value} message"}


def test_recorded_rollback() -> None:
    recorded = status(
        Phase.rolled_back,
        message="gate error-rate failed: 0.07 > 0.01; all traffic is back on blue",
        reason="GateFailed",
        rollback_reason="GateFailed",
        weight=0,
        current_step_index=2,
        conditions=[
            Condition(
                type=kind, status=value, reason=why, last_transition_time=NOW, observed_generation=1
            )
            for kind, value, why in (
                (ConditionType.rolled_back, "True", "GateFailed"),
                (ConditionType.ready, "False", "RolledBack"),
            )
        ],
    )
    health = run(HEALTH, migration(recorded))
    assert health["status"] == "Degraded"
    assert "error-rate" in health["message"]


def test_message_falls_back_to_the_phase_and_weight() -> None:
    health = run(HEALTH, migration(status(Phase.progressing, weight=25)))
    assert health == {"status": "Progressing", "message": "Progressing (green weight 25%)"}


def test_an_older_generation_is_still_progressing() -> None:
    # Succeeded for generation 1, but Git now holds generation 2.
    health = run(HEALTH, migration(status(Phase.succeeded, "done", generation=1), generation=2))
    assert health["status"] == "Progressing"
    assert "generation 2" in health["message"]


def test_no_observed_generation_is_progressing() -> None:
    obj = migration(status(Phase.succeeded, "done"))
    del obj["status"]["observedGeneration"]
    assert run(HEALTH, obj)["status"] == "Progressing"


def test_no_status_yet() -> None:
    health = run(HEALTH, migration(None))
    assert health["status"] == "Progressing"
    assert "operator" in health["message"]


def test_an_unknown_phase_is_unknown() -> None:
    obj = migration(status(Phase.succeeded))
    obj["status"]["phase"] = "Exploded"
    assert run(HEALTH, obj) == {"status": "Unknown", "message": "Unknown phase Exploded"}


# --- actions ---------------------------------------------------------------------------------


def discovery(phase: Phase) -> dict[str, bool]:
    script = (ARGOCD / "actions" / "discovery.lua").read_text()
    found = run(script, migration(status(phase)))
    return {name: bool(entry.get("disabled", False)) for name, entry in found.items()}


def test_discovery_offers_every_verb_the_operator_knows() -> None:
    from cutover.core.machine import RequestVerb

    assert set(discovery(Phase.progressing)) == {v.value for v in RequestVerb} == set(VERBS)


def test_discovery_enables_what_makes_sense() -> None:
    enabled = {name for name, disabled in discovery(Phase.paused).items() if not disabled}
    assert enabled == {"promote", "promote-full", "resume", "abort"}
    enabled = {name for name, disabled in discovery(Phase.rolled_back).items() if not disabled}
    assert enabled == {"retry"}


@pytest.mark.parametrize("verb", VERBS)
def test_actions_write_a_request_the_operator_parses(verb: str) -> None:
    from cutover.reconciler import parse_request

    script = (ARGOCD / "actions" / f"{verb}.lua").read_text()
    obj = run(script, migration(status(Phase.paused)))
    value = obj["metadata"]["annotations"][api.REQUEST_ANNOTATION]
    assert re.fullmatch(rf"{re.escape(verb)}:argocd-\d{{8}}T\d{{6}}Z", value)
    request = parse_request(obj["metadata"]["annotations"])
    assert request is not None and request.verb.value == verb
    # Only the annotation changes: the spec a GitOps sync compares stays as it was.
    assert obj["spec"] == migration(None)["spec"]


def test_actions_keep_existing_annotations() -> None:
    obj = migration(status(Phase.paused))
    obj["metadata"]["annotations"] = {"team": "payments"}
    out = run((ARGOCD / "actions" / "abort.lua").read_text(), obj)
    assert out["metadata"]["annotations"]["team"] == "payments"


# --- the ConfigMap carries the same scripts --------------------------------------------------


def test_argocd_cm_embeds_the_scripts() -> None:
    data = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())["data"]
    assert data["resource.customizations.health.cutover.io_Migration"] == HEALTH
    actions = yaml.safe_load(data["resource.customizations.actions.cutover.io_Migration"])
    assert actions["discovery.lua"] == (ARGOCD / "actions" / "discovery.lua").read_text()
    assert [d["name"] for d in actions["definitions"]] == VERBS
    for definition in actions["definitions"]:
        path = ARGOCD / "actions" / f"{definition['name']}.lua"
        assert definition["action.lua"] == path.read_text()


def test_example_application_ignores_what_the_operator_changes() -> None:
    app = yaml.safe_load((ARGOCD / "application.yaml").read_text())
    assert "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"]["syncOptions"]
    ignored = {(d.get("group", ""), d["kind"]) for d in app["spec"]["ignoreDifferences"]}
    assert {
        ("apps", "Deployment"),
        ("", "Service"),
        ("gateway.networking.k8s.io", "HTTPRoute"),
        ("networking.istio.io", "VirtualService"),
        ("networking.k8s.io", "Ingress"),
    } <= ignored


def test_a_refused_spec_after_success_is_degraded_with_the_reason() -> None:
    refused = status(
        Phase.succeeded,
        "done",
        conditions=[
            Condition(
                type=ConditionType.invalid_spec,
                status="True",
                reason="BlueRetired",
                message="spec.blue: checkout-blue was retired by the last run",
                last_transition_time=NOW,
            )
        ],
    )
    health = run(HEALTH, migration(refused))
    assert health == {
        "status": "Degraded",
        "message": "spec.blue: checkout-blue was retired by the last run",
    }
