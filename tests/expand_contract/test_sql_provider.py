"""The ``sql`` gate provider against a real PostgreSQL and a real MariaDB on this machine:
numbers come back, the statement timeout is the server's, writes are refused by the server, and
the DSN never shows in what the provider says."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from cutover.egress import EgressPolicy, EgressRefused
from cutover.providers import NoData, ProviderError, SqlProvider
from tests.expand_contract.conftest import psql
from tests.expand_contract.mariadb import MariaDB, fresh_database, mariadb_server

pytestmark = pytest.mark.timeout(120)
PASSWORD = "s3cret-gate-password"


@dataclass(frozen=True)
class Database:
    """One database with an ``orders`` table of three rows, and how to read it back."""

    engine: str
    dsn: str
    sleep: str  # a query that sleeps 30 s and returns one number
    count: str  # the number of orders, read without the provider

    def provider(self, timeout: float = 5.0) -> SqlProvider:
        return SqlProvider(dsn=self.dsn, timeout=timeout)


@pytest.fixture(scope="module")
def mariadb() -> Iterator[MariaDB]:
    with mariadb_server() as server:
        yield server


@pytest.fixture
def postgres_db(db: str) -> Database:
    psql(db, "-c", "CREATE TABLE orders (id int PRIMARY KEY, total numeric)")
    psql(db, "-c", "INSERT INTO orders VALUES (1, 10.5), (2, 20), (3, NULL)")
    # The DSN a user would put in a Secret, password included (trust auth ignores it).
    dsn = db.replace("postgresql://cutover_test@", f"postgresql://cutover_test:{PASSWORD}@")
    return Database(
        "postgresql",
        dsn,
        "SELECT 1 FROM pg_sleep(30)",
        psql(db, "-tAc", "SELECT count(*) FROM orders").stdout.strip(),
    )


@pytest.fixture
def mariadb_db(mariadb: MariaDB) -> Database:
    name = fresh_database(mariadb)
    mariadb.run(name, "CREATE TABLE orders (id int PRIMARY KEY, total decimal(10,2));")
    mariadb.run(name, "INSERT INTO orders VALUES (1, 10.5), (2, 20), (3, NULL);")
    dsn = f"mysql://root:{PASSWORD}@localhost/{name}?unix_socket={mariadb.socket}"
    return Database(
        "mariadb",
        dsn,
        "SELECT SLEEP(30)",
        mariadb.run(name, "SELECT count(*) FROM orders;").stdout.strip(),
    )


@pytest.fixture(params=["postgresql", "mariadb"])
def database(request: pytest.FixtureRequest) -> Database:
    fixture = "postgres_db" if request.param == "postgresql" else "mariadb_db"
    found: Database = request.getfixturevalue(fixture)
    return found


def assert_no_dsn(text: str, database: Database) -> None:
    assert database.dsn not in text and PASSWORD not in text, text


def test_a_query_returns_its_one_number(database: Database) -> None:
    provider = database.provider()

    assert provider.query("SELECT count(*) FROM orders") == 3
    assert provider.query("SELECT sum(total) FROM orders") == 30.5
    assert provider.query("SELECT count(*) = 3 FROM orders") == 1


def test_no_row_or_null_is_no_data(database: Database) -> None:
    provider = database.provider()

    with pytest.raises(NoData, match="no row"):
        provider.query("SELECT total FROM orders WHERE id = 99")
    with pytest.raises(NoData, match="NULL"):
        provider.query("SELECT total FROM orders WHERE id = 3")


def test_several_rows_or_columns_are_an_error(database: Database) -> None:
    provider = database.provider()

    with pytest.raises(ProviderError, match="several rows"):
        provider.query("SELECT id FROM orders")
    with pytest.raises(ProviderError, match="2 columns"):
        provider.query("SELECT id, total FROM orders WHERE id = 1")


def test_a_slow_query_is_cancelled_by_the_server_at_the_timeout(database: Database) -> None:
    provider = database.provider(timeout=1)

    with pytest.raises(ProviderError) as caught:
        provider.query(database.sleep)

    assert caught.value.error_type == "timeout", caught.value
    assert "longer than its timeout (1s)" in caught.value.message
    assert_no_dsn(caught.value.message, database)


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO orders VALUES (4, 1)",
        "UPDATE orders SET total = 0",
        "DELETE FROM orders",
        "DROP TABLE orders",
    ],
)
def test_the_server_refuses_a_write(database: Database, statement: str) -> None:
    provider = database.provider()

    with pytest.raises(ProviderError) as caught:
        provider.query(statement)

    assert caught.value.error_type == "write", caught.value
    assert "read-only" in caught.value.message
    assert provider.query("SELECT count(*) FROM orders") == int(database.count) == 3


def test_a_second_statement_cannot_commit_and_write(postgres_db: Database) -> None:
    provider = postgres_db.provider()

    with pytest.raises(ProviderError):
        provider.query("COMMIT; DELETE FROM orders")

    assert provider.query("SELECT count(*) FROM orders") == 3


def test_errors_never_show_the_dsn(database: Database) -> None:
    provider = database.provider()
    for query in ("SELECT nonsense FROM nowhere", f"SELECT '{PASSWORD}' + "):
        with pytest.raises(ProviderError) as caught:
            provider.query(query)
        assert_no_dsn(caught.value.message, database)
        assert_no_dsn(repr(provider), database)


def test_an_unreachable_server_is_an_error_without_the_dsn(postgres_db: Database) -> None:
    dsn = f"postgresql://cutover_test:{PASSWORD}@127.0.0.1:9/nowhere"
    provider = SqlProvider(dsn=dsn, timeout=2)

    with pytest.raises(ProviderError) as caught:
        provider.query("SELECT 1")

    assert caught.value.error_type == "connection"
    assert "connection refused" in caught.value.message
    assert dsn not in caught.value.message and PASSWORD not in caught.value.message


def test_a_host_name_is_resolved_and_checked_by_the_outbound_policy(
    postgres_db: Database,
) -> None:
    by_name = postgres_db.dsn.replace("@127.0.0.1:", "@localhost:")
    assert by_name != postgres_db.dsn
    provider = SqlProvider(dsn=by_name, timeout=2, egress=EgressPolicy.build())

    assert provider.query("SELECT count(*) FROM orders") == 3


def test_the_outbound_policy_applies_to_the_database_host(postgres_db: Database) -> None:
    policy = EgressPolicy.build(allowed_hosts="10.0.0.0/8", allow_insecure_tls=False)
    provider = SqlProvider(dsn=postgres_db.dsn, timeout=2, egress=policy)

    with pytest.raises(EgressRefused) as caught:
        provider.query("SELECT 1")

    assert "127.0.0.1" in str(caught.value)
    assert PASSWORD not in str(caught.value)
