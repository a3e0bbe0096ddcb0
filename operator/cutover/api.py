"""The Migration API: pydantic models for spec and status.

This is the only place where raw dictionaries from the cluster become typed objects, and the single
source of the CRD schema (``cutover.crd`` turns these models into ``crds/``). Field descriptions are
what ``kubectl explain migration.spec...`` prints, so they are written for users.
"""

from __future__ import annotations

import copy
import difflib
import enum
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from cutover.durations import DURATION_PATTERN, parse_duration

GROUP = "cutover.io"
VERSION = "v1alpha1"
KIND = "Migration"
PLURAL = "migrations"
SINGULAR = "migration"
SHORT_NAMES = ["mig"]
API_VERSION = f"{GROUP}/{VERSION}"

# Manual control goes through this annotation so that a GitOps sync of the spec never fights it:
# the CLI writes it, the operator acts on it once (remembering its id in status) and clears it.
REQUEST_ANNOTATION = "cutover.io/request"
# Who created or last changed the spec (JSON: username, groups), written only by the operator's
# mutating admission webhook; its validating webhook rejects any other value (docs/security.md).
AUTHOR_ANNOTATION = "cutover.io/author"
# Every hook Job carries its Migration's name: the operator's watch of Jobs selects on it.
MIGRATION_LABEL = "cutover.io/migration"
# Kopf's finalizer on every Migration it drives: a deletion waits for the operator to put traffic
# back on blue (restore_on_delete) before the Migration goes.
FINALIZER = "cutover.io/finalizer"

HISTORY_LIMIT = 50
# An object name in the Migration's namespace (RFC 1123 subdomain): no "/", so no other namespace.
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
MAX_STEPS = 100
MAX_GATES = 20


def _unique_names(names: list[str], twice: str) -> None:
    """Raises naming the first repeated name by its index (``[2].name: 'x' is used twice``)."""
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            raise ValueError(f"[{index}].name: {name!r} {twice}")
        seen.add(name)


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


Duration = Annotated[
    str,
    AfterValidator(_check_duration),
    Field(
        json_schema_extra={"pattern": DURATION_PATTERN},
        description="A duration such as 30s, 2m or 1h30m.",
    ),
]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Router(enum.StrEnum):
    replicas = "replicas"
    service = "service"
    gatewayapi = "gatewayapi"
    istio = "istio"
    nginx = "nginx"

    @property
    def capabilities(self) -> RouterCapabilities:
        return ROUTER_CAPABILITIES[self]


class Shift(enum.StrEnum):
    """How a router moves traffic, which decides how green is sized and which weights exist."""

    pods = "pods"  # by the ratio of ready pods behind one Service: green grows step by step
    weight = "weight"  # by a weighted route: green at full size before any traffic moves
    switch = "switch"  # all at once (a selector): green at full size, only 0 and 100 %


@dataclass(frozen=True)
class RouterCapabilities:
    shift: Shift
    # Routes each HTTP request itself (headers, cookies), so it can keep a user on green.
    sees_requests: bool
    # Can send green copies of live requests whose answers are thrown away (setMirror steps).
    mirrors: bool = False


# What each router can do, as data the models and the core ask instead of naming routers.
ROUTER_CAPABILITIES: dict[Router, RouterCapabilities] = {
    Router.replicas: RouterCapabilities(Shift.pods, sees_requests=False),
    Router.service: RouterCapabilities(Shift.switch, sees_requests=False),
    Router.gatewayapi: RouterCapabilities(Shift.weight, sees_requests=True, mirrors=True),
    Router.istio: RouterCapabilities(Shift.weight, sees_requests=True, mirrors=True),
    Router.nginx: RouterCapabilities(Shift.weight, sees_requests=True),
}


class DeploymentRef(_Model):
    deployment: str = Field(
        min_length=1,
        max_length=253,
        pattern=OBJECT_NAME_PATTERN,
        description="Name of a Deployment in the Migration's namespace.",
    )
    service: str | None = Field(
        default=None,
        max_length=63,
        pattern=OBJECT_NAME_PATTERN,
        description="Service that selects only this version's pods (needed by weighted routers).",
    )


class GatewayAPIRoute(_Model):
    http_route: str = Field(min_length=1, description="Name of the HTTPRoute to re-weight.")
    rule: str | None = Field(
        default=None,
        description="Name of the rule holding the backendRefs; default: the only rule.",
    )


class IstioRoute(_Model):
    virtual_service: str = Field(min_length=1, description="Name of the VirtualService.")
    route: str | None = Field(
        default=None, description="Name of the http route; default: the only http route."
    )


class NginxRoute(_Model):
    ingress: str = Field(
        min_length=1, description="Name of the stable Ingress; a canary copy is created for green."
    )


class HeaderMatch(_Model):
    name: str = Field(min_length=1, description="Header name, or cookie name with `cookie`.")
    exact: str | None = Field(default=None, description="Exact value to match.")
    regex: str | None = Field(default=None, description="RE2 regular expression to match.")
    cookie: bool = Field(default=False, description="Match a cookie instead of a header.")


class StickyCookie(_Model):
    name: str = Field(
        default="cutover-green",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Name of the cookie that keeps a user on green.",
    )
    max_age: Duration = Field(default="1h", description="How long the cookie lasts.")


class Stickiness(_Model):
    cookie: StickyCookie = Field(
        description="A user once sent to green gets this cookie and stays on green for the run."
    )


class TrafficSpec(_Model):
    router: Router = Field(
        description="How traffic is shifted: replicas | service | gatewayapi | istio | nginx."
    )
    service: str | None = Field(
        default=None,
        max_length=63,
        pattern=OBJECT_NAME_PATTERN,
        description="Service in front of both versions (required by the service router).",
    )
    gateway_api: GatewayAPIRoute | None = Field(
        default=None, alias="gatewayAPI", description="Settings of the gatewayapi router."
    )
    istio: IstioRoute | None = Field(default=None, description="Settings of the istio router.")
    nginx: NginxRoute | None = Field(default=None, description="Settings of the nginx router.")
    match: list[HeaderMatch] = Field(
        default_factory=list,
        description="Requests matching any of these always go to green during the run.",
    )
    stickiness: Stickiness | None = Field(
        default=None,
        description="Keep users who reached green on green (gatewayapi, istio and nginx only).",
    )

    @model_validator(mode="after")
    def _router_block_present(self) -> TrafficSpec:
        needs = {
            Router.service: ("service", self.service),
            Router.gatewayapi: ("gatewayAPI", self.gateway_api),
            Router.istio: ("istio", self.istio),
            Router.nginx: ("nginx", self.nginx),
        }
        if self.router in needs:
            block, value = needs[self.router]
            if value is None:
                raise ValueError(f"router {self.router.value!r} needs the {block!r} field")
        if self.stickiness is not None and not self.router.capabilities.sees_requests:
            # It splits traffic below HTTP (pods behind one Service, or one selector), where
            # no cookie can be read or set.
            able = ", ".join(r.value for r in Router if r.capabilities.sees_requests)
            raise ValueError(
                f"stickiness: the {self.router.value!r} router cannot keep users on green;"
                f" use {able}"
            )
        return self


