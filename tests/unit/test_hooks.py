"""Hooks in the engine: order against traffic, failures, retries, the point of no return."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from cutover.api import TERMINAL_PHASES, ConditionType, HookState, Phase
from cutover.core.gates import Reading
from cutover.core.machine import (
    RequestVerb,
    RestoreBlue,
    RunHook,
    SetWeight,
    StopJob,
    decide,
    job_name,
)

from .sim import Sim
from .specs import gate, spec

JOB = {
    "spec": {
        "template": {
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "psql", "image": "postgres:16", "command": ["psql"]}],
            }
        }
    }
}


def hook(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "jobTemplate": JOB, **extra}


HOOKS = {
    "preShift": [hook("expand")],
    "afterStep": [hook("check")],
    "postPromotion": [hook("contract", irreversible=True)],
    "onRollback": [hook("undo")],
}
STEPS = [{"setWeight": 50}, {"setWeight": 100}]


def hooked(**changes: Any):  # type: ignore[no-untyped-def]
    base: dict[str, Any] = {"steps": STEPS, "hooks": HOOKS, "gates": [gate(interval="10s")]}
    base.update(changes)
    return spec(**base)


def done(sim: Sim) -> bool:
    return sim.status.phase in TERMINAL_PHASES or sim.status.phase is Phase.paused


def test_hooks_run_in_order_around_the_traffic_writes() -> None:
    sim = Sim(hooked(bake="1m"))
    sim.run(done)
    assert sim.status.phase is Phase.succeeded
    assert sim.order() == [
        "hook expand",
        "weight 50",
        "hook check",
        "weight 100",
        "hook check",
        "hook contract",
        "retire",
    ]
    assert [r.state for r in sim.status.hooks] == [HookState.succeeded] * 4
    assert len(sim.jobs_created) == len(set(sim.jobs_created)) == 4


def test_a_failed_pre_shift_hook_moves_no_traffic_and_runs_on_rollback() -> None:
    sim = Sim(hooked(), hook_outcomes={"expand": "fail"})
    sim.run(done)
    assert sim.status.phase is Phase.rolled_back
    assert not [a for a in sim.actions if isinstance(a, SetWeight)]
    assert sim.order()[-1] == "hook undo"
    rolled = sim.status.condition(ConditionType.rolled_back)
    assert rolled is not None and rolled.reason == "HookFailed"
    assert "expand" in rolled.message and "rows missing" in rolled.message


def test_a_failed_after_step_hook_rolls_back_and_runs_on_rollback() -> None:
    sim = Sim(hooked(), hook_outcomes={"check": "fail"})
    sim.run(done)
    assert sim.status.phase is Phase.rolled_back
    assert sim.order() == ["hook expand", "weight 50", "hook check", "restore", "hook undo"]
    assert sim.weight_in_cluster == 0


def test_retries_create_a_new_job_per_attempt_then_fail() -> None:
    raw_hooks = dict(HOOKS, preShift=[hook("expand", retries=2)])
    sim = Sim(hooked(hooks=raw_hooks), hook_outcomes={"expand": "fail"})
    sim.run(done)
    expand_jobs = [j for j in sim.jobs_created if "-expand" in j]
    assert len(expand_jobs) == 3 and len(set(expand_jobs)) == 3
    assert sim.status.phase is Phase.rolled_back


def test_a_hook_that_runs_too_long_is_stopped_and_counts_as_failed() -> None:
    raw_hooks = dict(HOOKS, afterStep=[hook("check", timeout="30s")])
    sim = Sim(hooked(hooks=raw_hooks), hook_outcomes={"check": "hang"}, job_delay=0)
    sim.run(done)
    stopped = [a.job for a in sim.actions if isinstance(a, StopJob)]
    assert stopped and "-check" in stopped[0]
    assert sim.status.phase is Phase.rolled_back
    check = next(r for r in sim.status.hooks if r.name == "check")
    assert check.state is HookState.failed and "timed out after 30s" in check.message


def test_a_restart_while_a_job_runs_does_not_create_a_second_job() -> None:
    sim = Sim(hooked(), job_delay=60)
    sim.run(lambda s: any(r.state is HookState.running for r in s.status.hooks))
    created = list(sim.jobs_created)
    restarted = Sim(hooked(), status=sim.status, now=sim.now + timedelta(seconds=5), job_delay=60)
    restarted._job_started = dict(sim._job_started)  # the cluster still has the Job
    restarted.reconcile()
    assert restarted.jobs_created == [] and created


def test_after_an_irreversible_hook_a_breach_pauses_instead_of_rolling_back() -> None:
    sim = Sim(hooked(bake="0s"), job_delay=60)
    sim.run(lambda s: not s.status.rollback_available)
    # The contract hook started while the run still goes on, at 100 % green.
    assert sim.status.phase is Phase.progressing and sim.weight_in_cluster == 100
    assert "irreversible hook contract started" in (sim.status.point_of_no_return or "")
    condition = sim.status.condition(ConditionType.rollback_available)
    assert condition is not None and condition.status == "False"
    assert "contract" in (sim.status.rollback_unavailable_reason or "")
    sim.readings = lambda _g, _n: Reading.of(0.9)
    sim.run(done)
    assert sim.status.phase is Phase.paused and sim.status.reason == "RollbackNotAvailable"
    assert not any(isinstance(a, RestoreBlue) for a in sim.actions)
    sim.ask(RequestVerb.abort)
    assert sim.status.phase is Phase.paused
    assert not any(isinstance(a, RestoreBlue) for a in sim.actions)


def test_job_names_are_deterministic_and_valid_dns_labels() -> None:
    name = job_name("a" * 60, "12-3", "reconcile-data", 4, 2)
    assert name == job_name("a" * 60, "12-3", "reconcile-data", 4, 2)
    assert len(name) <= 63 and name[0].isalnum() and name[-1].isalnum()
    assert job_name("orders", "1-1", "expand", None, 1) == "orders-1-1-expand"


def test_a_job_created_earlier_in_the_wake_up_is_not_created_again_before_the_watch_shows_it() -> (
    None
):
    """The rounds of one wake-up follow each other before the Job's watch event comes: the
    round after a Job's creation must not create it again (refused, as it exists, and each
    refusal cost a round, up to every round of the wake-up). A later wake-up that still does
    not see it creates it again, in case someone deleted it."""
    sim = Sim(hooked())
    observed = sim.observe()
    first = decide(sim.spec, sim.status, observed, sim.now)
    created = [a for a in first.actions if isinstance(a, RunHook)]
    assert [a.hook for a in created] == ["expand"]

    # Nothing in ``acted`` (the round before may have done something else): what the wake-up
    # created is enough.
    after = replace(sim.observe(), jobs_created=frozenset(a.job for a in created))
    next_round = decide(sim.spec, first.status, after, sim.now)
    assert not [a for a in next_round.actions if isinstance(a, RunHook)]
    assert next_round.status.hooks[0].state is HookState.running

    later = decide(sim.spec, next_round.status, observed, sim.now + timedelta(seconds=5))
    assert [a.job for a in later.actions if isinstance(a, RunHook)] == [created[0].job]
