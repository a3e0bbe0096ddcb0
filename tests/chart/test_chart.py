"""The Helm chart, linted and rendered offline with Helm v4's own code (helm-python-sdk).

Each rendered manifest of a built-in kind is checked against the Kubernetes 1.30 OpenAPI schema;
on top of that the tests pin down the properties an operator install is judged by: the security
context, least-privilege RBAC that follows the enabled routers, and the HA switches.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

helm = pytest.importorskip(
    "helm_python", reason="helm-python-sdk (libhelm_c through ctypes) is not importable here"
)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "cutover"
KUBE_VERSION = "1.30.0"
RELEASE = "cutover"
NAMESPACE = "cutover-system"

# Kinds whose schema is a CRD, not part of Kubernetes' OpenAPI: checked by the tests below instead.
CUSTOM_KINDS = {"ServiceMonitor", "ClusterKopfPeering", "KopfPeering"}

FULL: dict[str, Any] = {
    "watchNamespace": "shop",
    "replicas": 3,
    "routers": {
        "gatewayapi": {"enabled": True},
        "istio": {"enabled": True},
        "nginx": {"enabled": True},
    },
    "networkPolicy": {
        "enabled": True,
        "metricsFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ],
        "egress": [{"ports": [{"port": 443, "protocol": "TCP"}]}],
    },
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "extraArgs": ["--verbose"],
}
CLUSTER_HA: dict[str, Any] = {"replicas": 2}
NO_SECRETS: dict[str, Any] = {"rbac": {"readSecrets": False}, "metrics": {"enabled": False}}

NOTIFY: dict[str, Any] = {
    "notify": {
        "default": [
            {
                "name": "platform",
                "kind": "webhook",
                "urlFrom": {"name": "cutover-hooks", "key": "url"},
                "signingKey": {"name": "cutover-hooks", "key": "hmac"},
            },
            {
                "name": "chat",
                "kind": "slack",
                "urlFrom": {"name": "cutover-slack", "key": "url"},
                "events": ["GateFailed", "RollbackStarted"],
            },
            {"name": "audit", "kind": "webhook", "url": "https://audit.example/cutover"},
        ],
        "attempts": 5,
    }
}

SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "notify-defaults": NOTIFY,
    "single-namespace-ha-all-routers": FULL,
    "cluster-wide-ha": CLUSTER_HA,
    "no-secrets-no-metrics": NO_SECRETS,
}

Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def chart() -> Iterator[Any]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart: Any, values: dict[str, Any]) -> list[Manifest]:
    files = chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs: list[Manifest] = []
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs += [doc for doc in yaml.safe_load_all(text) if doc]
    return docs


@pytest.fixture(scope="module")
def rendered(chart: Any) -> dict[str, list[Manifest]]:
    return {name: render(chart, values) for name, values in SCENARIOS.items()}


def of_kind(docs: list[Manifest], kind: str) -> list[Manifest]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[Manifest], kind: str) -> Manifest:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def rules(docs: list[Manifest]) -> list[dict[str, Any]]:
    return [rule for doc in docs if doc["kind"] in {"Role", "ClusterRole"} for rule in doc["rules"]]


def granted(docs: list[Manifest], group: str, resource: str) -> set[str]:
    verbs: set[str] = set()
    for rule in rules(docs):
        if group in rule["apiGroups"] and resource in rule["resources"]:
            verbs |= set(rule["verbs"])
    return verbs


# RBAC rules of the admission webhooks (cluster-scoped in every install).
ADMISSION_GROUPS = {"admissionregistration.k8s.io", "authorization.k8s.io"}


def metrics_service(docs: list[Manifest]) -> Manifest:
    (service,) = [d for d in of_kind(docs, "Service") if d["metadata"]["name"].endswith("-metrics")]
    return service


def container(docs: list[Manifest]) -> Manifest:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (operator,) = pod["containers"]
    result: Manifest = operator
    return result


# --- lint and schema -------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_lint_is_clean_in_strict_mode(scenario: str) -> None:
    report = helm.lint(
        CHART, SCENARIOS[scenario], strict=True, namespace=NAMESPACE, kube_version="v1.30.0"
    )
    assert report["errors"] == []
    # Severity 1 is informational (e.g. "icon is recommended"); warnings and errors fail.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_schema_rejects_bad_values(chart: Any) -> None:
    for bad in (
        {"replicas": "three"},
        {"replicas": 0},
        {"watchNamespace": "Not_A_Namespace"},
        {"routers": {"linkerd": {"enabled": True}}},
        {"metrics": {"port": 70000}},
    ):
        with pytest.raises(helm.HelmError):
            chart.validate_schema(bad)
        with pytest.raises(helm.HelmError):
            chart.render(values=bad, name=RELEASE, namespace=NAMESPACE)


def test_schema_accepts_every_scenario_and_the_defaults(chart: Any) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(defaults, schema)
    for values in SCENARIOS.values():
        chart.validate_schema(values)


# --- every manifest is valid Kubernetes ------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rendered_manifests_validate_against_kubernetes(
    rendered: dict[str, list[Manifest]], scenario: str
) -> None:
    for doc in rendered[scenario]:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_chart_crds_validate_and_match_the_generated_ones(chart: Any) -> None:
    generated = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    assert generated, "no CRDs under crds/"
    for name in generated:
        shipped = CHART / "crds" / name
        assert shipped.exists(), f"charts/cutover/crds/{name} missing: run `make chart-crds`"
        assert shipped.read_bytes() == (ROOT / "crds" / name).read_bytes(), (
            f"charts/cutover/crds/{name} drifted from crds/: run `make chart-crds`"
        )
    extra = {p.name for p in (CHART / "crds").iterdir()} - set(generated)
    assert extra == {"kopf-peering.yaml"}, f"unexpected files in charts/cutover/crds: {extra}"
    loaded = chart.crds
    assert {c["filename"].rsplit("/", 1)[-1] for c in loaded} >= {*generated, "kopf-peering.yaml"}
    for entry in loaded:
        for doc in yaml.safe_load_all(entry["data"]):
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


# --- security --------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_the_operator_runs_locked_down(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    docs = rendered[scenario]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = container(docs)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 65532
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    # The one writable place, matching HOME=/tmp in the image.
    assert {"name": "tmp", "mountPath": "/tmp"} in container(docs)["volumeMounts"]
    assert "limits" in container(docs)["resources"]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_probes_use_kopf_health_endpoint(
    rendered: dict[str, list[Manifest]], scenario: str
) -> None:
    operator = container(rendered[scenario])
    for probe in ("livenessProbe", "readinessProbe"):
        assert operator[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    assert ports["health"] == 8080
    assert "--liveness=http://0.0.0.0:8080/healthz" in operator["args"]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rbac_has_no_wildcards(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    for rule in rules(rendered[scenario]):
        for field in ("verbs", "resources", "apiGroups"):
            assert "*" not in rule.get(field, []), f"wildcard in {field}: {rule}"
        assert "nonResourceURLs" not in rule


def test_the_operator_gets_what_it_needs(rendered: dict[str, list[Manifest]]) -> None:
    for docs in rendered.values():
        assert granted(docs, "cutover.io", "migrations") == {
            "get",
            "list",
            "watch",
            "patch",
            "update",
        }
        assert granted(docs, "cutover.io", "migrations/status") == {"get", "patch", "update"}
        assert granted(docs, "cutover.io", "migrations/finalizers") == {"update"}
        assert granted(docs, "apps", "deployments") == {"get", "list", "watch", "patch"}
        # Patched by the service and replicas routers; a run's preview Service (spec.preview)
        # created and deleted.
        assert granted(docs, "", "services") == {
            "get",
            "list",
            "watch",
            "patch",
            "create",
            "delete",
        }
        # Found before a run; green's minReplicas raised for the run (docs/routers/hpa.md).
        assert granted(docs, "autoscaling", "horizontalpodautoscalers") == {
            "get",
            "list",
            "watch",
            "patch",
        }
        assert granted(docs, "batch", "jobs") == {"get", "list", "watch", "create", "delete"}
        assert granted(docs, "", "pods/log") == {"get"}
        assert granted(docs, "", "events") == {"create", "patch"}
        assert granted(docs, "apiextensions.k8s.io", "customresourcedefinitions") == {
            "list",
            "watch",
        }
        # Gate templates are read, never written, in every install.
        assert granted(docs, "cutover.io", "gatetemplates") == {"get", "list", "watch"}
        assert granted(docs, "cutover.io", "clustergatetemplates") == {"get", "list", "watch"}


def test_secrets_are_read_only_when_asked_for(rendered: dict[str, list[Manifest]]) -> None:
    assert granted(rendered["defaults"], "", "secrets") == {"get"}
    assert granted(rendered["no-secrets-no-metrics"], "", "secrets") == set()


def test_router_rbac_follows_the_enabled_routers(rendered: dict[str, list[Manifest]]) -> None:
    routers = [
        ("gateway.networking.k8s.io", "httproutes"),
        ("networking.istio.io", "virtualservices"),
        ("networking.k8s.io", "ingresses"),
    ]
    for group, resource in routers:
        assert granted(rendered["defaults"], group, resource) == set(), resource
    full = rendered["single-namespace-ha-all-routers"]
    assert granted(full, "gateway.networking.k8s.io", "httproutes") == {
        "get",
        "list",
        "watch",
        "patch",
        "update",
    }
    assert granted(full, "networking.istio.io", "virtualservices") == {
        "get",
        "list",
        "watch",
        "patch",
        "update",
    }
    assert granted(full, "networking.k8s.io", "ingresses") == {
        "get",
        "list",
        "watch",
        "patch",
        "update",
        "create",
        "delete",
    }


def test_one_router_alone(chart: Any) -> None:
    docs = render(chart, {"routers": {"istio": {"enabled": True}}})
    assert granted(docs, "networking.istio.io", "virtualservices")
    assert not granted(docs, "gateway.networking.k8s.io", "httproutes")
    assert not granted(docs, "networking.k8s.io", "ingresses")


# --- scope ----------------------------------------------------------------------------------


def test_cluster_wide_install(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["defaults"]
    assert of_kind(docs, "Role") == [] and of_kind(docs, "RoleBinding") == []
    assert granted(docs, "", "namespaces") == {"list", "watch"}
    assert container(docs)["args"][:2] == ["--all-namespaces", "--standalone"]
    for binding in of_kind(docs, "ClusterRoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}
        ]


def test_single_namespace_install(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["single-namespace-ha-all-routers"]
    role = one(docs, "Role")
    assert role["metadata"]["namespace"] == "shop"
    assert one(docs, "RoleBinding")["metadata"]["namespace"] == "shop"
    # Only the cluster-scoped reads of CRDs and ClusterGateTemplates are granted cluster-wide
    # (besides admission's own cluster-scoped objects, pinned down by the admission tests below).
    (cluster_role,) = of_kind(docs, "ClusterRole")
    assert [
        r["resources"] for r in cluster_role["rules"] if not set(r["apiGroups"]) & ADMISSION_GROUPS
    ] == [["customresourcedefinitions"], ["clustergatetemplates"]]
    args = container(docs)["args"]
    assert "--namespace=shop" in args and "--all-namespaces" not in args
    assert args[-1] == "--verbose"


# --- high availability ----------------------------------------------------------------------


def test_single_replica_is_standalone_without_pdb(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["defaults"]
    args = container(docs)["args"]
    assert "--standalone" in args and not any(a.startswith("--peering") for a in args)
    assert of_kind(docs, "PodDisruptionBudget") == []
    assert one(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert not granted(docs, "kopf.dev", "clusterkopfpeerings")
    assert of_kind(docs, "ClusterKopfPeering") == []


def test_ha_uses_kopf_peering(rendered: dict[str, list[Manifest]]) -> None:
    for scenario, peering_kind, resource in (
        ("cluster-wide-ha", "ClusterKopfPeering", "clusterkopfpeerings"),
        ("single-namespace-ha-all-routers", "KopfPeering", "kopfpeerings"),
    ):
        docs = rendered[scenario]
        args = container(docs)["args"]
        assert "--peering=cutover" in args and "--standalone" not in args
        assert granted(docs, "kopf.dev", resource) == {"get", "list", "watch", "patch"}
        peering = one(docs, peering_kind)
        assert peering["apiVersion"] == "kopf.dev/v1"
        assert peering["metadata"]["name"] == "cutover"
        pdb = one(docs, "PodDisruptionBudget")
        assert pdb["spec"]["minAvailable"] == 1
        env = {e["name"] for e in container(docs)["env"]}
        assert "POD_ID" in env


def test_peering_crds_cover_the_granted_resources(chart: Any) -> None:
    (entry,) = [c for c in chart.crds if c["filename"].endswith("kopf-peering.yaml")]
    plural = {doc["spec"]["names"]["plural"] for doc in yaml.safe_load_all(entry["data"])}
    assert plural == {"clusterkopfpeerings", "kopfpeerings"}


# --- metrics and network --------------------------------------------------------------------


def test_metrics_port_service_and_env_agree(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["defaults"]
    operator = container(docs)
    env = {e["name"]: e.get("value") for e in operator["env"]}
    assert env["CUTOVER_METRICS_PORT"] == "9090"
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in operator["ports"]
    service = metrics_service(docs)
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert of_kind(docs, "ServiceMonitor") == []
    assert of_kind(docs, "NetworkPolicy") == []


def test_metrics_can_be_turned_off(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["no-secrets-no-metrics"]
    assert [d for d in of_kind(docs, "Service") if d["metadata"]["name"].endswith("-metrics")] == []
    assert "CUTOVER_METRICS_PORT" not in {e["name"] for e in container(docs)["env"]}


def test_service_monitor_and_network_policy(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["single-namespace-ha-all-routers"]
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"] == metrics_service(docs)["spec"]["selector"]
    policy = one(docs, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    metrics_rule = next(r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == "metrics")
    assert metrics_rule["from"] == FULL["networkPolicy"]["metricsFrom"]


# --- admission webhooks (docs/security.md) -------------------------------------------------


def webhooks(docs: list[Manifest]) -> dict[str, Manifest]:
    """Each registered webhook by its configuration's kind."""
    found = {}
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        (webhook,) = one(docs, kind)["webhooks"]
        found[kind] = webhook
    return found


