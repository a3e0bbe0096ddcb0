"""``python -m devtools.demo``: a blue-green migration, live, on a real Kubernetes control plane.

What runs, and is stopped on exit (success, failure, Ctrl-C or SIGTERM):

* the cluster (:mod:`devtools.demo.cluster`): by default a local control plane in ``.cluster/``
  of the repo (etcd, kube-apiserver, the controller manager, the scheduler and kwok's fake node,
  as processes on loopback), the one ``make cluster`` left running there or one of the demo's
  own; or the cluster of ``--kubeconfig``/``--context``. The Migration CRD is applied to it;
* per scenario, in its own namespace: the example app, a traffic exporter and the simulator
  that drives it from the cluster's routing, a real Prometheus scraping it every second (if
  installed), and the operator (``kopf run -m cutover.handlers --standalone --namespace NS``)
  with the Helm chart's RBAC for that namespace;
* the Migration from ``examples/demo/``, followed live until it ends; then the namespace and the
  chart's cluster-scoped RBAC for it are deleted.

Exit codes: 0 every scenario ended as expected; 1 one did not (or the demo could not run);
2 bad usage or a missing prerequisite (Go for the first build, kubectl for your cluster);
130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cutover import api
from cutover.cli.report import Report, build_report
from cutover.core.machine import GATE_HOLDS
from devtools.controlplane import ControlPlane, ControlPlaneError
from devtools.demo.cluster import (
    DEFAULT_CLUSTER_DIR,
    Target,
    TargetError,
    local_target,
    user_target,
)
from devtools.demo.exporter import TrafficExporter
from devtools.demo.processes import OperatorProcess
from devtools.demo.prometheus import INSTALL_HINT, PrometheusServer, find_prometheus
from devtools.demo.scenarios import (
    ALL,
    BLUE,
    CRD,
    EXAMPLES,
    GATE,
    GREEN,
    MIGRATION,
    SCENARIOS,
    SERVICE,
    Scenario,
)
from devtools.demo.traffic import TrafficSimulator
from devtools.demo.view import RunView

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Gate holds that no timer ends: in a demo they mean the run is stuck, so stop watching.
_STUCK_REASONS = GATE_HOLDS
SKIPPED_MESSAGE = "gates skipped: Prometheus not installed (apt-get install prometheus)"


class DemoError(RuntimeError):
    """The demo could not do its part; the message says what and where to look."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Outcome:
    scenario: str
    expected: api.Phase | None
    phase: str | None
    reason: str | None
    detail: str
    seconds: float
    gates: bool

    @property
    def ok(self) -> bool:
        if self.expected is None or self.phase != self.expected.value:
            return False
        # A rollback only counts when the gate caused it (not, say, a progress deadline).
        return self.phase != api.Phase.rolled_back.value or GATE in self.detail


@dataclass
class State:
    """What the demo started, written to ``--state-file`` so tests can check it all went away."""

    path: Path | None
    data: dict[str, Any] = field(default_factory=dict)

    def record(self, kind: str, name: str, value: Any) -> None:
        self.data.setdefault(kind, {})[name] = value
        if self.path is not None:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(self.data, indent=2))
            tmp.replace(self.path)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


