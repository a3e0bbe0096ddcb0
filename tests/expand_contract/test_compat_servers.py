"""Each class ``cutover compat`` gives is proven on real servers (PostgreSQL via conftest.py,
MariaDB via mariadb.py):

* after an **expand** statement, the old version's queries still run, and the table was not
  rewritten (PostgreSQL: same file node; MariaDB: the change is accepted with
  ``ALGORITHM=INSTANT`` or ``ALGORITHM=INPLACE, LOCK=NONE``, so it neither copies nor blocks);
* after a **contract** statement, the old version's queries fail;
* a **locking** statement leaves the old version's queries working, but takes the lock it is
  reported with (PostgreSQL: seen in ``pg_locks``) or rewrites the table (a new file node), or
  MariaDB refuses to run it with ``LOCK=NONE``.

Every case first checks that the old version's queries run on v1's schema, so a failure after
the migration is the migration's doing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cutover.sqlcompat import Category, Reason, classify, learn_schema
from cutover.sqlscript import Dialect
from tests.expand_contract.conftest import psql
from tests.expand_contract.mariadb import MariaDB, fresh_database, mariadb_server

E, C, L = Category.expand, Category.contract, Category.locking

PG_V1 = """
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer_name text NOT NULL,
    status varchar(20) NOT NULL DEFAULT 'new',
    total_cents integer NOT NULL DEFAULT 0,
    coupon text
);
INSERT INTO orders (customer_name, status, total_cents, coupon)
VALUES ('Ada Lovelace', 'paid', 500, 'none'), ('Grace Hopper', 'new', 0, 'none');
"""
MARIA_V1 = """
CREATE TABLE orders (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    customer_name VARCHAR(200) NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'new',
    total_cents INT NOT NULL DEFAULT 0,
    coupon VARCHAR(20) NULL
) ENGINE=InnoDB;
INSERT INTO orders (customer_name, status, total_cents, coupon)
VALUES ('Ada Lovelace', 'paid', 500, 'none'), ('Grace Hopper', 'new', 0, 'none');
"""
# What v1 of the application runs: it knows nothing of v2's columns and leaves total_cents and
# coupon to their defaults.
OLD_QUERIES = """
INSERT INTO orders (customer_name, status) VALUES ('Ada Lovelace', 'pending');
UPDATE orders SET status = 'shipped' WHERE customer_name = 'Grace Hopper';
SELECT id, customer_name, status, total_cents, coupon FROM orders ORDER BY id;
"""

PG_CASES = [
    ("ALTER TABLE orders ADD COLUMN customer_first text", E),
    ("ALTER TABLE orders ADD COLUMN note text NOT NULL DEFAULT ''", E),
    ("ALTER TABLE orders ADD COLUMN placed_at timestamptz DEFAULT now()", E),
    ("ALTER TABLE orders ALTER COLUMN status TYPE varchar(40)", E),
    ("ALTER TABLE orders ALTER COLUMN customer_name DROP NOT NULL", E),
    ("CREATE TABLE order_notes (id bigint PRIMARY KEY, body text NOT NULL)", E),
    ("CREATE INDEX CONCURRENTLY orders_by_name ON orders (customer_name)", E),
    ("CREATE VIEW order_totals AS SELECT status, sum(total_cents) FROM orders GROUP BY 1", E),
    ("ALTER TABLE orders DROP COLUMN customer_name", C),
    ("ALTER TABLE orders RENAME COLUMN customer_name TO customer", C),
    ("ALTER TABLE orders RENAME TO purchases", C),
    ("DROP TABLE orders", C),
    ("ALTER TABLE orders ALTER COLUMN status TYPE varchar(5)", C),
    ("ALTER TABLE orders ALTER COLUMN coupon SET NOT NULL", C),
    ("ALTER TABLE orders ALTER COLUMN total_cents DROP DEFAULT", C),
    ("ALTER TABLE orders ADD CONSTRAINT positive CHECK (total_cents > 0) NOT VALID", C),
    ("CREATE UNIQUE INDEX CONCURRENTLY one_per_name ON orders (customer_name)", C),
    ("CREATE INDEX orders_by_status ON orders (status)", L),
    ("ALTER TABLE orders ALTER COLUMN total_cents TYPE bigint", L),
    ("ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid()", L),
    ("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE", L),
]


def _lock_mode(lock: str) -> str:
    """'SHARE on orders (...)' -> 'ShareLock', as pg_locks spells it."""
    words = lock.split(" on ", 1)[0].split()
    return "".join(word.capitalize() for word in words) + "Lock"


def _filenode(db: str) -> str:
    return psql(db, "-At", "-c", "SELECT pg_relation_filenode('orders')").stdout.strip()


def _old_version(db: str, check: bool = True) -> int:
    return psql(db, "-c", OLD_QUERIES, check=check).returncode


@pytest.mark.parametrize(("statement", "category"), PG_CASES, ids=[s for s, _ in PG_CASES])
def test_postgres_proves_the_class(db: str, statement: str, category: Category) -> None:
    psql(db, "-c", PG_V1)
    psql(db, "-c", f"BEGIN; {OLD_QUERIES} ROLLBACK;")  # v1 works on v1's schema
    verdict = classify(statement, Dialect.postgres, learn_schema([PG_V1], Dialect.postgres))
    assert verdict.category is category, verdict.detail

    if category is L and "CONCURRENTLY" not in statement:
        assert verdict.lock is not None
        held = psql(
            db,
            "-At",
            "-c",
            f"BEGIN; {statement}; SELECT mode FROM pg_locks WHERE locktype = 'relation'"
            " AND relation = 'orders'::regclass AND pid = pg_backend_pid(); ROLLBACK;",
        ).stdout.split()
        assert _lock_mode(verdict.lock) in held, (verdict.lock, held)

    before = _filenode(db)
    # LOCK TABLE only runs inside a transaction (and holds its lock to the end of it).
    psql(db, "-c", f"BEGIN; {statement}; COMMIT;" if statement.startswith("LOCK") else statement)
    if category is C:
        assert _old_version(db, check=False) != 0, "the old version still works after a contract"
        return
    assert _old_version(db) == 0
    rewritten = _filenode(db) != before
    assert rewritten is (verdict.reason is Reason.table_rewrite), verdict.detail


@pytest.fixture(scope="module")
def maria() -> Iterator[MariaDB]:
    with mariadb_server() as server:
        yield server


# (statement, class, a proof: the same change with a clause MariaDB refuses when the change
# would copy the table or block writes; None: the statement speaks for itself)
MARIA_CASES: list[tuple[str, Category, str | None]] = [
    ("ALTER TABLE orders ADD COLUMN customer_first VARCHAR(100) NULL", E, ", ALGORITHM=INSTANT"),
    (
        "ALTER TABLE orders ADD COLUMN note VARCHAR(50) NOT NULL DEFAULT ''",
        E,
        ", ALGORITHM=INSTANT",
    ),
    (
        "ALTER TABLE orders MODIFY status VARCHAR(40) NOT NULL DEFAULT 'new'",
        E,
        ", ALGORITHM=INSTANT",
    ),
    ("CREATE INDEX orders_by_name ON orders (customer_name)", E, " ALGORITHM=INPLACE LOCK=NONE"),
    ("CREATE TABLE order_notes (id BIGINT PRIMARY KEY, body TEXT NOT NULL)", E, None),
    ("ALTER TABLE orders DROP COLUMN customer_name", C, None),
    ("ALTER TABLE orders RENAME COLUMN customer_name TO customer", C, None),
    ("ALTER TABLE orders CHANGE COLUMN customer_name customer VARCHAR(200) NOT NULL", C, None),
    ("RENAME TABLE orders TO purchases", C, None),
    ("DROP TABLE orders", C, None),
    ("ALTER TABLE orders MODIFY status VARCHAR(5) NOT NULL DEFAULT 'new'", C, None),
    ("ALTER TABLE orders MODIFY coupon VARCHAR(20) NOT NULL", C, None),
    ("ALTER TABLE orders ADD COLUMN email VARCHAR(100) NOT NULL", C, None),
    ("CREATE UNIQUE INDEX one_per_name ON orders (customer_name)", C, None),
    ("ALTER TABLE orders MODIFY total_cents BIGINT NOT NULL DEFAULT 0", L, ", LOCK=NONE"),
    ("ALTER TABLE orders ADD INDEX by_status (status), ALGORITHM=COPY", L, None),
]


@pytest.mark.parametrize(
    ("statement", "category", "proof"), MARIA_CASES, ids=[s for s, *_ in MARIA_CASES]
)
def test_mariadb_proves_the_class(
    maria: MariaDB, statement: str, category: Category, proof: str | None
) -> None:
    db = fresh_database(maria)
    maria.run(db, MARIA_V1)
    maria.run(db, f"START TRANSACTION; {OLD_QUERIES} ROLLBACK;")  # v1 works on v1's schema
    verdict = classify(statement, Dialect.mysql, learn_schema([MARIA_V1], Dialect.mysql))
    assert verdict.category is category, verdict.detail

    if proof is not None:
        attempt = maria.run(db, statement + proof, check=False)
        if category is E:
            # Accepted: MariaDB does it without copying the table or blocking writes.
            assert attempt.returncode == 0, attempt.stderr
        else:
            assert attempt.returncode != 0 and "is not supported" in attempt.stderr
    if category is not E or proof is None:
        maria.run(db, statement)
    old = maria.run(db, OLD_QUERIES, check=False)
    if category is C:
        assert old.returncode != 0, "the old version still works after a contract"
    else:
        assert old.returncode == 0, old.stderr
