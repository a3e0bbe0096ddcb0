"""5. Security review, tested: RBAC vs what the operator used, Secrets, PromQL escaping."""

from __future__ import annotations

import base64
import collections
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cutover.core.promql import TemplateError, render_query
from devtools.controlplane import ControlPlane
from tests.integration.harness import OperatorProcess, apply_text, new_namespace, wait_for
from tests.support.prometheus import PrometheusServer

from .support import TERMINAL, app_manifest, job_template, list_json, migration_manifest

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cr3t-T0KEN-do-not-leak-7f9c"
# Kopf tries these in every mode and falls back to the exact --namespace names when they are
# forbidden (kopf/_core/reactor/observation.py): the single-namespace chart rightly omits them.
KOPF_OPTIONAL = {("list", "namespaces"), ("watch", "namespaces")}
TEMPLATE = 'sum(rate(http_requests_total{deployment="{{args.v}}"}[1m]))'


def _operator_requests(
    cluster: ControlPlane, namespace: str, since: int
) -> list[dict[str, object]]:
    """Every request the operator's ServiceAccount made (from the kube-apiserver's audit log)."""
    identity = f"system:serviceaccount:{namespace}:"
    return [e for e in cluster.reads(since) if str(e.get("user") or "").startswith(identity)]


def _counts(entries: list[dict[str, object]]) -> collections.Counter[tuple[str, str]]:
    out: collections.Counter[tuple[str, str]] = collections.Counter()
    for e in entries:
        if e["resource"] and e["resource"] != "selfsubjectaccessreviews":
            out[(str(e["verb"]), str(e["resource"]))] += 1
    return out


def _granted() -> set[tuple[str, str]]:
    helm = pytest.importorskip("helm_python")
    values = {
        "watchNamespace": "shop",
        "routers": {r: {"enabled": True} for r in ("gatewayapi", "istio", "nginx")},
    }
    with helm.Chart.load(ROOT / "charts" / "cutover") as chart:
        files = chart.render(values=values, name="cutover", namespace="ops", is_install=True)
    pairs = set()
    for path, text in files.items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc and doc["kind"] in ("Role", "ClusterRole"):
                for rule in doc["rules"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            pairs.add((verb, resource.split("/")[0]))
    return pairs


def test_rbac_secrets_and_leaks_after_a_representative_run(
    cluster: ControlPlane, prometheus: PrometheusServer
) -> None:
    namespace = new_namespace(cluster, "sec")
    decoy = new_namespace(cluster, "decoy")
    for ns in (namespace, decoy):
        cluster.kubectl(
            "create", "secret", "generic", "prom-token", "-n", ns, f"--from-literal=token={TOKEN}"
        )
    cluster.kubectl(
        "create", "secret", "generic", "elsewhere", "-n", decoy, f"--from-literal=token={TOKEN}"
    )
    for app in ("sec", "svc", "away"):
        apply_text(cluster, namespace, app_manifest(app))
    # The service router switches a selector that picks one version at a time.
    cluster.kubectl(
        "patch",
        "-n",
        namespace,
        "service/svc",
        "--type=merge",
        "-p",
        '{"spec": {"selector": {"app": "svc", "version": "blue"}}}',
    )
    gate = {
        "name": "g",
        "interval": "1s",
        "threshold": {"max": 1},
        "prometheus": {
            "address": prometheus.url,
            "query": "vector(0)",
            "auth": {"bearerToken": {"name": "prom-token", "key": "token"}},
        },
    }
    away = {
        **gate,
        "prometheus": {
            **gate["prometheus"],
            "auth": {"bearerToken": {"name": "elsewhere", "key": "token"}},
        },
    }
    hooks = {"preShift": [{"name": "expand", "jobTemplate": job_template("succeed")}]}
    steps = [{"setWeight": 50}, {"setWeight": 100}]
    since = cluster.stats()["last_seq"]
    operator = OperatorProcess(cluster, namespace).start()
    try:
        for name, spec in (
            ("sec", {"steps": steps, "gates": [gate], "hooks": hooks}),
            ("away", {"steps": steps, "gates": [away]}),
        ):
            cluster.kubectl(
                "create", "-n", namespace, "-f", "-", input=migration_manifest(name, name, spec)
            )
        svc = json.loads(migration_manifest("svc", "svc", {"steps": [{"setWeight": 100}]}))
        svc["spec"]["traffic"] = {"router": "service", "service": "svc"}
        cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(svc))
        try:
            wait_for(
                lambda: all(
                    (m.get("status") or {}).get("phase") in TERMINAL
                    for m in list_json(cluster, namespace, "mig")
                ),
                timeout=40,
            )
        except AssertionError:
            for m in list_json(cluster, namespace, "mig"):
                st_ = m.get("status") or {}
                print(
                    m["metadata"]["name"], st_.get("phase"), st_.get("reason"), st_.get("message")
                )
            complaints = [
                line for line in operator.log().splitlines() if "[ERROR" in line or "[WARN" in line
            ]
            print("\n".join(complaints[-40:]))
            raise
        items = {m["metadata"]["name"]: m for m in list_json(cluster, namespace, "mig")}
        cluster.kubectl("delete", "-n", namespace, "mig/sec", "--timeout=20s")
    finally:
        operator.stop()
    requests = _operator_requests(cluster, namespace, since)
    used = _counts(requests)
    granted = _granted()
    missing = sorted(pair for pair in used if pair not in granted | KOPF_OPTIONAL)
    unused = sorted(pair for pair in granted if pair not in used)
    print(f"\n[rbac] used={sorted(used)}\n[rbac] granted but unused here={unused}")
    assert missing == [], f"used but not granted: {missing}"
    # The operator ran on exactly the chart's RBAC: the API server refused it nothing.
    denied = [f"{e['verb']} {e['resource']}" for e in requests if e["code"] == 403]
    assert denied == [], denied

    assert items["sec"]["status"]["phase"] == "Succeeded", items["sec"]["status"]
    # The Secret is looked up in the Migration's namespace only: one of the same name elsewhere
    # is not found, and a name cannot say "other/secret" (InvalidSpec, test_hostile_specs).
    assert items["away"]["status"]["reason"] == "PreflightFailed"
    assert f"Secret {namespace}/elsewhere not found" in items["away"]["status"]["message"]

    texts = {
        "operator log": operator.log(),
        "events": cluster.kubectl("get", "events", "-A", "-o", "json").stdout,
        "status": json.dumps(items),
    }
    encoded = base64.b64encode(TOKEN.encode()).decode()
    for where, text in texts.items():
        assert TOKEN not in text and encoded not in text, f"the token leaked into the {where}"


