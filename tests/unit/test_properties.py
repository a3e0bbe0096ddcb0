"""Properties of the decision engine over generated specs and observation sequences.

The strategies are built to reach the states the invariants guard: most examples have gates whose
readings turn failing, empty or erroring, hooks that fail or hang, manual requests, and operator
crashes between a decision's writes and its status write. ``pytest
tests/unit/test_properties.py --hypothesis-show-statistics`` prints how often each is reached
(the figures are in docs/testing.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cutover.api import (
    ConditionType,
    ErrorPolicy,
    GateOutcome,
    MigrationSpec,
    MigrationStatus,
    Phase,
    Verdict,
    parse_spec,
    parse_status,
)
from cutover.core.gates import Reading
from cutover.core.machine import Decision, RequestVerb, RestoreBlue, RunHook, SetWeight, decide
from tests.crdschema import validator

from .sim import Sim

VALIDATOR = validator()
# `make mutation` runs these once per mutant, so it asks for fewer examples.
SCALE = float(os.environ.get("CUTOVER_HYPOTHESIS_SCALE", "1"))


def examples(count: int) -> int:
    return max(10, round(count * SCALE))


READINGS = {
    "pass": Reading.of(0.0),
    "fail": Reading.of(0.9),
    "no-data": Reading.no_data(),
    "error": Reading.error("down"),
}
HOOK_OUTCOMES = ["succeed", "succeed", "succeed", "fail", "hang"]
JOB = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}


@dataclass
class Scenario:
    spec: MigrationSpec
    hook_outcomes: dict[str, str]
    readings: dict[str, str]
    job_delay: int
    blue: int


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    weights = [*sorted(draw(st.lists(st.integers(1, 99), min_size=0, max_size=3))), 100]
    steps: list[dict[str, Any]] = []
    for weight in weights:
        steps.append({"setWeight": weight})
        if draw(st.integers(0, 3)) == 0:
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
        for i in range(draw(st.sampled_from([0, 1, 1, 2, 2, 3])))
    ]
    hooks: dict[str, list[dict[str, Any]]] = {}
    outcomes: dict[str, str] = {}
    for stage, name in [
        ("preShift", "expand"),
        ("afterStep", "check"),
        ("postPromotion", "contract"),
        ("onRollback", "undo"),
    ]:
        if draw(st.integers(0, 2)) == 0:
            hooks[stage] = [
                {
                    "name": name,
                    "jobTemplate": JOB,
                    "timeout": f"{draw(st.integers(10, 120))}s",
                    "retries": draw(st.integers(0, 1)),
                    "irreversible": stage == "postPromotion" and draw(st.booleans()),
                }
            ]
            outcomes[name] = draw(st.sampled_from(HOOK_OUTCOMES))
    spec = parse_spec(
        {
            "blue": {"deployment": "b"},
            "green": {"deployment": "g"},
            "traffic": {"router": "replicas"},
            "steps": steps,
            "gates": gates,
            "hooks": hooks,
            "rollback": {"automatic": draw(st.booleans())},
            "progressDeadline": f"{draw(st.integers(5, 300))}s",
            "bake": f"{draw(st.integers(0, 60))}s",
        }
    )
    readings = {g.name: draw(st.sampled_from(list(READINGS))) for g in spec.gates}
    return Scenario(spec, outcomes, readings, draw(st.integers(0, 30)), draw(st.integers(1, 10)))


GATE_INDEX = st.integers(0, 2)
MOVES = st.lists(
    st.one_of(
        st.tuples(st.just("wait"), st.integers(1, 90)),
        st.tuples(st.just("wait"), st.integers(1, 90)),
        st.tuples(st.just("wait"), st.integers(1, 30)),
        st.tuples(st.just("reading"), st.tuples(GATE_INDEX, st.sampled_from(list(READINGS)))),
        st.tuples(st.just("reading"), st.tuples(GATE_INDEX, st.sampled_from(list(READINGS)))),
        st.tuples(st.just("request"), st.sampled_from(list(RequestVerb))),
        st.tuples(st.just("readiness"), st.one_of(st.integers(0, 10), st.integers(0, 400))),
        st.tuples(st.just("crash"), st.integers(0, 4)),
    ),
    # Hypothesis draws short lists by default; a run needs a dozen moves to get anywhere.
    min_size=12,
    max_size=40,
)


def step_target(spec: MigrationSpec, index: int) -> int:
    target = 0
    for step in spec.steps[: index + 1]:
        if step.set_weight is not None:
            target = step.set_weight
    return 100 if index >= len(spec.steps) else target


def crash(sim: Sim, after_actions: int) -> None:
    """The operator dies after ``after_actions`` of a decision's writes, before its status write:
    the cluster has changed, the stored status has not."""
    stored = parse_status(sim.status.to_dict())
    decision = decide(sim.spec, stored, sim.observe(), sim.now)
    for action in decision.actions[:after_actions]:
        sim.act(action)
    sim.status = parse_status(stored.to_dict())


@dataclass
class Reached:
    """What an example got to, for hypothesis's statistics."""

    seen: set[str] = field(default_factory=set)

    def note(self, status: MigrationStatus, sim: Sim) -> None:
        for gate in status.gates:
            if gate.passed + gate.failed + gate.inconclusive + gate.errors:
                self.seen.add("a gate was checked")
            if gate.failed or gate.inconclusive or gate.errors:
                self.seen.add("a gate check failed, was empty or errored")
            if gate.outcome in (GateOutcome.failed, GateOutcome.error, GateOutcome.inconclusive):
                self.seen.add("a gate stopped the run")
        if status.hooks:
            self.seen.add("a hook ran")
        if any(run.state.value == "Failed" for run in status.hooks):
            self.seen.add("a hook failed")
        if status.point_of_no_return:
            self.seen.add("past the point of no return")
        if status.phase in (Phase.rolling_back, Phase.rolled_back):
            self.seen.add("rolled back")
        if status.phase is Phase.paused:
            self.seen.add("paused")
        if status.phase is Phase.succeeded:
            self.seen.add("succeeded")

    def report(self) -> None:
        for what in sorted(self.seen):
            event(what)


