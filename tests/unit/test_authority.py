"""What a Migration makes the operator do on its author's behalf, and the refusal when the author
may not do it themselves (the real authorizer: tests/integration/test_admission.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from cutover.admission import Author
from cutover.api import AUTHOR_ANNOTATION
from cutover.authority import Rights, needs
from cutover.environment import ConfigurationError
from cutover.kube import KubeError

from .specs import gate, spec

HOOK = {
    "name": "expand",
    "jobTemplate": {"spec": {"template": {"spec": {"serviceAccountName": "migrator"}}}},
}
SECRET_GATE = gate(
    prometheus={
        "address": "http://prometheus:9090",
        "query": "up",
        "auth": {"bearerToken": {"name": "prom-token", "key": "token"}},
    }
)
ALICE = {AUTHOR_ANNOTATION: Author("alice", ("devs",)).encode()}


class FakeKube:
    """Answers access reviews from a set of (user, verb, resource, name) it allows."""

    def __init__(self, allowed: set[tuple[str, str, str, str | None]], error: bool = False) -> None:
        self.allowed = allowed
        self.error = error
        self.reviews: list[tuple[Any, ...]] = []

    async def review(
        self,
        user: str,
        groups: Any,
        verb: str,
        group: str,
        plural: str,
        namespace: str,
        name: str | None = None,
    ) -> tuple[bool, str]:
        self.reviews.append((user, tuple(groups), verb, group, plural, namespace, name))
        if self.error:
            raise KubeError("connection refused")
        return (user, verb, plural, name) in self.allowed, "RBAC: no rule"

    async def get(self, *args: Any) -> dict[str, Any] | None:
        return None


def check(kube: FakeKube, annotations: dict[str, str], **changes: Any) -> list[str]:
    rights = Rights(kube, enforce=True)  # type: ignore[arg-type]
    return asyncio.run(rights.problems(spec(**changes), "shop", annotations))


def test_a_hook_needs_create_jobs_and_its_service_account() -> None:
    wanted = needs(spec(hooks={"preShift": [HOOK]}), {})
    assert [(n.verb, n.resource, n.name) for n in wanted] == [
        ("create", "jobs", None),
        ("impersonate", "serviceaccounts", "migrator"),
    ]


def test_a_gate_secret_needs_get_on_that_secret() -> None:
    wanted = needs(spec(gates=[SECRET_GATE]), {})
    assert [(n.verb, n.resource, n.name, n.field) for n in wanted] == [
        ("get", "secrets", "prom-token", "spec.gates[0].prometheus.auth.bearerToken")
    ]


def test_a_preview_needs_create_services() -> None:
    weighted = {"router": "gatewayapi", "gatewayAPI": {"httpRoute": "checkout"}}
    steps = [{"setWeight": 100}]
    wanted = needs(spec(traffic=weighted, steps=steps, gates=[], preview={}), {})
    assert [(n.verb, n.group, n.resource, n.field) for n in wanted] == [
        ("create", "", "services", "spec.preview")
    ]
    assert needs(spec(traffic=weighted, steps=steps, gates=[]), {}) == []


def test_a_config_map_template_needs_get_on_it_and_its_account() -> None:
    hook = {"name": "expand", "configMapRef": {"name": "hooks", "key": "expand.yaml"}}
    template = HOOK["jobTemplate"]
    wanted = needs(spec(hooks={"preShift": [hook]}), {"expand": template})
    assert [(n.verb, n.resource, n.name) for n in wanted] == [
        ("create", "jobs", None),
        ("get", "configmaps", "hooks"),
        ("impersonate", "serviceaccounts", "migrator"),
    ]


def test_denied_names_verb_resource_field_and_user() -> None:
    kube = FakeKube({("alice", "create", "jobs", None)})
    problems = check(kube, ALICE, hooks={"preShift": [HOOK]}, gates=[SECRET_GATE])
    assert problems == [
        "Forbidden: user 'alice' may not impersonate serviceaccounts/migrator in namespace 'shop'"
        " (spec.hooks.preShift[0].jobTemplate.spec.template.spec.serviceAccountName):"
        " RBAC: no rule",
        "Forbidden: user 'alice' may not get secrets/prom-token in namespace 'shop'"
        " (spec.gates[0].prometheus.auth.bearerToken): RBAC: no rule",
    ]
    assert {r[1] for r in kube.reviews} == {("devs",)}  # asked with the recorded groups


def test_allowed_is_no_problem() -> None:
    kube = FakeKube(
        {
            ("alice", "create", "jobs", None),
            ("alice", "impersonate", "serviceaccounts", "migrator"),
            ("alice", "get", "secrets", "prom-token"),
        }
    )
    assert check(kube, ALICE, hooks={"preShift": [HOOK]}, gates=[SECRET_GATE]) == []


def test_no_trusted_author_is_refused_only_when_something_would_be_done_for_it() -> None:
    kube = FakeKube(set())
    assert check(kube, {}, gates=[]) == []
    [problem] = check(kube, {AUTHOR_ANNOTATION: "forged"}, hooks={"preShift": [HOOK]})
    assert problem.startswith("Forbidden: no trusted author recorded")
    assert kube.reviews == []


def test_a_review_that_fails_refuses_instead_of_acting_blind() -> None:
    [problem, _] = check(FakeKube(set(), error=True), ALICE, hooks={"preShift": [HOOK]})
    assert problem.startswith("Forbidden: cannot check whether user 'alice' may create jobs.batch")


def test_off_checks_nothing() -> None:
    kube = FakeKube(set())
    rights = Rights(kube, enforce=False)  # type: ignore[arg-type]
    assert asyncio.run(rights.problems(spec(hooks={"preShift": [HOOK]}), "shop", {})) == []
    assert kube.reviews == []


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, False),
        ({"CUTOVER_WEBHOOK_PORT": "9443"}, True),
        ({"CUTOVER_WEBHOOK_PORT": "9443", "CUTOVER_AUTHOR_RIGHTS": "false"}, False),
        ({"CUTOVER_AUTHOR_RIGHTS": "true"}, True),
        ({"CUTOVER_AUTHOR_RIGHTS": " On "}, True),
        ({"CUTOVER_WEBHOOK_PORT": "9443", "CUTOVER_AUTHOR_RIGHTS": "0"}, False),
    ],
)
def test_the_policy_follows_admission_unless_told(env: dict[str, str], expected: bool) -> None:
    from cutover.authority import enforced

    assert enforced(env) is expected


@pytest.mark.parametrize("value", ["ture", "enforce", "2"])
def test_a_policy_that_is_neither_true_nor_false_stops_the_start(value: str) -> None:
    # A security setting: a typo must not quietly fall back to the admission-based default.
    from cutover.authority import enforced

    with pytest.raises(ConfigurationError, match="CUTOVER_AUTHOR_RIGHTS must be true or false"):
        enforced({"CUTOVER_WEBHOOK_PORT": "9443", "CUTOVER_AUTHOR_RIGHTS": value})


NOTIFY = [
    {"name": "open", "kind": "webhook", "url": "http://hooks.example/a"},
    {
        "name": "signed",
        "kind": "webhook",
        "url": "http://author.example/b",
        "signingKey": {"name": "team-hmac", "key": "key"},
    },
]


def test_a_notifier_secret_needs_get_on_that_secret() -> None:
    wanted = needs(spec(notify=NOTIFY, gates=[]), {})
    assert [(n.verb, n.resource, n.name, n.field) for n in wanted] == [
        ("get", "secrets", "team-hmac", "spec.notify[1].signingKey")
    ]


def allowed_notifiers(
    kube: FakeKube, annotations: dict[str, str], generation: int = 1
) -> list[str]:
    from cutover.reconciler import Reconciler

    ctx = SimpleNamespace(rights=Rights(kube, enforce=True))  # type: ignore[arg-type]
    reconciler = Reconciler(ctx, "shop", "checkout", "uid")  # type: ignore[arg-type]
    chosen = asyncio.run(
        reconciler._allowed_notifiers(
            spec(notify=NOTIFY, gates=[SECRET_GATE]), generation, annotations
        )
    )
    return [n.name for n in chosen]


def test_notifiers_reading_secrets_the_author_may_not_read_are_not_used() -> None:
    # The operator would otherwise sign with a key the author cannot read, for the author's URL,
    # even after a spec change that no preflight checks (during a rollback, after success).
    assert allowed_notifiers(FakeKube(set()), ALICE) == ["open"]
    assert allowed_notifiers(FakeKube(set()), {}) == ["open"]
    assert allowed_notifiers(FakeKube(set(), error=True), ALICE) == ["open"]
    may_read = FakeKube({("alice", "get", "secrets", "team-hmac")})
    assert allowed_notifiers(may_read, ALICE) == ["open", "signed"]
    # Only the notifiers' Secret is asked about: the gates and hooks are preflight's.
    assert [r[4:] for r in may_read.reviews] == [("secrets", "shop", "team-hmac")]
