"""The outbound policy for gates: what it allows, what it refuses and why, and that a refused
address is never sent a request (local listeners record what reaches them)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from cutover.core.gates import ReadingKind
from cutover.egress import (
    ALLOW_INSECURE_TLS_ENV,
    ALLOWED_HOSTS_ENV,
    EgressPolicy,
    EgressRefused,
    Refusal,
    parse_allowlist,
    parse_target,
)
from cutover.gatecheck import GateChecker
from cutover.kube import Kube
from cutover.providers import PrometheusProvider, ProviderError
from cutover.providers.http import gate_session
from devtools.controlplane import pki
from tests.support.listener import ANSWER, Start, listeners

from .test_gatecheck import NOW, FakeKube, FakeProvider, bearer, gate, spec

TOKEN = "s3cret-token-value"


class FakeResolver:
    """Answers from a table (literals resolve to themselves); records every lookup."""

    def __init__(self, table: dict[str, list[str]] | None = None) -> None:
        self.table = table or {}
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host in self.table:
            return self.table[host]
        if any(c.isalpha() for c in host) and ":" not in host:
            raise OSError(f"{host}: Name or service not known")
        return [host]


def policy(allowed: str | None = None, **kw: Any) -> EgressPolicy:
    return EgressPolicy.build(
        allowed_hosts=allowed, resolver=kw.pop("resolver", FakeResolver()), **kw
    )


def refusal(p: EgressPolicy, url: str) -> Refusal | None:
    try:
        p.resolve(parse_target(url))
    except EgressRefused as refused:
        return refused.reason
    return None


# --- the allowlist's format ----------------------------------------------------------------------


def test_the_allowlist_takes_addresses_cidrs_names_and_wildcard_domains() -> None:
    parsed = parse_allowlist(
        " 10.0.0.7, 10.1.0.0/16 ,fd00::/8,[fd00::7], Prom.Monitoring.svc., *.obs.svc,"
    )

    assert [str(n) for n in parsed.networks] == [
        "10.0.0.7/32",
        "10.1.0.0/16",
        "fd00::/8",
        "fd00::7/128",
    ]
    assert parsed.names("prom.monitoring.svc")
    assert parsed.names("thanos.obs.svc")
    assert not parsed.names("obs.svc")  # the wildcard is for names below the domain
    assert not parsed.names("evilobs.svc")


@pytest.mark.parametrize(
    "entry", ["http://prom:9090", "prom:9090", "10.0.0.0/33", "prom/metrics", "*.", "a..b"]
)
def test_a_bad_allowlist_entry_is_named(entry: str) -> None:
    with pytest.raises(ValueError, match="entry"):
        parse_allowlist(f"10.0.0.1,{entry}")


def test_an_invalid_setting_refuses_every_gate_and_says_which_setting() -> None:
    bad_list = EgressPolicy.from_environment({ALLOWED_HOSTS_ENV: "prom:9090"})
    bad_flag = EgressPolicy.from_environment({ALLOW_INSECURE_TLS_ENV: "maybe"})

    with pytest.raises(EgressRefused, match=ALLOWED_HOSTS_ENV) as refused:
        bad_list.resolve(parse_target("http://10.0.0.1:9090"))
    assert refused.value.reason is Refusal.invalid_policy
    with pytest.raises(EgressRefused, match=ALLOW_INSECURE_TLS_ENV):
        bad_flag.resolve(parse_target("http://10.0.0.1:9090"))


def test_an_invalid_setting_is_logged_at_start_with_the_bad_entry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("INFO", logger="cutover.egress"):
        EgressPolicy.from_environment({ALLOWED_HOSTS_ENV: "10.0.0.0/8, http://prom"})

    [record] = caplog.records
    assert record.levelname == "ERROR"
    assert "'http://prom'" in record.__dict__["error"]


# --- defaults: everything but the always-denied -------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.5:9090", "http://127.0.0.1:9090", "https://[fd00::5]", "http://[::1]:9090"],
)
def test_without_an_allowlist_ordinary_addresses_are_allowed(url: str) -> None:
    assert refusal(policy(), url) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data", Refusal.link_local),
        ("http://169.254.0.1:9090", Refusal.link_local),
        ("http://[fe80::1]:9090", Refusal.link_local),
        ("http://[fe80::1%25eth0]:9090", Refusal.link_local),
        ("http://[::ffff:169.254.169.254]/", Refusal.link_local),  # IPv4-mapped
        ("http://[64:ff9b::a9fe:a9fe]/", Refusal.link_local),  # NAT64 of 169.254.169.254
        ("http://[2002:a9fe:a9fe::1]/", Refusal.link_local),  # 6to4 of 169.254.169.254
        ("http://[fd00:ec2::254]/", Refusal.metadata),  # AWS' IPv6 metadata endpoint
        ("http://100.100.100.200/", Refusal.metadata),
    ],
)
def test_link_local_and_metadata_addresses_are_always_refused(url: str, reason: Refusal) -> None:
    assert refusal(policy(), url) is reason
    assert refusal(policy("0.0.0.0/0,::/0"), url) is reason  # a broad entry does not open them


def test_a_host_name_is_refused_when_any_address_it_resolves_to_is_denied() -> None:
    resolver = FakeResolver({"prom.example": ["10.0.0.5", "169.254.169.254"]})

    with pytest.raises(EgressRefused) as refused:
        policy(resolver=resolver).resolve(parse_target("http://prom.example:9090"))

    assert refused.value.reason is Refusal.link_local
    assert str(refused.value) == (
        "refused by the operator's outbound policy: http://prom.example:9090 (169.254.169.254):"
        " 169.254.169.254 is link-local (cloud metadata services live there); list it in"
        f" {ALLOWED_HOSTS_ENV} to allow it"
    )


@pytest.mark.parametrize("host", ["2852039166", "0xa9.0xfe.0xa9.0xfe", "169.254.169.254."])
def test_odd_spellings_of_the_metadata_address_are_resolved_and_refused(host: str) -> None:
    """The real resolver turns these into 169.254.169.254; the policy judges what it returns."""
    real = EgressPolicy.build()

    assert refusal(real, f"http://{host}/latest/meta-data") is Refusal.link_local


def test_an_allowlisted_name_still_may_not_resolve_to_metadata() -> None:
    resolver = FakeResolver({"metadata.google.internal": ["169.254.169.254"]})
    p = policy("metadata.google.internal", resolver=resolver)

    assert refusal(p, "http://metadata.google.internal/") is Refusal.link_local


def test_an_entry_inside_link_local_opens_only_that_part() -> None:
    p = policy("169.254.10.0/24")

    assert refusal(p, "http://169.254.10.5:9090") is None
    assert refusal(p, "http://169.254.169.254/") is Refusal.link_local


# --- the API server -----------------------------------------------------------------------------


def test_the_api_server_is_refused_at_its_port_by_address_or_name() -> None:
    resolver = FakeResolver({"localhost": ["127.0.0.1", "::1"]})
    p = policy(api_servers=["https://127.0.0.1:6443"], resolver=resolver)

    assert refusal(p, "https://127.0.0.1:6443/api/v1/secrets") is Refusal.api_server
    assert refusal(p, "https://localhost:6443/") is Refusal.api_server
    assert refusal(p, "http://127.0.0.1:9090") is None  # Prometheus next to it is fine
    listed = policy("127.0.0.1", api_servers=["https://127.0.0.1:6443"], resolver=resolver)
    assert refusal(listed, "https://127.0.0.1:6443/") is Refusal.api_server


def test_in_a_pod_the_kubernetes_service_is_the_api_server() -> None:
    resolver = FakeResolver({"kubernetes.default.svc": ["10.96.0.1"]})
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    p = EgressPolicy.from_environment(env, resolver=resolver)

    assert refusal(p, "https://kubernetes.default.svc/api") is Refusal.api_server
    assert refusal(p, "https://10.96.0.1:443/") is Refusal.api_server


def test_the_api_server_is_refused_by_name_whatever_it_resolves_to_now() -> None:
    """Its addresses were resolved at start; a name-based API server may have moved since."""
    resolver = FakeResolver({"api.example": ["10.0.0.1"]})
    p = policy(api_servers=["https://API.example:6443"], resolver=resolver)
    resolver.table["api.example"] = ["10.0.0.2"]

    assert refusal(p, "https://api.example:6443/") is Refusal.api_server
    assert refusal(p, "https://10.0.0.1:6443/") is Refusal.api_server
    assert refusal(p, "https://api.example:9090/") is None


def test_an_ipv6_api_server_is_refused() -> None:
    p = policy(api_servers=["https://[fd00::1]:6443"])

    assert refusal(p, "https://[fd00::1]:6443/") is Refusal.api_server
    assert refusal(p, "https://[fd00::1]:9090/") is None


# --- an allowlist --------------------------------------------------------------------------------


def test_with_an_allowlist_only_what_it_lists_is_allowed() -> None:
    resolver = FakeResolver(
        {"prom.monitoring.svc": ["10.0.5.5"], "other.svc": ["10.9.9.9"], "b.obs.svc": ["10.7.0.1"]}
    )
    p = policy("10.0.0.0/16,fd00::/64,prom.monitoring.svc,*.obs.svc", resolver=resolver)

    assert refusal(p, "http://10.0.3.4:9090") is None
    assert refusal(p, "http://[fd00::9]:9090") is None
    assert refusal(p, "http://prom.monitoring.svc:9090") is None  # listed by name
    assert refusal(p, "http://b.obs.svc:9090") is None  # by domain
    assert refusal(p, "http://other.svc:9090") is Refusal.not_allowed  # resolves outside
    assert refusal(p, "http://10.1.0.1:9090") is Refusal.not_allowed
    assert refusal(p, "http://[fd00:1::9]:9090") is Refusal.not_allowed


def test_a_name_not_listed_is_refused_without_a_lookup_when_only_names_are_listed() -> None:
    resolver = FakeResolver()
    p = policy("prom.monitoring.svc", resolver=resolver)

    assert refusal(p, "http://evil.example:9090") is Refusal.not_allowed
    assert resolver.lookups == []


def test_insecure_tls_is_refused_unless_the_operator_allows_it() -> None:
    with pytest.raises(EgressRefused, match="insecureSkipVerify") as refused:
        policy().check_tls("https://prom:9090", insecure_skip_verify=True)
    assert refused.value.reason is Refusal.insecure_tls

    policy().check_tls("https://prom:9090", insecure_skip_verify=False)
    EgressPolicy.from_environment({ALLOW_INSECURE_TLS_ENV: "true"}).check_tls("x", True)


# --- the gate checker: preflight and query time ---------------------------------------------------


@dataclass
class Checker:
    kube: FakeKube
    checker: GateChecker
    providers: list[FakeProvider] = field(default_factory=list)


@pytest.fixture
def checker_for() -> Iterator[Callable[[EgressPolicy], Checker]]:
    made: list[Checker] = []

    def make(egress: EgressPolicy) -> Checker:
        kube = FakeKube({("shop", "prom", "token"): TOKEN})
        state = Checker(kube, cast(GateChecker, None))

        def factory(kind: str, **options: Any) -> FakeProvider:
            provider = FakeProvider({"q": 0.5}, **options)
            state.providers.append(provider)
            return provider

        state.checker = GateChecker(cast(Kube, kube), provider_factory=factory, egress=egress)
        made.append(state)
        return state

    yield make
    for state in made:
        state.checker.close()


def metadata_gate(**prometheus: Any) -> dict[str, Any]:
    fields = {"address": "http://169.254.169.254/latest", **bearer(), **prometheus}
    return gate("q", name="sneaky", prometheus=fields)


async def test_preflight_names_the_gate_the_address_and_why_and_sends_nothing(
    checker_for: Callable[[EgressPolicy], Checker],
) -> None:
    state = checker_for(policy())

    problems = await state.checker.preflight(spec(metadata_gate()), "shop", "checkout")

    assert problems == [
        "spec.gates[0].prometheus.address: gate 'sneaky': refused by the operator's outbound"
        " policy: http://169.254.169.254:80: 169.254.169.254 is link-local (cloud metadata"
        f" services live there); list it in {ALLOWED_HOSTS_ENV} to allow it"
    ]
    assert state.providers == []  # no provider, so no request
    assert state.kube.reads == []  # and the Secret was not even read


async def test_preflight_refuses_an_address_outside_the_allowlist(
    checker_for: Callable[[EgressPolicy], Checker],
) -> None:
    state = checker_for(policy("10.0.0.0/8"))
    migration = spec(gate("q", name="outside", prometheus={"address": "http://192.168.1.9:9090"}))

    problems = await state.checker.preflight(migration, "shop", "checkout")

    assert len(problems) == 1
    assert problems[0].startswith("spec.gates[0].prometheus.address: gate 'outside': ")
    assert "http://192.168.1.9:9090: not in CUTOVER_GATE_ALLOWED_HOSTS (10.0.0.0/8)" in problems[0]
    assert state.providers == []


async def test_preflight_refuses_insecure_tls_unless_the_operator_allows_it(
    checker_for: Callable[[EgressPolicy], Checker],
) -> None:
    insecure = {"address": "https://10.0.0.5:9090", "insecureSkipVerify": True}
    migration = spec(gate("q", name="selfsigned", prometheus=insecure))

    refused = await checker_for(policy()).checker.preflight(migration, "shop", "checkout")
    allowed_checker = checker_for(policy(allow_insecure_tls=True))
    allowed = await allowed_checker.checker.preflight(migration, "shop", "checkout")

    assert len(refused) == 1
    assert refused[0].startswith("spec.gates[0].prometheus.insecureSkipVerify: gate 'selfsigned'")
    assert ALLOW_INSECURE_TLS_ENV in refused[0]
    assert allowed == []
    assert [p.options["insecure_skip_verify"] for p in allowed_checker.providers] == [True]


async def test_an_unresolvable_name_is_left_to_the_gates_on_error(
    checker_for: Callable[[EgressPolicy], Checker],
) -> None:
    state = checker_for(policy())
    migration = spec(gate("q", prometheus={"address": "http://prometheus.invalid:9090"}))

    assert await state.checker.preflight(migration, "shop", "checkout") == []


async def test_a_refused_gate_at_query_time_is_a_gate_error_and_no_query(
    checker_for: Callable[[EgressPolicy], Checker],
) -> None:
    state = checker_for(policy())
    migration = spec(metadata_gate())

    readings = await state.checker.measure(migration, "shop", "checkout", migration.gates, NOW)

    assert readings["sneaky"].kind is ReadingKind.error
    assert "169.254.169.254 is link-local" in readings["sneaky"].message
    assert state.providers == []
    assert TOKEN not in readings["sneaky"].message


async def test_the_provider_is_given_the_policy_to_check_every_connection(
    checker_for: Callable[[EgressPolicy], Checker],
) -> None:
    egress = policy()
    state = checker_for(egress)
    migration = spec(gate("q", prometheus={"address": "http://10.0.0.5:9090"}))

    await state.checker.measure(migration, "shop", "checkout", migration.gates, NOW)

    assert [p.options["egress"] for p in state.providers] == [egress]


# --- HTTP: local listeners record what reaches them ----------------------------------------------


@pytest.fixture
def listen() -> Iterator[Start]:
    with listeners() as start:
        yield start


def test_credentials_do_not_follow_a_redirect_to_another_host(
    listen: Start,
) -> None:
    first, second = listen("127.0.0.1"), listen("127.0.0.2")
    first.redirect = second.url

    response = gate_session(policy()).get(
        first.url + "/api/v1/query", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    )

    assert response.status_code == 200
    assert first.requests[0]["authorization"] == f"Bearer {TOKEN}"
    assert len(second.requests) == 1
    assert "authorization" not in second.requests[0]


def test_credentials_do_not_follow_a_redirect_to_another_port_of_the_same_host(
    listen: Start,
) -> None:
    first, second = listen("127.0.0.1"), listen("127.0.0.1")
    first.redirect = second.url
    same_origin = listen("127.0.0.1")

    gate_session(None).get(first.url, auth=("alice", "s3cret-password"), timeout=5)
    session = gate_session(None)
    session.get(same_origin.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)

    assert "authorization" in first.requests[0]
    assert "authorization" not in second.requests[0]
    assert same_origin.requests[0]["authorization"] == f"Bearer {TOKEN}"


def test_the_provider_does_not_follow_redirects_with_its_token(
    listen: Start,
) -> None:
    first, second = listen("127.0.0.1"), listen("127.0.0.2")
    first.redirect = second.url

    with (
        PrometheusProvider(first.url, bearer_token=TOKEN, timeout=5, egress=policy()) as provider,
        pytest.raises(ProviderError, match="HTTP 302") as failed,
    ):
        provider.query("up")

    assert first.requests and second.requests == []
    assert TOKEN not in str(failed.value)


def test_a_redirect_to_a_refused_address_is_never_connected_to(
    listen: Start,
) -> None:
    allowed, outside = listen("127.0.0.1"), listen("127.0.0.2")
    allowed.redirect = outside.url

    with pytest.raises(EgressRefused, match=r"127\.0\.0\.2"):
        gate_session(policy("127.0.0.1")).get(allowed.url, timeout=5)

    assert len(allowed.requests) == 1
    assert outside.requests == []


def test_the_provider_sends_nothing_to_an_address_outside_the_allowlist(
    listen: Start,
) -> None:
    outside = listen("127.0.0.2")

    with (
        PrometheusProvider(outside.url, bearer_token=TOKEN, egress=policy("127.0.0.1")) as p,
        pytest.raises(ProviderError, match="not in CUTOVER_GATE_ALLOWED_HOSTS") as failed,
    ):
        p.query("up")

    assert failed.value.error_type == "egress_refused"
    assert outside.requests == []


def test_the_address_connected_to_is_the_address_checked(
    listen: Start,
) -> None:
    """DNS rebinding: the name answers an allowed address for the check, then a denied one.

    Each connection resolves once and connects to what it checked: the first query reaches the
    listener (through a name only the policy's resolver knows), a second connection after the
    answer changed is refused."""
    target = listen("127.0.0.1")
    port = target.port
    answers = iter([["127.0.0.1"], ["169.254.169.254"]])
    resolver = FakeResolver()
    resolver.table = cast(dict[str, list[str]], _Rebinding(answers))

    with PrometheusProvider(
        f"http://prom.rebind.test:{port}", egress=policy(resolver=resolver)
    ) as provider:
        assert provider.query("up") == ANSWER
        provider._client._session.close()  # drop the kept-alive connection: a new one is made
        with pytest.raises(ProviderError, match="link-local"):
            provider.query("up")

    assert len(target.requests) == 1


class _Rebinding(dict[str, list[str]]):
    """A table whose every lookup of a name gives the next answer."""

    def __init__(self, answers: Iterator[list[str]]) -> None:
        super().__init__()
        self.answers = answers

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> list[str]:
        return next(self.answers)


async def test_a_refusal_never_shows_the_addresses_user_and_password(
    checker_for: Callable[[EgressPolicy], Checker],
) -> None:
    state = checker_for(policy())
    address = "http://alice:pa55word-in-url@169.254.169.254:8080/"
    migration = spec(gate("q", name="userinfo", prometheus={"address": address}))

    problems = await state.checker.preflight(migration, "shop", "checkout")
    readings = await state.checker.measure(migration, "shop", "checkout", migration.gates, NOW)

    assert "http://169.254.169.254:8080: 169.254.169.254 is link-local" in problems[0]
    for text in (problems[0], readings["userinfo"].message):
        assert "pa55word" not in text and "alice" not in text


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_is_verified_for_the_urls_host_while_the_checked_address_is_connected_to(
    listen: Start, tmp_path: Path
) -> None:
    """The serving certificate names ``localhost`` and 127.0.0.1. Pinned to 127.0.0.1, a
    request to ``localhost`` verifies; to another name resolving there it fails, so the
    certificate is checked against the URL's host, not the address connected to."""
    certs = pki.generate(tmp_path, ["127.0.0.1"])
    server = listen("127.0.0.1", tls=(certs.serving_cert, certs.serving_key))
    resolver = FakeResolver({"localhost": ["127.0.0.1"], "prom.tls.test": ["127.0.0.1"]})
    egress = policy(resolver=resolver, allow_insecure_tls=True)
    ca = str(certs.ca_cert)

    def query(host: str, **options: Any) -> float:
        url = f"https://{host}:{server.port}"
        with PrometheusProvider(url, timeout=5, egress=egress, **options) as provider:
            return provider.query("up")

    assert query("localhost", ca_file=ca) == ANSWER
    with pytest.raises(ProviderError, match="Hostname mismatch") as mismatch:
        query("prom.tls.test", ca_file=ca)
    assert "prom.tls.test" in str(mismatch.value)
    with pytest.raises(ProviderError, match="CERTIFICATE_VERIFY_FAILED"):
        query("localhost")  # the system CAs do not know this one: verification is on
    assert query("prom.tls.test", insecure_skip_verify=True) == ANSWER  # allowed, and asked for