ROLLBACK_BY_POLICY = {"GateFailed", "GateError", "HookFailed"}


@settings(
    max_examples=examples(300),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario=scenarios(), moves=MOVES)
def test_invariants_hold_for_any_spec_and_any_observations(
    scenario: Scenario, moves: list[tuple[str, Any]]
) -> None:
    spec = scenario.spec
    readings = dict(scenario.readings)
    sim = Sim(
        spec,
        blue=scenario.blue,
        readings=lambda gate, _now: READINGS[readings[gate]],
        hook_outcomes=scenario.hook_outcomes,
        job_delay=scenario.job_delay,
    )
    reached = Reached()
    jobs: dict[tuple[object, ...], str] = {}
    for kind, value in moves:
        if kind == "crash":
            crash(sim, value)
            reached.seen.add("the operator crashed mid-decision")
            continue
        before = sim.status.model_copy(deep=True)
        writes_before = len(sim.actions)
        if kind == "wait":
            sim.now += timedelta(seconds=value)
        elif kind == "reading" and spec.gates:
            index, reading = value
            readings[spec.gates[index % len(spec.gates)].name] = reading
        elif kind == "readiness":
            sim.ready_delay = value
        decision = sim.ask(value) if kind == "request" else sim.reconcile()
        if kind == "request":
            reached.seen.add("a request was made")
        status = sim.status
        new = sim.actions[writes_before:]
        reached.note(status, sim)
        check_invariants(spec, before, status, new, sim, decision, by_request=kind == "request")
        for action in new:
            if isinstance(action, RunHook):
                key = (status.run_id, action.stage, action.hook, action.step, action.attempt)
                # A restart re-creates a Job under the same name, never a second one.
                assert jobs.setdefault(key, action.job) == action.job, (key, jobs[key], action)
    reached.report()


