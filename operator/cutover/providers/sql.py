"""The ``sql`` provider: one read-only query against PostgreSQL or MySQL/MariaDB, one number back.

The connection URL (DSN) comes from a Secret; its scheme picks the driver: ``postgresql://`` or
``postgres://`` (psycopg 3), ``mysql://`` or ``mariadb://`` (PyMySQL). Every check opens one
connection, runs the query and closes it.

Safety, enforced by the server rather than by reading the query:

* the query runs in a read-only transaction (``BEGIN READ ONLY`` / ``START TRANSACTION READ
  ONLY``) on a session whose every transaction is read-only, so an INSERT, UPDATE, DELETE or DDL
  is refused by the server, and the transaction is rolled back afterwards;
* one statement only: PostgreSQL gets it through the extended protocol (which refuses several
  statements), PyMySQL never enables multi-statements;
* the statement timeout is the server's: ``SET LOCAL statement_timeout`` (PostgreSQL),
  ``SET SESSION max_statement_time`` (MariaDB) or ``max_execution_time`` (MySQL); the client
  gives up a little later in case the server cannot answer at all.

Result mapping: one row with one column holding a number (or a boolean, 1/0) -> its value;
no row or NULL -> :class:`NoData`; several rows or columns, a non-number, a timeout, a refused
write, a connection failure -> :class:`ProviderError`.

The DSN, its password and its user never appear in messages, reprs or logs: driver errors are
reduced to the server's own message (which carries none of them) and redacted besides.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import parse_qs, unquote, urlsplit

from cutover.api import Gate, SecretKeyRef, SqlQuery
from cutover.egress import EgressPolicy, EgressRefused, Target

from .base import GateRequest, NoData, ProviderError

if TYPE_CHECKING:
    # Imported where a query runs: the two drivers are ~17 MB of an operator's resident memory,
    # which most installs, with no sql gate, would carry for nothing.
    import psycopg
    import pymysql

__all__ = ["Engine", "SqlProvider", "SqlSource", "engine_of"]

log = logging.getLogger("cutover.gates")

# How much longer than the statement timeout the client waits for any answer.
_CLIENT_GRACE = 5.0
_MAX_MESSAGE = 300
_MYSQL_DEFAULT_PORT = 3306
_PG_DEFAULT_PORT = 5432
# Server error codes of a statement cancelled by its time limit.
_MARIADB_STATEMENT_TIMEOUT = 1969
_MYSQL_QUERY_TIMEOUT = 3024


class Engine(StrEnum):
    postgresql = "postgresql"
    mysql = "mysql"


_SCHEMES = {
    "postgresql": Engine.postgresql,
    "postgres": Engine.postgresql,
    "mysql": Engine.mysql,
    "mariadb": Engine.mysql,
}


def engine_of(dsn: str) -> Engine:
    """The engine a DSN's scheme names; ValueError (without the DSN) otherwise."""
    scheme = dsn.partition("://")[0].lower() if "://" in dsn else ""
    engine = _SCHEMES.get(scheme)
    if engine is None:
        raise ValueError(
            "the DSN is not a URL starting with postgresql://, postgres://, mysql:// or mariadb://"
        )
    return engine


