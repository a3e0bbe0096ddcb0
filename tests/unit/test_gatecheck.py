"""GateChecker with a fake provider and a fake Secret reader: what is queried, what comes back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from cutover.api import MigrationSpec, parse_spec
from cutover.core.gates import Reading, ReadingKind
from cutover.gatecheck import GateChecker, range_step
from cutover.kube import Kube, NotFound
from cutover.providers import InvalidQuery, MultipleSeries, NoData, ProviderError

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
ADDRESS = "http://prometheus:9090"

Answer = float | list[float] | Exception


class FakeProvider:
    """Answers by query text; records every call."""

    def __init__(self, answers: dict[str, Answer], **options: Any) -> None:
        self.answers = answers
        self.options = options
        self.calls: list[tuple[Any, ...]] = []
        self.closed = False

    def _answer(self, promql: str) -> Answer:
        answer = self.answers.get(promql, NoData(f"no series for {promql}"))
        if isinstance(answer, Exception):
            raise answer
        return answer

    def query(self, promql: str) -> float:
        self.calls.append(("query", promql))
        answer = self._answer(promql)
        assert isinstance(answer, float)
        return answer

    def query_range(
        self, promql: str, start: datetime, end: datetime, step_seconds: float
    ) -> list[float]:
        self.calls.append(("query_range", promql, start, end, step_seconds))
        answer = self._answer(promql)
        assert isinstance(answer, list)
        return answer

    def check_query(self, promql: str) -> None:
        self.calls.append(("check_query", promql))
        answer = self.answers.get(promql)
        if isinstance(answer, ProviderError):
            raise answer

    def close(self) -> None:
        self.closed = True


class FakeKube:
    def __init__(self, secrets: dict[tuple[str, str, str], str]) -> None:
        self.secrets = secrets
        self.reads: list[tuple[str, str, str]] = []

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        self.reads.append((namespace, name, key))
        try:
            return self.secrets[(namespace, name, key)]
        except KeyError:
            raise NotFound(
                f"Secret {namespace}/{name} not found", status=404, reason="NotFound"
            ) from None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    def __init__(self, answers: dict[str, Answer], secrets: dict[tuple[str, str, str], str]):
        self.answers = answers
        self.kube = FakeKube(secrets)
        self.clock = Clock()
        self.providers: list[FakeProvider] = []
        self.checker = GateChecker(
            cast(Kube, self.kube), provider_factory=self._factory, clock=self.clock
        )

    def _factory(self, kind: str, **options: Any) -> FakeProvider:
        assert kind == "prometheus"
        provider = FakeProvider(self.answers, **options)
        self.providers.append(provider)
        return provider

    @property
    def calls(self) -> list[tuple[Any, ...]]:
        return [call for provider in self.providers for call in provider.calls]

    async def measure(self, spec: MigrationSpec, namespace: str = "shop") -> dict[str, Reading]:
        return await self.checker.measure(spec, namespace, "checkout", spec.gates, NOW)


@pytest.fixture
def harness() -> Iterator[Harness]:
    state = Harness({}, {("shop", "prom", "token"): "s3cret-token-value"})
    yield state
    state.checker.close()


def spec(*gates: dict[str, Any]) -> MigrationSpec:
    return parse_spec(
        {
            "blue": {"deployment": "checkout-blue"},
            "green": {"deployment": "checkout-green"},
            "traffic": {"router": "service", "service": "checkout"},
            "steps": [{"setWeight": 100}],
            "gates": list(gates),
        }
    )


def gate(query: str, name: str = "errors", **fields: Any) -> dict[str, Any]:
    prometheus = {"address": ADDRESS, "query": query, **fields.pop("prometheus", {})}
    if "compare" not in fields:
        fields.setdefault("threshold", {"max": 0.05})
    return {"name": name, "prometheus": prometheus, **fields}


# --- rendering -----------------------------------------------------------------------------------


async def test_queries_are_rendered_with_the_migration_variables_and_args(
    harness: Harness,
) -> None:
    template = (
        'rate(x{ns="{{namespace}}", app="{{green}}", svc="{{service}}",'
        ' mig="{{migration}}", team="{{args.team}}"}[{{args.window}}])'
    )
    rendered = (
        'rate(x{ns="shop", app="checkout-green", svc="checkout", mig="checkout", team="a\\"b"}[5m])'
    )
    harness.answers[rendered] = 0.01
    args = {"team": 'a"b', "window": "5m"}

    readings = await harness.measure(spec(gate(template, prometheus={"args": args})))

    assert readings == {"errors": Reading.of(0.01)}
    assert harness.calls == [("query", rendered)]


# --- compare -----------------------------------------------------------------------------------


async def test_ratio_compare_reads_green_and_blue_in_one_check(harness: Harness) -> None:
    harness.answers['err{d="checkout-green"}'] = 0.03
    harness.answers['err{d="checkout-blue"}'] = 0.02
    compare = {"baseline": 'err{d="{{blue}}"}', "maxIncrease": 0.2}

    readings = await harness.measure(spec(gate('err{d="{{green}}"}', compare=compare)))

    assert readings["errors"] == Reading.of(0.03, baseline=0.02)
    assert sorted(harness.calls) == [
        ("query", 'err{d="checkout-blue"}'),
        ("query", 'err{d="checkout-green"}'),
    ]


async def test_a_baseline_without_data_is_no_data(harness: Harness) -> None:
    harness.answers["green"] = 0.03
    compare = {"baseline": "blue", "maxIncrease": 0.2}

    reading = (await harness.measure(spec(gate("green", compare=compare))))["errors"]

    assert reading.kind is ReadingKind.no_data
    assert "no series for blue" in reading.message


async def test_an_error_on_either_side_outweighs_no_data_on_the_other(harness: Harness) -> None:
    harness.answers["green"] = ProviderError("cannot connect to Prometheus")
    compare = {"baseline": "blue", "maxIncrease": 0.2}

    reading = (await harness.measure(spec(gate("green", compare=compare))))["errors"]

    assert reading == Reading.error("cannot connect to Prometheus")


@pytest.mark.parametrize(("window", "seconds", "step"), [("1m", 60, 2.0), ("20s", 20, 1.0)])
async def test_mannwhitney_reads_both_sides_as_ranges_over_the_window(
    harness: Harness, window: str, seconds: int, step: float
) -> None:
    harness.answers["green"] = [1.0, 2.0, 3.0]
    harness.answers["blue"] = [1.0, 1.0, 1.0, 1.5]
    compare = {"baseline": "blue", "maxIncrease": 0.1, "test": "mannwhitney", "window": window}

    reading = (await harness.measure(spec(gate("green", compare=compare))))["errors"]

    assert reading == Reading.samples((1.0, 2.0, 3.0), (1.0, 1.0, 1.0, 1.5))
    start = NOW - timedelta(seconds=seconds)
    assert sorted(harness.calls) == [
        ("query_range", "blue", start, NOW, step),
        ("query_range", "green", start, NOW, step),
    ]
    assert range_step(seconds) == step


# --- mapping of provider answers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "kind", "message"),
    [
        (NoData("query returned NaN"), ReadingKind.no_data, "query returned NaN"),
        (NoData(), ReadingKind.no_data, "query returned no data"),
        (
            MultipleSeries("2 series: a, b"),
            ReadingKind.error,
            "query returned several series: 2 series: a, b",
        ),
        (ProviderError("connection refused"), ReadingKind.error, "connection refused"),
        (InvalidQuery("parse error"), ReadingKind.error, "parse error"),
        (
            RuntimeError("bug with secret-ish text"),
            ReadingKind.error,
            "gate check crashed: RuntimeError",
        ),
    ],
)
async def test_provider_failures_become_readings_never_exceptions(
    harness: Harness, answer: Exception, kind: ReadingKind, message: str
) -> None:
    harness.answers["q"] = answer

    reading = (await harness.measure(spec(gate("q"))))["errors"]

    assert (reading.kind, reading.message) == (kind, message)


async def test_one_failing_gate_does_not_hide_the_others(harness: Harness) -> None:
    harness.answers["good"] = 0.01
    harness.answers["bad"] = ProviderError("timeout")

    readings = await harness.measure(spec(gate("good", "a"), gate("bad", "b")))

    assert readings == {"a": Reading.of(0.01), "b": Reading.error("timeout")}


# --- secrets -------------------------------------------------------------------------------------


def bearer(name: str = "prom", key: str = "token") -> dict[str, Any]:
    return {"auth": {"bearerToken": {"name": name, "key": key}}}


async def test_the_bearer_token_is_read_from_the_namespace_and_cached(harness: Harness) -> None:
    harness.answers["q"] = 0.0
    migration = spec(gate("q", prometheus=bearer()))

    for _ in range(3):
        await harness.measure(migration)

    assert harness.kube.reads == [("shop", "prom", "token")]
    assert len(harness.providers) == 1  # one provider (and connection pool) for all checks
    assert harness.providers[0].options["bearer_token"] == "s3cret-token-value"
    assert harness.providers[0].options["address"] == ADDRESS

    harness.clock.now += 61  # the cache expires: a rotated token is picked up
    harness.kube.secrets[("shop", "prom", "token")] = "rotated-token"
    await harness.measure(migration)

    assert len(harness.kube.reads) == 2
    assert harness.providers[-1].options["bearer_token"] == "rotated-token"


async def test_basic_auth_and_ca_come_from_secrets(harness: Harness) -> None:
    harness.kube.secrets.update(
        {
            ("shop", "basic", "user"): "reader",
            ("shop", "basic", "pass"): "pa55word",
            ("shop", "tls", "ca.crt"): "-----BEGIN CERTIFICATE-----\n",
        }
    )
    harness.answers["q"] = 1.0
    prometheus = {
        "auth": {
            "username": {"name": "basic", "key": "user"},
            "password": {"name": "basic", "key": "pass"},
        },
        "ca": {"name": "tls", "key": "ca.crt"},
    }

    await harness.measure(spec(gate("q", prometheus=prometheus)))

    options = harness.providers[0].options
    assert options["basic_auth"] == ("reader", "pa55word")
    with open(options["ca_file"]) as bundle:
        assert bundle.read() == "-----BEGIN CERTIFICATE-----\n"
    harness.checker.close()
    assert harness.providers[0].closed


async def test_a_missing_secret_is_an_error_reading_naming_the_field(harness: Harness) -> None:
    reading = (await harness.measure(spec(gate("q", prometheus=bearer("gone")))))["errors"]

    assert reading.kind is ReadingKind.error
    assert reading.message == (
        "spec.gates[0].prometheus.auth.bearerToken: Secret shop/gone not found"
    )
    assert harness.providers == []


# --- preflight -----------------------------------------------------------------------------------


async def test_preflight_names_the_field_of_every_problem(harness: Harness) -> None:
    harness.answers['sum(x{a="checkout-green"}'] = InvalidQuery(
        "1:25: parse error: unclosed left parenthesis"
    )
    migration = spec(
        gate('rate(x{c="{{colour}}"}[1m])', "template"),
        gate('sum(x{a="{{green}}"}', "syntax"),
        gate("up", "secret", prometheus=bearer("gone")),
        gate(
            "up",
            "baseline",
            compare={"baseline": "{{args.nope}} + 1", "maxIncrease": 0.1},
        ),
        gate("fine", "fine"),
    )

    problems = await harness.checker.preflight(migration, "shop", "checkout")

    assert problems == [
        "spec.gates[0].prometheus.query: unknown template variable(s): colour"
        " (known: blue, green, migration, namespace, service)",
        # Caught offline by the parser `cutover lint` uses: Prometheus is not asked.
        "spec.gates[1].prometheus.query: PromQL syntax: unclosed left parenthesis",
        "spec.gates[2].prometheus.auth.bearerToken: Secret shop/gone not found",
        "spec.gates[3].compare.baseline: unknown template variable(s): args.nope"
        " (known: blue, green, migration, namespace, service)",
    ]
    checked = [c[1] for c in harness.calls if c[0] == "check_query"]
    assert checked == ["up", "fine"]


async def test_preflight_accepts_a_query_it_cannot_check_now(harness: Harness) -> None:
    harness.answers["up"] = ProviderError("cannot connect to Prometheus at http://prometheus:9090")

    assert await harness.checker.preflight(spec(gate("up")), "shop", "checkout") == []


async def test_preflight_never_puts_a_secret_in_a_problem(harness: Harness) -> None:
    harness.answers["up"] = InvalidQuery("bad query")
    problems = await harness.checker.preflight(
        spec(gate("up", prometheus=bearer())), "shop", "checkout"
    )

    assert problems == ["spec.gates[0].prometheus.query: Prometheus says: bad query"]
    assert "s3cret" not in repr(problems)


def test_close_is_safe_without_any_check() -> None:
    checker = GateChecker(cast(Kube, FakeKube({})), provider_factory=cast(Callable[..., Any], None))
    checker.close()
