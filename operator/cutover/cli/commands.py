"""The ``cutover`` command (also installed as ``kubectl-cutover``).

Exit codes: 0 success; 1 user error (bad file, not found, forbidden, refused request) or a watched
run that ended RolledBack/Failed; 2 bad command-line usage (click's); 3 the operator did not act
on a request in time; 4 the cluster (for ``backtest``: a gate's Prometheus) is unreachable;
5 ``status --watch`` timed out.
``CUTOVER_DEBUG=1`` shows tracebacks instead of one-line errors.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import os
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer

from cutover import __version__, api
from cutover.cli.backtest import backtest
from cutover.cli.client import EXIT_USER, CliError, Cluster, Target
from cutover.cli.compat import (
    Located,
    Severity,
    check,
    file_sources,
    manifest_sources,
    read_schema,
    short,
    summary_line,
    text_lines,
)
from cutover.cli.manifests import Document, read_manifests
from cutover.cli.plan import (
    Templates,
    build_plan,
    lint_problems,
    live_change,
    offline_notes,
    resolve_gates,
    template_objects,
)
from cutover.cli.render import (
    console,
    dump,
    list_rows,
    list_table,
    plan_renderable,
    report_renderable,
)
from cutover.cli.report import build_report
from cutover.cli.requests import send_request
from cutover.core import promql
from cutover.core.observations import RequestVerb
from cutover.core.templates import TemplateObject
from cutover.crd import crd_yaml
from cutover.durations import DurationError, parse_duration
from cutover.sqlscript import Dialect

# Not 2: click exits 2 on usage errors, and a script must tell the two apart.
EXIT_WATCH_TIMEOUT = 5
EXIT_NOT_HANDLED = 3

app = typer.Typer(
    help="Blue-green migrations with health gates.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

P = ParamSpec("P")
R = TypeVar("R")


def _debug() -> bool:
    return os.environ.get("CUTOVER_DEBUG", "") not in ("", "0")


def _fail(message: str, code: int = EXIT_USER) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """One line on stderr and an exit code instead of a traceback (unless CUTOVER_DEBUG=1)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except CliError as error:
            if _debug():
                raise
            raise _fail(error.message, error.code) from None
        except api.SpecInvalid as error:
            # Includes StatusCorrupt: a status this CLI cannot read (e.g. a newer operator's).
            if _debug():
                raise
            raise _fail(str(error)) from None
        except KeyboardInterrupt:
            raise _fail("interrupted", 130) from None
        except Exception as error:
            if _debug():
                raise
            detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise _fail(
                f"unexpected {type(error).__name__}: {detail} (CUTOVER_DEBUG=1 shows more)"
            ) from None

    return wrapper


class Output(enum.StrEnum):
    json = "json"
    yaml = "yaml"


KubeconfigOpt = Annotated[
    str | None,
    typer.Option("--kubeconfig", help="Path to the kubeconfig (default: $KUBECONFIG, ~/.kube)."),
]
ContextOpt = Annotated[str | None, typer.Option("--context", help="kubeconfig context to use.")]
NamespaceOpt = Annotated[
    str | None,
    typer.Option("-n", "--namespace", help="Namespace (default: the context's, or default)."),
]
OutputOpt = Annotated[
    Output | None, typer.Option("-o", "--output", help="Machine-readable output: json | yaml.")
]
NameArg = Annotated[str, typer.Argument(help="Name of the Migration.")]
FilesOpt = Annotated[
    list[Path],
    typer.Option(
        "-f",
        "--filename",
        help="Manifest file or directory, or - for stdin; repeat -f for more (e.g. the"
        " ConfigMaps holding the hooks' SQL).",
    ),
]
TemplateFilesOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--template-file",
        help="GateTemplate or ClusterGateTemplate manifests the gates name (file, directory or"
        " -); those among -f count too. Repeatable.",
    ),
]
RequireTemplatesOpt = Annotated[
    bool,
    typer.Option(
        "--require-templates",
        help="A gate whose template is not given is an error (by default only a note).",
    ),
]
DialectOpt = Annotated[
    Dialect,
    typer.Option(
        "--dialect",
        help="SQL dialect where a hook's image or command does not tell (psql, mysql, mariadb).",
    ),
]


def _seconds(text: str, option: str) -> float:
    try:
        return parse_duration(text)
    except DurationError as error:
        raise CliError(f"{option}: {error}") from None


# --- offline commands -------------------------------------------------------------------------


