"""``python -m cutover.demo``: a blue-green migration, live, on a local sandbox cluster.

What runs, all on loopback and all stopped on exit (success, failure, Ctrl-C or SIGTERM):

* the sandbox Kubernetes API (:class:`SandboxProcess`) with the Migration CRD;
* per scenario, in its own namespace: a traffic exporter and the simulator that drives it from
  the cluster's routing, a real Prometheus scraping it every second (if installed), and the
  operator (``kopf run -m cutover.handlers --standalone --namespace NS``);
* the Migration from ``examples/demo/``, followed live until it ends.

Exit codes: 0 every scenario ended as expected; 1 one did not (or the demo could not run);
2 bad usage or a missing prerequisite (kubectl); 130 interrupted.
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
from cutover.cli_report import Report, build_report
from cutover.demo.exporter import TrafficExporter
from cutover.demo.processes import OperatorProcess
from cutover.demo.prometheus import INSTALL_HINT, PrometheusServer, find_prometheus
from cutover.demo.scenarios import (
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
from cutover.demo.traffic import TrafficSimulator
from cutover.demo.view import RunView
from cutover.sandbox.process import SandboxProcess, SandboxProcessError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Gate holds that no timer ends: in a demo they mean the run is stuck, so stop watching.
_STUCK_REASONS = {"GateError", "InconclusiveGate", "GateFailed"}
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
        self.sandbox: SandboxProcess | None = None

    # --- setup ---------------------------------------------------------------------------------

    def _check_prerequisites(self) -> None:
        if shutil.which(self.args.kubectl) is None:
            raise DemoError(
                f"kubectl not found ({self.args.kubectl}): install kubectl v1.32"
                " (https://kubernetes.io/docs/tasks/tools/) and run again",
                EXIT_USAGE,
            )
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

    def _start_sandbox(self) -> SandboxProcess:
        self.console.print("Starting the sandbox Kubernetes API server...")
        sandbox = SandboxProcess(
            deployment_delay=self.args.deployment_delay,
            kubectl_binary=self.args.kubectl,
            workdir=self.workdir / "sandbox",
        )
        self.stack.callback(sandbox.stop)
        sandbox.start()
        proc = sandbox._proc
        self.state.record("pids", "sandbox", proc.pid if proc else None)
        self.state.record("ports", "sandbox", _port(sandbox.url))
        sandbox.kubectl("apply", "-f", str(CRD))
        self.console.print(f"  sandbox at {sandbox.url}; Migration CRD installed")
        return sandbox

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
        assert self.sandbox is not None
        sandbox = self.sandbox
        namespace = f"demo-{scenario.name}" if scenario.manifest else "demo"
        started = time.monotonic()
        with ExitStack() as stack:
            sandbox.kubectl("create", "namespace", namespace)
            sandbox.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "app.yaml"))
            # Registered in start order; ExitStack unwinds in reverse, so the operator stops
            # first, then Prometheus, the simulator and the exporter.
            exporter = TrafficExporter()
            stack.callback(exporter.stop)
            self.state.record("ports", f"exporter-{namespace}", exporter.port)
            simulator = TrafficSimulator(
                exporter,
                sandbox.kubeconfig,
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
                sandbox.kubeconfig, namespace, self.workdir / f"operator-{namespace}.log"
            )
            stack.callback(operator.stop)
            operator.start()
            self.state.record("pids", f"operator-{namespace}", operator.pid)
            if scenario.manifest is None:
                self._playground(namespace, prometheus, simulator, operator, scenario)
                return None
            sandbox.kubectl(
                "apply",
                "-n",
                namespace,
                "-f",
                "-",
                input=self._migration_manifest(scenario, prometheus),
            )
            self.console.print(
                f"Applied examples/demo/{scenario.manifest} to namespace {namespace}"
                + (f" (gate queries go to Prometheus at {prometheus.url})" if prometheus else "")
            )
            outcome = self._follow(scenario, namespace, simulator, operator, prometheus, started)
            if not outcome.ok:
                self._show_operator_log(operator)
            return outcome

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

        assert self.sandbox is not None
        api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=self.sandbox.kubeconfig
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
        assert self.sandbox is not None
        address = prometheus.url if prometheus else "(no Prometheus: remove `gates`)"
        self.console.print(
            "\n[bold]The playground is up.[/] In another terminal, from the repository root:\n\n"
            f"  export KUBECONFIG={self.sandbox.kubeconfig}\n"
            f"  export PROM={address}\n"
            f"  kubectl -n {namespace} get deploy,svc\n"
            f'  sed "s#http://127.0.0.1:9090#$PROM#" examples/demo/migration-manual.yaml \\\n'
            f"    | kubectl -n {namespace} apply --validate=false -f -\n"
            f"  .venv/bin/cutover status checkout -n {namespace} --watch\n"
            f"  .venv/bin/cutover promote checkout -n {namespace}   # ends the pause at 50 %\n\n"
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
        self.sandbox = self._start_sandbox()
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
        prog="python -m cutover.demo",
        description="Watch a blue-green migration succeed, and one roll back, on a local sandbox.",
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
    parser.add_argument("--kubectl", default="kubectl", help="kubectl binary")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for each run to end"
    )
    parser.add_argument("--rps", type=float, default=200.0, help="simulated requests per second")
    parser.add_argument(
        "--deployment-delay",
        type=float,
        default=0.5,
        help="seconds the sandbox takes to make new pods ready",
    )
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
            demo.keep_workdir = demo.sandbox is not None  # logs only exist once it started
        return error.code
    except (SandboxProcessError, subprocess.SubprocessError, OSError) as error:
        console.print(f"[bold red]The demo failed:[/] {escape(str(error))}")
        if demo is not None:
            demo.keep_workdir = True
        return EXIT_FAILED
    finally:
        if demo is not None:
            with _signals_ignored():
                demo.close()
                if demo.sandbox is not None:
                    console.print(
                        "Stopped the sandbox, Prometheus, the operator and the simulator."
                    )
