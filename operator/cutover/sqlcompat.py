"""Which schema changes are safe while blue (the old version) and green both serve.

Each statement of a migration script gets a class:

* ``expand``: the old version keeps working (a new table or nullable column, a concurrent index,
  a trigger, row changes, session settings);
* ``contract``: the old version may break (a dropped or renamed column or table, a narrower
  type, a new constraint its writes may violate, NOT NULL on a column it may leave empty);
* ``locking``: both versions keep working, but the statement holds a lock that blocks the
  table while it runs (an index built without CONCURRENTLY, a table rewrite);
* ``unknown``: no rule covers it, or it does not parse. Never guessed: a person must look.

Pure: statements in, classifications out. The parser is sqlglot; what it cannot parse it hands
back as a ``Command`` (its leading keywords and the rest as text), and only statements whose
leading keywords decide the class on their own are classified from those.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from cutover.sqlscript import Dialect, Statement, split_script

# sqlglot logs a warning for every statement it falls back to a Command for; that is our
# business to report, as an ``unknown`` finding, not a log line on the user's terminal.
logging.getLogger("sqlglot").setLevel(logging.ERROR)


class Category(enum.StrEnum):
    expand = "expand"
    contract = "contract"
    locking = "locking"
    unknown = "unknown"


# Worst first: a statement with several actions takes the class of its worst one. An unknown
# action outranks a locking one because it might be a contract.
SEVERITY = (Category.contract, Category.unknown, Category.locking, Category.expand)


class Reason(enum.StrEnum):
    session = "session"
    query = "query"
    row_change = "row-change"
    procedural_block = "procedural-block"
    procedural_ddl = "procedural-ddl"
    new_table = "new-table"
    new_object = "new-object"
    new_column = "new-column"
    online_index = "online-index"
    index_build_lock = "index-build-lock"
    new_constraint = "new-constraint"
    constraint_validation = "constraint-validation"
    widen_type = "widen-type"
    table_rewrite = "table-rewrite"
    narrow_type = "narrow-type"
    type_change = "type-change"
    type_unknown = "type-unknown"
    set_not_null = "set-not-null"
    drop_not_null = "drop-not-null"
    set_default = "set-default"
    drop_default = "drop-default"
    not_null_without_default = "not-null-without-default"
    default_volatility_unknown = "default-volatility-unknown"
    drop_column = "drop-column"
    drop_table = "drop-table"
    drop_object = "drop-object"
    rename = "rename"
    data_removed = "data-removed"
    privilege_granted = "privilege-granted"
    privilege_revoked = "privilege-revoked"
    comment = "comment"
    explicit_lock = "explicit-lock"
    unparsed = "unparsed"
    unsupported = "unsupported"


@dataclass(frozen=True)
class Verdict:
    category: Category
    reason: Reason
    detail: str
    lock: str | None = None  # the lock it holds for long, for locking statements


@dataclass(frozen=True)
class Finding:
    statement: str
    line: int
    category: Category
    reason: Reason
    detail: str
    lock: str | None = None


@dataclass
class Schema:
    """Columns known so far, from ``--schema`` files and the scripts' own CREATE/ADD: their
    types, and which are NOT NULL."""

    tables: dict[str, dict[str, exp.DataType]] = field(default_factory=dict)
    not_null: set[tuple[str, str]] = field(default_factory=set)

    def column(self, table: str, column: str) -> exp.DataType | None:
        return self.tables.get(table.lower(), {}).get(column.lower())

    def is_not_null(self, table: str, column: str) -> bool | None:
        """None when the column is not known."""
        if self.column(table, column) is None:
            return None
        return (table.lower(), column.lower()) in self.not_null

    def learn(
        self, table: str, column: str, dtype: exp.DataType | None, not_null: bool | None = None
    ) -> None:
        if dtype is not None:
            self.tables.setdefault(table.lower(), {})[column.lower()] = dtype
        if not_null is not None:
            key = (table.lower(), column.lower())
            (self.not_null.add if not_null else self.not_null.discard)(key)

    def learn_column(self, table: str, column: exp.ColumnDef) -> None:
        kinds = [c.kind for c in column.constraints]
        required = any(
            isinstance(k, exp.PrimaryKeyColumnConstraint)
            or (isinstance(k, exp.NotNullColumnConstraint) and not k.args.get("allow_null"))
            for k in kinds
        )
        self.learn(table, column.name, column.args.get("kind"), required)

    def copy(self) -> Schema:
        return Schema({t: dict(c) for t, c in self.tables.items()}, set(self.not_null))


def _expand(reason: Reason, detail: str) -> Verdict:
    return Verdict(Category.expand, reason, detail)


def _contract(reason: Reason, detail: str) -> Verdict:
    return Verdict(Category.contract, reason, detail)


def _unknown(reason: Reason, detail: str) -> Verdict:
    return Verdict(Category.unknown, reason, detail)


def _locking(reason: Reason, detail: str, lock: str) -> Verdict:
    return Verdict(Category.locking, reason, detail, lock)


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    ranked = sorted(verdicts, key=lambda v: SEVERITY.index(v.category))
    return ranked[0]


def _name(node: exp.Expression | None) -> str:
    if node is None:
        return "?"
    if isinstance(node, exp.Table):
        return ".".join(part.name for part in node.parts)
    return node.name or node.sql()


def _table_lock(dialect: Dialect, table: str, what: str) -> str:
    if dialect is Dialect.postgres:
        return f"ACCESS EXCLUSIVE on {table} (reads and writes wait) while {what}"
    return f"metadata lock on {table}; writes wait while {what}"


# --- column types -------------------------------------------------------------------------------

_TEXT = {exp.DataType.Type.VARCHAR, exp.DataType.Type.TEXT, exp.DataType.Type.NVARCHAR}
_INTEGERS = [
    {exp.DataType.Type.TINYINT},
    {exp.DataType.Type.SMALLINT},
    {exp.DataType.Type.MEDIUMINT, exp.DataType.Type.INT},
    {exp.DataType.Type.BIGINT},
]
_DECIMAL = {exp.DataType.Type.DECIMAL}


def _length(dtype: exp.DataType) -> list[int] | None:
    """A type's parameters (VARCHAR(20) -> [20]); None when it has none (unbounded)."""
    params = [p.this for p in dtype.expressions if isinstance(p, exp.DataTypeParam)]
    values = [int(p.name) for p in params if isinstance(p, exp.Literal) and p.name.isdigit()]
    return values or None


