"""The expand-contract example's SQL, run against a real PostgreSQL (see conftest.py).

Each test starts from v1's schema (examples/expand-contract/schema/orders-v1.sql) with seeded
orders in a fresh database, and runs the hook files exactly as the Jobs do:
``psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f <file>``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from cutover.api import SqlQuery, parse_spec
from cutover.durations import parse_duration
from cutover.providers import SqlProvider
from tests.expand_contract.conftest import psql

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "expand-contract"
SQL = EXAMPLE / "sql"
SCHEMA_V1 = EXAMPLE / "schema" / "orders-v1.sql"

NULL = "<NULL>"
Row = tuple[str | None, ...]

# Names chosen to break naive split/join: no space, several spaces, leading, trailing and double
# spaces, empty, NULL (guest checkout).
SPECIAL_NAMES = [
    "Ada Lovelace",
    "Cher",
    "Mary Ann Smith",
    " Leading",
    "Trailing ",
    "Double  Space",
    "",
    None,
    "José Ñúñez",
]
GENERATED = 3000  # plus the special names: several chunks at chunk_size=500
V1_COLUMNS = ["id", "customer_name", "total_cents", "status", "created_at"]


def literal(value: str | None) -> str:
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


def hook(db: str, name: str, *variables: str) -> subprocess.CompletedProcess[str]:
    """Run one hook file like its Job does; the caller checks the exit code."""
    args: list[str] = []
    for variable in variables:
        args += ["-v", variable]
    return psql(db, *args, "-f", str(SQL / name), check=False)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stderr


def ok_twice(db: str, name: str) -> None:
    """Runs hook ``name`` twice, as a retried Job would: a hook is idempotent, both succeed."""
    ok(hook(db, name))
    ok(hook(db, name))


def v2_write_then_run_twice(db: str, name: str, snapshot: str) -> tuple[str, list[Row]]:
    """v2 writes Alan Turing, then hook ``name`` runs twice (:func:`ok_twice`); Alan's id and
    the rows ``snapshot`` selected before the hook ran."""
    alan = v2_write(db, "Alan", "Turing")
    before = query(db, snapshot)
    ok_twice(db, name)
    return alan, before


def failed(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, f"expected a failure\n{result.stderr}"
    return result.stderr


def query(db: str, sql: str) -> list[Row]:
    out = psql(db, "-At", "-F", "\x1f", "-P", f"null={NULL}", "-c", sql).stdout
    return [
        tuple(None if cell == NULL else cell for cell in line.split("\x1f"))
        for line in out.splitlines()
    ]


def scalar(db: str, sql: str) -> str | None:
    rows = query(db, sql)
    assert len(rows) == 1 and len(rows[0]) == 1, rows
    return rows[0][0]


def tamper(db: str, sql: str) -> None:
    """Edit data behind the trigger's back, as a buggy writer or a lost write would."""
    psql(db, "-c", f"SET session_replication_role = replica; {sql}")


def columns(db: str) -> list[str]:
    rows = query(
        db,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'orders'"
        " ORDER BY ordinal_position",
    )
    return [str(r[0]) for r in rows]


def helper_objects(db: str) -> list[Row]:
    """Functions and triggers the expand step creates."""
    return query(
        db,
        "SELECT proname FROM pg_proc WHERE proname LIKE 'orders\\_%'"
        " UNION ALL SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1",
    )


def v1_write(db: str, name: str | None) -> str:
    return str(
        scalar(
            db,
            f"INSERT INTO orders (customer_name, total_cents) VALUES ({literal(name)}, 1500)"
            " RETURNING id",
        )
    )


def v2_write(db: str, first: str | None, last: str | None) -> str:
    return str(
        scalar(
            db,
            "INSERT INTO orders (customer_first, customer_last, total_cents)"
            f" VALUES ({literal(first)}, {literal(last)}, 2500) RETURNING id",
        )
    )


def names(db: str, order_id: str) -> Row:
    return query(
        db, f"SELECT customer_name, customer_first, customer_last FROM orders WHERE id = {order_id}"
    )[0]


