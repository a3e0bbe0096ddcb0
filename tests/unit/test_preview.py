"""spec.preview: checks before any user traffic, decided by the core alone (fake clock, the
simulated cluster of sim.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from cutover.api import (
    ConditionType,
    GateOutcome,
    MigrationSpec,
    Phase,
    PreviewState,
    SpecInvalid,
    parse_spec,
)
from cutover.core.activity import needs_attention
from cutover.core.gates import Reading
from cutover.core.machine import Action, CreatePreview, DeletePreview, EmitEvent, SetWeight, decide
from cutover.core.observations import RequestVerb
from cutover.core.preview import name_problems, service_name

from .sim import T0, Sim
from .specs import gate, raw, spec

SMOKE = gate(
    name="smoke",
    interval="10s",
    web={"url": "http://{{preview.service}}.{{namespace}}.svc/healthz", "jsonPath": "$.errors"},
    prometheus=None,
    threshold={"max": 0},
)
SMOKE = {k: v for k, v in SMOKE.items() if v is not None}
WEIGHTED = {"router": "gatewayapi", "gatewayAPI": {"httpRoute": "orders"}}
STEPS = [{"setWeight": 20}, {"setWeight": 100}]


def preview_spec(**changes: object) -> MigrationSpec:
    fields: dict[str, object] = {
        "traffic": WEIGHTED,
        "steps": STEPS,
        "gates": [SMOKE, gate(interval="10s")],
        "preview": {"gates": ["smoke"]},
        "progressDeadline": "1m",
    }
    fields.update(changes)
    return spec(**fields)


class Checks:
    """Readings by gate, recording each check with the weight in the cluster at the time."""

    def __init__(self, sim: Sim, values: dict[str, float]) -> None:
        self.sim = sim
        self.values = values
        self.seen: list[tuple[str, int]] = []

    def __call__(self, name: str, _now: datetime) -> Reading:
        self.seen.append((name, self.sim.weight_in_cluster))
        return Reading.of(self.values.get(name, 0.0))


def simulate(values: dict[str, float] | None = None, **changes: object) -> tuple[Sim, Checks]:
    sim = Sim(preview_spec(**changes), ready_delay=3.0)
    checks = Checks(sim, values or {})
    sim.readings = checks
    return sim, checks


def weights_before_preview_passed(sim: Sim) -> list[int]:
    """Weights written before the PreviewPassed Event (none may move user traffic)."""
    written: list[int] = []
    for action in sim.actions:
        if getattr(action, "reason", None) == "PreviewPassed":
            return written
        if isinstance(action, SetWeight):
            written.append(action.weight)
    return written


def test_a_passing_preview_checks_green_at_weight_0_then_the_steps_move_traffic() -> None:
    sim, checks = simulate()
    sim.run(until=lambda s: s.status.phase is Phase.succeeded, limit=600)

    assert sim.status.phase is Phase.succeeded
    preview = sim.status.preview
    assert preview is not None and preview.state is PreviewState.passed
    assert preview.service == "orders-preview" and preview.service_deleted
    # Green became ready (3 s) before the preview's gate was first checked.
    assert preview.ready_at is not None and preview.ready_at >= T0 + timedelta(seconds=3)
    assert weights_before_preview_passed(sim) == []
    # The preview gate asked only at weight 0, the run's gate only once traffic moved.
    assert {w for name, w in checks.seen if name == "smoke"} == {0}
    assert checks.seen.count(("smoke", 0)) >= 1
    assert all(w > 0 for name, w in checks.seen if name == "error-rate")
    assert sim.weight_writes == [20, 100]
    # Created once, deleted at the end.
    assert [a for a in sim.actions if isinstance(a, CreatePreview)] == [
        CreatePreview("orders-preview")
    ]
    assert [a for a in sim.actions if isinstance(a, DeletePreview)] == [
        DeletePreview("orders-preview")
    ]
    assert sim.previews == set()
    smoke = sim.status.gate("smoke")
    assert smoke is not None and smoke.outcome is GateOutcome.passed


def test_a_preview_gate_failing_at_weight_0_rolls_back_without_moving_user_traffic() -> None:
    sim, checks = simulate({"smoke": 3.0})
    sim.run(until=lambda s: s.status.phase is Phase.rolled_back, limit=600)

    assert sim.status.phase is Phase.rolled_back
    assert sim.weight_writes == [0]  # the rollback's restore only: never a weight above 0
    assert sim.weight_in_cluster == 0
    assert ("error-rate", 0) not in checks.seen
    rolled = sim.status.condition(ConditionType.rolled_back)
    assert rolled is not None and rolled.status == "True"
    reason = sim.status.rollback_reason or ""
    assert reason.startswith("preview gate smoke at ") and "3 is above max 0" in reason, reason
    assert "gate_failed" not in reason
    assert [h.reason for h in sim.status.history].count("GateFailed") == 1
    preview = sim.status.preview
    assert preview is not None and preview.state is PreviewState.failed
    assert preview.service_deleted and sim.previews == set()


def test_green_never_ready_in_the_preview_rolls_back_at_the_progress_deadline() -> None:
    sim, checks = simulate()
    sim.ready_delay = 10_000
    sim.run(until=lambda s: s.status.phase is Phase.rolled_back, limit=600)

    assert sim.status.phase is Phase.rolled_back
    assert [h.reason for h in sim.status.history if h.phase is Phase.rolling_back] == [
        "ProgressDeadlineExceeded"
    ]
    reason = sim.status.rollback_reason or ""
    assert "preview: green checkout-green has 0/4 replicas available 1m" in reason, reason
    assert "no user traffic moved" in reason
    assert checks.seen == []  # never ready, never checked
    assert sim.weight_writes == [0]
    # Not before the deadline.
    assert sim.status.completed_at is not None
    assert sim.status.completed_at >= T0 + timedelta(minutes=1)
    assert sim.previews == set()


def test_an_operator_restarted_mid_preview_neither_repeats_nor_skips_it() -> None:
    sim, _ = simulate()
    sim.run(
        until=lambda s: (
            s.status.preview is not None and s.status.preview.state is PreviewState.checking
        ),
        limit=60,
    )
    checking = sim.status.model_copy(deep=True)
    assert checking.preview is not None and checking.preview.service_created
    ready_at = checking.preview.ready_at

    # A new operator reads only the status: no second Service, no new preview, no weight.
    restarted = decide(sim.spec, checking, sim.observe(), sim.now + timedelta(seconds=1))
    assert not [a for a in restarted.actions if isinstance(a, CreatePreview | SetWeight)]
    assert restarted.status.preview == checking.preview

    sim.now += timedelta(seconds=1)
    sim.run(until=lambda s: s.status.phase is Phase.succeeded, limit=600)
    assert sim.status.preview is not None and sim.status.preview.ready_at == ready_at
    assert sim.status.preview.state is PreviewState.passed
    assert sim.weight_writes == [20, 100]


def test_a_crash_before_the_create_was_acknowledged_asks_for_it_again() -> None:
    sim, _ = simulate()
    started = decide(sim.spec, sim.status, sim.observe(), sim.now)
    moves = tuple(a for a in started.actions if not isinstance(a, EmitEvent))
    first = decide(sim.spec, started.status, sim.observe(moves), sim.now)
    assert CreatePreview("orders-preview") in first.actions
    assert first.status.preview is not None and not first.status.preview.service_created
    # The status (intent) was written, the Service write may or may not have happened.
    again = decide(sim.spec, first.status, sim.observe(), sim.now + timedelta(seconds=5))
    assert CreatePreview("orders-preview") in again.actions
    assert again.status.preview is not None
    assert again.status.preview.started_at == first.status.preview.started_at


def test_a_promotion_during_the_preview_skips_its_checks_but_not_the_first_step() -> None:
    sim, checks = simulate({"smoke": 3.0})
    sim.run(
        until=lambda s: (
            s.status.preview is not None and s.status.preview.state is PreviewState.checking
        ),
        limit=60,
    )
    sim.ask(RequestVerb.promote)
    assert sim.status.preview is not None and sim.status.preview.state is PreviewState.passed
    assert sim.status.current_step_index == 0
    assert sim.weight_writes[:1] == [20]
    sim.run(until=lambda s: s.status.phase is Phase.succeeded, limit=600)
    # Promoted before its first check: the failing preview gate was never asked, nor later.
    assert "smoke" not in {name for name, _ in checks.seen}
    assert sim.status.phase is Phase.succeeded


def test_a_preview_without_gates_only_waits_for_green_at_full_size() -> None:
    sim, checks = simulate(preview={"service": "orders-check"})
    sim.run(until=lambda s: s.status.phase is Phase.succeeded, limit=600)
    preview = sim.status.preview
    assert preview is not None and preview.service == "orders-check"
    assert preview.ended_at is not None and preview.ended_at >= T0 + timedelta(seconds=3)
    assert {name for name, _ in checks.seen} == {"error-rate", "smoke"}


def test_no_preview_creates_no_service() -> None:
    sim = Sim(spec(traffic=WEIGHTED, steps=STEPS, gates=[]))
    sim.run(until=lambda s: s.status.phase is Phase.succeeded, limit=600)
    assert sim.status.preview is None
    assert not [a for a in sim.actions if isinstance(a, CreatePreview | DeletePreview)]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"traffic": {"router": "replicas", "service": "checkout"}},
            "preview: the replicas router sends user traffic to every green pod",
        ),
        ({"preview": {"gates": ["nope"]}}, "preview.gates[0]: no gate named 'nope' in spec.gates"),
        ({"preview": {"gates": ["smoke", "smoke"]}}, "preview.gates[1]: 'smoke' is named twice"),
        ({"preview": {"service": "Bad.Name"}}, "preview.service"),
    ],
)
def test_a_preview_the_run_cannot_honour_is_an_invalid_spec(
    changes: dict[str, object], message: str
) -> None:
    fields = {
        "traffic": WEIGHTED,
        "steps": STEPS,
        "gates": [SMOKE],
        "preview": {"gates": ["smoke"]},
    } | changes
    with pytest.raises(SpecInvalid) as caught:
        parse_spec(raw(**fields))
    assert any(message in p for p in caught.value.problems), caught.value.problems


def test_a_default_name_that_is_no_service_name_asks_for_one() -> None:
    parsed = preview_spec()
    assert service_name(parsed, "orders") == "orders-preview"
    assert name_problems(parsed, "orders") == []
    problems = name_problems(parsed, "orders.v2")
    assert problems and "spec.preview.service: the default name 'orders.v2-preview'" in problems[0]
    assert name_problems(parsed, "o" * 55) == []  # 63 with "-preview"
    assert name_problems(parsed, "o" * 56)


def test_an_ended_run_keeps_its_daemon_until_its_preview_service_is_deleted() -> None:
    assert needs_attention(Phase.succeeded, 1, 1, False, preview_left=True)
    assert needs_attention(Phase.rolled_back, 1, 1, False, preview_left=True)
    assert not needs_attention(Phase.succeeded, 1, 1, False, preview_left=False)


def test_cutover_lint_asks_for_a_preview_service_name_the_default_cannot_be() -> None:
    from cutover.cli.plan import lint_problems

    manifest = {
        "apiVersion": "cutover.io/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": "checkout.v2"},
        "spec": raw(traffic=WEIGHTED, steps=STEPS, gates=[SMOKE], preview={"gates": ["smoke"]}),
    }
    assert any("spec.preview.service: the default name" in p for p in lint_problems(manifest))
    manifest["spec"]["preview"]["service"] = "checkout-v2-preview"
    assert lint_problems(manifest) == []


def test_cutover_status_says_the_preview_holds_user_traffic_back() -> None:
    from cutover.cli.report import build_report

    sim, _ = simulate()
    body = {
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": raw(
            traffic=WEIGHTED,
            steps=STEPS,
            gates=[SMOKE, gate(interval="10s")],
            preview={"gates": ["smoke"]},
            progressDeadline="1m",
        ),
    }
    sim.reconcile()
    starting = build_report({**body, "status": sim.status.to_dict()}, sim.now)
    assert any(
        s.startswith(
            "preview: waiting for green to be ready at full size behind Service orders-preview"
        )
        for s in starting.next_steps
    ), starting.next_steps
    sim.run(
        until=lambda s: (
            s.status.preview is not None and s.status.preview.state is PreviewState.checking
        ),
        limit=60,
    )
    checking = build_report({**body, "status": sim.status.to_dict()}, sim.now)
    assert (
        "preview: checking smoke through Service orders-preview at weight 0; no user traffic"
        " moves before the preview passed"
    ) in checking.next_steps, checking.next_steps


def test_a_preview_service_never_in_place_rolls_back_at_the_progress_deadline() -> None:
    sim, _ = simulate()
    acted: tuple[Action, ...] = ()
    for _ in range(200):
        decision = decide(sim.spec, sim.status, sim.observe(acted), sim.now)
        sim.status = decision.status
        # The shell never manages the Service write (refused, say): never acknowledged.
        acted = tuple(a for a in decision.actions if not isinstance(a, EmitEvent | CreatePreview))
        for action in acted:
            sim.act(action)
        if sim.status.phase is Phase.rolled_back:
            break
        sim.now += timedelta(seconds=1)
    assert sim.status.phase is Phase.rolled_back
    reason = sim.status.rollback_reason or ""
    assert "preview: Service orders-preview not in place 1m after the preview started" in reason
    assert sim.now >= T0 + timedelta(minutes=1)
    assert sim.weight_in_cluster == 0 and 20 not in sim.weight_writes