def _integer_rank(dtype: exp.DataType) -> int | None:
    for rank, types in enumerate(_INTEGERS):
        if dtype.this in types:
            return rank
    return None


def type_change(
    dialect: Dialect, table: str, column: str, old: exp.DataType | None, new: exp.DataType
) -> Verdict:
    """Changing ``table.column`` from ``old`` (None: not known) to ``new``."""
    what = f"{table}.{column} {old.sql(dialect.value) if old else '?'} -> {new.sql(dialect.value)}"
    rewrite = _locking(
        Reason.table_rewrite,
        f"{what} widens the type but rewrites the table",
        _table_lock(dialect, table, "the table is rewritten"),
    )
    if old is None:
        return _unknown(
            Reason.type_unknown,
            f"{what}: the column's current type is not known, so narrowing cannot be ruled out"
            " (give its CREATE TABLE with --schema)",
        )
    if old.sql(dialect.value) == new.sql(dialect.value):
        return _expand(Reason.widen_type, f"{what}: the type does not change")
    if old.this in _TEXT and new.this in _TEXT:
        before, after = _length(old), _length(new)
        if before is not None and (after is None or after[0] >= before[0]):
            if dialect is Dialect.postgres:
                return _expand(Reason.widen_type, f"{what}: a longer text type, no rewrite")
            # InnoDB changes a VARCHAR's length in place while its length prefix keeps its size
            # (1 byte up to 255 bytes): sure for any charset (1 to 4 bytes a character) when
            # the new length fits 255 bytes in 4-byte characters, or the old one never did.
            if after is not None and (after[0] * 4 <= 255 or before[0] > 255):
                return _expand(Reason.widen_type, f"{what}: a longer VARCHAR, changed in place")
            return _locking(
                Reason.table_rewrite,
                f"{what}: a longer VARCHAR whose length prefix may grow copies the table",
                _table_lock(dialect, table, "the table is copied"),
            )
        if before is None and after is None:
            return _expand(Reason.widen_type, f"{what}: both are unbounded text")
        return _contract(Reason.narrow_type, f"{what} is narrower: old writes may not fit")
    old_rank, new_rank = _integer_rank(old), _integer_rank(new)
    if old_rank is not None and new_rank is not None:
        if new_rank > old_rank:
            return rewrite
        return _contract(Reason.narrow_type, f"{what} is narrower: old writes may not fit")
    if old.this in _DECIMAL and new.this in _DECIMAL:
        before, after = _length(old) or [], _length(new) or []
        scale_before = before[1] if len(before) > 1 else 0
        scale_after = after[1] if len(after) > 1 else 0
        wider = not after or (bool(before) and after[0] >= before[0])
        if wider and scale_after == scale_before:
            if dialect is Dialect.postgres:
                return _expand(Reason.widen_type, f"{what}: more precision, no rewrite")
            return rewrite
        return _contract(Reason.narrow_type, f"{what} loses precision or scale")
    return _contract(Reason.type_change, f"{what}: the old version reads and writes another type")