def _templates(
    documents: list[Document], template_files: list[Path] | None
) -> dict[api.GateTemplateRef, TemplateObject]:
    """The gate templates among the manifests and the --template-file files."""
    given = documents + read_manifests(template_files or [])
    return template_objects([d.body for d in given])


def _migrations(documents: list[Document], files: list[Path]) -> list[Document]:
    migrations = [d for d in documents if d.kind == api.KIND]
    if not migrations:
        raise CliError(f"{', '.join(str(f) for f in files)}: no Migration found")
    return migrations


def _hook_sql(documents: list[Document], dialect: Dialect) -> tuple[list[Located], list[str]]:
    """What ``cutover compat`` makes of the SQL the Migrations' hooks run."""
    sources, notes = manifest_sources(documents, dialect)
    return check(sources).located, notes


def _of(
    migration: Document, located: list[Located], notes: list[str]
) -> tuple[list[Located], list[str]]:
    mine = [i for i in located if i.source.hook and i.source.hook.migration == migration.name]
    return mine, [n for n in notes if f"Migration {migration.name}:" in n]


@app.command()
@guarded
def crd(
    kind: Annotated[
        str, typer.Argument(help="Migration | GateTemplate | ClusterGateTemplate.")
    ] = api.KIND,
) -> None:
    """Print a CustomResourceDefinition of cutover.io (default: the Migration's)."""
    kinds = [api.KIND, *(k.value for k in api.GateTemplateKind)]
    if kind not in kinds:
        raise CliError(f"unknown kind {kind!r}; known: {', '.join(kinds)}")
    typer.echo(crd_yaml(kind), nl=False)


@app.command()
@guarded
def version() -> None:
    """Print the version of the CLI."""
    typer.echo(f"cutover {__version__}")


@app.command()
@guarded
def lint(
    files: FilesOpt,
    dialect: DialectOpt = Dialect.postgres,
    template_files: TemplateFilesOpt = None,
    require_templates: RequireTemplatesOpt = False,
) -> None:
    """Validate Migration manifests: schema, gate templates and queries, the hooks' SQL.

    Exit 1 on any error: a schema or template problem, contract SQL in a preShift or afterStep
    hook, or in a postPromotion hook not marked irreversible. Locking SQL is a warning. A gate
    from a GateTemplate not given (-f or --template-file) is a note, an error only with
    --require-templates.
    """
    documents = read_manifests(files)
    migrations = _migrations(documents, files)
    templates = _templates(documents, template_files)
    located, notes = _hook_sql(documents, dialect)
    failed = False
    for document in migrations:
        prefix = f"{document.path}: Migration {document.name}"
        problems = lint_problems(document.body, templates, require_templates)
        mine, my_notes = _of(document, located, notes)
        if not require_templates:
            my_notes = [*my_notes, *_offline(document, templates)]
        errors = [i for i in mine if i.severity is Severity.error]
        warnings = [i for i in mine if i.severity is Severity.warning]
        failed = failed or bool(problems) or bool(errors)
        for problem in problems:
            typer.echo(f"{prefix}: {problem}")
        if not problems and not errors:
            typer.echo(f"{prefix}: valid")
        for item in errors + warnings:
            assert item.severity is not None
            typer.echo(
                f"{item.source.file}:{item.line}: {item.severity.value}: {item.problem}:"
                f" {short(item.finding.statement)}"
            )
        for note in my_notes:
            typer.echo(f"note: {note}")
    raise typer.Exit(1 if failed else 0)


