"""``cutover compat`` and the SQL half of ``cutover lint``: which hook runs which SQL, and when.

A hook's Job runs SQL that it mounts from a ConfigMap (``psql -f /sql/expand.sql`` with the
ConfigMap mounted at ``/sql``) or passes inline (``psql -c``, ``mysql -e``). This module finds that
SQL in the manifests given with ``-f``, classifies it with ``cutover.sqlcompat``, and applies the
rules of the run's phases: while blue still serves (preShift, afterStep) nothing may be a
contract; a contract after the bake (postPromotion) must sit in a hook marked ``irreversible``.
Pure apart from reading files through ``cli.manifests``.
"""

from __future__ import annotations

import enum
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cutover import api
from cutover.cli.client import CliError
from cutover.cli.manifests import Document
from cutover.sqlcompat import Category, Finding, Schema, analyze, learn_schema
from cutover.sqlscript import Dialect

REPORT_VERSION = 1
# Phases in which blue still serves traffic, so blue's queries must keep working.
BLUE_SERVES = (api.HookStage.pre_shift, api.HookStage.after_step)
INLINE_FLAGS = {"-c", "--command", "-e", "--execute"}
SQL_CLIENTS = {"psql", "mysql", "mariadb"}
# Stands for the hook of SQL files judged with --phase (no Migration, no hook name).
PHASE_OPTION = "--phase"


class Severity(enum.StrEnum):
    error = "error"
    warning = "warning"


@dataclass(frozen=True)
class HookRef:
    migration: str
    stage: api.HookStage
    name: str
    irreversible: bool

    def to_data(self) -> dict[str, Any]:
        given = self.migration == PHASE_OPTION  # SQL files judged with --phase: no hook
        return {
            "migration": None if given else self.migration,
            "stage": self.stage.value,
            "name": None if given else self.name,
            "irreversible": self.irreversible,
        }


@dataclass(frozen=True)
class SqlSource:
    file: str  # the .sql file, or the manifest holding the ConfigMap or the inline SQL
    first_line: int  # the file line of the text's first line
    text: str
    origin: str  # e.g. "ConfigMap orders-migrations key expand.sql"
    dialect: Dialect
    hook: HookRef | None = None


@dataclass(frozen=True)
class Located:
    """A finding placed in its file, with what the phase rules make of it."""

    source: SqlSource
    finding: Finding
    severity: Severity | None
    problem: str | None

    @property
    def line(self) -> int:
        return self.source.first_line + self.finding.line - 1

    def to_data(self) -> dict[str, Any]:
        hook = self.source.hook
        return {
            "file": self.source.file,
            "line": self.line,
            "origin": self.source.origin,
            "dialect": self.source.dialect.value,
            "statement": self.finding.statement,
            "class": self.finding.category.value,
            "reason": self.finding.reason.value,
            "detail": self.finding.detail,
            "lock": self.finding.lock,
            "hook": None if hook is None else hook.to_data(),
            "severity": None if self.severity is None else self.severity.value,
            "problem": self.problem,
        }


@dataclass
class Report:
    located: list[Located] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def count(self, severity: Severity) -> int:
        return sum(1 for item in self.located if item.severity is severity)

    def to_data(self) -> dict[str, Any]:
        summary: dict[str, int] = {"statements": len(self.located)}
        for category in Category:
            summary[category.value] = sum(
                1 for item in self.located if item.finding.category is category
            )
        summary["errors"] = self.count(Severity.error)
        summary["warnings"] = self.count(Severity.warning)
        return {
            "version": REPORT_VERSION,
            "summary": summary,
            "findings": [item.to_data() for item in self.located],
            "notes": list(self.notes),
        }