# --- ALTER TABLE actions --------------------------------------------------------------------------

# Defaults PostgreSQL evaluates once for the whole ALTER (no rewrite) or once per row (a rewrite).
# Both of sqlglot's spellings of a function: its SQL name and its class name.
_STABLE_DEFAULTS = {
    "now",
    "current_timestamp",
    "currenttimestamp",
    "current_date",
    "currentdate",
    "current_time",
    "currenttime",
    "localtimestamp",
    "current_user",
    "currentuser",
    "transaction_timestamp",
    "statement_timestamp",
}
_VOLATILE_DEFAULTS = {
    "random",
    "rand",
    "gen_random_uuid",
    "uuid_generate_v4",
    "uuid",
    "clock_timestamp",
    "timeofday",
    "nextval",
}


def _calls(default: exp.Expression) -> set[str]:
    """The lower-case names of the functions an expression calls (casts are no calls)."""
    names: set[str] = set()
    for node in default.walk():
        if isinstance(node, exp.Anonymous):
            names.add(node.name.lower())
        elif isinstance(node, exp.Func) and not isinstance(node, exp.Cast):
            names |= {node.sql_name().lower(), type(node).__name__.lower()}
    return names


def _default_verdict(
    dialect: Dialect, table: str, column: str, default: exp.Expression
) -> Verdict | None:
    """None when the default costs nothing; else why it may rewrite the table."""
    names = _calls(default)
    if names <= _STABLE_DEFAULTS:
        return None
    if names & _VOLATILE_DEFAULTS:
        return _locking(
            Reason.table_rewrite,
            f"{table}.{column}: a volatile default is computed for every existing row",
            _table_lock(dialect, table, "the table is rewritten"),
        )
    return _unknown(
        Reason.default_volatility_unknown,
        f"{table}.{column}: the default calls {', '.join(sorted(names - _STABLE_DEFAULTS))};"
        " whether that rewrites the table depends on its volatility",
    )


def _add_column(dialect: Dialect, table: str, column: exp.ColumnDef, schema: Schema) -> Verdict:
    name = column.name
    schema.learn_column(table, column)
    constraints = [c.kind for c in column.constraints]
    kind = column.args.get("kind")
    not_null = any(
        isinstance(c, exp.NotNullColumnConstraint) and not c.args.get("allow_null")
        for c in constraints
    )
    primary = any(isinstance(c, exp.PrimaryKeyColumnConstraint) for c in constraints)
    defaults = [c.this for c in constraints if isinstance(c, exp.DefaultColumnConstraint)]
    rewrites = [
        c
        for c in constraints
        if isinstance(
            c, exp.GeneratedAsIdentityColumnConstraint | exp.AutoIncrementColumnConstraint
        )
        or (
            isinstance(c, exp.ComputedColumnConstraint)
            and (dialect is Dialect.postgres or c.args.get("persisted"))
        )
    ]
    serial = isinstance(kind, exp.DataType) and kind.this in {
        exp.DataType.Type.SERIAL,
        exp.DataType.Type.BIGSERIAL,
        exp.DataType.Type.SMALLSERIAL,
    }
    if (not_null or primary) and not defaults and not rewrites and not serial:
        return _contract(
            Reason.not_null_without_default,
            f"{table}.{name} is NOT NULL without a default: the old version's inserts do not"
            " set it and fail",
        )
    if rewrites or serial:
        return _locking(
            Reason.table_rewrite,
            f"{table}.{name}: a generated, identity or serial column is filled in for every row",
            _table_lock(dialect, table, "the table is rewritten"),
        )
    checked = {
        column.name.lower()
        for check in constraints
        if isinstance(check, exp.CheckColumnConstraint)
        for column in check.find_all(exp.Column)
    }
    if checked - {name.lower()}:
        return _contract(
            Reason.new_constraint,
            f"{table}.{name}: its CHECK reads {', '.join(sorted(checked - {name.lower()}))},"
            " which the old version writes: it may write rows the check rejects",
        )
    if primary or any(isinstance(c, exp.UniqueColumnConstraint) for c in constraints):
        return _locking(
            Reason.index_build_lock,
            f"{table}.{name}: its unique index is built inside the ALTER",
            _table_lock(dialect, table, "the index is built"),
        )
    for default in defaults:
        verdict = _default_verdict(dialect, table, name, default)
        if verdict is not None:
            return verdict
    detail = "with a default" if defaults else "nullable"
    return _expand(
        Reason.new_column,
        f"new column {table}.{name} ({detail}): the old version neither reads nor must write it",
    )