class PauseStep(_Model):
    duration: Duration | None = Field(
        default=None, description="How long to hold; omit to wait for `cutover promote`."
    )


class MirrorStep(_Model):
    percent: int = Field(
        ge=0,
        le=100,
        description=(
            "Percentage of live requests copied to green (answers thrown away); 0 removes the"
            " mirror. It stays until the next setWeight or setMirror step."
        ),
    )


class Step(_Model):
    set_weight: int | None = Field(
        default=None, ge=0, le=100, description="Percentage of traffic to send to green."
    )
    pause: PauseStep | None = Field(default=None, description="Hold the current weight.")
    set_mirror: MirrorStep | None = Field(
        default=None,
        description="Copy live requests to green (istio and gatewayapi routers only).",
    )

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Step:
        kinds = [self.set_weight is not None, self.pause is not None, self.set_mirror is not None]
        if kinds.count(True) != 1:
            raise ValueError("a step has exactly one of setWeight, pause or setMirror")
        return self


class Threshold(_Model):
    min: float | None = Field(default=None, description="The check fails below this value.")
    max: float | None = Field(default=None, description="The check fails above this value.")

    @model_validator(mode="after")
    def _has_bound(self) -> Threshold:
        if self.min is None and self.max is None:
            raise ValueError("a threshold needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class SecretKeyRef(_Model):
    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=OBJECT_NAME_PATTERN,
        description="Secret in the Migration's namespace.",
    )
    key: str = Field(min_length=1, description="Key inside the Secret.")


class PrometheusAuth(_Model):
    bearer_token: SecretKeyRef | None = Field(default=None, description="Bearer token.")
    username: SecretKeyRef | None = Field(default=None, description="Basic-auth user name.")
    password: SecretKeyRef | None = Field(default=None, description="Basic-auth password.")

    @model_validator(mode="after")
    def _one_scheme(self) -> PrometheusAuth:
        basic = self.username is not None or self.password is not None
        if basic and (self.username is None or self.password is None):
            raise ValueError("basic auth needs both username and password")
        if basic and self.bearer_token is not None:
            raise ValueError("use either bearerToken or username/password, not both")
        return self


class PrometheusQuery(_Model):
    address: str = Field(
        pattern=r"^https?://", description="Base URL of Prometheus, e.g. http://prometheus:9090."
    )
    query: str = Field(
        min_length=1,
        description=(
            "PromQL returning one value. Variables: {{namespace}}, {{migration}}, {{blue}}, "
            "{{green}}, {{service}}, {{preview.service}} and {{args.NAME}}."
        ),
    )
    args: dict[str, str] = Field(
        default_factory=dict, description="User variables, used as {{args.NAME}} in queries."
    )
    auth: PrometheusAuth | None = Field(default=None, description="Credentials from Secrets.")
    insecure_skip_verify: bool = Field(default=False, description="Skip TLS verification.")
    ca: SecretKeyRef | None = Field(default=None, description="CA bundle for TLS.")
    timeout: Duration = Field(default="5s", description="Query timeout.")


class WebMethod(enum.StrEnum):
    get = "GET"
    post = "POST"


class WebHeader(_Model):
    name: str = Field(
        min_length=1,
        max_length=256,
        pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
        description="HTTP header name.",
    )
    value: str | None = Field(default=None, description="A value that is not a secret.")
    value_from: SecretKeyRef | None = Field(
        default=None, description="A value read from a Secret (never logged or shown in status)."
    )

    @model_validator(mode="after")
    def _one_value(self) -> WebHeader:
        if (self.value is None) == (self.value_from is None):
            raise ValueError(f"header {self.name!r} needs exactly one of value or valueFrom")
        return self


class WebQuery(_Model):
    url: str = Field(
        pattern=r"^https?://",
        description=(
            "URL answering JSON. Variables: {{namespace}}, {{migration}}, {{blue}}, {{green}},"
            " {{service}}, {{preview.service}} and {{args.NAME}}."
        ),
    )
    method: WebMethod = Field(default=WebMethod.get, description="GET | POST.")
    body: str | None = Field(
        default=None, description="Request body of a POST (sent as JSON); variables as in url."
    )
    json_path: str = Field(
        min_length=1, description="JSONPath selecting one number in the answer, e.g. $.data.rate."
    )
    headers: list[WebHeader] = Field(
        default_factory=list, max_length=32, description="Request headers."
    )
    args: dict[str, str] = Field(
        default_factory=dict, description="User variables, used as {{args.NAME}} in url and body."
    )
    insecure_skip_verify: bool = Field(default=False, description="Skip TLS verification.")
    ca: SecretKeyRef | None = Field(default=None, description="CA bundle for TLS.")
    timeout: Duration = Field(default="5s", description="Request timeout.")

    @model_validator(mode="after")
    def _body_for_post(self) -> WebQuery:
        if self.body is not None and self.method is not WebMethod.post:
            raise ValueError("body is sent only with method POST")
        return self


class JobQuery(_Model):
    job_template: dict[str, Any] = Field(
        description=(
            "A JobTemplateSpec, as in a CronJob: {metadata, spec: <JobSpec>}. One Job per check;"
            " it succeeding is the value 1, it failing the value 0."
        ),
    )
    timeout: Duration = Field(
        default="10m", description="A Job not done in time has failed (activeDeadlineSeconds)."
    )
    ttl_after_finished: Duration = Field(
        default="1h", description="How long a finished Job is kept (ttlSecondsAfterFinished)."
    )

    @model_validator(mode="after")
    def _has_spec(self) -> JobQuery:
        if not isinstance(self.job_template.get("spec"), dict):
            raise ValueError("jobTemplate needs a spec (a JobSpec)")
        return self