class Demo:
    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.args = args
        self.console = console
        self.stack = ExitStack()
        self.workdir = Path(tempfile.mkdtemp(prefix="cutover-demo-"))
        self.keep_workdir = False
        self.state = State(Path(args.state_file) if args.state_file else None)
        self.state.data.update({"pid": os.getpid(), "workdir": str(self.workdir)})
        self.state.record("pids", "demo", os.getpid())
        self.prometheus_binary: str | None = None
        self.target: Target | None = None

    # --- setup ---------------------------------------------------------------------------------

    def _check_prerequisites(self) -> None:
        for path in (CRD, EXAMPLES / "app.yaml"):
            if not path.exists():
                raise DemoError(
                    f"{path} is missing: run the demo from a checkout of the repo", EXIT_USAGE
                )
        if self.args.prometheus_binary:
            self.prometheus_binary = find_prometheus(self.args.prometheus_binary, search_path=False)
        else:
            self.prometheus_binary = find_prometheus()
        if self.prometheus_binary is None:
            self.console.print(f"[bold yellow]{SKIPPED_MESSAGE}[/]")
            self.console.print(
                f"  To see the gates (and the automatic rollback): {INSTALL_HINT},"
                " then run `make demo` again."
            )

    def _start_cluster(self) -> Target:
        args = self.args
        try:
            if args.kubeconfig or args.context:
                target = user_target(
                    args.kubeconfig, args.context, args.kubectl, self.workdir, args.app_image
                )
                self.console.print(f"Using {target.description}")
            else:
                target = local_target(
                    Path(args.cluster_dir), self.console.print, self._own_plane_started
                )
                target.app_image = args.app_image
            self.target = target
            if target.owned and target.plane is not None:
                plane = target.plane
                for component in plane.components:
                    self.state.record("pids", f"controlplane-{component.name}", component.pid)
                self.state.record("ports", "kube-apiserver", plane.ports["apiserver"])
            target.install_crd(CRD)
        except TargetError as error:
            raise DemoError(
                str(error), EXIT_USAGE if self.target is None else EXIT_FAILED
            ) from None
        self.console.print(f"  Migration CRD installed on {target.description}")
        return target

    def _own_plane_started(self, plane: ControlPlane) -> None:
        # Registered before it starts: an interrupted start stops what did come up.
        self.stack.callback(plane.stop)
        self.state.record("controlplane", "root", str(plane.root))

    def _start_prometheus(
        self, stack: ExitStack, target: str, name: str
    ) -> PrometheusServer | None:
        if self.prometheus_binary is None:
            return None
        try:
            server = PrometheusServer(
                [target],
                binary=self.prometheus_binary,
                scrape_interval="1s",
                start=False,
                workdir=self.workdir,
            )
        except RuntimeError as error:
            self.console.print(f"[yellow]Prometheus unusable ({error}); {SKIPPED_MESSAGE}[/]")
            return None
        stack.callback(server.close)
        try:
            server.start()
            self.state.record("pids", f"prometheus-{name}", server.pid)
            self.state.record("ports", f"prometheus-{name}", server.port)
            server.wait_for_targets_up(timeout=30)
        except (RuntimeError, TimeoutError) as error:
            # A broken Prometheus must not hide the rest of the demo: run without gates.
            self.console.print(f"[yellow]Prometheus did not start: {error}[/]")
            self.console.print(f"[yellow]{SKIPPED_MESSAGE}[/]")
            server.stop(graceful=False)
            return None
        return server

    def _migration_manifest(self, scenario: Scenario, prometheus: PrometheusServer | None) -> str:
        assert scenario.manifest is not None
        document = yaml.safe_load((EXAMPLES / scenario.manifest).read_text())
        spec = document["spec"]
        if prometheus is None:
            spec.pop("gates", None)
        else:
            # The manifests say 127.0.0.1:9090; ours listens on a free port.
            for gate in spec.get("gates") or []:
                gate["prometheus"]["address"] = prometheus.url
        return yaml.safe_dump(document, sort_keys=False)

    # --- one scenario --------------------------------------------------------------------------

    def run_scenario(self, scenario: Scenario) -> Outcome | None:
        assert self.target is not None
        target = self.target
        started = time.monotonic()
        with ExitStack() as stack:
            namespace = target.create_namespace(
                f"demo-{scenario.name}" if scenario.manifest else "demo"
            )
            # Registered in start order; ExitStack unwinds in reverse, so the operator stops
            # first, then Prometheus, the simulator and the exporter, and the namespace goes last.
            stack.callback(target.delete_namespace, namespace)
            self.state.record("namespaces", namespace, True)
            target.apply_app(namespace, EXAMPLES / "app.yaml")
            exporter = TrafficExporter()
            stack.callback(exporter.stop)
            self.state.record("ports", f"exporter-{namespace}", exporter.port)
            simulator = TrafficSimulator(
                exporter,
                str(target.kubeconfig),
                namespace,
                service=SERVICE,
                blue=BLUE,
                green=GREEN,
                script=scenario.script(),
                total_rps=self.args.rps,
            )
            stack.callback(simulator.stop)
            simulator.start()
            prometheus = self._start_prometheus(stack, exporter.target, namespace)
            operator = OperatorProcess(
                str(target.operator_kubeconfig(namespace, self.workdir)),
                namespace,
                self.workdir / f"operator-{namespace}.log",
            )
            stack.callback(operator.stop)
            operator.start()
            self.state.record("pids", f"operator-{namespace}", operator.pid)
            self._wait_for_operator(operator)
            if scenario.manifest is None:
                self._playground(namespace, prometheus, simulator, operator, scenario)
                return None
            target.kubectl(
                "apply",
                "-n",
                namespace,
                "-f",
                "-",
                input=self._migration_manifest(scenario, prometheus),
            )
            started = time.monotonic()  # the run's own time, from here
            self.console.print(
                f"Applied examples/demo/{scenario.manifest} to namespace {namespace}"
                + (f" (gate queries go to Prometheus at {prometheus.url})" if prometheus else "")
            )
            outcome = self._follow(scenario, namespace, simulator, operator, prometheus, started)
            if not outcome.ok:
                self._show_operator_log(operator)
            return outcome

    def _wait_for_operator(self, operator: OperatorProcess, timeout: float = 120) -> None:
        self.console.print(f"Starting the operator for namespace {operator.namespace}...")
        started = time.monotonic()
        while not operator.watching():
            if not operator.running():
                raise DemoError(f"the operator exited; its log:\n{operator.log_tail()}")
            waited = time.monotonic() - started
            if waited > timeout:
                raise DemoError(
                    f"the operator did not start watching in {timeout:g}s; its log:\n"
                    f"{operator.log_tail()}"
                )
            time.sleep(0.2)
        self.console.print(f"  the operator is watching ({time.monotonic() - started:.1f}s)")

    def _get(self, custom: Any, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            response = custom.get_namespaced_custom_object(
                api.GROUP,
                api.VERSION,
                namespace,
                api.PLURAL,
                name,
                _preload_content=False,
                _request_timeout=3,
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        result: dict[str, Any] = json.loads(response.data)
        return result

    @contextlib.contextmanager
    def _custom_api(self) -> Iterator[Any]:
        from kubernetes import client, config

        assert self.target is not None
        api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.target.kubeconfig)
        )
        try:
            yield client.CustomObjectsApi(api_client)
        finally:
            api_client.close()

    def _read(self, custom: Any, namespace: str) -> tuple[dict[str, Any] | None, Report | None]:
        try:
            obj = self._get(custom, namespace, MIGRATION)
        except Exception:  # a slow answer or a blip: keep the last picture, try again
            return None, None
        if obj is None or not obj.get("status"):
            return obj, None
        try:
            return obj, build_report(obj)
        except api.SpecInvalid:
            return obj, None

    def _follow(
        self,
        scenario: Scenario,
        namespace: str,
        simulator: TrafficSimulator,
        operator: OperatorProcess,
        prometheus: PrometheusServer | None,
        started: float,
    ) -> Outcome:
        expected = scenario.expected(gates=prometheus is not None)
        deadline = time.monotonic() + self.args.timeout
        obj: dict[str, Any] | None = None
        report: Report | None = None
        with self._custom_api() as custom, RunView(self.console, namespace, scenario.title) as view:
            while True:
                if not operator.running():
                    raise DemoError(
                        f"the operator exited; its log:\n{operator.log_tail()}",
                    )
                new_obj, new_report = self._read(custom, namespace)
                if new_obj is not None:
                    obj, report = new_obj, new_report or report
                view.update(obj, report, simulator.snapshot)
                if report is not None and report.terminal:
                    break
                if (
                    report is not None
                    and report.phase == api.Phase.paused.value
                    and report.reason in _STUCK_REASONS
                ):
                    view.say(f"[yellow]the run is held ({report.reason}): {report.message}[/]")
                    break
                if time.monotonic() > deadline:
                    view.say(f"[red]no outcome after {self.args.timeout:g}s[/]")
                    break
                time.sleep(0.25)
        return self._outcome(scenario, expected, obj, report, started, prometheus is not None)

    def _outcome(
        self,
        scenario: Scenario,
        expected: api.Phase | None,
        obj: dict[str, Any] | None,
        report: Report | None,
        started: float,
        gates: bool,
    ) -> Outcome:
        status = (obj or {}).get("status") or {}
        detail = str(status.get("message") or "")
        for condition in status.get("conditions") or []:
            if condition.get("type") == "RolledBack" and condition.get("status") == "True":
                detail = str(condition.get("message") or detail)
        outcome = Outcome(
            scenario=scenario.name,
            expected=expected,
            phase=report.phase if report else status.get("phase"),
            reason=report.reason if report else status.get("reason"),
            detail=detail,
            seconds=time.monotonic() - started,
            gates=gates,
        )
        self._print_outcome(outcome)
        return outcome

    def _print_outcome(self, outcome: Outcome) -> None:
        mark = "[bold green]✔[/]" if outcome.ok else "[bold red]✘[/]"
        phase = outcome.phase or "no phase"
        expected = outcome.expected.value if outcome.expected else "-"
        verdict = "as expected" if outcome.ok else f"expected {expected}"
        self.console.print(
            f"{mark} Scenario {outcome.scenario}: [bold]{phase}[/]"
            f"{f' ({outcome.reason})' if outcome.reason not in (None, phase) else ''}"
            f" after {outcome.seconds:.1f}s, {verdict}"
        )
        if phase == api.Phase.succeeded.value:
            self.console.print(f"  All traffic is on {GREEN}; {BLUE} was retired.")
        elif phase == api.Phase.rolled_back.value:
            self.console.print(f"  Rollback reason: {escape(outcome.detail)}")
            self.console.print(f"  All traffic is back on {BLUE}; {GREEN} was scaled to zero.")
        elif outcome.detail:
            self.console.print(f"  {escape(outcome.detail)}")
        if not outcome.gates and outcome.scenario == "bad-green":
            self.console.print(
                "  [yellow]Without gates nothing watched green's 30 % error rate, so it was"
                " promoted anyway: this is what the error-rate gate is for.[/]"
            )

    def _show_operator_log(self, operator: OperatorProcess) -> None:
        self.keep_workdir = True
        self.console.rule(f"operator log (last lines of {operator.log_path})")
        self.console.print(escape(operator.log_tail()), soft_wrap=True)
        self.console.rule()

    # --- playground ----------------------------------------------------------------------------

    def _playground(
        self,
        namespace: str,
        prometheus: PrometheusServer | None,
        simulator: TrafficSimulator,
        operator: OperatorProcess,
        scenario: Scenario,
    ) -> None:
        assert self.target is not None
        target = self.target
        address = prometheus.url if prometheus else "(no Prometheus: remove `gates`)"
        kubectl = "kubectl"
        if shutil.which("kubectl") is None:
            kubectl = target.kubectl_binary
        self.console.print(
            "\n[bold]The playground is up.[/] In another terminal, from the repository root:\n\n"
            f"  export KUBECONFIG={target.kubeconfig}\n"
            f"  export PROM={address}\n"
            f"  {kubectl} -n {namespace} get deploy,svc\n"
            f'  sed "s#http://127.0.0.1:9090#$PROM#" examples/demo/migration-manual.yaml \\\n'
            f"    | {kubectl} -n {namespace} apply -f -\n"
            f"  .venv/bin/cutover status checkout -n {namespace} --watch\n"
            f"  .venv/bin/cutover promote checkout -n {namespace}   # ends the pause at 50 %\n"
            f"  .venv/bin/cutover dashboard -n {namespace}   # the runs live at http://127.0.0.1:8765/\n\n"
            "Press Ctrl-C here to stop everything.\n"
        )
        with self._custom_api() as custom, RunView(self.console, namespace, scenario.title) as view:
            while True:
                if not operator.running():
                    raise DemoError(f"the operator exited; its log:\n{operator.log_tail()}")
                obj, report = self._read(custom, namespace)
                view.update(obj, report, simulator.snapshot)
                time.sleep(0.25)

    # --- whole run -----------------------------------------------------------------------------

    def run(self) -> int:
        self._check_prerequisites()
        self.target = self._start_cluster()
        names = ALL if self.args.scenario == "all" else (self.args.scenario,)
        outcomes = [o for o in (self.run_scenario(SCENARIOS[n]) for n in names) if o]
        self._summary(outcomes)
        return EXIT_OK if all(o.ok for o in outcomes) else EXIT_FAILED

    def _summary(self, outcomes: list[Outcome]) -> None:
        table = Table(title="Demo summary", title_justify="left")
        for column in ("Scenario", "Gates", "Outcome", "Expected", "Took", "Reason"):
            table.add_column(column)
        for o in outcomes:
            table.add_row(
                o.scenario,
                "error-rate" if o.gates else "skipped",
                o.phase or "-",
                o.expected.value if o.expected else "-",
                f"{o.seconds:.0f}s",
                escape(o.detail if o.phase != api.Phase.succeeded.value else "-"),
            )
        self.console.print(table)

    def close(self) -> None:
        """Stop everything, newest first; then anything of ours that slipped through."""
        try:
            self.stack.close()
        finally:
            _kill_stray_children()
            if self.keep_workdir:
                self.console.print(f"Logs kept in {self.workdir}")
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)