def _alter_column(dialect: Dialect, table: str, action: exp.AlterColumn, schema: Schema) -> Verdict:
    column = action.name
    dtype = action.args.get("dtype")
    if isinstance(dtype, exp.DataType):
        verdict = type_change(dialect, table, column, schema.column(table, column), dtype)
        schema.learn(table, column, dtype)
        if action.args.get("using") and verdict.category is Category.expand:
            return _locking(
                Reason.table_rewrite,
                f"{table}.{column}: USING rewrites every row",
                _table_lock(dialect, table, "the table is rewritten"),
            )
        return verdict
    if action.args.get("allow_null") is False:
        schema.learn(table, column, None, not_null=True)
        return Verdict(
            Category.contract,
            Reason.set_not_null,
            f"{table}.{column} SET NOT NULL: the old version may leave it empty",
            _table_lock(dialect, table, "every row is checked"),
        )
    if action.args.get("allow_null") is True:
        schema.learn(table, column, None, not_null=False)
        return _expand(Reason.drop_not_null, f"{table}.{column} DROP NOT NULL: only loosens")
    if action.args.get("drop"):
        return _contract(
            Reason.drop_default,
            f"{table}.{column} DROP DEFAULT: the old version's inserts that omit it relied on it",
        )
    if action.args.get("default") is not None:
        return _expand(Reason.set_default, f"{table}.{column} SET DEFAULT: applies to new rows")
    return _unknown(Reason.unsupported, f"ALTER COLUMN {table}.{column}: no rule for this form")


def _modify_column(dialect: Dialect, table: str, action: exp.Expression, schema: Schema) -> Verdict:
    """MySQL's MODIFY/CHANGE COLUMN: restates the whole column (CHANGE may rename it)."""
    definition = action.this
    if not isinstance(definition, exp.ColumnDef):
        return _unknown(Reason.unsupported, f"{action.sql(dialect.value)}: no rule")
    old_name = action.args.get("rename_from")  # CHANGE old new ...; MODIFY has none
    new_name = definition.name
    if old_name is not None and _name(old_name).lower() != new_name.lower():
        return _contract(
            Reason.rename,
            f"{table}.{_name(old_name)} renamed to {new_name}: the"
            " old version still uses the old name",
        )
    verdicts = []
    kind = definition.args.get("kind")
    was_not_null = schema.is_not_null(table, new_name)
    if isinstance(kind, exp.DataType):
        verdicts.append(type_change(dialect, table, new_name, schema.column(table, new_name), kind))
    schema.learn_column(table, definition)
    # MODIFY restates the whole column, NOT NULL included: only a change from NULL counts.
    if schema.is_not_null(table, new_name) and was_not_null is False:
        verdicts.append(
            _contract(
                Reason.set_not_null,
                f"{table}.{new_name} NOT NULL: the old version may leave it empty",
            )
        )
    return worst(verdicts) if verdicts else _unknown(Reason.unsupported, "MODIFY COLUMN: no rule")


def _add_constraint(dialect: Dialect, table: str, action: exp.AddConstraint) -> Verdict:
    inner = action.expressions[0] if action.expressions else None
    if isinstance(inner, exp.IndexColumnConstraint) and dialect is Dialect.mysql:
        return _expand(Reason.online_index, f"index on {table}: InnoDB builds it online")
    return Verdict(
        Category.contract,
        Reason.new_constraint,
        f"new constraint on {table}: the old version may write rows it rejects",
        _table_lock(dialect, table, "existing rows are checked"),
    )