# Substituted into SQL text like into PromQL (inside quotes, with backslash escapes, which SQL
# does not share), so an argument may hold no quote or backslash.
_SQL_ARG_PATTERN = r"^[^'\\\"`]*$"


class SqlQuery(_Model):
    dsn: SecretKeyRef = Field(
        description=(
            "Secret key holding the connection URL: postgresql://... or mysql://... (MariaDB"
            " too). Never logged or shown in status."
        )
    )
    query: str = Field(
        min_length=1,
        description=(
            "One read-only statement returning one row with one number. Variables:"
            " {{namespace}}, {{migration}}, {{blue}}, {{green}}, {{service}},"
            " {{preview.service}} and {{args.NAME}}."
        ),
    )
    args: dict[str, Annotated[str, Field(pattern=_SQL_ARG_PATTERN)]] = Field(
        default_factory=dict,
        description="User variables, used as {{args.NAME}} in the query (no quotes).",
    )
    timeout: Duration = Field(
        default="5s", description="Statement timeout, enforced by the database server."
    )


# The provider blocks a gate may carry: the block's name is the provider's registered kind.
PROVIDER_BLOCKS = ("prometheus", "web", "job", "sql")
ProviderBlock = PrometheusQuery | WebQuery | JobQuery | SqlQuery
_ONE_PROVIDER_RULE = " + ".join(f"(has(self.{b}) ? 1 : 0)" for b in PROVIDER_BLOCKS) + " == 1"


class CompareTest(enum.StrEnum):
    ratio = "ratio"
    mannwhitney = "mannwhitney"


class Compare(_Model):
    baseline: str = Field(min_length=1, description="PromQL for blue's value, same shape as query.")
    max_increase: float = Field(
        ge=0, description="Green passes when value <= baseline * (1 + maxIncrease) + tolerance."
    )
    tolerance: float = Field(default=0.0, ge=0, description="Absolute slack added to the bound.")
    test: CompareTest = Field(default=CompareTest.ratio, description="ratio | mannwhitney.")
    confidence: float = Field(
        default=0.95, gt=0, lt=1, description="Confidence level of the mannwhitney test."
    )
    window: Duration = Field(default="1m", description="Range of samples for mannwhitney.")


class NoDataPolicy(enum.StrEnum):
    fail = "fail"
    inconclusive = "inconclusive"
    pass_ = "pass"


class ErrorPolicy(enum.StrEnum):
    rollback = "rollback"
    pause = "pause"


class GateTemplateKind(enum.StrEnum):
    """Where a gate template lives: the Migration's namespace, or the cluster."""

    gate_template = "GateTemplate"
    cluster_gate_template = "ClusterGateTemplate"

    @property
    def plural(self) -> str:
        return self.value.lower() + "s"

    @property
    def namespaced(self) -> bool:
        return self is GateTemplateKind.gate_template


class GateTemplateRef(_Model):
    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=OBJECT_NAME_PATTERN,
        description="Name of the template.",
    )
    kind: GateTemplateKind = Field(
        default=GateTemplateKind.gate_template,
        description=(
            "GateTemplate (in the Migration's namespace) | ClusterGateTemplate (cluster-wide)."
        ),
    )

    def describe(self) -> str:
        return f"{self.kind.value} {self.name!r}"


# A gate takes its provider from exactly one of its blocks or from a template.
_ONE_SOURCE_RULE = (
    " + ".join(f"(has(self.{b}) ? 1 : 0)" for b in (*PROVIDER_BLOCKS, "templateRef")) + " == 1"
)
# What a gate with templateRef may say itself; the template says the rest.
_TEMPLATED_GATE_FIELDS = frozenset({"name", "template_ref", "args", "dry_run"})


class Gate(_Model):
    # The API server rejects a gate naming no provider or several, like the model does.
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": _ONE_SOURCE_RULE,
                    "message": (
                        f"a gate needs exactly one of {', '.join(PROVIDER_BLOCKS)} or templateRef"
                    ),
                }
            ]
        }
    )

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Unique name of the gate (DNS label).",
    )
    prometheus: PrometheusQuery | None = Field(
        default=None, description="Query Prometheus (or Thanos, Mimir, VictoriaMetrics)."
    )
    web: WebQuery | None = Field(default=None, description="Ask a URL answering JSON.")
    job: JobQuery | None = Field(
        default=None, description="Run a Kubernetes Job: success passes, failure fails."
    )
    sql: SqlQuery | None = Field(
        default=None, description="Run a read-only query against PostgreSQL or MySQL/MariaDB."
    )
    dry_run: bool = Field(
        default=False,
        description="Check and record the gate, but never pause, roll back or hold a step on it.",
    )
    threshold: Threshold | None = Field(default=None, description="Absolute bounds on the value.")
    compare: Compare | None = Field(default=None, description="Compare green with blue.")
    interval: Duration = Field(default="30s", description="Time between two checks.")
    failure_limit: int = Field(
        default=0, ge=0, description="Roll back after more than this many failed checks."
    )
    inconclusive_limit: int = Field(
        default=0, ge=0, description="Pause after more than this many inconclusive checks."
    )
    consecutive_error_limit: int = Field(
        default=4, ge=0, description="Provider errors tolerated in a row before onError applies."
    )
    on_no_data: NoDataPolicy = Field(
        default=NoDataPolicy.inconclusive,
        description="What an empty result or NaN counts as: fail | inconclusive | pass.",
    )
    on_error: ErrorPolicy = Field(
        default=ErrorPolicy.pause,
        description="What happens once provider errors pass the limit: rollback | pause.",
    )
    template_ref: GateTemplateRef | None = Field(
        default=None,
        description=(
            "Take the provider, threshold or compare, interval, limits and policies from a"
            " GateTemplate or ClusterGateTemplate instead of writing them here."
        ),
    )
    args: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "With templateRef: values of the template's args, used as {{args.NAME}} in its"
            " provider block."
        ),
    )

    @model_validator(mode="after")
    def _one_judgement(self) -> Gate:
        if self.template_ref is not None or self.args:
            return self._templated()
        named = [b for b in PROVIDER_BLOCKS if getattr(self, b) is not None]
        if len(named) != 1:
            raise ValueError(f"a gate needs exactly one of {', '.join(PROVIDER_BLOCKS)}")
        if self.prometheus is None and self.compare is not None:
            raise ValueError("compare needs a provider that can ask about blue: use prometheus")
        if (self.threshold is None) == (self.compare is None):
            raise ValueError("a gate needs exactly one of threshold or compare")
        if parse_duration(self.interval) < 1:
            raise ValueError(f"interval {self.interval!r} is shorter than 1s")
        return self

    def _templated(self) -> Gate:
        if self.template_ref is None:
            raise ValueError(
                "args go with templateRef; a provider's own args go in its block"
                # A job block has no variables, so no args either.
                f" ({', '.join(b + '.args' for b in PROVIDER_BLOCKS if b != 'job')})"
            )
        # Compared with the defaults, not by what was written: a dumped gate says them all.
        own = [
            info.alias or name
            for name, info in sorted(Gate.model_fields.items())
            if name not in _TEMPLATED_GATE_FIELDS
            and getattr(self, name) != info.get_default(call_default_factory=True)
        ]
        if own:
            raise ValueError(
                f"a gate with templateRef takes {', '.join(own)} from"
                f" {self.template_ref.describe()}; it may set only name, args and dryRun"
            )
        return self

    @property
    def provider(self) -> str:
        """The registered kind of this gate's provider: the name of its block."""
        return next(b for b in PROVIDER_BLOCKS if getattr(self, b) is not None)

    @property
    def source(self) -> ProviderBlock:
        """This gate's provider block."""
        block: ProviderBlock = getattr(self, self.provider)
        return block


