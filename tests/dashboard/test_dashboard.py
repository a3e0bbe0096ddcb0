"""``cutover dashboard`` in a real headless Chromium against the real control plane, with the
real operator running the Migrations: what a person sees, without reloading the page."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.controlplane import ControlPlane
from tests.integration.gates_support import start_app
from tests.integration.harness import OperatorProcess, new_namespace, wait_for, wait_phase
from tests.support.json_server import Answer, JsonServer, json_server

from .support import CHROMIUM, Dashboard

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

if not Path(CHROMIUM).exists():
    pytest.skip(
        "no chromium on PATH: apt-get install -y --no-install-recommends chromium",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api")

# A page is live when it follows the status within about a second; give a loaded machine room.
SEEN = 15_000  # ms
# docs/img is refreshed with: CUTOVER_SCREENSHOTS=docs/img pytest tests/dashboard
SCREENSHOTS = os.environ.get("CUTOVER_SCREENSHOTS")


@pytest.fixture(scope="module")
def cluster(control_plane: ControlPlane) -> ControlPlane:
    return control_plane


@pytest.fixture(scope="module")
def namespace(cluster: ControlPlane) -> str:
    return new_namespace(cluster, "dash")


@pytest.fixture(scope="module")
def operator(cluster: ControlPlane, namespace: str) -> Iterator[OperatorProcess]:
    process = OperatorProcess(cluster, namespace).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def health(namespace: str) -> Iterator[JsonServer]:
    """The error rate each app's green reports to its web gate."""
    with json_server() as server:
        yield server


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dashboard")


VIEWER_RBAC = """
apiVersion: v1
kind: ServiceAccount
metadata: {{name: viewer, namespace: {namespace}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: viewer, namespace: {namespace}}}
rules: [{{apiGroups: [cutover.io], resources: [migrations], verbs: [get]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: viewer, namespace: {namespace}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: viewer}}
subjects: [{{kind: ServiceAccount, name: viewer, namespace: {namespace}}}]
"""


@pytest.fixture(scope="module")
def dashboards(cluster: ControlPlane, namespace: str, logs: Path) -> Iterator[dict[str, Dashboard]]:
    """Read-only; with --allow-actions; and as a user who may get Migrations but not list them."""
    cluster.kubectl("apply", "-f", "-", input=VIEWER_RBAC.format(namespace=namespace))
    viewer = cluster.service_account_kubeconfig(namespace, "viewer", logs / "viewer.config")
    started = {
        "read-only": Dashboard(cluster.kubeconfig, namespace, logs / "read-only.log"),
        "actions": Dashboard(
            cluster.kubeconfig, namespace, logs / "actions.log", "--allow-actions"
        ),
        "viewer": Dashboard(str(viewer), namespace, logs / "viewer.log"),
    }
    try:
        yield {role: dashboard.ready() for role, dashboard in started.items()}
    finally:
        for dashboard in started.values():
            dashboard.interrupt()  # all at once: each takes a moment to wind down
        for dashboard in started.values():
            dashboard.stop()


@pytest.fixture(scope="module")
def read_only(dashboards: dict[str, Dashboard]) -> Dashboard:
    return dashboards["read-only"]


@pytest.fixture(scope="module")
def with_actions(dashboards: dict[str, Dashboard]) -> Dashboard:
    return dashboards["actions"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # As root (CI) Chromium refuses to start sandboxed; /dev/shm may be tiny.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"the page's script failed: {errors}"


def web_gate(server: JsonServer) -> dict[str, Any]:
    return {
        "name": "health",
        "interval": "1s",
        "web": {"url": server.url + "/apps/{{namespace}}/{{green}}", "jsonPath": "$.errorRate"},
        "threshold": {"max": 0.05},
    }


def mark(page: Any) -> None:
    """A flag a reload would lose: the page must still have it after every update."""
    page.evaluate("window.notReloaded = true")


def not_reloaded(page: Any) -> bool:
    return bool(page.evaluate("window.notReloaded === true"))


@pytest.mark.usefixtures("operator")
def test_a_run_progresses_on_the_page_without_a_reload(
    cluster: ControlPlane, namespace: str, health: JsonServer, read_only: Dashboard, page: Any
) -> None:
    health.answer(f"/apps/{namespace}/shop-green", Answer({"errorRate": 0.01}))
    overview = page.context.new_page()
    overview.goto(read_only.url + "/")
    mark(overview)
    page.goto(read_only.url + f"/migrations/{namespace}/shop")
    mark(page)
    steps = [{"setWeight": 25}, {"pause": {"duration": "4s"}}, {"setWeight": 50}, {"pause": {}}]
    steps.append({"setWeight": 100})
    start_app(cluster, namespace, "shop", "shop", [web_gate(health)], steps)

    weight = page.locator("#plot-weight")
    sync_api.expect(weight).to_have_text("25%", timeout=SEEN)
    sync_api.expect(weight).to_have_text("50%", timeout=SEEN * 2)
    sync_api.expect(page.locator("#summary .phase")).to_have_text(
        "Paused (PauseStep)", timeout=SEEN
    )
    assert not_reloaded(page)
    # The plot drew both weights; the gate's plot has its checks and its bound.
    steps_drawn = page.locator("svg.weight-plot path.weight").get_attribute("d") or ""
    assert steps_drawn.count("V") >= 2, steps_drawn
    gate = page.locator('figure[data-gate="health"]')
    assert gate.locator("circle.value").count() >= 2
    assert gate.locator("path.bound.high").count() == 1
    sync_api.expect(page.locator("#events")).to_contain_text("PauseStep", timeout=SEEN)
    sync_api.expect(page.locator("#report")).to_contain_text("Migration Status")
    sync_api.expect(page.locator("#timeline li.done")).to_have_count(3)
    # Read-only: no button, and the server refuses a request made by hand.
    assert page.locator("button[data-verb]").count() == 0
    answer = page.request.post(read_only.url + f"/act/{namespace}/shop/promote")
    assert answer.status == 403
    # The overview followed too, in its own tab.
    row = overview.locator(f'tr[data-migration="{namespace}/shop"]')
    sync_api.expect(row.locator(".weight")).to_have_text("50%", timeout=SEEN)
    sync_api.expect(row.locator(".phase")).to_have_text("Paused (PauseStep)")
    sync_api.expect(row.locator(".rollback")).to_have_text("available")
    sync_api.expect(row).to_contain_text("4 of 5")
    assert not_reloaded(overview)
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "dashboard-detail.png"), full_page=True)
        overview.set_viewport_size({"width": 1280, "height": 260})
        overview.screenshot(path=str(Path(SCREENSHOTS) / "dashboard-overview.png"))