# --- PromQL: values cannot leave their string literal -------------------------------------------

VALUES = st.one_of(
    st.text(max_size=40).filter(lambda s: not re.search(r"[\ud800-\udfff]", s)),
    st.sampled_from(['"}) or vector(1) #', "\\", '\\"', "'", "`", "\n", '"', "}}", "{{green}}"]),
)


def _literal_end(text: str, start: int) -> int:
    """Index of the closing quote of the "..." literal opened at ``start`` (Go escaping)."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i
        assert text[i] != "\n", "raw newline inside a literal"
        i += 1
    raise AssertionError(f"unterminated literal in {text!r}")


RENDERED: list[str] = []


@settings(max_examples=500, deadline=None, database=None)
@given(VALUES)
def test_query_variables_stay_inside_their_string_literal(value: str) -> None:
    try:
        out = render_query(TEMPLATE, {"args.v": value})
    except TemplateError:
        return  # refusing is safe too
    head = 'sum(rate(http_requests_total{deployment="'
    assert out.startswith(head)
    end = _literal_end(out, len(head) - 1)
    assert out[end:] == '"}[1m]))', out
    if len(RENDERED) < 200:
        RENDERED.append(out)


def test_rendered_queries_parse_with_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed")
    samples = RENDERED or [render_query(TEMPLATE, {"args.v": '"}) or vector(1) #'})]
    samples.append(render_query(TEMPLATE, {"args.v": '"}) or vector(1) #'}))
    rules = {
        "groups": [
            {
                "name": "g",
                "rules": [{"record": f"r{i}", "expr": expr} for i, expr in enumerate(samples)],
            }
        ]
    }
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"\n[promql] promtool parsed {len(samples)} rendered queries")