# --- gate templates -------------------------------------------------------------------------

# Fields of a gate that only a Migration's gate has: a template's gate is the rest.
_GATE_ONLY_FIELDS = ("name", "template_ref", "args")


class _TemplateGateBase(_Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": _ONE_PROVIDER_RULE,
                    "message": f"a gate needs exactly one of {', '.join(PROVIDER_BLOCKS)}",
                }
            ]
        }
    )


# Built from Gate's own fields, so a template offers every provider and option a gate has
# (a provider added to Gate is in templates too); Gate's rules apply when a template resolves.
if typing.TYPE_CHECKING:
    TemplateGate = _TemplateGateBase
else:
    TemplateGate = create_model(
        "TemplateGate",
        __base__=_TemplateGateBase,
        __doc__="A gate without its name: what a template gives every gate that uses it.",
        **{
            name: (info.annotation, copy.copy(info))
            for name, info in Gate.model_fields.items()
            if name not in _GATE_ONLY_FIELDS
        },
    )


class TemplateArg(_Model):
    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$",
        description="Used as {{args.NAME}} in the gate's provider block.",
    )
    value: str | None = Field(
        default=None,
        description="Default value; without one, every gate using the template must give it.",
    )
    description: str | None = Field(default=None, description="What the arg is for.")


class GateTemplateSpec(_Model):
    args: list[TemplateArg] = Field(
        default_factory=list,
        max_length=32,
        description="The args a gate using this template may (or, without a value, must) give.",
    )
    gate: TemplateGate = Field(
        description=(
            "The gate, as in a Migration's spec.gates[] without name: a provider block,"
            " threshold or compare, interval, limits and policies."
        )
    )

    @field_validator("args")
    @classmethod
    def _unique_arg_names(cls, args: list[TemplateArg]) -> list[TemplateArg]:
        _unique_names([a.name for a in args], "is declared twice")
        return args


class GateTemplateManifest(_Model):
    """A whole GateTemplate or ClusterGateTemplate, as ``cutover lint``/``plan`` read it."""

    model_config = ConfigDict(
        extra="ignore", frozen=True, alias_generator=to_camel, populate_by_name=True
    )
    api_version: Literal["cutover.io/v1alpha1"] = "cutover.io/v1alpha1"
    kind: GateTemplateKind
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: GateTemplateSpec

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> GateTemplateManifest:
        """A whole manifest; errors name ``spec...`` paths."""
        try:
            return cls.model_validate(dict(manifest))
        except ValidationError as error:
            raise SpecInvalid(describe_errors(error, root="")) from None


def parse_template_spec(raw: Mapping[str, Any]) -> GateTemplateSpec:
    try:
        return GateTemplateSpec.model_validate(dict(raw))
    except ValidationError as error:
        raise SpecInvalid(describe_errors(error)) from None


class Rollback(_Model):
    automatic: bool = Field(
        default=True, description="Roll back on a failed gate; false pauses instead."
    )
    scale_down_green: bool = Field(
        default=True, description="Scale green to zero once traffic is back on blue."
    )
    window: Duration = Field(
        default="0s",
        description=(
            "After success, keep blue at full size this long (the rollback window): gates keep"
            " running, and a failed gate or `cutover undo` puts all traffic back on blue at once."
            " Blue is retired when it closes; 0s retires blue at success."
        ),
    )


class DeadlineAction(enum.StrEnum):
    rollback = "rollback"
    pause = "pause"


class RunDeadline(_Model):
    duration: Duration = Field(
        description="How long a run may take from its start, pauses included (e.g. 2h)."
    )
    action: DeadlineAction = Field(
        default=DeadlineAction.rollback,
        description=(
            "When it passes: rollback (a run that cannot finish in time is not released) or"
            " pause (a person decides; resume goes on and the deadline does not pause it again)."
        ),
    )


class NotifyEvent(enum.StrEnum):
    """What a notifier may be told about (its ``events`` filter)."""

    # status.phase changed (Progressing, Paused, RollingBack, Succeeded, ...).
    phase_changed = "PhaseChanged"
    # A gate went past its limits (failed, inconclusive or erroring); dry-run gates included.
    gate_failed = "GateFailed"
    # An irreversible hook started: traffic can no longer go back to blue automatically.
    point_of_no_return = "PointOfNoReturn"
    # A rollback started, with its reason.
    rollback_started = "RollbackStarted"


class NotifierKind(enum.StrEnum):
    # A generic JSON body, signed with HMAC-SHA256 when a signing key is given.
    webhook = "webhook"
    # A Slack-compatible body ({"text", "blocks"}) for an incoming-webhook URL.
    slack = "slack"