@pytest.mark.usefixtures("operator")
def test_a_rollback_shows_its_reason(
    cluster: ControlPlane, namespace: str, health: JsonServer, read_only: Dashboard, page: Any
) -> None:
    health.answer(f"/apps/{namespace}/cart-green", Answer({"errorRate": 0.3}))
    page.goto(read_only.url + f"/migrations/{namespace}/cart")
    mark(page)
    sync_api.expect(page.locator("#summary")).to_contain_text("does not exist", timeout=SEEN)
    start_app(cluster, namespace, "cart", "cart", [web_gate(health)])

    banner = page.locator("#summary .rollback-reason")
    sync_api.expect(banner).to_contain_text("health", timeout=SEEN * 3)
    final = wait_phase(cluster, namespace, "cart", "RolledBack", timeout=30)["status"]
    sync_api.expect(page.locator("#summary .phase")).to_contain_text("RolledBack", timeout=SEEN)
    sync_api.expect(banner).to_contain_text(final["rollbackReason"], timeout=SEEN)
    # Traffic is back on blue: nothing left to roll back, and the page says so.
    sync_api.expect(page.locator("#summary .rollback")).to_have_text("not available")
    sync_api.expect(page.locator("#summary")).to_contain_text("already rolled back")
    assert not_reloaded(page)


@pytest.mark.usefixtures("operator")
def test_with_allow_actions_a_confirmed_pause_pauses_the_run(
    cluster: ControlPlane, namespace: str, health: JsonServer, with_actions: Dashboard, page: Any
) -> None:
    health.answer(f"/apps/{namespace}/pay-green", Answer({"errorRate": 0.01}))
    steps = [{"setWeight": 25}, {"pause": {"duration": "10m"}}, {"setWeight": 100}]
    start_app(cluster, namespace, "pay", "pay", [web_gate(health)], steps)
    page.goto(with_actions.url + f"/migrations/{namespace}/pay")
    mark(page)
    pause = page.locator("button[data-verb=pause]")
    sync_api.expect(pause).to_be_enabled(timeout=SEEN * 2)
    sync_api.expect(page.locator("button[data-verb=resume]")).to_be_disabled()

    # In the timed pause at 25 %, where the buttons stay as they are while we click.
    sync_api.expect(page.locator("#summary")).to_contain_text("2 of 3 (pause 10m)", timeout=SEEN)
    questions: list[str] = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
    pause.click()
    wait_for(lambda: questions or page.wait_for_timeout(100), timeout=10, what="a confirmation")
    assert questions[0].startswith(f"pause {namespace}/pay?"), questions
    assert "the run will hold at 25% on green (pay-green)" in questions[0]
    page.wait_for_timeout(500)
    assert page.locator("#action-result").text_content() == ""  # "no" sent nothing

    page.once("dialog", lambda dialog: dialog.accept())
    pause.click()
    sync_api.expect(page.locator("#action-result")).to_contain_text("pause requested")
    paused = wait_phase(cluster, namespace, "pay", "Paused", timeout=30)["status"]
    assert paused["reason"] == "PausedByUser", paused
    sync_api.expect(page.locator("#summary .phase")).to_have_text(
        "Paused (PausedByUser)", timeout=SEEN
    )
    sync_api.expect(page.locator("button[data-verb=resume]")).to_be_enabled()
    assert not_reloaded(page)
    # The operator acted on the CLI's own request annotation (it records the request's id).
    assert paused.get("lastRequest"), paused


def test_a_user_who_may_not_list_sees_why(dashboards: dict[str, Dashboard], page: Any) -> None:
    viewer = dashboards["viewer"]
    page.goto(viewer.url + "/")
    problem = page.locator("#notice .problem")
    sync_api.expect(problem).to_contain_text("Not allowed to list Migrations", timeout=SEEN)
    sync_api.expect(problem).to_contain_text("forbidden: you may not list migrations")
    sync_api.expect(problem).to_contain_text("ask for get, list and watch")
    assert "Traceback" not in page.content()
    log = viewer.log()
    assert "warning: forbidden: you may not list migrations" in log, log
    assert "Traceback" not in log, log