def short(statement: str, width: int = 80) -> str:
    """A statement on one line, cut to ``width``."""
    flat = " ".join(statement.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def judge(hook: HookRef | None, finding: Finding) -> tuple[Severity | None, str | None]:
    """What the phase a statement runs in makes of its class: (severity, message) or Nones."""
    if hook is None:
        return None, None
    where = (
        f"{hook.stage.value} SQL (--phase)"
        if hook.migration == PHASE_OPTION
        else f"{hook.stage.value} hook {hook.name}"
    )
    blue_serves = hook.stage in BLUE_SERVES
    guarded = hook.stage is api.HookStage.post_promotion and not hook.irreversible
    if finding.category is Category.contract and blue_serves:
        return Severity.error, (
            f"contract statement in {where}: it would break blue while blue still serves"
            f" ({finding.detail}); move it to a postPromotion hook marked irreversible: true"
        )
    if finding.category is Category.contract and guarded:
        return Severity.error, (
            f"contract statement in {where}, which is not marked irreversible: true: after it"
            f" blue cannot come back, so it is the point of no return ({finding.detail})"
        )
    if finding.category is Category.locking:
        return Severity.warning, f"locking statement in {where}: takes {finding.lock}"
    if finding.category is Category.unknown and (blue_serves or guarded):
        return Severity.warning, (
            f"unclassified statement in {where}: {finding.detail}; it might break blue"
        )
    return None, None


# --- finding the SQL a hook runs ------------------------------------------------------------------


def _dialect_of(container: Mapping[str, Any], default: Dialect) -> Dialect:
    image = str(container.get("image") or "").lower()
    argv = " ".join(
        str(a) for a in [*(container.get("command") or []), *(container.get("args") or [])]
    )
    words = f"{image} {argv}".lower()
    if "mysql" in words or "mariadb" in words:
        return Dialect.mysql
    if "postgres" in words or "psql" in words:
        return Dialect.postgres
    return default


def _argvs(container: Mapping[str, Any]) -> list[list[str]]:
    """The container's argv, and the words of each shell script in it (``sh -c '...'``)."""
    argv = [str(a) for a in [*(container.get("command") or []), *(container.get("args") or [])]]
    argvs = [argv]
    for entry in argv:
        if " " in entry:
            try:
                argvs.append(shlex.split(entry))
            except ValueError:
                argvs.append(entry.split())
    return argvs


def _inline(argvs: Sequence[Sequence[str]]) -> list[str]:
    """SQL given to psql (-c, --command) or mysql/mariadb (-e, --execute) on the command line."""
    found = []
    for argv in argvs:
        client = False
        for index, word in enumerate(argv):
            if word.rsplit("/", 1)[-1] in SQL_CLIENTS:
                client = True
            elif not client:
                continue
            elif word in INLINE_FLAGS and index + 1 < len(argv):
                found.append(argv[index + 1])
            elif word.startswith(("--command=", "--execute=")):
                found.append(word.split("=", 1)[1])
    return found


@dataclass(frozen=True)
class _Mount:
    path: str
    config_map: str
    items: dict[str, str]  # path inside the volume -> key
    sub_path: str | None


def _mounts(pod: Mapping[str, Any], container: Mapping[str, Any]) -> list[_Mount]:
    volumes = {}
    for volume in pod.get("volumes") or []:
        source = volume.get("configMap") if isinstance(volume, dict) else None
        if isinstance(source, dict) and source.get("name"):
            items = {str(i.get("path")): str(i.get("key")) for i in source.get("items") or []}
            volumes[str(volume.get("name"))] = (str(source["name"]), items)
    mounts = []
    for mount in container.get("volumeMounts") or []:
        if isinstance(mount, dict) and mount.get("name") in volumes:
            name, items = volumes[str(mount["name"])]
            sub = mount.get("subPath")
            path = str(mount.get("mountPath") or "").rstrip("/")
            mounts.append(_Mount(path, name, items, str(sub) if sub else None))
    return mounts


def _referenced_keys(mount: _Mount, words: Sequence[str]) -> list[str]:
    """The ConfigMap keys the container's command names as files under the mount."""
    keys = []
    for word in words:
        candidate = word.split("=", 1)[1] if word.startswith("--") and "=" in word else word
        if mount.sub_path is not None:
            if candidate == mount.path:
                keys.append(mount.items.get(mount.sub_path, mount.sub_path))
        elif candidate.startswith(mount.path + "/"):
            inner = candidate[len(mount.path) + 1 :]
            keys.append(mount.items.get(inner, inner))
    return keys


def _job_template(
    hook: api.Hook, config_maps: Mapping[str, Document], notes: list[str], where: str
) -> dict[str, Any] | None:
    if hook.job_template is not None:
        return hook.job_template
    ref = hook.config_map_ref
    assert ref is not None  # api.Hook guarantees one of the two
    document = config_maps.get(ref.name)
    raw = ((document.body.get("data") or {}) if document else {}).get(ref.key)
    if raw is None:
        notes.append(
            f"{where}: its Job template is in ConfigMap {ref.name} key {ref.key}, which is not"
            " among the manifests given with -f: its SQL was not checked"
        )
        return None
    try:
        loaded = yaml.safe_load(str(raw))
    except yaml.YAMLError:
        notes.append(f"{where}: ConfigMap {ref.name} key {ref.key} is not valid YAML")
        return None
    return loaded if isinstance(loaded, dict) else None


def hook_sources(
    migration: Document,
    hook: HookRef,
    template: Mapping[str, Any],
    config_maps: Mapping[str, Document],
    default: Dialect,
    notes: list[str],
) -> list[SqlSource]:
    """The SQL one hook's Job runs: mounted ConfigMap keys it names (all *.sql if it names
    none) and inline ``-c``/``-e`` SQL."""
    where = f"{migration.path}: Migration {migration.name}: {hook.stage.value} hook {hook.name}"
    pod = ((template.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]
    sources: list[SqlSource] = []
    for container in containers:
        if not isinstance(container, dict):
            continue
        argvs = _argvs(container)
        dialect, words = _dialect_of(container, default), [w for a in argvs for w in a]
        inline = _inline(argvs)
        for text in inline:
            origin = f"Migration {migration.name} hook {hook.name} (inline SQL)"
            sources.append(SqlSource(migration.path, 1, text, origin, dialect, hook))
        for mount in _mounts(pod, container):
            document = config_maps.get(mount.config_map)
            if document is None:
                notes.append(
                    f"{where}: mounts ConfigMap {mount.config_map}, which is not among the"
                    " manifests given with -f: its SQL was not checked"
                )
                continue
            data = document.body.get("data") or {}
            keys = _referenced_keys(mount, words)
            if not keys and not inline:
                # A script that runs whatever the mount holds: judge all of its SQL.
                keys = sorted(k for k in data if k.endswith(".sql"))
            for key in dict.fromkeys(keys):
                if key not in data:
                    notes.append(f"{where}: runs {key}, which ConfigMap {mount.config_map} lacks")
                    continue
                origin = f"ConfigMap {mount.config_map} key {key}"
                first = document.data_lines.get(key, 1)
                sources.append(
                    SqlSource(document.path, first, str(data[key]), origin, dialect, hook)
                )
    if not sources and not any(f"{hook.name}:" in n for n in notes):
        notes.append(f"{where}: no SQL found (neither a mounted ConfigMap file nor -c/-e)")
    return sources


def manifest_sources(
    documents: Sequence[Document], default: Dialect
) -> tuple[list[SqlSource], list[str]]:
    """The SQL of every hook of every valid Migration among ``documents``."""
    config_maps = {d.name: d for d in documents if d.kind == "ConfigMap"}
    sources: list[SqlSource] = []
    notes: list[str] = []
    for document in documents:
        if document.kind != api.KIND:
            continue
        try:
            spec = api.Migration.from_manifest(document.body).spec
        except api.SpecInvalid:
            # The schema problems are lint's to report; the hooks cannot be trusted to exist.
            notes.append(
                f"{document.path}: Migration {document.name} is invalid (see cutover lint):"
                " its hooks' SQL was not checked"
            )
            continue
        for stage in api.HookStage:
            for hook in spec.hooks.of(stage):
                ref = HookRef(document.name, stage, hook.name, hook.irreversible)
                where = (
                    f"{document.path}: Migration {document.name}: {stage.value} hook {hook.name}"
                )
                template = _job_template(hook, config_maps, notes, where)
                if template is not None:
                    sources.extend(
                        hook_sources(document, ref, template, config_maps, default, notes)
                    )
    return sources, notes


def file_sources(
    paths: Iterable[Path], dialect: Dialect, stage: api.HookStage | None, irreversible: bool
) -> list[SqlSource]:
    """SQL files named on the command line; ``stage`` judges them as if a hook ran them."""
    hook = None if stage is None else HookRef(PHASE_OPTION, stage, PHASE_OPTION, irreversible)
    sources = []
    for path in paths:
        try:
            text = path.read_text()
        except OSError as error:
            raise CliError(f"cannot read {path}: {error.strerror}") from None
        sources.append(SqlSource(str(path), 1, text, "file", dialect, hook))
    return sources


def read_schema(paths: Iterable[Path], dialect: Dialect) -> Schema:
    texts = []
    for path in paths:
        try:
            texts.append(path.read_text())
        except OSError as error:
            raise CliError(f"cannot read {path}: {error.strerror}") from None
    return learn_schema(texts, dialect)


def check(
    sources: Iterable[SqlSource], schema: Schema | None = None, notes: Sequence[str] = ()
) -> Report:
    """Classify every statement of every source and judge it by the phase it runs in.

    Each source starts from the same known schema: hooks run in different phases, and one
    script's ADD COLUMN does not make the next script's column types known in general.
    """
    report = Report(notes=list(notes))
    for source in sources:
        known = (schema or Schema()).copy()
        for finding in analyze(source.text, source.dialect, known):
            severity, problem = judge(source.hook, finding)
            report.located.append(Located(source, finding, severity, problem))
    return report


def text_lines(report: Report) -> list[str]:
    """The human form: one line per statement, then one per error or warning, then notes."""
    lines = []
    for item in report.located:
        where = f"{item.source.file}:{item.line}"
        if item.source.origin != "file":
            where += f" ({item.source.origin})"
        statement = short(item.finding.statement)
        lock = f" [{item.finding.lock}]" if item.finding.lock else ""
        lines.append(
            f"{where}: {item.finding.category.value} ({item.finding.reason.value}):"
            f" {statement} -- {item.finding.detail}{lock}"
        )
        if item.severity is not None:
            lines.append(f"{item.source.file}:{item.line}: {item.severity.value}: {item.problem}")
    lines.extend(f"note: {note}" for note in report.notes)
    return lines


def summary_line(report: Report) -> str:
    data = report.to_data()["summary"]
    classes = ", ".join(f"{data[c.value]} {c.value}" for c in Category)
    return (
        f"{data['statements']} statements: {classes}; {data['errors']} errors,"
        f" {data['warnings']} warnings"
    )