NOTIFY_RULE = "(has(self.url) ? 1 : 0) + (has(self.urlFrom) ? 1 : 0) == 1"


class Notifier(_Model):
    # The API server rejects a notifier with no URL or two, like the model does.
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": NOTIFY_RULE, "message": "a notifier needs exactly one of url or urlFrom"},
                {
                    "rule": "self.kind == 'webhook' || !has(self.signingKey)",
                    "message": "signingKey is for kind webhook only",
                },
            ]
        }
    )

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Name of the notifier (DNS label); a Migration's replaces a default's.",
    )
    kind: NotifierKind = Field(description="webhook | slack: the shape of the body.")
    url: str | None = Field(
        default=None, pattern=r"^https?://", description="Where to POST, when it is no secret."
    )
    url_from: SecretKeyRef | None = Field(
        default=None,
        description="Where to POST, read from a Secret (never logged or shown in status).",
    )
    signing_key: SecretKeyRef | None = Field(
        default=None,
        description=(
            "HMAC-SHA256 key from a Secret: the body's signature goes in X-Cutover-Signature"
            " (sha256=<hex>). webhook only."
        ),
    )
    events: list[NotifyEvent] = Field(
        default_factory=lambda: list(NotifyEvent),
        min_length=1,
        description="Which events to send; all by default.",
    )
    timeout: Duration = Field(default="5s", description="Time one delivery attempt may take.")

    @model_validator(mode="after")
    def _one_url(self) -> Notifier:
        if (self.url is None) == (self.url_from is None):
            raise ValueError(f"notifier {self.name!r} needs exactly one of url or urlFrom")
        if self.signing_key is not None and self.kind is not NotifierKind.webhook:
            raise ValueError(f"notifier {self.name!r}: signingKey is for kind webhook only")
        return self

    def secret_refs(self) -> list[tuple[str, SecretKeyRef]]:
        """(field, ref) of every Secret this notifier reads."""
        refs = [("urlFrom", self.url_from), ("signingKey", self.signing_key)]
        return [(field, ref) for field, ref in refs if ref is not None]


def unique_notifiers(notifiers: list[Notifier]) -> list[Notifier]:
    seen: set[str] = set()
    for index, notifier in enumerate(notifiers):
        if notifier.name in seen:
            raise ValueError(f"[{index}].name: {notifier.name!r} is used twice")
        seen.add(notifier.name)
    return notifiers


class ConfigMapKeyRef(_Model):
    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=OBJECT_NAME_PATTERN,
        description="ConfigMap in the Migration's namespace.",
    )
    key: str = Field(min_length=1, description="Key holding a Job template in YAML.")


class HookStage(enum.StrEnum):
    pre_shift = "preShift"
    after_step = "afterStep"
    post_promotion = "postPromotion"
    on_rollback = "onRollback"


