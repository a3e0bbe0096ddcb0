"""Properties of the decision engine over generated specs and observation sequences."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cutover.api import GateOutcome, MigrationSpec, Phase, parse_spec
from cutover.core.gates import Reading
from cutover.core.machine import RequestVerb, SetWeight
from tests.crdschema import validator

from .sim import Sim

VALIDATOR = validator()
# `make mutation` runs these once per mutant, so it asks for fewer examples.
SCALE = float(os.environ.get("CUTOVER_HYPOTHESIS_SCALE", "1"))


def examples(count: int) -> int:
    return max(10, round(count * SCALE))


@st.composite
def specs(draw: st.DrawFn) -> MigrationSpec:
    weights = [*sorted(draw(st.lists(st.integers(0, 99), min_size=0, max_size=4))), 100]
    steps: list[dict[str, Any]] = []
    for weight in weights:
        steps.append({"setWeight": weight})
        if draw(st.booleans()):
            pause = draw(st.one_of(st.none(), st.integers(1, 120)))
            steps.append({"pause": {} if pause is None else {"duration": f"{pause}s"}})
    gates = [
        {
            "name": f"g{i}",
            "prometheus": {"address": "http://p:9090", "query": "up"},
            "threshold": {"max": 0.5},
            "interval": f"{draw(st.integers(1, 30))}s",
            "failureLimit": draw(st.integers(0, 2)),
            "inconclusiveLimit": draw(st.integers(0, 2)),
            "consecutiveErrorLimit": draw(st.integers(0, 3)),
            "onNoData": draw(st.sampled_from(["fail", "inconclusive", "pass"])),
            "onError": draw(st.sampled_from(["pause", "rollback"])),
        }
        for i in range(draw(st.integers(0, 2)))
    ]
    return parse_spec(
        {
            "blue": {"deployment": "b"},
            "green": {"deployment": "g"},
            "traffic": {"router": "replicas"},
            "steps": steps,
            "gates": gates,
            "rollback": {"automatic": draw(st.booleans())},
            "progressDeadline": f"{draw(st.integers(5, 300))}s",
            "bake": f"{draw(st.integers(0, 60))}s",
        }
    )


READINGS = st.sampled_from(
    [Reading.of(0.0), Reading.of(0.0), Reading.of(0.9), Reading.no_data(), Reading.error("down")]
)
MOVES = st.lists(
    st.one_of(
        st.tuples(st.just("wait"), st.integers(1, 200)),
        st.tuples(st.just("reading"), READINGS),
        st.tuples(st.just("request"), st.sampled_from(list(RequestVerb))),
        st.tuples(st.just("readiness"), st.integers(0, 400)),
    ),
    max_size=40,
)


def step_target(spec: MigrationSpec, index: int) -> int:
    target = 0
    for step in spec.steps[: index + 1]:
        if step.set_weight is not None:
            target = step.set_weight
    return 100 if index >= len(spec.steps) else target


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(), moves=MOVES, blue=st.integers(1, 10))
def test_invariants_hold_for_any_spec_and_any_observations(
    spec: MigrationSpec, moves: list[tuple[str, Any]], blue: int
) -> None:
    reading = {"now": Reading.of(0.0)}
    sim = Sim(spec, blue=blue, readings=lambda _g, _n: reading["now"])
    rolled_back_seen = False
    for kind, value in moves:
        before = sim.status.model_copy(deep=True)
        writes_before = len(sim.actions)
        if kind == "wait":
            sim.now += timedelta(seconds=value)
        elif kind == "reading":
            reading["now"] = value
        elif kind == "readiness":
            sim.ready_delay = value
        decision = sim.ask(value) if kind == "request" else sim.reconcile()
        status = sim.status
        # The weight never exceeds the target of the step the run is on.
        if status.phase in (Phase.progressing, Phase.paused):
            assert status.weight <= step_target(spec, status.current_step_index)
        # The weight never goes up while a gate is failing.
        stopping = {GateOutcome.failed, GateOutcome.error, GateOutcome.inconclusive}
        if any(g.outcome in stopping for g in status.gates) and kind != "request":
            new_writes = [a for a in sim.actions[writes_before:] if isinstance(a, SetWeight)]
            assert all(w.weight <= before.weight for w in new_writes)
        # After a rollback all traffic is on blue, in the status and in the cluster.
        if status.phase is Phase.rolled_back:
            rolled_back_seen = True
            assert status.weight == 0 and sim.weight_in_cluster == 0 and sim.green == 0
        # The status is always what the CRD schema accepts.
        body = {
            "apiVersion": "cutover.io/v1alpha1",
            "kind": "Migration",
            "metadata": {"name": "m"},
            "spec": spec.to_dict(),
            "status": status.to_dict(),
        }
        errors = list(VALIDATOR.iter_errors(body))
        assert not errors, [e.message for e in errors]
        assert decision.requeue_after is None or decision.requeue_after >= 0
    if rolled_back_seen and sim.status.phase is Phase.rolled_back:
        assert sim.weight_in_cluster == 0


@settings(max_examples=examples(100), deadline=None)
@given(
    spec=specs(), when=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1))
)
def test_a_healthy_run_without_manual_pauses_always_completes(
    spec: MigrationSpec, when: datetime
) -> None:
    sim = Sim(spec)
    for _ in range(400):
        sim.run(lambda s: s.status.phase in (Phase.paused, Phase.succeeded), limit=3600)
        if sim.status.phase is Phase.succeeded:
            break
        sim.ask(RequestVerb.promote)
    assert sim.status.phase is Phase.succeeded
    assert sim.weight_in_cluster == 100 and sim.blue == 0