@pytest.fixture
def v1(db: str) -> str:
    """A database as v1 left it: the v1 schema and a few thousand orders."""
    values = ", ".join(f"({literal(n)}, {i * 100})" for i, n in enumerate(SPECIAL_NAMES))
    seed = (
        f"INSERT INTO orders (customer_name, total_cents) VALUES {values};"
        " INSERT INTO orders (customer_name, total_cents, status)"
        " SELECT CASE WHEN i % 97 = 0 THEN NULL"
        "             WHEN i % 13 = 0 THEN 'Solo' || i"
        "             ELSE 'First' || i || ' Last ' || i END,"
        "        i, CASE WHEN i % 2 = 0 THEN 'shipped' ELSE 'placed' END"
        f" FROM generate_series(1, {GENERATED}) AS i"
    )
    psql(db, "-f", str(SCHEMA_V1), "-c", seed)
    return db


@pytest.fixture
def expanded(v1: str) -> str:
    ok(hook(v1, "expand.sql"))
    return v1


# --- expand -------------------------------------------------------------------------------------


def test_expand_adds_columns_and_backfills(v1: str) -> None:
    stderr = ok(hook(v1, "expand.sql"))
    assert f"backfilled {len(SPECIAL_NAMES) - 1 + GENERATED - GENERATED // 97} rows" in stderr
    assert columns(v1) == [*V1_COLUMNS, "customer_first", "customer_last"]
    got = dict(
        (r[0], r[1:])
        for r in query(v1, "SELECT customer_name, customer_first, customer_last FROM orders")
        if r[0] is not None and not r[0].startswith(("First", "Solo"))
    )
    assert got == {
        "Ada Lovelace": ("Ada", "Lovelace"),
        "Cher": ("Cher", None),
        "Mary Ann Smith": ("Mary", "Ann Smith"),
        " Leading": ("", "Leading"),
        "Trailing ": ("Trailing", ""),
        "Double  Space": ("Double", " Space"),
        "": ("", None),
        "José Ñúñez": ("José", "Ñúñez"),
    }
    guests = query(
        v1, "SELECT customer_first, customer_last FROM orders WHERE customer_name IS NULL"
    )
    assert guests and set(guests) == {(None, None)}


def test_expand_is_idempotent(v1: str) -> None:
    ok(hook(v1, "expand.sql"))
    snapshot = query(v1, "SELECT * FROM orders ORDER BY id")
    objects = helper_objects(v1)

    stderr = ok(hook(v1, "expand.sql"))

    assert "backfilled 0 rows" in stderr
    assert query(v1, "SELECT * FROM orders ORDER BY id") == snapshot
    assert helper_objects(v1) == objects
    assert [r[0] for r in objects] == [
        "orders_dual_write",  # the function
        "orders_dual_write",  # the trigger
        "orders_first_name",
        "orders_join_name",
        "orders_last_name",
    ]
    assert columns(v1) == [*V1_COLUMNS, "customer_first", "customer_last"]


def test_split_then_join_gives_back_every_name(expanded: str) -> None:
    assert (
        scalar(
            expanded,
            "SELECT count(*) FROM orders WHERE customer_name IS DISTINCT FROM"
            " orders_join_name(orders_first_name(customer_name), orders_last_name(customer_name))",
        )
        == "0"
    )


# --- reconcile ----------------------------------------------------------------------------------


def test_reconcile_passes_after_expand_and_backfill(expanded: str) -> None:
    stderr = ok(hook(expanded, "reconcile.sql", "chunk_size=500"))
    assert "missing in target: 0, extra in target: 0, checksum mismatches: 0 of 7 chunks" in stderr


def test_reconcile_detects_rows_missing_in_target(expanded: str) -> None:
    tamper(
        expanded, "UPDATE orders SET customer_first = NULL, customer_last = NULL WHERE id IN (1, 3)"
    )
    stderr = failed(hook(expanded, "reconcile.sql"))
    assert "reconcile-data failed: missing in target: 2, extra in target: 0" in stderr