class Hook(_Model):
    name: str = Field(
        min_length=1,
        max_length=40,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Name of the hook (DNS label); part of the Job's name.",
    )
    job_template: dict[str, Any] | None = Field(
        default=None,
        description="A JobTemplateSpec, as in a CronJob: {metadata, spec: <JobSpec>}.",
    )
    config_map_ref: ConfigMapKeyRef | None = Field(
        default=None, description="A ConfigMap key holding the Job template, instead of inline."
    )
    timeout: Duration = Field(default="10m", description="A Job not done in time has failed.")
    retries: int = Field(
        default=0, ge=0, le=10, description="Extra attempts, each a new Job, before failing."
    )
    irreversible: bool = Field(
        default=False,
        description="Once this hook starts, automatic rollback is no longer possible.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Hook:
        if (self.job_template is None) == (self.config_map_ref is None):
            raise ValueError("a hook needs exactly one of jobTemplate or configMapRef")
        if self.job_template is not None and not isinstance(self.job_template.get("spec"), dict):
            raise ValueError("jobTemplate needs a spec (a JobSpec)")
        return self


class Hooks(_Model):
    pre_shift: list[Hook] = Field(
        default_factory=list,
        max_length=10,
        description="Jobs that must succeed before any traffic moves (e.g. expand a schema).",
    )
    after_step: list[Hook] = Field(
        default_factory=list,
        max_length=10,
        description="Jobs run after each weight step; a failure counts like a failed gate.",
    )
    post_promotion: list[Hook] = Field(
        default_factory=list,
        max_length=10,
        description="Jobs run after the bake window (e.g. contract a schema).",
    )
    on_rollback: list[Hook] = Field(
        default_factory=list,
        max_length=10,
        description="Jobs run once traffic is back on blue (e.g. undo an expand).",
    )

    def of(self, stage: HookStage) -> list[Hook]:
        return {
            HookStage.pre_shift: self.pre_shift,
            HookStage.after_step: self.after_step,
            HookStage.post_promotion: self.post_promotion,
            HookStage.on_rollback: self.on_rollback,
        }[stage]

    @model_validator(mode="after")
    def _unique_names(self) -> Hooks:
        seen: set[str] = set()
        for stage in HookStage:
            for hook in self.of(stage):
                if hook.name in seen:
                    raise ValueError(f"hook name {hook.name!r} is used twice")
                seen.add(hook.name)
        return self


# A Service's name is a DNS-1035 label: no dots, starting with a letter.
SERVICE_NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
PREVIEW_SUFFIX = "-preview"


class PreviewSpec(_Model):
    """Checks before any user traffic (Argo Rollouts' previewService and prePromotionAnalysis)."""

    service: str | None = Field(
        default=None,
        max_length=63,
        pattern=SERVICE_NAME_PATTERN,
        description=(
            "Name of the preview Service the operator creates for the run, selecting only"
            " green's pods; default: <migration>-preview. Gates reach it as"
            " {{preview.service}}. Deleted when the run ends."
        ),
    )
    gates: list[str] = Field(
        default_factory=list,
        max_length=MAX_GATES,
        description=(
            "Names of spec.gates checked against the preview, at weight 0, once green is ready"
            " at full size: the first step starts only when each passed a check, and a failure"
            " rolls back before any user traffic moved. These gates are not checked during the"
            " steps. Empty: the preview only waits for green to be ready."
        ),
    )


class MigrationSpec(_Model):
    blue: DeploymentRef = Field(description="The live version.")
    green: DeploymentRef = Field(description="The candidate version.")
    traffic: TrafficSpec = Field(description="How traffic moves between the versions.")
    steps: list[Step] = Field(
        min_length=1, max_length=MAX_STEPS, description="Weights and pauses, in order."
    )
    gates: list[Gate] = Field(
        default_factory=list, max_length=MAX_GATES, description="Health checks during the run."
    )
    rollback: Rollback = Field(default_factory=Rollback, description="What a failed gate does.")
    progress_deadline: Duration = Field(
        default="10m",
        description="Green not ready this long after a step's weight is in place: roll back.",
    )
    bake: Duration = Field(
        default="0s", description="After weight 100, keep blue scaled and gates running this long."
    )
    paused: bool = Field(default=False, description="Hold the run where it is.")
    hooks: Hooks = Field(default_factory=Hooks, description="Jobs for the data side of the run.")
    deadline: RunDeadline | None = Field(
        default=None, description="A deadline for the whole run, and what happens when it passes."
    )
    preview: PreviewSpec | None = Field(
        default=None,
        description=(
            "Before the first step moves any user traffic: green at full size and ready, a"
            " preview Service selecting only green's pods, and the named gates checked against"
            " it at weight 0."
        ),
    )
    notify: list[Notifier] = Field(
        default_factory=list,
        max_length=10,
        description=(
            "Where to send phase changes, gate failures, the point of no return and rollbacks;"
            " added to the operator's default notifiers (same name: this one replaces it)."
        ),
    )

    @field_validator("steps")
    @classmethod
    def _weights_well_ordered(cls, steps: list[Step]) -> list[Step]:
        previous = 0
        last_weight: int | None = None
        for index, step in enumerate(steps):
            if step.set_weight is None:
                continue
            if step.set_weight < previous:
                raise ValueError(
                    f"[{index}].setWeight: {step.set_weight} is lower than the previous"
                    f" weight {previous}: weights must not decrease"
                )
            previous = last_weight = step.set_weight
        if last_weight != 100:
            raise ValueError("the last setWeight must be 100")
        return steps

    @field_validator("notify")
    @classmethod
    def _unique_notifier_names(cls, notifiers: list[Notifier]) -> list[Notifier]:
        return unique_notifiers(notifiers)

    @field_validator("gates")
    @classmethod
    def _unique_gate_names(cls, gates: list[Gate]) -> list[Gate]:
        _unique_names([g.name for g in gates], "is used twice")
        return gates

    @model_validator(mode="after")
    def _versions_differ(self) -> MigrationSpec:
        if self.blue.deployment == self.green.deployment:
            raise ValueError("blue and green name the same Deployment")
        if (
            parse_duration(self.rollback.window) > 0
            and self.traffic.router.capabilities.shift is Shift.pods
            and self.traffic.service is None
        ):
            # Blue at full size behind the shared Service would take traffic: the router keeps
            # it out by pinning that Service to green's pods, so it must know the Service.
            raise ValueError(
                f"rollback.window: the {self.traffic.router.value} router keeps blue at full size"
                " out of traffic by narrowing the Service in front of both versions: set"
                " spec.traffic.service"
            )
        if self.traffic.router.capabilities.shift is Shift.switch:
            for index, step in enumerate(self.steps):
                if step.set_weight not in (None, 0, 100):
                    raise ValueError(
                        f"steps[{index}].setWeight {step.set_weight}: the"
                        f" {self.traffic.router.value} router switches all traffic at once,"
                        " so only weights 0 and 100 are possible"
                    )
        self._mirrors_possible()
        self._preview_possible()
        return self

    def _preview_possible(self) -> None:
        """Preview gates are gates of this spec, and green can run at full size unseen."""
        if self.preview is None:
            return
        router = self.traffic.router
        if router.capabilities.shift is Shift.pods:
            able = ", ".join(r.value for r in Router if r.capabilities.shift is not Shift.pods)
            raise ValueError(
                f"preview: the {router.value} router sends user traffic to every green pod behind"
                " the shared Service, so green cannot be ready at full size before the first"
                f" step; use {able}"
            )
        names = {g.name for g in self.gates}
        seen: set[str] = set()
        for index, name in enumerate(self.preview.gates):
            if name not in names:
                known = ", ".join(sorted(names)) or "none"
                raise ValueError(
                    f"preview.gates[{index}]: no gate named {name!r} in spec.gates (its gates:"
                    f" {known})"
                )
            if name in seen:
                raise ValueError(f"preview.gates[{index}]: {name!r} is named twice")
            seen.add(name)

    def _mirrors_possible(self) -> None:
        """setMirror steps need a router that sees requests, and a green that answers none yet."""
        weight = 0
        for index, step in enumerate(self.steps):
            if step.set_weight is not None:
                weight = step.set_weight
            if step.set_mirror is None or step.set_mirror.percent == 0:
                continue
            router = self.traffic.router
            if not router.capabilities.mirrors:
                able = ", ".join(r.value for r in Router if r.capabilities.mirrors)
                raise ValueError(
                    f"steps[{index}].setMirror: the {router.value} router cannot copy requests"
                    f" to green; use {able}"
                )
            if weight == 100:
                raise ValueError(
                    f"steps[{index}].setMirror: green already answers all requests at weight"
                    " 100, so there is nothing left to mirror"
                )

    @property
    def weights(self) -> list[int]:
        return [s.set_weight for s in self.steps if s.set_weight is not None]


# --- status -----------------------------------------------------------------------------------


class _StatusModel(_Model):
    # The decision engine builds a new status by editing a deep copy, so status models are mutable.
    model_config = ConfigDict(frozen=False, validate_assignment=False)

    def edit_copy(self) -> typing.Self:
        """A deep copy to edit. Rebuilt from a dump, not ``model_copy(deep=True)``: pydantic's
        generic deep copy took ~1 ms for a status of ten history entries and nine conditions,
        five times the dump and validation (and at 1,000 Migrations the engine's largest cost).
        Lossless: every status the engine makes is written and read back this way anyway."""
        return self.model_validate(self.model_dump(by_alias=True))


class Phase(enum.StrEnum):
    # Accepted, not yet validated or started.
    pending = "Pending"
    # Shifting traffic step by step, gates running.
    progressing = "Progressing"
    # Held where it is: by spec.paused, a pause request, an indefinite pause step or a gate.
    paused = "Paused"
    # A gate failed or the run was aborted: traffic is being returned to blue.
    rolling_back = "RollingBack"
    # All traffic is back on blue; terminal until `retry` or a new spec.
    rolled_back = "RolledBack"
    # All traffic is on green and blue is retired; terminal. With spec.rollback.window, blue is
    # first kept at full size until status.rollbackWindowEndsAt (undo or a breach: RollingBack).
    succeeded = "Succeeded"
    # The run cannot start or go on (e.g. an invalid spec); terminal until fixed or retried.
    failed = "Failed"


TERMINAL_PHASES = frozenset({Phase.rolled_back, Phase.succeeded, Phase.failed})


class ConditionType(enum.StrEnum):
    ready = "Ready"
    progressing = "Progressing"
    paused = "Paused"
    complete = "Complete"
    rolled_back = "RolledBack"
    invalid_spec = "InvalidSpec"
    rollback_available = "RollbackAvailable"
    # kstatus (Flux): True when the run ended without success, so health checks fail at once.
    stalled = "Stalled"
    # After success, while blue is kept at full size and `cutover undo` can still bring it back.
    rollback_window = "RollbackWindow"


class Condition(_StatusModel):
    type: ConditionType
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024)
    message: str = Field(default="", max_length=32768)
    last_transition_time: datetime
    observed_generation: int | None = Field(default=None, ge=0)