@app.command()
@guarded
def plan(
    files: FilesOpt,
    output: OutputOpt = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Also read the Migration in the cluster and say what applying the file does.",
        ),
    ] = False,
    dialect: DialectOpt = Dialect.postgres,
    template_files: TemplateFilesOpt = None,
    require_templates: RequireTemplatesOpt = False,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Validate manifests offline and print each one's schedule, gates and rollback effects.

    With -o json|yaml: the migration plan, with its phases, point of no return and risks. Gates
    from templates are shown resolved when the templates are given (-f, --template-file) or,
    with --live, read from the cluster.
    """
    out = console()
    plans = []
    failed = False
    everything = read_manifests(files)
    documents = _migrations(everything, files)
    given = _templates(everything, template_files)
    located, notes = _hook_sql(everything, dialect)
    lives: dict[int, dict[str, Any] | None] = {}
    blues: dict[int, int | None] = {}
    templates: dict[int, Templates] = dict.fromkeys(range(len(documents)), given)
    if live:
        for index, document in enumerate(documents):
            ns = namespace or (document.body.get("metadata") or {}).get("namespace")
            with _cluster(kubeconfig, context, ns) as cluster:
                lives[index] = cluster.find(document.name)
                blues[index] = _blue_replicas(cluster, document.body, lives[index])
                templates[index] = _live_templates(cluster, document.body, given)
    for index, document in enumerate(documents):
        problems = lint_problems(document.body, templates[index], require_templates)
        if problems:
            failed = True
            for problem in problems:
                typer.echo(f"{document.path}: Migration {document.name}: {problem}", err=True)
            continue
        try:
            built = build_plan(
                document.body, *_of(document, located, notes), templates=templates[index]
            )
            if live:
                effect, message = live_change(document.body, lives[index], blues[index])
                built = dataclasses.replace(built, change=message, change_effect=effect)
            plans.append(built)
        except (api.SpecInvalid, promql.TemplateError) as error:  # pragma: no cover - linted
            failed = True
            typer.echo(f"{document.path}: Migration {document.name}: {error}", err=True)
    if output is not None:
        data = [dataclasses.asdict(p) for p in plans]
        typer.echo(dump(data, output.value), nl=False)
    else:
        for index, item in enumerate(plans):
            if index:
                out.print()
            out.print(plan_renderable(item))
    raise typer.Exit(1 if failed else 0)


@app.command()
@guarded
def compat(
    sql_files: Annotated[
        list[Path] | None, typer.Argument(help="SQL migration files.", show_default=False)
    ] = None,
    files: Annotated[
        list[Path] | None,
        typer.Option(
            "-f",
            "--filename",
            help="Manifests (file, directory or -): the SQL their Migrations' hooks run is"
            " checked against the hook's phase. Repeat -f for more.",
        ),
    ] = None,
    dialect: DialectOpt = Dialect.postgres,
    schema: Annotated[
        list[Path] | None,
        typer.Option(
            "--schema",
            help="SQL with the current schema (CREATE TABLE): lets a type change be judged"
            " as widening or narrowing. Repeatable.",
        ),
    ] = None,
    phase: Annotated[
        api.HookStage | None,
        typer.Option("--phase", help="Judge the SQL files as if a hook of this stage ran them."),
    ] = None,
    irreversible: Annotated[
        bool,
        typer.Option("--irreversible", help="With --phase postPromotion: as an irreversible hook."),
    ] = False,
    output: OutputOpt = None,
) -> None:
    """Classify SQL as expand, contract, locking or unknown; exit 1 on an error.

    An error is contract SQL in a phase where blue still serves (preShift, afterStep) or in a
    postPromotion hook not marked irreversible. -o json writes the compatibility report.
    """
    sources = file_sources(sql_files or [], dialect, phase, irreversible)
    notes: list[str] = []
    if files:
        found, notes = manifest_sources(read_manifests(files), dialect)
        sources.extend(found)
    if not sources and not notes:
        raise CliError("nothing to check: name SQL files, or manifests with -f")
    report = check(sources, read_schema(schema or [], dialect), notes)
    if output is not None:
        typer.echo(dump(report.to_data(), output.value), nl=False)
    else:
        for line in text_lines(report):
            typer.echo(line)
        typer.echo(summary_line(report))
    raise typer.Exit(1 if report.count(Severity.error) else 0)


app.command("backtest")(guarded(backtest))


# --- reading the cluster ----------------------------------------------------------------------


def _cluster(kubeconfig: str | None, context: str | None, namespace: str | None) -> Cluster:
    return Cluster(Target(kubeconfig=kubeconfig, context=context, namespace=namespace))


def _offline(document: Document, templates: Templates) -> list[str]:
    """Notes on the gates whose template was not given (an invalid spec has none)."""
    try:
        spec = api.Migration.from_manifest(document.body).spec
    except api.SpecInvalid:
        return []
    return offline_notes(resolve_gates(document.body, spec, templates)[0])


def _live_templates(
    cluster: Cluster, manifest: Mapping[str, Any], given: Templates
) -> dict[api.GateTemplateRef, TemplateObject]:
    """``given`` plus the templates the manifest's gates name that the cluster holds."""
    found = dict(given)
    try:
        spec = api.Migration.from_manifest(manifest).spec
    except api.SpecInvalid:
        return found  # lint reports it
    for gate in spec.gates:
        ref = gate.template_ref
        if ref is not None and ref not in found:
            body = cluster.template(ref)
            if body is not None:
                found[ref] = TemplateObject.from_body(body)
    return found