class SqlProvider:
    """A :class:`~cutover.providers.base.MetricProvider` running ``query(sql)`` on one database."""

    kind = "sql"

    def __init__(
        self,
        *,
        dsn: str,
        timeout: float = 5.0,
        egress: EgressPolicy | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self.engine = engine_of(dsn)
        self.timeout = float(timeout)
        self._dsn = dsn
        self._egress = egress
        self._secrets = _secret_parts(dsn)

    def __repr__(self) -> str:  # the DSN stays out of reprs
        return f"SqlProvider(engine={self.engine.value!r}, timeout={self.timeout:g})"

    def query(self, sql: str) -> float:
        try:
            if self.engine is Engine.postgresql:
                return self._postgres(sql)
            return self._mysql(sql)
        except ProviderError as error:
            raise ProviderError(self._redact(error.message), error_type=error.error_type) from None
        except NoData as error:
            raise NoData(self._redact(str(error))) from None

    def query_range(
        self, promql: str, start: datetime, end: datetime, step_seconds: float
    ) -> list[float]:
        raise ProviderError("an sql gate cannot read past values", error_type="unsupported")

    def check_query(self, promql: str) -> None:
        """Nothing checked ahead: only the server knows whether the query is valid."""

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        return text[:_MAX_MESSAGE]

    # --- PostgreSQL ---

    def _postgres(self, sql: str) -> float:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        try:
            params = conninfo_to_dict(self._dsn)
        except psycopg.ProgrammingError:
            _fail("the DSN is not a valid PostgreSQL connection URL", "bad_dsn")
        params.update(self._pg_address(params))
        params["connect_timeout"] = max(1, math.ceil(self.timeout))
        # Every transaction of this session is read-only, not only the one we open.
        options = f"{params.get('options') or ''} -c default_transaction_read_only=on"
        params["options"] = options.strip()
        params.setdefault("application_name", "cutover-gate")
        timeout_ms = max(1, int(self.timeout * 1000))
        try:
            with psycopg.connect(make_conninfo("", **params), autocommit=True) as conn:
                conn.execute("BEGIN TRANSACTION READ ONLY")
                conn.execute(f"SET LOCAL statement_timeout = {timeout_ms}")
                try:
                    # prepare=True: the extended protocol, so the server refuses a second
                    # statement (one that could COMMIT and write in a new transaction).
                    cursor = conn.execute(sql.encode(), prepare=True)
                    rows = cursor.fetchmany(2) if cursor.description else []
                    width = len(cursor.description or ())
                finally:
                    if not conn.broken:
                        with contextlib.suppress(psycopg.Error):
                            conn.execute("ROLLBACK")
        except psycopg.errors.QueryCanceled:
            _fail(
                f"the query ran longer than its timeout ({self.timeout:g}s) and the server"
                " cancelled it",
                "timeout",
            )
        except psycopg.errors.ReadOnlySqlTransaction as error:
            _fail(f"the server refused a write in the read-only gate query: {_pg(error)}", "write")
        except psycopg.OperationalError as error:
            _fail(f"cannot connect to the database: {_pg_connection(error)}", "connection")
        except psycopg.Error as error:
            _fail(f"the database refused the query: {_pg(error)}", "query")
        return _one_number(rows, width)

    def _pg_address(self, params: Mapping[str, Any]) -> dict[str, str]:
        """``hostaddr`` set to an address the outbound policy checked (TLS still verifies the
        host name); nothing for a Unix socket, which is no network address."""
        host = str(params.get("host") or "")
        if "," in host or "," in str(params.get("hostaddr") or ""):
            _fail("the DSN names several hosts; an sql gate asks exactly one", "bad_dsn")
        if not host or host.startswith("/") or params.get("hostaddr"):
            if params.get("hostaddr") and self._egress is not None:
                port = int(params.get("port") or _PG_DEFAULT_PORT)
                target = Target("postgresql", str(params["hostaddr"]), port)
                self._egress.check_name(target)
            return {}
        if self._egress is None:  # libpq resolves the name itself
            return {}
        port = int(params.get("port") or _PG_DEFAULT_PORT)
        addresses = self._resolve(Target("postgresql", host.lower(), port))
        # libpq tries each (host, hostaddr) pair in turn: every checked address, one name.
        return {"host": ",".join([host] * len(addresses)), "hostaddr": ",".join(addresses)}

    # --- MySQL / MariaDB ---

    def _mysql(self, sql: str) -> float:
        import pymysql

        options = self._mysql_options()
        client_timeout = self.timeout + _CLIENT_GRACE
        try:
            conn = pymysql.connect(
                **options,
                connect_timeout=max(1, math.ceil(self.timeout)),
                read_timeout=client_timeout,
                write_timeout=client_timeout,
                autocommit=True,
                program_name="cutover-gate",
            )
        except pymysql.MySQLError as error:
            _fail(f"cannot connect to the database: {_mysql_connection(error)}", "connection")
        try:
            with conn.cursor() as cursor:
                if "mariadb" in str(getattr(conn, "server_version", "")).lower():
                    cursor.execute(f"SET SESSION max_statement_time = {self.timeout:g}")
                else:
                    timeout_ms = max(1, int(self.timeout * 1000))
                    cursor.execute(f"SET SESSION max_execution_time = {timeout_ms}")
                # A statement that commits implicitly (DDL) ends our transaction: the session's
                # next one is read-only too.
                cursor.execute("SET SESSION TRANSACTION READ ONLY")
                cursor.execute("START TRANSACTION READ ONLY")
                cursor.execute(sql)
                rows = list(cursor.fetchmany(2)) if cursor.description else []
                width = len(cursor.description or ())
                cursor.execute("ROLLBACK")
        except pymysql.MySQLError as error:
            code = error.args[0] if error.args and isinstance(error.args[0], int) else None
            if code in (_MARIADB_STATEMENT_TIMEOUT, _MYSQL_QUERY_TIMEOUT):
                _fail(
                    f"the query ran longer than its timeout ({self.timeout:g}s) and the server"
                    " cancelled it",
                    "timeout",
                )
            if code == 1792:  # ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
                _fail(
                    f"the server refused a write in the read-only gate query: {_mysql(error)}",
                    "write",
                )
            if isinstance(error, pymysql.OperationalError) and code in (2006, 2013):
                _fail(
                    f"the database did not answer within {client_timeout:g}s ({_mysql(error)})",
                    "client_timeout",
                )
            _fail(f"the database refused the query: {_mysql(error)}", "query")
        finally:
            conn.close()
        return _one_number(rows, width)

    def _mysql_options(self) -> dict[str, Any]:
        try:
            parts = urlsplit(self._dsn)
            port = parts.port
        except ValueError:
            _fail("the DSN is not a valid MySQL connection URL", "bad_dsn")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        options: dict[str, Any] = {
            "user": unquote(parts.username or ""),
            "password": unquote(parts.password or ""),
            "database": unquote(parts.path.lstrip("/")) or None,
            "charset": query.get("charset", "utf8mb4"),
        }
        if "unix_socket" in query:  # a local socket is no network address
            options["unix_socket"] = query["unix_socket"]
            return options
        host = (parts.hostname or "").rstrip(".")
        if not host:
            _fail("the DSN names no host (nor a unix_socket)", "bad_dsn")
        port = port or _MYSQL_DEFAULT_PORT
        options["host"] = self._resolve(Target("mysql", host, port))[0]
        options["port"] = port
        return options

    def _resolve(self, target: Target) -> list[str]:
        """The addresses of ``target`` the outbound policy accepted, or its name without one."""
        if self._egress is None:
            return [target.host]
        try:
            return self._egress.resolve(target)
        except EgressRefused:
            raise
        except OSError:
            _fail(f"cannot resolve the database host {target.host}", "connection")


def _one_number(rows: list[Any], width: int) -> float:
    if width == 0:
        _fail("the statement returned no result set; a gate query is a SELECT", "bad_response")
    if width > 1:
        _fail(f"the query returned {width} columns; a gate query returns one", "bad_response")
    if not rows:
        raise NoData("the query returned no row")
    if len(rows) > 1:
        _fail("the query returned several rows; a gate query returns one", "bad_response")
    value = rows[0][0]
    if value is None:
        raise NoData("the query returned NULL")
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float | Decimal):
        number = float(value)
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            _fail(
                f"the query returned {type(value).__name__} {str(value)[:40]!r}, not a number",
                "bad_response",
            )
    if math.isnan(number):
        raise NoData("the query returned NaN")
    return number