def _kill_stray_children() -> None:
    """Safety net: a child started just before an interrupt could miss its stop callback."""
    me = os.getpid()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me:
            pid = int(entry.name)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL) if os.getpgid(pid) == pid else os.kill(
                    pid, signal.SIGKILL
                )
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, 0)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    # A second Ctrl-C while stopping must not abandon half-stopped children.
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in handled}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.demo",
        description=(
            "Watch a blue-green migration succeed, and one roll back, on a real Kubernetes control"
            " plane run as local processes in .cluster/ (reused if `make cluster` started one)."
            " The first run on a machine builds it from Go modules (tens of minutes on 2 cores);"
            " later runs start it in seconds. --kubeconfig/--context run it on a cluster of yours"
            " instead (in namespaces of its own, deleted at the end; the CRD stays installed)."
        ),
    )
    parser.add_argument(
        "--scenario",
        choices=["all", *SCENARIOS],
        default="all",
        help="all (good, then bad-green), good, bad-green, or playground (stays up for you)",
    )
    parser.add_argument(
        "--prometheus-binary",
        default=None,
        help="path of the prometheus binary (default: $PATH, then /usr/bin/prometheus)",
    )
    parser.add_argument(
        "--kubeconfig",
        default=None,
        help="run on this kubeconfig's cluster (its current context, or --context) instead of"
        " the local control plane; the file is only read",
    )
    parser.add_argument(
        "--context",
        default=None,
        help="run on this context (of --kubeconfig, else of $KUBECONFIG or ~/.kube/config);"
        " your current context is never changed",
    )
    parser.add_argument(
        "--cluster-dir",
        default=str(DEFAULT_CLUSTER_DIR),
        help="where the local control plane lives (default: .cluster of the repo; one running"
        " there is reused and left running)",
    )
    parser.add_argument(
        "--kubectl",
        default=None,
        help="kubectl for --kubeconfig/--context (default: kubectl on PATH, else the built one)",
    )
    parser.add_argument(
        "--app-image",
        default=None,
        help="image of the example app's pods (default: the manifests' own on the local control"
        " plane, where kwok fakes the pods; registry.k8s.io/pause:3.10 on a cluster of yours)",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for each run to end"
    )
    parser.add_argument("--rps", type=float, default=200.0, help="simulated requests per second")
    parser.add_argument("--plain", action="store_true", help="plain line output even in a terminal")
    parser.add_argument("--state-file", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def make_console(plain: bool) -> Console:
    tty = sys.stdout.isatty() and not plain
    # Piped without COLUMNS rich would wrap at 80 columns; CI logs read better wider.
    width = None if tty or os.environ.get("COLUMNS") else 120
    return Console(highlight=False, width=width, force_terminal=False if plain else None)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = make_console(args.plain)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)
    demo: Demo | None = None
    try:
        demo = Demo(args, console)
        return demo.run()
    except KeyboardInterrupt:
        console.print("\n[yellow]Interrupted: stopping everything the demo started...[/]")
        return EXIT_INTERRUPTED
    except DemoError as error:
        console.print(f"[bold red]The demo could not run:[/] {escape(str(error))}")
        if demo is not None:
            demo.keep_workdir = demo.target is not None  # logs only exist once it started
        return error.code
    except (
        TargetError,
        ControlPlaneError,
        subprocess.SubprocessError,
        OSError,
    ) as error:
        console.print(f"[bold red]The demo failed:[/] {escape(str(error))}")
        if demo is not None:
            demo.keep_workdir = True
        return EXIT_FAILED
    finally:
        if demo is not None:
            with _signals_ignored():
                demo.close()
                if demo.target is not None:
                    done = "Stopped everything the demo started"
                    if demo.target.owned:
                        done += ", the local control plane last"
                    elif demo.target.plane is not None:
                        done += f"; the control plane in {demo.target.plane.root} keeps running"
                    if demo.state.data.get("namespaces") and not demo.target.owned:
                        done += "; the demo's namespaces are being deleted"
                    console.print(done + ".")