def _drop_action(table: str, action: exp.Drop) -> Verdict:
    kind = str(action.args.get("kind") or "").upper()
    names = ", ".join(_name(t) for t in action.args.get("tables") or [])
    if kind == "COLUMN" or (not kind and names):
        return _contract(
            Reason.drop_column,
            f"drops column {table}.{names}: the old version still reads or writes it",
        )
    return _contract(
        Reason.drop_object,
        f"drops {kind.lower() or 'part'} {names} of {table}: the old version may rely on it",
    )


def _alter_options(dialect: Dialect, table: str, alter: exp.Alter) -> Verdict | None:
    """MySQL's ALGORITHM=COPY or LOCK=SHARED/EXCLUSIVE make any ALTER a locking one."""
    for option in alter.args.get("options") or []:
        value = option.name.upper()
        if (isinstance(option, exp.AlgorithmProperty) and value == "COPY") or (
            isinstance(option, exp.LockProperty) and value in {"SHARED", "EXCLUSIVE"}
        ):
            return _locking(
                Reason.table_rewrite,
                f"{option.sql(dialect.value)} on {table}",
                _table_lock(dialect, table, "the ALTER runs"),
            )
    return None


def _alter(dialect: Dialect, alter: exp.Alter, schema: Schema) -> Verdict:
    table = _name(alter.this)
    kind = str(alter.args.get("kind") or "").upper()
    if kind != "TABLE":
        return _unknown(Reason.unsupported, f"ALTER {kind or '?'} {table}: no rule")
    verdicts = []
    for action in alter.args.get("actions") or []:
        if isinstance(action, exp.ColumnDef):
            verdicts.append(_add_column(dialect, table, action, schema))
        elif isinstance(action, exp.AlterColumn):
            verdicts.append(_alter_column(dialect, table, action, schema))
        elif isinstance(action, exp.ModifyColumn):
            verdicts.append(_modify_column(dialect, table, action, schema))
        elif isinstance(action, exp.Drop):
            verdicts.append(_drop_action(table, action))
        elif isinstance(action, exp.RenameColumn | exp.AlterRename):
            verdicts.append(
                _contract(
                    Reason.rename,
                    f"{action.sql(dialect.value)} on {table}:"
                    " the old version still uses the old name",
                )
            )
        elif isinstance(action, exp.AddConstraint):
            verdicts.append(_add_constraint(dialect, table, action))
        elif isinstance(action, exp.AlterSet) and action.args.get("tablespace"):
            verdicts.append(
                _locking(
                    Reason.table_rewrite,
                    f"{table} moves to another tablespace",
                    _table_lock(dialect, table, "the table is copied"),
                )
            )
        else:
            verdicts.append(
                _unknown(
                    Reason.unsupported, f"ALTER TABLE {table} {action.sql(dialect.value)}: no rule"
                )
            )
    option = _alter_options(dialect, table, alter)
    if option is not None:
        verdicts.append(option)
    return worst(verdicts) if verdicts else _unknown(Reason.unsupported, "empty ALTER TABLE")


# --- CREATE, DROP and the rest ---------------------------------------------------------------


def _create(dialect: Dialect, create: exp.Create, schema: Schema) -> Verdict:
    kind = str(create.args.get("kind") or "").upper()
    target = create.this
    if kind == "INDEX" and isinstance(target, exp.Index):
        table = _name(target.args.get("table"))
        if create.args.get("unique"):
            return Verdict(
                Category.contract,
                Reason.new_constraint,
                f"unique index {target.name} on {table}: the old version may write"
                " duplicates it rejects",
                None,
            )
        if create.args.get("concurrently"):
            return _expand(
                Reason.online_index,
                f"index {target.name} on {table}, built CONCURRENTLY: reads and writes go on",
            )
        if dialect is Dialect.mysql:
            return _expand(
                Reason.online_index, f"index {target.name} on {table}: InnoDB builds it online"
            )
        return _locking(
            Reason.index_build_lock,
            f"index {target.name} on {table} without CONCURRENTLY",
            f"SHARE on {table} (writes wait) while the index is built",
        )
    if kind == "TABLE":
        if isinstance(target, exp.Schema):
            table = _name(target.this)
            for column in target.expressions:
                if isinstance(column, exp.ColumnDef):
                    schema.learn_column(table, column)
            return _expand(Reason.new_table, f"new table {table}: the old version never uses it")
        return _expand(
            Reason.new_table, f"new table {_name(target)}: the old version never uses it"
        )
    if kind:
        replace = " (or replaces)" if create.args.get("replace") else ""
        return _expand(Reason.new_object, f"creates{replace} {kind.lower()} {_name(target)}")
    return _unknown(Reason.unsupported, "CREATE of an unknown kind")