class Verdict(enum.StrEnum):
    passed = "Passed"
    failed = "Failed"
    inconclusive = "Inconclusive"
    error = "Error"


class GateOutcome(enum.StrEnum):
    # The run ended with every check within its limits (final).
    passed = "Passed"
    # The run ended before this gate was checked (final).
    skipped = "Skipped"
    # No check yet in this run.
    pending = "Pending"
    # Checks within their limits.
    running = "Running"
    # More inconclusive checks than inconclusiveLimit.
    inconclusive = "Inconclusive"
    # More consecutive provider errors than consecutiveErrorLimit.
    error = "Error"
    # More failed checks than failureLimit.
    failed = "Failed"


class GateStatus(_StatusModel):
    name: str
    outcome: GateOutcome = GateOutcome.pending
    last_verdict: Verdict | None = None
    last_value: float | None = None
    last_baseline: float | None = None
    last_p_value: float | None = None
    last_message: str | None = None
    last_evaluated_at: datetime | None = None
    last_passed_at: datetime | None = None
    next_check_at: datetime | None = None
    passed: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    inconclusive: int = Field(default=0, ge=0)
    errors: int = Field(default=0, ge=0)
    consecutive_errors: int = Field(default=0, ge=0)
    # Checks a person excused by resuming or promoting a held run; limits count the rest.
    excused_failed: int = Field(default=0, ge=0)
    excused_inconclusive: int = Field(default=0, ge=0)
    # A dry-run gate's checks are recorded and shown but never stop, hold or pause the run.
    dry_run: bool = False


class HookState(enum.StrEnum):
    running = "Running"
    succeeded = "Succeeded"
    failed = "Failed"


class HookRun(_StatusModel):
    """One attempt of one hook, as a Job."""

    name: str
    stage: HookStage
    step: int | None = None  # afterStep hooks: the step they ran after
    attempt: int = Field(default=1, ge=1)
    job: str
    state: HookState = HookState.running
    started_at: datetime
    finished_at: datetime | None = None
    message: str = ""


class HistoryEntry(_StatusModel):
    time: datetime
    phase: Phase
    step: int
    weight: int
    reason: str
    message: str = ""


class ResolvedGate(_StatusModel):
    """A gate of this run taken from a template at its preflight: the run checks ``gate``."""

    template_ref: GateTemplateRef
    uid: str = Field(description="The template's metadata.uid when it was resolved.")
    generation: int = Field(ge=0, description="The template's metadata.generation then.")
    gate: Gate = Field(description="The gate the template and the gate's args resolved to.")


class PreviewState(enum.StrEnum):
    # The preview Service is being created and green is becoming ready at full size.
    starting = "Starting"
    # Green is ready: the preview gates are checked at weight 0.
    checking = "Checking"
    # Every preview gate passed (or a person promoted): the steps go on.
    passed = "Passed"
    # The run ended (rolled back, failed or restarted) before the preview passed.
    failed = "Failed"


class PreviewStatus(_StatusModel):
    """The preview of one run (spec.preview): where it is, so a restart neither repeats nor
    skips it."""

    run_id: str = Field(description="The run this preview belongs to.")
    service: str = Field(description="The preview Service's name.")
    state: PreviewState = PreviewState.starting
    started_at: datetime
    ready_at: datetime | None = Field(
        default=None, description="When green was ready at full size behind the preview."
    )
    ended_at: datetime | None = Field(default=None, description="When it passed or failed.")
    service_created: bool = Field(default=False, description="The Service was written.")
    service_deleted: bool = Field(
        default=False, description="The Service was deleted, the run being over."
    )


