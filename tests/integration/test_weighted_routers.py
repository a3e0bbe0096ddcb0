"""The weighted routers through the real operator: a full success and an aborted run each."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cutover.sandbox.process import SandboxProcess

from .harness import (
    ROOT,
    OperatorProcess,
    apply,
    get,
    migration,
    new_namespace,
    replicas,
    wait_for,
    wait_phase,
)

pytestmark = pytest.mark.integration
ROUTES = {
    "gatewayapi": ("httproutes.gateway.networking.k8s.io", "route.yaml"),
    "istio": ("virtualservices.networking.istio.io", "route.yaml"),
    "nginx": ("ingress", "ingress.yaml"),
}
CANARY = "checkout-cutover-canary"


@pytest.fixture(scope="module")
def routes_sandbox(sandbox: SandboxProcess) -> SandboxProcess:
    sandbox.kubectl("apply", "-f", str(ROOT / "tests" / "fixtures" / "crds"))
    return sandbox


@pytest.fixture
def namespace(routes_sandbox: SandboxProcess) -> str:
    return new_namespace(routes_sandbox, "w")


@pytest.fixture
def operator(routes_sandbox: SandboxProcess, namespace: str) -> Iterator[OperatorProcess]:
    process = OperatorProcess(routes_sandbox, namespace).start()
    yield process
    process.stop()


def _setup(sandbox: SandboxProcess, namespace: str, router: str) -> dict[str, Any]:
    kind, route_file = ROUTES[router]
    apply(sandbox, namespace, ROOT / "examples" / router / "app.yaml")
    apply(sandbox, namespace, ROOT / "examples" / router / route_file)
    return get(sandbox, namespace, kind, "checkout")


def _green_weight(router: str, route: dict[str, Any]) -> tuple[int, int] | None:
    if router == "gatewayapi":
        rule = next(r for r in route["spec"]["rules"] if r.get("name") == "main")
        refs = {r["name"]: r.get("weight") for r in rule["backendRefs"]}
        return refs["checkout-blue"], refs["checkout-green"]
    if router == "istio":
        http = next(r for r in route["spec"]["http"] if r.get("name") == "main")
        dests = {d["destination"]["host"]: d.get("weight") for d in http["route"]}
        return dests["checkout-blue"], dests["checkout-green"]
    return None


def _canary(sandbox: SandboxProcess, namespace: str) -> dict[str, Any] | None:
    found = sandbox.kubectl("get", "-n", namespace, "ingress", CANARY, "-o", "name", check=False)
    return {"found": True} if found.returncode == 0 else None


@pytest.mark.parametrize("router", sorted(ROUTES))
def test_success(
    routes_sandbox: SandboxProcess, namespace: str, operator: OperatorProcess, router: str
) -> None:
    sandbox = routes_sandbox
    kind, _ = ROUTES[router]
    before = _setup(sandbox, namespace, router)
    apply(sandbox, namespace, ROOT / "examples" / router / "migration.yaml")
    obj = wait_phase(
        sandbox, namespace, "checkout", "Succeeded", "RolledBack", "Failed", timeout=90
    )
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    route = get(sandbox, namespace, kind, "checkout")
    assert "cutover.io/original" not in (route["metadata"].get("annotations") or {})
    assert "cutover-match" not in str(route["spec"])
    if router == "nginx":
        paths = route["spec"]["rules"][0]["http"]["paths"]
        assert [p["backend"]["service"]["name"] for p in paths] == ["checkout-green"]
        assert _canary(sandbox, namespace) is None
    else:
        assert _green_weight(router, route) == (0, 100)
        # Everything but the weights is as the team wrote it.
        assert _green_weight(router, before) == (100, 0)
    assert replicas(sandbox, namespace, "checkout-blue") == 0
    assert replicas(sandbox, namespace, "checkout-green") == 4


@pytest.mark.parametrize("router", sorted(ROUTES))
def test_abort_restores_the_original(
    routes_sandbox: SandboxProcess, namespace: str, operator: OperatorProcess, router: str
) -> None:
    sandbox = routes_sandbox
    kind, _ = ROUTES[router]
    before = _setup(sandbox, namespace, router)
    manifest = (ROOT / "examples" / router / "migration.yaml").read_text()
    # A long pause at 50 % holds the run where the abort can catch it.
    slow = manifest.replace(
        "    - pause: {duration: 2s}\n    - setWeight: 100", "    - pause: {}\n    - setWeight: 100"
    )
    sandbox.kubectl("apply", "-n", namespace, "-f", "-", input=slow)
    wait_for(
        lambda: (migration(sandbox, namespace, "checkout").get("status") or {}).get("weight") == 50,
        timeout=60,
        what="weight 50",
    )
    if router == "nginx":
        assert _canary(sandbox, namespace) is not None
    sandbox.kubectl("annotate", "-n", namespace, "mig/checkout", "cutover.io/request=abort:t1")
    obj = wait_phase(sandbox, namespace, "checkout", "RolledBack", timeout=60)
    assert obj["status"]["lastRequest"] == "t1"
    route = get(sandbox, namespace, kind, "checkout")
    assert route["spec"] == before["spec"]
    assert "cutover.io/original" not in (route["metadata"].get("annotations") or {})
    if router == "nginx":
        assert _canary(sandbox, namespace) is None
    else:
        assert _green_weight(router, route) == (100, 0)
    assert replicas(sandbox, namespace, "checkout-blue") == 4
    assert replicas(sandbox, namespace, "checkout-green") == 0