def test_reconcile_detects_rows_extra_in_target(expanded: str) -> None:
    tamper(expanded, "UPDATE orders SET customer_name = NULL WHERE id = 2")
    tamper(
        expanded,
        "INSERT INTO orders (customer_first, customer_last, total_cents) VALUES ('New', 'Only', 1)",
    )
    stderr = failed(hook(expanded, "reconcile.sql"))
    assert "reconcile-data failed: missing in target: 0, extra in target: 2" in stderr


def example_sql_gate() -> SqlQuery:
    manifest = yaml.safe_load((EXAMPLE / "migration.yaml").read_text())
    spec = parse_spec(manifest["spec"])
    (gate,) = [g for g in spec.gates if g.sql is not None]
    assert gate.threshold is not None and gate.threshold.max == 0
    assert gate.sql is not None
    return gate.sql


def test_the_examples_sql_gate_counts_rows_missing_or_extra_in_target(expanded: str) -> None:
    gate = example_sql_gate()
    provider = SqlProvider(dsn=expanded, timeout=parse_duration(gate.timeout))
    assert provider.query(gate.query) == 0

    tamper(
        expanded, "UPDATE orders SET customer_first = NULL, customer_last = NULL WHERE id IN (1, 3)"
    )
    tamper(
        expanded,
        "INSERT INTO orders (customer_first, customer_last, total_cents) VALUES ('New', 'Only', 1)",
    )

    assert provider.query(gate.query) == 3


def test_reconcile_detects_changed_rows_by_checksum(expanded: str) -> None:
    tamper(expanded, "UPDATE orders SET customer_last = 'Smyth' WHERE id = 1234")
    stderr = failed(hook(expanded, "reconcile.sql", "chunk_size=500"))
    assert (
        "missing in target: 0, extra in target: 0, checksum mismatches: 1 of 7 chunks"
        " (first: ids 1001..1500)" in stderr
    )
    # The key range narrows the check: the changed row is outside 1..1000.
    stderr = ok(hook(expanded, "reconcile.sql", "chunk_size=500", "id_from=1", "id_to=1000"))
    assert "ids 1..1000: missing in target: 0, extra in target: 0" in stderr


def test_reconcile_sees_a_difference_in_the_old_column_too(expanded: str) -> None:
    tamper(expanded, "UPDATE orders SET customer_name = 'Ada King' WHERE id = 1")
    stderr = failed(hook(expanded, "reconcile.sql"))
    assert "checksum mismatches: 1 of 1 chunks (first: ids 1.." in stderr


# --- dual-write trigger -------------------------------------------------------------------------


def test_dual_write_keeps_both_sides_in_sync(expanded: str) -> None:
    db = expanded
    # v1-style inserts: only customer_name.
    grace = v1_write(db, "Grace Hopper")
    assert names(db, grace) == ("Grace Hopper", "Grace", "Hopper")
    guest = v1_write(db, None)
    assert names(db, guest) == (None, None, None)
    # v2-style inserts: only the new columns.
    alan = v2_write(db, "Alan", "Turing")
    assert names(db, alan) == ("Alan Turing", "Alan", "Turing")
    assert names(db, v2_write(db, "Prince", None)) == ("Prince", "Prince", None)
    assert names(db, v2_write(db, "Mary Ann", "Evans")) == ("Mary Ann Evans", "Mary Ann", "Evans")
    # v1-style update of a row v2 wrote, v2-style update of a row v1 wrote.
    psql(db, "-c", f"UPDATE orders SET customer_name = 'Alan M. Turing' WHERE id = {alan}")
    assert names(db, alan) == ("Alan M. Turing", "Alan", "M. Turing")
    psql(db, "-c", f"UPDATE orders SET customer_last = 'Hopper-Murray' WHERE id = {grace}")
    assert names(db, grace) == ("Grace Hopper-Murray", "Grace", "Hopper-Murray")
    # Clearing either side clears the other.
    psql(
        db,
        "-c",
        f"UPDATE orders SET customer_first = NULL, customer_last = NULL WHERE id = {grace}",
    )
    assert names(db, grace) == (None, None, None)
    psql(db, "-c", f"UPDATE orders SET customer_name = 'Named Later' WHERE id = {guest}")
    assert names(db, guest) == ("Named Later", "Named", "Later")
    psql(db, "-c", f"UPDATE orders SET customer_name = NULL WHERE id = {alan}")
    assert names(db, alan) == (None, None, None)
    # Updates that touch neither side (v1 and v2 both ship orders) leave the names alone.
    psql(db, "-c", "UPDATE orders SET status = 'shipped' WHERE id <= 5")
    assert names(db, "1") == ("Ada Lovelace", "Ada", "Lovelace")

    ok(hook(db, "reconcile.sql"))