def _drop(drop: exp.Drop) -> Verdict:
    kind = str(drop.args.get("kind") or "").upper()
    names = ", ".join(_name(t) for t in drop.args.get("tables") or [])
    if kind == "TABLE":
        return _contract(Reason.drop_table, f"drops table {names}: the old version still uses it")
    return _contract(
        Reason.drop_object, f"drops {kind.lower()} {names}: the old version may rely on it"
    )


# Keywords in a procedural body that may change the schema (or run SQL we cannot see).
_DDL_WORDS = re.compile(
    r"\b(CREATE|ALTER|DROP|TRUNCATE|EXECUTE|GRANT|REVOKE|RENAME|LOCK|REINDEX|CLUSTER|VACUUM)\b",
    re.IGNORECASE,
)
_STRINGS_AND_COMMENTS = re.compile(r"'(?:[^']|'')*'|--[^\n]*|/\*.*?\*/", re.DOTALL)


def _do_block(text: str) -> Verdict:
    body = _STRINGS_AND_COMMENTS.sub(" ", text.split(None, 1)[1] if " " in text else "")
    found = sorted({m.group(1).upper() for m in _DDL_WORDS.finditer(body)})
    if found:
        return _unknown(
            Reason.procedural_ddl, f"procedural block using {', '.join(found)}: review it by hand"
        )
    return _expand(
        Reason.procedural_block,
        "procedural block with queries and row changes only (no DDL, no dynamic SQL)",
    )


_LOCK_MODE = re.compile(
    r"LOCK\s+(?:TABLE\s+)?(?:ONLY\s+)?([\w.\"]+)(?:.*?\bIN\s+(.+?)\s+MODE)?",
    re.IGNORECASE | re.DOTALL,
)


# Only a statement that does nothing else: "ALTER TABLE t DROP COLUMN a, VALIDATE CONSTRAINT c"
# must not pass for a validation.
_VALIDATE = re.compile(
    r"\s*ALTER\s+TABLE\s+(?:ONLY\s+)?[\w.\"]+\s+VALIDATE\s+CONSTRAINT\s+[\w\"]+\s*$",
    re.IGNORECASE,
)
# Words between VACUUM/CLUSTER/REINDEX and the table they work on.
_MAINTENANCE_WORDS = {"FULL", "VERBOSE", "ANALYZE", "FREEZE", "TABLE", "INDEX", "ONLY"}


def _by_keywords(dialect: Dialect, text: str) -> Verdict | None:
    """Statements sqlglot keeps as text, whose leading keywords alone decide their class."""
    words = re.findall(r"[A-Za-z_]+", text[:200].upper())
    head = " ".join(words[:4])
    if words[:1] == ["DO"] and dialect is Dialect.postgres:
        return _do_block(text)
    if words[:1] == ["LOCK"] and dialect is Dialect.postgres:
        found = _LOCK_MODE.match(text)
        table = found.group(1) if found else "?"
        mode = (found.group(2) if found and found.group(2) else "ACCESS EXCLUSIVE").upper()
        return _locking(
            Reason.explicit_lock,
            f"LOCK TABLE {table}",
            f"{mode} on {table} until the transaction ends",
        )
    if words[:1] in (
        ["BEGIN"],
        ["START"],
        ["SET"],
        ["RESET"],
        ["SHOW"],
        ["USE"],
        ["COMMIT"],
        ["ROLLBACK"],
        ["SAVEPOINT"],
        ["RELEASE"],
        ["END"],
        ["ANALYZE"],
    ):
        return _expand(Reason.session, f"{words[0]}: no schema change")
    for prefix in (
        "CREATE FUNCTION",
        "CREATE OR REPLACE FUNCTION",
        "CREATE PROCEDURE",
        "CREATE OR REPLACE PROCEDURE",
        "CREATE TRIGGER",
        "CREATE EXTENSION",
        "CREATE SCHEMA",
        "CREATE TYPE",
        "CREATE SEQUENCE",
        "CREATE DEFINER",
    ):
        if head.startswith(prefix):
            return _expand(Reason.new_object, f"{prefix.lower()}: a new object")
    if _VALIDATE.match(text):
        return _expand(
            Reason.constraint_validation,
            "VALIDATE CONSTRAINT checks existing rows under SHARE UPDATE EXCLUSIVE:"
            " reads and writes go on",
        )
    if head.startswith("RENAME TABLE"):
        return _contract(Reason.rename, "RENAME TABLE: the old version still uses the old name")
    if (
        words[:2] == ["VACUUM", "FULL"]
        or words[:1] == ["CLUSTER"]
        or (words[:1] == ["REINDEX"] and "CONCURRENTLY" not in words[:4])
    ):
        table = next((w.lower() for w in words[1:] if w not in _MAINTENANCE_WORDS), "?")
        return _locking(
            Reason.table_rewrite,
            f"{' '.join(words[:2])}: rebuilds the table",
            _table_lock(dialect, table, "it runs"),
        )
    if words[:1] in (["REINDEX"], ["VACUUM"]):
        return _expand(Reason.session, f"{words[0]} without a long lock")
    return None


