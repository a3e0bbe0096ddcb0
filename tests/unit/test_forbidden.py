"""A run whose author may not do what its spec asks fails before anything moves, as Forbidden."""

from __future__ import annotations

from cutover.api import ConditionType, MigrationStatus, Phase
from cutover.core.actions import EmitEvent
from cutover.core.machine import decide
from cutover.core.observations import DeploymentState, Observations

from .sim import T0
from .specs import spec

DENIED = (
    "Forbidden: user 'editor' may not create jobs.batch in namespace shop (spec.hooks.preShift[0])"
)


def test_a_forbidden_run_fails_with_its_own_reason_and_moves_nothing() -> None:
    observed = Observations(
        generation=1,
        blue=DeploymentState(4, 4),
        green=DeploymentState(0, 0),
        forbidden=(DENIED,),
        preflight_errors=("a PromQL problem found too",),
    )
    decision = decide(spec(), MigrationStatus(), observed, T0)
    status = decision.status
    assert (status.phase, status.reason) == (Phase.failed, "Forbidden")
    # Alone: what the author may not do is the answer, not mixed with other problems.
    invalid = status.condition(ConditionType.invalid_spec)
    assert invalid is not None and (invalid.reason, invalid.message) == ("Forbidden", DENIED)
    assert [a for a in decision.actions if not isinstance(a, EmitEvent)] == []
    warnings = [a for a in decision.actions if isinstance(a, EmitEvent) and a.type == "Warning"]
    assert [(w.reason, w.message) for w in warnings] == [("Forbidden", DENIED)]