def test_any_update_backfills_a_row_the_backfill_missed(expanded: str) -> None:
    tamper(expanded, "UPDATE orders SET customer_first = NULL, customer_last = NULL WHERE id = 1")
    failed(hook(expanded, "reconcile.sql"))
    psql(expanded, "-c", "UPDATE orders SET status = 'shipped' WHERE id = 1")
    assert names(expanded, "1") == ("Ada Lovelace", "Ada", "Lovelace")
    ok(hook(expanded, "reconcile.sql"))


# --- onRollback ---------------------------------------------------------------------------------


def test_undo_expand_restores_the_v1_schema_without_losing_v2_writes(expanded: str) -> None:
    db = expanded
    alan, before = v2_write_then_run_twice(
        db,
        "undo-expand.sql",
        "SELECT id, customer_name, total_cents, status FROM orders ORDER BY id",
    )

    assert columns(db) == V1_COLUMNS
    assert helper_objects(db) == []
    assert query(db, "SELECT id, customer_name, total_cents, status FROM orders ORDER BY id") == (
        before
    )
    assert scalar(db, f"SELECT customer_name FROM orders WHERE id = {alan}") == "Alan Turing"
    # v1 still works.
    order = v1_write(db, "Grace Hopper")
    psql(db, "-c", f"UPDATE orders SET customer_name = 'Grace B. Hopper' WHERE id = {order}")
    assert scalar(db, f"SELECT customer_name FROM orders WHERE id = {order}") == "Grace B. Hopper"
    # A retried Migration expands again from here.
    ok(hook(db, "expand.sql"))
    ok(hook(db, "reconcile.sql"))


# --- contract -----------------------------------------------------------------------------------


def test_contract_drops_the_old_column_and_v2_still_works(expanded: str) -> None:
    db = expanded
    alan, before = v2_write_then_run_twice(
        db, "contract.sql", "SELECT id, customer_first, customer_last FROM orders ORDER BY id"
    )

    assert columns(db) == [c for c in V1_COLUMNS if c != "customer_name"] + [
        "customer_first",
        "customer_last",
    ]
    assert helper_objects(db) == []
    assert query(db, "SELECT id, customer_first, customer_last FROM orders ORDER BY id") == before
    # v2 reads and writes as before.
    order = v2_write(db, "Grace", "Hopper")
    psql(db, "-c", f"UPDATE orders SET customer_last = 'Hopper-Murray' WHERE id = {order}")
    assert query(
        db,
        "SELECT customer_first, customer_last FROM orders"
        f" WHERE id IN ({alan}, {order}) ORDER BY id",
    ) == [("Alan", "Turing"), ("Grace", "Hopper-Murray")]
    # ... and v1 cannot come back: this is the point of no return.
    v1_attempt = psql(
        db, "-c", "INSERT INTO orders (customer_name, total_cents) VALUES ('X', 1)", check=False
    )
    assert 'column "customer_name" of relation "orders" does not exist' in failed(v1_attempt)


def test_contract_refuses_to_drop_data_the_new_columns_lack(expanded: str) -> None:
    tamper(expanded, "UPDATE orders SET customer_first = NULL, customer_last = NULL WHERE id = 1")
    stderr = failed(hook(expanded, "contract.sql"))
    assert "contract-schema refused: 1 rows hold a customer_name" in stderr
    assert "customer_name" in columns(expanded)  # nothing was dropped
    assert len(helper_objects(expanded)) == 5