def env(docs: list[Manifest]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container(docs)["env"]}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_the_webhooks_never_stand_in_the_way_of_a_deletion(
    rendered: dict[str, list[Manifest]], scenario: str
) -> None:
    for webhook in webhooks(rendered[scenario]).values():
        (rule,) = webhook["rules"]
        assert rule["operations"] == ["CREATE", "UPDATE"]  # never DELETE
        assert rule["resources"] == ["migrations"]  # not status: the operator's own writes
        conditions = {c["name"]: c["expression"] for c in webhook["matchConditions"]}
        assert conditions["not-being-deleted"] == "!has(object.metadata.deletionTimestamp)"
        assert "system:serviceaccount:cutover-system:cutover" in conditions["not-the-operator"]
        # Fail closed: an unchecked spec or a forged author must not get in while it is down.
        assert webhook["failurePolicy"] == "Fail"
        assert webhook["timeoutSeconds"] == 5
        assert webhook["sideEffects"] == "None"


def test_the_webhooks_reach_the_operator_it_configures(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["defaults"]
    service = next(
        d for d in of_kind(docs, "Service") if d["metadata"]["name"] == "cutover-webhook"
    )
    (port,) = service["spec"]["ports"]
    (listening,) = [p for p in container(docs)["ports"] if p["name"] == port["targetPort"]]
    variables = env(docs)
    assert variables["CUTOVER_WEBHOOK_PORT"] == str(listening["containerPort"])
    assert variables["CUTOVER_WEBHOOK_CONFIGURATION"] == "cutover"
    for kind, webhook in webhooks(docs).items():
        assert one(docs, kind)["metadata"]["name"] == "cutover"
        client = webhook["clientConfig"]["service"]
        assert (client["name"], client["namespace"], client["port"]) == (
            "cutover-webhook",
            NAMESPACE,
            port["port"],
        )
        # The certificate is issued for the name the API server dials.
        assert "cutover-webhook.cutover-system.svc" in variables["CUTOVER_WEBHOOK_HOSTS"].split(",")
        assert webhook["namespaceSelector"] == {}  # cluster-wide: every namespace
    paths = {kind: w["clientConfig"]["service"]["path"] for kind, w in webhooks(docs).items()}
    assert paths == {
        "MutatingWebhookConfiguration": "/mutate-migration",
        "ValidatingWebhookConfiguration": "/validate-migration",
    }


def test_a_single_namespace_install_registers_for_that_namespace(
    rendered: dict[str, list[Manifest]],
) -> None:
    for webhook in webhooks(rendered["single-namespace-ha-all-routers"]).values():
        assert webhook["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": "shop"}
        }
    policy = one(rendered["single-namespace-ha-all-routers"], "NetworkPolicy")
    assert {"port": "webhook", "protocol": "TCP"} in [
        port for rule in policy["spec"]["ingress"] for port in rule["ports"]
    ]


