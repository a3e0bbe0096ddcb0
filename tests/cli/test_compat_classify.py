"""Statement by statement: the class, reason and lock ``cutover compat`` gives PostgreSQL and MySQL
DDL, and how scripts are split into statements with their lines. Pure: no database.

What each class claims is proven against real servers in
tests/expand_contract/test_compat_servers.py.
"""

from __future__ import annotations

import pytest

from cutover.sqlcompat import Category, Reason, Schema, analyze, classify, learn_schema
from cutover.sqlscript import Dialect, split_script

PG, MY = Dialect.postgres, Dialect.mysql
E, C, L, U = Category.expand, Category.contract, Category.locking, Category.unknown

CASES = [
    # PostgreSQL: expand
    (PG, "ALTER TABLE orders ADD COLUMN IF NOT EXISTS customer_first text", E, Reason.new_column),
    (PG, "ALTER TABLE orders ADD COLUMN note text NOT NULL DEFAULT ''", E, Reason.new_column),
    (PG, "ALTER TABLE orders ADD COLUMN at timestamptz DEFAULT now()", E, Reason.new_column),
    (PG, "ALTER TABLE orders ADD COLUMN tax int CHECK (tax >= 0)", E, Reason.new_column),
    (
        PG,
        "ALTER TABLE orders ADD COLUMN ref bigint REFERENCES customers (id)",
        E,
        Reason.new_column,
    ),
    (PG, "CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL)", E, Reason.new_table),
    (PG, "CREATE INDEX CONCURRENTLY orders_name ON orders (customer_name)", E, Reason.online_index),
    (
        PG,
        "CREATE OR REPLACE FUNCTION f(a text) RETURNS text LANGUAGE sql RETURN a",
        E,
        Reason.new_object,
    ),
    (
        PG,
        "CREATE OR REPLACE TRIGGER t BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION f()",
        E,
        Reason.new_object,
    ),
    (PG, "CREATE VIEW v AS SELECT id FROM orders", E, Reason.new_object),
    (PG, "ALTER TABLE orders ALTER COLUMN note DROP NOT NULL", E, Reason.drop_not_null),
    (PG, "ALTER TABLE orders ALTER COLUMN note SET DEFAULT 'x'", E, Reason.set_default),
    (PG, "ALTER TABLE orders VALIDATE CONSTRAINT c", E, Reason.constraint_validation),
    (PG, "UPDATE orders SET a = b WHERE a IS NULL", E, Reason.row_change),
    (PG, "INSERT INTO orders (a) VALUES (1)", E, Reason.row_change),
    (PG, "SELECT count(*) FROM orders", E, Reason.query),
    (PG, "SET lock_timeout = '5s'", E, Reason.session),
    (PG, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", E, Reason.session),
    (PG, "COMMIT", E, Reason.session),
    (PG, "GRANT SELECT ON orders TO reporting", E, Reason.privilege_granted),
    (
        PG,
        "DO $$ BEGIN UPDATE orders SET a = 1; RAISE NOTICE 'no drop here'; END $$",
        E,
        Reason.procedural_block,
    ),
    # PostgreSQL: contract
    (PG, "ALTER TABLE orders DROP COLUMN IF EXISTS customer_name", C, Reason.drop_column),
    (PG, "ALTER TABLE orders RENAME COLUMN customer_name TO customer", C, Reason.rename),
    (PG, "ALTER TABLE orders RENAME TO purchases", C, Reason.rename),
    (PG, "DROP TABLE orders", C, Reason.drop_table),
    (PG, "DROP FUNCTION IF EXISTS orders_join_name(text, text)", C, Reason.drop_object),
    (PG, "DROP TRIGGER IF EXISTS orders_dual_write ON orders", C, Reason.drop_object),
    (PG, "DROP INDEX CONCURRENTLY orders_name", C, Reason.drop_object),
    (PG, "ALTER TABLE orders DROP CONSTRAINT orders_pkey", C, Reason.drop_object),
    (PG, "ALTER TABLE orders ADD COLUMN email text NOT NULL", C, Reason.not_null_without_default),
    (PG, "ALTER TABLE orders ALTER COLUMN coupon SET NOT NULL", C, Reason.set_not_null),
    (PG, "ALTER TABLE orders ALTER COLUMN total DROP DEFAULT", C, Reason.drop_default),
    (
        PG,
        "ALTER TABLE orders ADD CONSTRAINT pos CHECK (total > 0) NOT VALID",
        C,
        Reason.new_constraint,
    ),
    (PG, "CREATE UNIQUE INDEX CONCURRENTLY u ON orders (customer_name)", C, Reason.new_constraint),
    (PG, "ALTER TABLE orders ADD COLUMN tax int CHECK (total > 0)", C, Reason.new_constraint),
    (PG, "TRUNCATE orders", C, Reason.data_removed),
    (PG, "REVOKE SELECT ON orders FROM app", C, Reason.privilege_revoked),
    # PostgreSQL: locking
    (PG, "CREATE INDEX orders_status ON orders (status)", L, Reason.index_build_lock),
    (
        PG,
        "ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid()",
        L,
        Reason.table_rewrite,
    ),
    (PG, "ALTER TABLE orders ADD COLUMN n bigserial", L, Reason.table_rewrite),
    (PG, "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE", L, Reason.explicit_lock),
    (PG, "VACUUM FULL orders", L, Reason.table_rewrite),
    (PG, "CLUSTER orders USING orders_pkey", L, Reason.table_rewrite),
    (PG, "REINDEX TABLE orders", L, Reason.table_rewrite),
    (PG, "REINDEX TABLE CONCURRENTLY orders", E, Reason.session),
    (PG, "ALTER TABLE orders SET TABLESPACE slow", L, Reason.table_rewrite),
    # PostgreSQL: unknown, never guessed
    (PG, "ALTER TABLE orders ALTER COLUMN total TYPE bigint", U, Reason.type_unknown),
    (
        PG,
        "ALTER TABLE orders ADD COLUMN n int DEFAULT next_number()",
        U,
        Reason.default_volatility_unknown,
    ),
    (PG, "DO $$ BEGIN EXECUTE 'DROP TABLE ' || 'orders'; END $$", U, Reason.procedural_ddl),
    (PG, "FROBNICATE orders", U, Reason.unsupported),
    (PG, "ALTER TABLE orders DROP COLUMN a, VALIDATE CONSTRAINT c", U, Reason.unparsed),
    (PG, "ALTER TABLE orders ADD COLUMN (", U, Reason.unparsed),
    # MySQL: expand
    (
        MY,
        "ALTER TABLE orders ADD COLUMN customer_first VARCHAR(100) NULL AFTER id",
        E,
        Reason.new_column,
    ),
    (MY, "CREATE INDEX orders_name ON orders (customer_name)", E, Reason.online_index),
    (
        MY,
        "ALTER TABLE orders ADD INDEX i (c), ALGORITHM=INPLACE, LOCK=NONE",
        E,
        Reason.online_index,
    ),
    (
        MY,
        "CREATE TABLE notes (id BIGINT AUTO_INCREMENT PRIMARY KEY) ENGINE=InnoDB",
        E,
        Reason.new_table,
    ),
    (
        MY,
        "CREATE TRIGGER t BEFORE INSERT ON orders FOR EACH ROW SET NEW.a = 1",
        E,
        Reason.new_object,
    ),
    (MY, "ALTER TABLE orders ADD COLUMN g INT AS (a + 1) VIRTUAL", E, Reason.new_column),
    (MY, "START TRANSACTION", E, Reason.session),
    # MySQL: contract
    (MY, "ALTER TABLE orders DROP COLUMN customer_name", C, Reason.drop_column),
    (MY, "ALTER TABLE orders CHANGE COLUMN customer_name customer VARCHAR(200)", C, Reason.rename),
    (MY, "ALTER TABLE orders RENAME COLUMN a TO b", C, Reason.rename),
    (MY, "RENAME TABLE orders TO purchases", C, Reason.rename),
    (MY, "DROP TABLE IF EXISTS orders", C, Reason.drop_table),
    (MY, "ALTER TABLE orders ADD COLUMN n INT NOT NULL", C, Reason.not_null_without_default),
    (MY, "CREATE UNIQUE INDEX u ON orders (customer_name)", C, Reason.new_constraint),
    # MySQL: locking
    (MY, "ALTER TABLE orders ADD COLUMN n INT AUTO_INCREMENT UNIQUE", L, Reason.table_rewrite),
    (MY, "ALTER TABLE orders ADD INDEX i (c), ALGORITHM=COPY", L, Reason.table_rewrite),
    (MY, "ALTER TABLE orders ADD COLUMN g INT AS (a + 1) STORED", L, Reason.table_rewrite),
    # MySQL: unknown
    (MY, "ALTER TABLE orders MODIFY COLUMN total BIGINT", U, Reason.type_unknown),
    (MY, "ALTER TABLE orders MODIFY COLUMN coupon VARCHAR(20) NOT NULL", U, Reason.type_unknown),
]


@pytest.mark.parametrize(
    ("dialect", "statement", "category", "reason"),
    CASES,
    ids=[f"{d.value}:{s[:60]}" for d, s, *_ in CASES],
)
def test_each_statement_gets_its_class_and_reason(
    dialect: Dialect, statement: str, category: Category, reason: Reason
) -> None:
    verdict = classify(statement, dialect)
    assert (verdict.category, verdict.reason) == (category, reason), verdict.detail


V1 = {
    PG: "CREATE TABLE orders (id bigint, status varchar(20), total integer, price numeric(10,2),"
    " note text);",
    MY: "CREATE TABLE orders (id BIGINT, status VARCHAR(20), total INT NOT NULL, big VARCHAR(300),"
    " coupon VARCHAR(20));",
}

TYPE_CHANGES = [
    (PG, "ALTER TABLE orders ALTER COLUMN status TYPE varchar(40)", E),
    (PG, "ALTER TABLE orders ALTER COLUMN status TYPE text", E),
    (PG, "ALTER TABLE orders ALTER COLUMN price TYPE numeric(12,2)", E),
    (PG, "ALTER TABLE orders ALTER COLUMN total TYPE bigint", L),
    (PG, "ALTER TABLE orders ALTER COLUMN status TYPE varchar(5)", C),
    (PG, "ALTER TABLE orders ALTER COLUMN note TYPE varchar(50)", C),
    (PG, "ALTER TABLE orders ALTER COLUMN total TYPE smallint", C),
    (PG, "ALTER TABLE orders ALTER COLUMN price TYPE numeric(12,3)", C),
    (PG, "ALTER TABLE orders ALTER COLUMN total TYPE text", C),
    (MY, "ALTER TABLE orders MODIFY status VARCHAR(40)", E),
    (MY, "ALTER TABLE orders MODIFY big VARCHAR(400)", E),
    (MY, "ALTER TABLE orders MODIFY status VARCHAR(100)", L),
    (MY, "ALTER TABLE orders MODIFY total BIGINT", L),
    (MY, "ALTER TABLE orders MODIFY status VARCHAR(5)", C),
    (MY, "ALTER TABLE orders MODIFY total TINYINT", C),
    (MY, "ALTER TABLE orders MODIFY total BIGINT NOT NULL", L),
    (MY, "ALTER TABLE orders MODIFY coupon VARCHAR(20) NOT NULL", C),
    (MY, "ALTER TABLE orders MODIFY coupon VARCHAR(20) NULL", E),
]


@pytest.mark.parametrize(("dialect", "statement", "category"), TYPE_CHANGES)
def test_a_type_change_is_judged_against_the_known_schema(
    dialect: Dialect, statement: str, category: Category
) -> None:
    verdict = classify(statement, dialect, learn_schema([V1[dialect]], dialect))
    assert verdict.category is category, verdict.detail


def test_a_script_learns_the_columns_it_creates() -> None:
    script = "CREATE TABLE t (a varchar(10));\nALTER TABLE t ALTER COLUMN a TYPE varchar(5);"
    findings = analyze(script, PG, Schema())
    assert [f.category for f in findings] == [E, C]


def test_a_statement_with_several_actions_takes_the_worst_class() -> None:
    verdict = classify("ALTER TABLE t ADD COLUMN a int, DROP COLUMN b", PG)
    assert verdict.category is C and verdict.reason is Reason.drop_column


def test_locking_statements_name_their_lock() -> None:
    assert classify("CREATE INDEX i ON orders (a)", PG).lock == (
        "SHARE on orders (writes wait) while the index is built"
    )
    assert classify("LOCK TABLE orders IN SHARE ROW EXCLUSIVE MODE", PG).lock == (
        "SHARE ROW EXCLUSIVE on orders until the transaction ends"
    )
    lock = classify("ALTER TABLE orders ADD INDEX i (c), ALGORITHM=COPY", MY).lock
    assert lock is not None and lock.startswith("metadata lock on orders")


def test_scripts_split_into_statements_with_their_lines() -> None:
    script = (
        "-- header\n"
        "\\set ON_ERROR_STOP 1\n"
        "SET lock_timeout = '5s';\n"
        "\n"
        "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $body$\n"
        "BEGIN; -- not the end\n"
        "END $body$;\n"
        "/* a; comment */ SELECT 'a;b', \"x;y\" FROM t WHERE v = :'var';\n"
        "ALTER TABLE t DROP COLUMN c"
    )
    statements = split_script(script, PG)
    assert [(s.line, s.text.split()[0]) for s in statements] == [
        (3, "SET"),
        (5, "CREATE"),
        (8, "SELECT"),
        (9, "ALTER"),
    ]
    assert statements[2].text == "SELECT 'a;b', \"x;y\" FROM t WHERE v = 'var'"


def test_mysql_scripts_follow_delimiter_changes_and_hash_comments() -> None:
    script = (
        "# a comment; with a semicolon\n"
        "DELIMITER //\n"
        "CREATE TRIGGER t BEFORE INSERT ON o FOR EACH ROW BEGIN SET NEW.a = 1; END//\n"
        "DELIMITER ;\n"
        "ALTER TABLE o DROP COLUMN `x;y`;\n"
        "SELECT 'it\\'s; fine';\n"
    )
    statements = split_script(script, MY)
    assert [s.line for s in statements] == [3, 5, 6]
    assert statements[0].text.endswith("SET NEW.a = 1; END")
    assert [f.category for f in analyze(script, MY)] == [E, C, E]


def test_an_unterminated_last_statement_counts() -> None:
    assert [s.text for s in split_script("SELECT 1;\nDROP TABLE t", PG)] == [
        "SELECT 1",
        "DROP TABLE t",
    ]