class MigrationStatus(_StatusModel):
    phase: Phase = Field(default=Phase.pending, description="Where the run is, for humans.")
    reason: str | None = Field(default=None, description="Why the run is in this phase.")
    observed_generation: int | None = Field(default=None, description="Generation acted on.")
    run_id: str | None = Field(default=None, description="Identifies this run (retry: new id).")
    current_step_index: int = Field(default=0, ge=0, description="Index into spec.steps.")
    step: str | None = Field(
        default=None, description='The current step for people: "2/5", counted from 1.'
    )
    weight: int = Field(default=0, ge=0, le=100, description="Green's share of traffic, percent.")
    mirror: int = Field(
        default=0, ge=0, le=100, description="Percent of live requests copied to green (setMirror)."
    )
    total_replicas: int | None = Field(default=None, ge=0, description="Blue's size at start.")
    started_at: datetime | None = None
    completed_at: datetime | None = None
    step_started_at: datetime | None = Field(default=None, description="When this step began.")
    step_ready_at: datetime | None = Field(
        default=None, description="When green was ready at this step's weight."
    )
    deadline_reached_at: datetime | None = Field(
        default=None, description="When this run passed spec.deadline."
    )
    weight_acknowledged_at: datetime | None = Field(
        default=None,
        description=(
            "When this step's weight was first seen in place (the router acknowledged the write"
            " or read it back): the progress deadline counts from here, so a slow operator or"
            " API server never spends green's time."
        ),
    )
    paused_at: datetime | None = Field(default=None, description="When a pause began.")
    full_promotion: bool = Field(default=False, description="Promoted with --full.")
    last_request: str | None = Field(default=None, description="Last manual request handled.")
    rollback_reason: str | None = None
    message: str = ""
    conditions: list[Condition] = Field(default_factory=list)
    gates: list[GateStatus] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list, max_length=HISTORY_LIMIT)
    hooks: list[HookRun] = Field(default_factory=list, description="Hook Jobs of this run.")
    resolved_gates: list[ResolvedGate] = Field(
        default_factory=list,
        max_length=MAX_GATES,
        description=(
            "Gates taken from templates at this run's preflight, with each template's uid and"
            " generation: the run checks these, whatever the templates say later."
        ),
    )
    rollback_available: bool = Field(
        default=True,
        description="Whether traffic can still go back to blue (the RollbackAvailable condition).",
    )
    rollback_unavailable_reason: str | None = Field(
        default=None, description="Why rollback is not available."
    )
    point_of_no_return: str | None = Field(
        default=None,
        description="Set when an irreversible hook of this run started: rollback is refused.",
    )
    rollback_window_ends_at: datetime | None = Field(
        default=None,
        description=(
            "Set while the rollback window after success is open: blue is kept at full size until"
            " then, and a failed gate or `cutover undo` puts all traffic back on it."
        ),
    )
    rollback_window_blue: DeploymentRef | None = Field(
        default=None,
        description="The version kept at full size during the rollback window.",
    )
    rollback_window_green: DeploymentRef | None = Field(
        default=None,
        description=(
            "The version serving during the rollback window: a spec naming other versions closes"
            " the window (these are retired and kept by name, whatever the new spec says)."
        ),
    )
    preview: PreviewStatus | None = Field(
        default=None, description="The checks before any user traffic (spec.preview)."
    )
    live_deployment: str | None = Field(
        default=None,
        description=(
            "The Deployment serving all traffic when the last run ended: green after"
            " Succeeded, blue after RolledBack. After success only a new spec.green starts a run,"
            " and its spec.blue must name this Deployment."
        ),
    )

    def gate(self, name: str) -> GateStatus | None:
        return next((g for g in self.gates if g.name == name), None)

    def condition(self, type_: ConditionType) -> Condition | None:
        return next((c for c in self.conditions if c.type is type_), None)


class Migration(_Model):
    """The whole object, as the CRD and ``cutover lint`` see it."""

    model_config = ConfigDict(
        extra="ignore", frozen=True, alias_generator=to_camel, populate_by_name=True
    )
    api_version: Literal["cutover.io/v1alpha1"] = "cutover.io/v1alpha1"
    kind: Literal["Migration"] = "Migration"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: MigrationSpec
    status: MigrationStatus | None = None

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> Migration:
        """A whole manifest (e.g. a file for ``cutover lint``); errors name ``spec...`` paths."""
        try:
            return cls.model_validate(dict(manifest))
        except ValidationError as error:
            raise SpecInvalid(describe_errors(error, root="")) from None


# --- turning raw dictionaries into models ---------------------------------------------------


def _location(loc: tuple[int | str, ...], root: str) -> str:
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith("function-after") or part in {"enum", "literal_error"}:
            continue
        else:
            path += f".{part}" if path else part
    return path or "(root)"


def describe_errors(error: ValidationError, root: str = "spec") -> list[str]:
    """One line per problem, each starting with the field path users write in YAML.

    A validator on a list may name the element at fault by starting its message with ``[i]``;
    that continues the path (``spec.steps`` + ``[1].setWeight: ...``).
    """
    lines = []
    for item in error.errors():
        message = _helpful(item, item["msg"].removeprefix("Value error, "))
        path = _location(item["loc"], root)
        lines.append(f"{path}{message}" if message.startswith("[") else f"{path}: {message}")
    return lines


def _field_names() -> set[str]:
    """Every field name a Migration manifest may use (the YAML spelling)."""
    names: set[str] = set()
    pending: list[type[BaseModel]] = [MigrationSpec]
    seen: set[type[BaseModel]] = set()
    while pending:
        model = pending.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, info in model.model_fields.items():
            names.add(info.alias or name)
            for candidate in typing.get_args(info.annotation) or (info.annotation,):
                for inner in typing.get_args(candidate) or (candidate,):
                    if isinstance(inner, type) and issubclass(inner, BaseModel):
                        pending.append(inner)
    return names


def _helpful(item: Any, message: str) -> str:
    """Pydantic's wording, plus what a person most likely meant."""
    loc = [part for part in item.get("loc", ()) if isinstance(part, str)]
    field = loc[-1] if loc else ""
    if item.get("type") == "extra_forbidden":
        close = difflib.get_close_matches(field, sorted(_field_names()), n=1, cutoff=0.7)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"unknown field {field!r}{hint}"
    value = item.get("input")
    if (
        item.get("type") == "string_type"
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and field in _DURATION_FIELDS
    ):
        return f"{message}: a duration needs a unit, e.g. {value:g}s"
    return message


# Fields that take a duration ("30s", "2m"): a bare number there is a missing unit.
_DURATION_FIELDS = frozenset(
    {"interval", "duration", "timeout", "progressDeadline", "bake", "window", "maxAge"}
)


class SpecInvalid(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_spec(raw: Mapping[str, Any]) -> MigrationSpec:
    try:
        return MigrationSpec.model_validate(dict(raw))
    except ValidationError as error:
        raise SpecInvalid(describe_errors(error)) from None


def parse_status(raw: Mapping[str, Any] | None) -> MigrationStatus:
    """The stored status, ignoring fields written by others (e.g. Kopf's own bookkeeping).

    A status that no longer parses raises ``StatusCorrupt``: starting over would repeat steps.
    """
    if not raw:
        return MigrationStatus()
    known = {k: v for k, v in raw.items() if k in _STATUS_FIELDS}
    try:
        return MigrationStatus.model_validate(known)
    except ValidationError as error:
        raise StatusCorrupt(describe_errors(error, root="status")) from None


class StatusCorrupt(SpecInvalid):
    pass


_STATUS_FIELDS = {field.alias or name for name, field in MigrationStatus.model_fields.items()}