def test_admission_rbac_is_the_two_configurations_and_access_reviews(
    rendered: dict[str, list[Manifest]],
) -> None:
    for docs in rendered.values():
        for resource in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
            (rule,) = [r for r in rules(docs) if resource in r["resources"]]
            assert rule["verbs"] == ["get", "patch"]
            assert rule["resourceNames"] == ["cutover"]  # no one else's webhooks
        assert granted(docs, "authorization.k8s.io", "subjectaccessreviews") == {"create"}


def test_admission_can_be_turned_off(chart: Any) -> None:
    docs = render(chart, {"admission": {"enabled": False}})
    assert not of_kind(docs, "ValidatingWebhookConfiguration")
    assert not of_kind(docs, "MutatingWebhookConfiguration")
    assert not [k for k in env(docs) if k.startswith("CUTOVER_WEBHOOK")]
    assert granted(docs, "authorization.k8s.io", "subjectaccessreviews") == set()
    assert granted(docs, "admissionregistration.k8s.io", "validatingwebhookconfigurations") == set()


def test_gate_egress_values_reach_the_operator(chart: Any) -> None:
    defaults = env(render(chart, {}))
    assert "CUTOVER_GATE_ALLOWED_HOSTS" not in defaults  # any address but the always-refused
    assert defaults["CUTOVER_GATE_ALLOW_INSECURE_TLS"] == "false"
    listed = env(
        render(
            chart,
            {
                "gateEgress": {
                    "allowedHosts": ["10.0.0.0/8", "*.monitoring.svc"],
                    "allowInsecureTLS": True,
                }
            },
        )
    )
    assert listed["CUTOVER_GATE_ALLOWED_HOSTS"] == "10.0.0.0/8,*.monitoring.svc"
    assert listed["CUTOVER_GATE_ALLOW_INSECURE_TLS"] == "true"