def _blue_replicas(
    cluster: Cluster, manifest: Mapping[str, Any], live: Mapping[str, Any] | None
) -> int | None:
    """The manifest's blue as the cluster runs it, read only when the live status needs it (a
    success recorded before status.liveDeployment existed); None when absent or unreadable."""
    status = (live or {}).get("status") or {}
    if status.get("phase") != api.Phase.succeeded or status.get("liveDeployment"):
        return None
    blue = str(((manifest.get("spec") or {}).get("blue") or {}).get("deployment") or "")
    found = cluster.deployments([blue]) if blue else None
    deployment = (found or {}).get(blue)
    if deployment is None:
        return None
    return int((deployment.get("spec") or {}).get("replicas", 1) or 0)


@app.command("list")
@guarded
def list_(
    all_namespaces: Annotated[
        bool, typer.Option("-A", "--all-namespaces", help="List across all namespaces.")
    ] = False,
    output: OutputOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """List Migrations with their phase, step, weight and age."""
    with _cluster(kubeconfig, context, namespace) as cluster:
        items = cluster.list(all_namespaces)
        where = "any namespace" if all_namespaces else f"namespace {cluster.namespace}"
    rows = list_rows(items, datetime.now(UTC))
    rows.sort(key=lambda r: (r["namespace"], r["name"]))
    if output is not None:
        typer.echo(dump(rows, output.value), nl=False)
    elif not rows:
        typer.echo(f"No Migrations found in {where}.", err=True)
    else:
        console().print(list_table(rows, all_namespaces))


@app.command()
@guarded
def status(
    name: NameArg,
    watch: Annotated[
        bool, typer.Option("-w", "--watch", help="Redraw until the run ends (exit 0/1/5).")
    ] = False,
    timeout: Annotated[
        str | None, typer.Option("--timeout", help="Give up watching after this long (e.g. 10m).")
    ] = None,
    interval: Annotated[
        str, typer.Option("--interval", help="How often --watch polls.", hidden=True)
    ] = "1s",
    output: OutputOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """The migration report: status, progress, gates, issues, next steps, risk and rollback."""
    limit = _seconds(timeout, "--timeout") if timeout else None
    poll = max(_seconds(interval, "--interval"), 0.05)
    with _cluster(kubeconfig, context, namespace) as cluster:
        if not watch:
            obj = cluster.get(name)
            report = build_report(obj, deployments=_sides(cluster, obj))
            if output is not None:
                typer.echo(dump(report.to_data(), output.value), nl=False)
            else:
                console().print(report_renderable(report))
            return
        code = _watch(cluster, name, limit, poll, output)
    raise typer.Exit(code)


def _sides(cluster: Cluster, obj: dict[str, Any]) -> dict[str, dict[str, Any] | None] | None:
    spec = obj.get("spec") or {}
    names = [
        str(ref.get("deployment"))
        for ref in (spec.get("blue") or {}, spec.get("green") or {})
        if ref.get("deployment")
    ]
    return cluster.deployments(names) if names else None


def _watch(
    cluster: Cluster, name: str, limit: float | None, poll: float, output: Output | None
) -> int:
    from rich.live import Live

    deadline = None if limit is None else time.monotonic() + limit
    out = console()
    found = cluster.find(name)
    if found is None:
        # Applied by a pipeline a moment later, typically: wait for it within the same timeout.
        typer.echo(f"waiting for Migration {name} to be created...", err=True)
    while found is None:
        if deadline is not None and time.monotonic() >= deadline:
            typer.echo(f"timed out: {name} was not created within {limit:g}s", err=True)
            return EXIT_WATCH_TIMEOUT
        time.sleep(poll if deadline is None else min(poll, max(deadline - time.monotonic(), 0)))
        found = cluster.find(name)
    report = build_report(found, deployments=_sides(cluster, found))
    live = None if output is not None else Live(report_renderable(report), console=out)
    if live is not None:
        live.start()
    try:
        while not report.terminal:
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(poll if deadline is None else min(poll, max(deadline - time.monotonic(), 0)))
            obj = cluster.get(name)
            report = build_report(obj, deployments=_sides(cluster, obj))
            if live is not None:
                live.update(report_renderable(report))
    finally:
        if live is not None:
            live.stop()
    if output is not None:
        typer.echo(dump(report.to_data(), output.value), nl=False)
    if not report.terminal:
        typer.echo(f"timed out: {name} is still {report.phase} after {limit:g}s", err=True)
        return EXIT_WATCH_TIMEOUT
    return 0 if report.phase == api.Phase.succeeded.value else 1


# --- manual control ---------------------------------------------------------------------------


def _request(
    verb: RequestVerb,
    name: str,
    wait: bool,
    wait_timeout: str,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
) -> None:
    limit = _seconds(wait_timeout, "--wait-timeout")
    label = "promote --full" if verb is RequestVerb.promote_full else verb.value
    with _cluster(kubeconfig, context, namespace) as cluster:
        sent = send_request(cluster, verb, name)
        if sent.replaced:
            typer.echo(
                f"note: replacing a request the operator has not handled yet: {sent.replaced}"
            )
        typer.echo(f"{label}: {sent.effect}")
        rid = sent.request_id
        typer.echo(f"requested ({api.REQUEST_ANNOTATION}={sent.value})")
        if not wait:
            return
        deadline = time.monotonic() + limit
        while True:
            raw_status = cluster.get(name).get("status") or {}
            if raw_status.get("lastRequest") == rid:
                phase = raw_status.get("phase") or "Pending"
                message = raw_status.get("message") or ""
                typer.echo(f"done: {name} is {phase}" + (f": {message}" if message else ""))
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(min(0.25, max(deadline - time.monotonic(), 0)))
    raise CliError(
        f"the operator did not act on the {label} request within {wait_timeout}: is it"
        f" running? The annotation stays set, so it acts once it gets to it"
        f" (check `cutover status {name}`)",
        EXIT_NOT_HANDLED,
    )


WaitOpt = Annotated[
    bool, typer.Option("--wait/--no-wait", help="Wait for the operator to act on the request.")
]
WaitTimeoutOpt = Annotated[
    str, typer.Option("--wait-timeout", help="How long --wait waits (exit 3 after).")
]


@app.command()
@guarded
def promote(
    name: NameArg,
    full: Annotated[
        bool, typer.Option("--full", help="Skip all remaining steps and gates.")
    ] = False,
    wait: WaitOpt = True,
    wait_timeout: WaitTimeoutOpt = "10s",
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Skip to the next step (ends an indefinite pause); --full goes straight to 100%."""
    verb = RequestVerb.promote_full if full else RequestVerb.promote
    _request(verb, name, wait, wait_timeout, kubeconfig, context, namespace)


def _simple(verb: RequestVerb, doc: str) -> None:
    def command(
        name: NameArg,
        wait: WaitOpt = True,
        wait_timeout: WaitTimeoutOpt = "10s",
        kubeconfig: KubeconfigOpt = None,
        context: ContextOpt = None,
        namespace: NamespaceOpt = None,
    ) -> None:
        _request(verb, name, wait, wait_timeout, kubeconfig, context, namespace)

    command.__doc__ = doc
    command.__name__ = verb.value
    app.command(verb.value)(guarded(command))


_simple(RequestVerb.pause, "Hold the run at its current weight (gates keep running).")
_simple(RequestVerb.resume, "Go on after a pause request or a gate hold.")
_simple(RequestVerb.abort, "Return all traffic to blue now.")
_simple(RequestVerb.retry, "Start a new run after RolledBack or Failed.")
_simple(
    RequestVerb.undo,
    "In the rollback window after success: put all traffic back on blue (still at full size).",
)


@app.command()
@guarded
def dashboard(
    port: Annotated[int, typer.Option("--port", help="Port to serve on.")] = 8765,
    address: Annotated[
        str, typer.Option("--address", help="Address to listen on (loopback: only you).")
    ] = "127.0.0.1",
    all_namespaces: Annotated[
        bool, typer.Option("-A", "--all-namespaces", help="Show every namespace.")
    ] = False,
    allow_actions: Annotated[
        bool,
        typer.Option(
            "--allow-actions",
            help="Show promote/pause/resume/abort/retry buttons (each asks to confirm).",
        ),
    ] = False,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Serve a live web dashboard of the Migrations you may list (read-only by default)."""
    from cutover.cli.dashboard.server import Settings, check_access, serve

    target = Target(kubeconfig=kubeconfig, context=context, namespace=namespace)
    with Cluster(target) as cluster, Cluster(target) as watcher:
        problem = check_access(cluster, all_namespaces)
        if problem is not None:
            # Served all the same: the page says it too, and shows the runs once RBAC allows.
            typer.echo(f"warning: {problem.message}", err=True)
        where = "all namespaces" if all_namespaces else f"namespace {cluster.namespace}"
        mode = "actions enabled" if allow_actions else "read-only"
        typer.echo(f"cutover dashboard ({where}, {mode}): http://{address}:{port}/ (Ctrl-C stops)")
        serve(cluster, watcher, all_namespaces, Settings(address, port, allow_actions))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - interactive
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