def check_invariants(
    spec: MigrationSpec,
    before: MigrationStatus,
    status: MigrationStatus,
    new: list[Any],
    sim: Sim,
    decision: Decision,
    *,
    by_request: bool,
) -> None:
    # The weight never exceeds the target of the step the run is on.
    if status.phase in (Phase.progressing, Phase.paused):
        assert status.weight <= step_target(spec, status.current_step_index)
    # Traffic moves up only on gates whose latest check passed (a person's promote aside),
    # including after a failed check that is still within failureLimit.
    rises = [a for a in new if isinstance(a, SetWeight) and a.weight > before.weight]
    if rises and before.weight > 0 and not by_request:
        latest = {g.name: g.last_verdict for g in status.gates}
        assert all(latest.get(g.name) is Verdict.passed for g in spec.gates), (latest, rises)
    # A gate or hook rolls back only when automatic rollback is on, and a provider error only
    # under onError: rollback; past the point of no return nothing rolls back.
    restored = any(isinstance(a, RestoreBlue) for a in new)
    if restored and before.point_of_no_return:
        raise AssertionError(f"rolled back past the point of no return: {status.message}")
    if status.phase is Phase.rolled_back and before.phase is not Phase.rolled_back:
        condition = status.condition(ConditionType.rolled_back)
        rolled = condition.reason if condition else None
        if rolled in ROLLBACK_BY_POLICY and not by_request:
            assert spec.rollback.automatic, (rolled, status.message)
        if rolled == "GateError" and not by_request:
            assert any(g.on_error is ErrorPolicy.rollback for g in spec.gates)
    # After a rollback all traffic is on blue, in the status and in the cluster.
    if status.phase is Phase.rolled_back:
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


@settings(max_examples=examples(100), deadline=None)
@given(
    scenario=scenarios(),
    when=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
    ),
)
def test_a_healthy_run_without_manual_pauses_always_completes(
    scenario: Scenario, when: datetime
) -> None:
    # Any start time: nothing in the engine may depend on the calendar (month ends, leap days).
    # Every hook succeeds (the Sim's default), within the shortest hook timeout drawn (10s).
    sim = Sim(scenario.spec, now=when, job_delay=min(scenario.job_delay, 9))
    stopped: Callable[[Sim], bool] = lambda s: s.status.phase is not Phase.progressing  # noqa: E731
    for _ in range(50):
        sim.run(stopped, limit=3600)
        if sim.status.phase is not Phase.paused:
            break
        sim.ask(RequestVerb.promote)
    assert sim.status.phase is Phase.succeeded
    assert sim.weight_in_cluster == 100 and sim.blue == 0
    assert sim.status.started_at is not None and sim.status.started_at >= when


@settings(max_examples=examples(100), deadline=None)
@given(scenario=scenarios(), moves=MOVES, irreversible_pre_shift=st.booleans())
def test_past_the_point_of_no_return_nothing_returns_traffic_to_blue(
    scenario: Scenario, moves: list[tuple[str, Any]], irreversible_pre_shift: bool
) -> None:
    # The same scenarios, made to reach the point of no return: an irreversible hook that is
    # still running (before any traffic moves, or after promotion) when things go wrong.
    raw = scenario.spec.to_dict()
    stage = "preShift" if irreversible_pre_shift else "postPromotion"
    raw["hooks"] = {stage: [{"name": "contract", "jobTemplate": JOB, "irreversible": True}]}
    spec = parse_spec(raw)
    sim = Sim(spec, job_delay=10_000, hook_outcomes={"contract": "hang"})
    for _ in range(10):
        sim.run(
            lambda s: (
                s.status.point_of_no_return is not None or s.status.phase is not Phase.progressing
            ),
            limit=1800,
        )
        if sim.status.reason != "PauseStep":
            break
        sim.ask(RequestVerb.promote)
    if sim.status.point_of_no_return is None:
        # A gate drawn to stop the run before promotion: nothing to test in this example.
        assert spec.gates or sim.status.phase is not Phase.progressing
        return
    event(f"point of no return reached at {stage}")
    readings = {g.name: "fail" for g in spec.gates}
    sim.readings = lambda gate, _now: READINGS[readings[gate]]
    restores = len([a for a in sim.actions if isinstance(a, RestoreBlue)])
    for kind, value in moves:
        if kind == "crash":
            crash(sim, value)
        elif kind == "request":
            sim.ask(value)
        else:
            if kind == "wait":
                sim.now += timedelta(seconds=value)
            elif kind == "reading" and spec.gates:
                index, reading = value
                readings[spec.gates[index % len(spec.gates)].name] = reading
            sim.reconcile()
        assert sim.status.phase not in (Phase.rolling_back, Phase.rolled_back), sim.status.message
        assert len([a for a in sim.actions if isinstance(a, RestoreBlue)]) == restores
        assert not sim.status.rollback_available