def test_shards_run_as_a_statefulset_whose_ordinals_are_the_shards(chart: Any) -> None:
    docs = render(chart, {"shards": 3})
    assert of_kind(docs, "Deployment") == []
    statefulset = one(docs, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 3
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
    (operator,) = statefulset["spec"]["template"]["spec"]["containers"]
    # One pod per shard, each alone on it: no peering (it would pause them all), every namespace.
    assert "--standalone" in operator["args"] and "--all-namespaces" in operator["args"]
    env = {e["name"]: e for e in operator["env"]}
    assert env["CUTOVER_SHARDS"]["value"] == "3"
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert of_kind(docs, "PodDisruptionBudget") == []


def test_shards_refuse_what_they_cannot_honour(chart: Any) -> None:
    for bad, says in (
        ({"shards": 2, "replicas": 2}, "do not combine"),
        ({"shards": 2, "watchNamespace": "shop"}, "cluster-wide"),
    ):
        with pytest.raises(helm.HelmError, match=says):
            chart.render(values=bad, name=RELEASE, namespace=NAMESPACE, is_install=True)
    with pytest.raises(helm.HelmError):
        chart.validate_schema({"shards": 0})


def test_the_client_rate_limit_reaches_the_operator(chart: Any) -> None:
    defaults = env(render(chart, {}))
    assert (defaults["CUTOVER_API_QPS"], defaults["CUTOVER_API_BURST"]) == ("100", "200")
    assert defaults["CUTOVER_API_CONCURRENCY"] == "64"
    raised = env(render(chart, {"api": {"qps": 400, "burst": 800, "concurrency": 128}}))
    assert (raised["CUTOVER_API_QPS"], raised["CUTOVER_API_BURST"]) == ("400", "800")
    assert raised["CUTOVER_API_CONCURRENCY"] == "128"
    for bad in ({"qps": 0}, {"concurrency": 0}):
        with pytest.raises(helm.HelmError):
            chart.validate_schema({"api": bad})


# --- notifications ---------------------------------------------------------------------------


def test_default_notifiers_reach_the_operator_with_exactly_their_secrets(
    rendered: dict[str, list[Manifest]],
) -> None:
    from cutover.notify import load_defaults

    docs = rendered["notify-defaults"]
    variables = {e["name"]: e for e in container(docs)["env"]}
    setting = variables["CUTOVER_NOTIFY_DEFAULT"]["value"]
    defaults = load_defaults({"CUTOVER_NOTIFY_DEFAULT": setting})
    assert [(n.name, n.kind.value) for n in defaults] == [
        ("platform", "webhook"),
        ("chat", "slack"),
        ("audit", "webhook"),
    ]
    assert variables["CUTOVER_NOTIFY_ATTEMPTS"]["value"] == "5"
    assert variables["CUTOVER_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    (role,) = [r for r in of_kind(docs, "Role") if r["metadata"]["name"].endswith("-notify")]
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["cutover-hooks", "cutover-slack"],
            "verbs": ["get"],
        }
    ]
    (binding,) = [
        b for b in of_kind(docs, "RoleBinding") if b["roleRef"]["name"] == role["metadata"]["name"]
    ]
    assert binding["metadata"]["namespace"] == NAMESPACE