def _secret_parts(dsn: str) -> tuple[str, ...]:
    """The DSN and the parts of it no message may show (password, user), longest first."""
    parts = [dsn]
    try:
        split = urlsplit(dsn)
        for part in (split.password, split.username):
            if part and len(part) >= 3:
                parts.extend({part, unquote(part)})
    except ValueError:
        pass
    return tuple(sorted(set(parts), key=len, reverse=True))


def _pg(error: psycopg.Error) -> str:
    """The server's own message (no connection details), or the error's class."""
    diag = getattr(error, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    return str(primary) if primary else type(error).__name__


def _pg_connection(error: psycopg.OperationalError) -> str:
    text = str(error)
    for marker, said in (
        ("Connection refused", "connection refused"),
        ("timeout expired", "connection timed out"),
        ("password authentication failed", "authentication failed"),
        ("does not exist", "the database or role does not exist"),
        ("no pg_hba.conf entry", "the server does not accept this client (pg_hba.conf)"),
    ):
        if marker in text:
            return said
    return _pg(error)


def _mysql(error: pymysql.MySQLError) -> str:
    args = error.args
    if len(args) >= 2 and isinstance(args[1], str):
        return f"{args[1]} (error {args[0]})"
    return type(error).__name__


def _mysql_connection(error: pymysql.MySQLError) -> str:
    code = error.args[0] if error.args and isinstance(error.args[0], int) else None
    if code == 1045:
        return "authentication failed"
    if code == 1049:
        return "the database does not exist"
    if code == 2003:
        return "cannot reach the server (refused or timed out)"
    return f"error {code}" if code is not None else type(error).__name__


def _fail(message: str, error_type: str) -> NoReturn:
    raise ProviderError(message, error_type=error_type) from None


def _block(gate: Gate) -> SqlQuery:
    if gate.sql is None:
        raise ValueError(f"gate {gate.name!r} has no sql block")
    return gate.sql


class SqlSource:
    """The ``sql:`` block of a gate: a query with variables, and the DSN from a Secret."""

    kind = "sql"
    checks_query = False

    def templates(self, gate: Gate) -> list[tuple[str, str]]:
        return [("sql.query", _block(gate).query)]

    def request(self, gate: Gate, rendered: Mapping[str, str]) -> GateRequest:
        # The address is in the Secret: the provider checks it against the outbound policy
        # when it connects.
        return GateRequest(query=rendered["sql.query"])

    def syntax_problem(self, field: str, text: str) -> str | None:
        return None

    def secret_refs(self, gate: Gate) -> list[tuple[str, SecretKeyRef]]:
        return [("dsn", _block(gate).dsn)]

    def client_options(self, gate: Gate, secrets: Mapping[str, str]) -> dict[str, Any]:
        return {"dsn": secrets["dsn"]}

    def describe(self, gate: Gate, request: GateRequest) -> str:
        ref = _block(gate).dsn
        query = " ".join(request.query.split())
        return f"{query} (DSN from Secret {ref.name}, key {ref.key})"
