"""The job and sql gate blocks: their schema rules, what lint/plan and the authority checks make
of them, and how a measurement still under way (a gate's Job running) is recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from cutover.api import (
    Gate,
    GateStatus,
    MigrationStatus,
    Phase,
    SpecInvalid,
    Verdict,
    parse_spec,
)
from cutover.authority import needs
from cutover.cli.plan import lint_problems, rendered_queries
from cutover.core.gates import (
    PENDING_RECHECK_SECONDS,
    Reading,
    ReadingKind,
    judge,
    record,
    wait,
)
from cutover.egress import EgressPolicy
from cutover.gatecheck import GateChecker
from cutover.kube import Conflict, Kube
from cutover.providers import GateCheck, source_for
from cutover.providers.job import gate_job_name
from cutover.providers.sql import Engine, SqlProvider, engine_of

from .sim import Sim
from .specs import gate, raw, spec

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TEMPLATE = {
    "spec": {
        "backoffLimit": 0,
        "template": {
            "spec": {
                "serviceAccountName": "smoke-runner",
                "restartPolicy": "Never",
                "containers": [{"name": "smoke", "image": "curlimages/curl:8"}],
            }
        },
    }
}
SQL = {
    "dsn": {"name": "orders-db", "key": "DATABASE_URL"},
    "query": "SELECT count(*) FROM orders WHERE app = '{{green}}' AND shard = '{{args.shard}}'",
    "args": {"shard": "eu-1"},
}


def provider_gate(name: str, **block: Any) -> dict[str, Any]:
    changes: dict[str, Any] = {"name": name, "threshold": {"min": 1}, **block}
    return {k: v for k, v in gate(**changes).items() if k != "prometheus"}


def manifest(*gates: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "cutover.io/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": "checkout", "namespace": "shop"},
        "spec": raw(gates=list(gates)),
    }


def test_job_and_sql_blocks_name_their_providers() -> None:
    parsed = spec(
        gates=[
            provider_gate("smoke", job={"jobTemplate": TEMPLATE}),
            provider_gate("rows", sql=SQL),
        ]
    )
    assert [g.provider for g in parsed.gates] == ["job", "sql"]
    assert [source_for(g).kind for g in parsed.gates] == ["job", "sql"]


@pytest.mark.parametrize(
    ("block", "words"),
    [
        ({"job": {"jobTemplate": {"metadata": {}}}}, "jobTemplate needs a spec"),
        ({"sql": {**SQL, "args": {"shard": "x' OR '1'='1"}}}, "args.shard"),
        ({"sql": {**SQL, "dsn": {"name": "orders-db"}}}, "dsn.key"),
        (
            {"sql": SQL, "threshold": None, "compare": {"baseline": "x", "maxIncrease": 1}},
            "compare needs",
        ),
    ],
)
def test_a_bad_job_or_sql_block_is_refused(block: dict[str, Any], words: str) -> None:
    with pytest.raises(SpecInvalid, match=words):
        parse_spec(raw(gates=[provider_gate("g", **block)]))


def test_plan_describes_job_and_sql_checks_without_the_dsn() -> None:
    document = manifest(
        provider_gate("smoke", job={"jobTemplate": TEMPLATE}), provider_gate("rows", sql=SQL)
    )
    assert lint_problems(document) == []
    queries = rendered_queries(document, parse_spec(document["spec"]))
    assert "curlimages/curl:8" in queries["smoke"]["query"]
    assert queries["rows"]["query"] == (
        "SELECT count(*) FROM orders WHERE app = 'checkout-green' AND shard = 'eu-1'"
        " (DSN from Secret orders-db, key DATABASE_URL)"
    )


def test_lint_names_an_unknown_variable_in_an_sql_query() -> None:
    bad = provider_gate("rows", sql={**SQL, "query": "SELECT {{colour}}"})
    problems = lint_problems(manifest(bad))
    assert problems[0].startswith("spec.gates[0].sql.query: unknown template variable(s): colour")


def test_a_job_gate_needs_create_jobs_and_its_account_and_an_sql_gate_its_secret() -> None:
    wanted = needs(
        spec(
            gates=[
                provider_gate("smoke", job={"jobTemplate": TEMPLATE}),
                provider_gate("rows", sql=SQL),
            ]
        ),
        {},
    )
    assert [(n.verb, n.resource, n.name, n.field) for n in wanted] == [
        ("create", "jobs", None, "spec.gates[0].job"),
        (
            "impersonate",
            "serviceaccounts",
            "smoke-runner",
            "spec.gates[0].job.jobTemplate.spec.template.spec.serviceAccountName",
        ),
        ("get", "secrets", "orders-db", "spec.gates[1].sql.dsn"),
    ]


def test_a_gate_job_name_is_the_same_for_the_same_check_and_new_for_the_next() -> None:
    first = GateCheck("shop", "checkout", "uid-1", "r1", "smoke", 1)
    assert gate_job_name(first) == gate_job_name(
        GateCheck("shop", "checkout", "uid-2", "r1", "smoke", 1)
    )
    names = {
        gate_job_name(GateCheck("shop", "checkout", "u", r, g, e))
        for r in ("r1", "r2")
        for g in ("smoke", "load")
        for e in (1, 2)
    }
    assert len(names) == 8
    long = GateCheck("shop", "c" * 60, "u", "r1", "g" * 63, 12345)
    assert len(gate_job_name(long)) <= 63


@pytest.mark.parametrize(
    ("dsn", "engine"),
    [
        ("postgresql://u:p@db:5432/x", Engine.postgresql),
        ("postgres://db/x", Engine.postgresql),
        ("mysql://u@db/x", Engine.mysql),
        ("MariaDB://u@db/x", Engine.mysql),
    ],
)
def test_the_dsn_scheme_picks_the_driver(dsn: str, engine: Engine) -> None:
    assert engine_of(dsn) is engine


def test_a_dsn_of_another_kind_is_refused_without_showing_it() -> None:
    dsn = "sqlserver://admin:hunter22@db/x"
    with pytest.raises(ValueError) as caught:
        SqlProvider(dsn=dsn)
    assert "hunter22" not in str(caught.value) and "postgresql://" in str(caught.value)
    assert "hunter22" not in repr(SqlProvider(dsn="postgresql://admin:hunter22@db/x"))


def job_gate(**changes: Any) -> Gate:
    return Gate.model_validate(provider_gate("smoke", job={"jobTemplate": TEMPLATE}, **changes))


def test_a_pending_measurement_counts_nothing_and_is_looked_at_again_soon() -> None:
    smoke = job_gate(interval="1m")
    before = record(
        GateStatus(name="smoke"), smoke, Reading.of(1.0), judge(Reading.of(1.0), smoke), T0
    )

    after = wait(before, smoke, Reading.pending("Job x is running"), T0 + timedelta(minutes=1))

    assert (after.passed, after.failed, after.inconclusive, after.errors) == (1, 0, 0, 0)
    assert after.last_verdict is Verdict.passed and after.outcome is before.outcome
    assert after.last_message == "Job x is running"
    assert after.next_check_at == T0 + timedelta(minutes=1, seconds=PENDING_RECHECK_SECONDS)
    short = wait(before, job_gate(interval="2s"), Reading.pending("running"), T0)
    assert short.next_check_at == T0 + timedelta(seconds=2)


def test_a_failed_job_fails_the_gate_with_the_jobs_reason() -> None:
    failed = Reading(ReadingKind.value, value=0.0, message="Job j failed: BackoffLimitExceeded")
    judgement = judge(failed, job_gate())
    assert judgement.verdict is Verdict.failed
    assert judgement.message == "value 0 is below min 1: Job j failed: BackoffLimitExceeded"


def test_a_step_waits_while_a_gate_job_runs_and_goes_on_once_it_succeeds() -> None:
    started: dict[str, datetime] = {}

    def job_takes_five_minutes(name: str, now: datetime) -> Reading:
        begun = started.setdefault(name, now)
        if now - begun < timedelta(minutes=5):
            return Reading.pending("Job is running")
        started.pop(name)
        return Reading(ReadingKind.value, value=1.0, message="Job succeeded")

    smoke = provider_gate("smoke", job={"jobTemplate": TEMPLATE}, interval="10s")
    steps = [{"setWeight": 10}, {"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]
    sim = Sim(spec(steps=steps, gates=[smoke]), readings=job_takes_five_minutes)
    sim.run(lambda s: s.status.weight == 10)
    at_ten = sim.now
    sim.run(lambda s: s.status.weight == 50 or s.status.phase is not Phase.progressing)

    assert sim.status.weight == 50, sim.status.message
    assert sim.now - at_ten >= timedelta(minutes=5)
    record_ = sim.status.gate("smoke")
    assert record_ is not None and record_.passed >= 1
    assert (record_.inconclusive, record_.errors, record_.failed) == (0, 0, 0)


class JobKube:
    """Jobs in memory, as the API server keeps them: create refuses a name that exists."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.created: list[str] = []

    async def get(
        self, group: str, version: str, plural: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        assert (group, plural) == ("batch", "jobs")
        return self.jobs.get(name)

    async def create(
        self, group: str, version: str, plural: str, namespace: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        name = body["metadata"]["name"]
        if name in self.jobs:
            raise Conflict(f"{name} exists", status=409, reason="AlreadyExists")
        self.jobs[name] = {**body, "status": {}}
        self.created.append(name)
        return self.jobs[name]

    async def list(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return []  # no pods: no log lines to attach

    def finish(self, name: str, condition: str, reason: str = "") -> None:
        self.jobs[name]["status"] = {
            "conditions": [{"type": condition, "status": "True", "reason": reason}]
        }


def checker(kube: JobKube) -> GateChecker:
    return GateChecker(cast(Kube, kube), egress=EgressPolicy.build())


def run_status(passed: int = 0) -> MigrationStatus:
    status = MigrationStatus(phase=Phase.progressing, run_id="r7", weight=50)
    status.gates.append(GateStatus(name="smoke", passed=passed))
    return status


async def test_a_restarted_operator_reads_its_job_and_the_next_check_makes_a_new_one() -> None:
    kube = JobKube()
    migration = spec(gates=[provider_gate("smoke", job={"jobTemplate": TEMPLATE})])
    status = run_status()

    first = checker(kube)
    reading = (
        await first.measure(
            migration, "shop", "checkout", migration.gates, T0, status=status, uid="u1"
        )
    )["smoke"]
    first.close()
    assert reading.kind is ReadingKind.pending and "is running" in reading.message
    (name,) = kube.created
    job = kube.jobs[name]
    assert job["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert job["metadata"]["labels"]["cutover.io/gate"] == "smoke"
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600
    assert job["spec"]["activeDeadlineSeconds"] == 600

    kube.finish(name, "Failed", "BackoffLimitExceeded")
    restarted = checker(kube)
    reading = (
        await restarted.measure(
            migration, "shop", "checkout", migration.gates, T0, status=status, uid="u1"
        )
    )["smoke"]
    assert kube.created == [name]  # found, not created again
    assert reading.value == 0 and f"Job {name} failed: BackoffLimitExceeded" in reading.message

    after_a_verdict = run_status(passed=1)
    reading = (
        await restarted.measure(
            migration, "shop", "checkout", migration.gates, T0, status=after_a_verdict, uid="u1"
        )
    )["smoke"]
    restarted.close()
    assert reading.kind is ReadingKind.pending
    assert len(kube.created) == 2 and kube.created[1] != name


async def test_a_job_named_like_a_gates_but_not_its_own_is_an_error() -> None:
    kube = JobKube()
    migration = spec(gates=[provider_gate("smoke", job={"jobTemplate": TEMPLATE})])
    check = GateCheck("shop", "checkout", "u1", "r7", "smoke", 1)
    kube.jobs[gate_job_name(check)] = {"metadata": {"labels": {}}, "status": {}}

    gates = checker(kube)
    reading = (
        await gates.measure(
            migration, "shop", "checkout", migration.gates, T0, status=run_status(), uid="u1"
        )
    )["smoke"]
    gates.close()

    assert reading.kind is ReadingKind.error and "is not gate smoke's" in reading.message