def test_no_default_notifiers_no_setting_and_no_secret_role(
    rendered: dict[str, list[Manifest]],
) -> None:
    docs = rendered["defaults"]
    assert "CUTOVER_NOTIFY_DEFAULT" not in {e["name"] for e in container(docs)["env"]}
    assert [r for r in of_kind(docs, "Role") if r["metadata"]["name"].endswith("-notify")] == []


def test_the_values_schema_takes_notifiers_as_the_crd_does(chart: Any) -> None:
    from cutover.api import Notifier, NotifierKind, NotifyEvent

    schema = json.loads((CHART / "values.schema.json").read_text())["definitions"]["notifier"]
    fields = {info.alias or name for name, info in Notifier.model_fields.items()}
    assert set(schema["properties"]) == fields
    assert schema["properties"]["kind"]["enum"] == [k.value for k in NotifierKind]
    assert schema["properties"]["events"]["items"]["enum"] == [e.value for e in NotifyEvent]
    for bad in (
        {"name": "a", "kind": "slack"},
        {"name": "a", "kind": "slack", "url": "https://x", "urlFrom": {"name": "s", "key": "k"}},
        {"name": "a", "kind": "pager", "url": "https://x"},
        {"name": "a", "kind": "slack", "url": "https://x", "events": ["Everything"]},
    ):
        with pytest.raises(helm.HelmError):
            chart.validate_schema({"notify": {"default": [bad]}})