def classify(statement: str, dialect: Dialect, schema: Schema | None = None) -> Verdict:
    """The class of one statement; ``schema`` (updated in place) knows the columns' types."""
    schema = schema if schema is not None else Schema()
    try:
        parsed = sqlglot.parse_one(statement, dialect=dialect.value)
    except SqlglotError as error:
        keyed = _by_keywords(dialect, statement)
        if keyed is not None:
            return keyed
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        return _unknown(Reason.unparsed, f"sqlglot cannot parse it ({first})")
    return _classify_parsed(dialect, statement, parsed, schema)


def _classify_parsed(dialect: Dialect, statement: str, parsed: exp.Expr, schema: Schema) -> Verdict:
    if isinstance(parsed, exp.Command):
        keyed = _by_keywords(dialect, statement)
        if keyed is not None:
            return keyed
        return _unknown(
            Reason.unparsed,
            f"sqlglot keeps {parsed.name.upper()} ... as text and no rule covers it",
        )
    if isinstance(parsed, exp.Alter):
        return _alter(dialect, parsed, schema)
    if isinstance(parsed, exp.Create):
        return _create(dialect, parsed, schema)
    if isinstance(parsed, exp.Drop):
        return _drop(parsed)
    if isinstance(parsed, exp.TruncateTable):
        return _contract(Reason.data_removed, "TRUNCATE removes every row the old version reads")
    if isinstance(parsed, exp.Revoke):
        return _contract(Reason.privilege_revoked, "REVOKE: the old version may lose access")
    if isinstance(parsed, exp.Grant):
        return _expand(Reason.privilege_granted, "GRANT: only adds access")
    if isinstance(parsed, exp.Comment):
        return _expand(Reason.comment, "COMMENT: documentation only")
    if isinstance(parsed, exp.Insert | exp.Update | exp.Delete | exp.Merge | exp.Copy):
        return _expand(Reason.row_change, f"{parsed.key.upper()}: changes rows, not the schema")
    if isinstance(parsed, exp.Query):
        return _expand(Reason.query, "a query: no schema change")
    if isinstance(parsed, exp.Set | exp.Transaction | exp.Commit | exp.Rollback | exp.Use):
        return _expand(Reason.session, f"{parsed.key.upper()}: no schema change")
    keyed = _by_keywords(dialect, statement)
    if keyed is not None:
        return keyed
    return _unknown(Reason.unsupported, f"no rule for {parsed.key.upper()}")


def analyze(text: str, dialect: Dialect, schema: Schema | None = None) -> list[Finding]:
    """Every statement of a script with its class, in order."""
    schema = schema if schema is not None else Schema()
    findings = []
    for statement in split_script(text, dialect):
        verdict = classify(statement.text, dialect, schema)
        findings.append(_finding(statement, verdict))
    return findings


def _finding(statement: Statement, verdict: Verdict) -> Finding:
    return Finding(
        statement=statement.text,
        line=statement.line,
        category=verdict.category,
        reason=verdict.reason,
        detail=verdict.detail,
        lock=verdict.lock,
    )


def learn_schema(texts: Sequence[str], dialect: Dialect) -> Schema:
    """The column types the CREATE TABLE statements of ``texts`` declare."""
    schema = Schema()
    for text in texts:
        analyze(text, dialect, schema)
    return schema
