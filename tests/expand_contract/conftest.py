"""A real PostgreSQL server on loopback for the expand-contract SQL tests.

One server per test session: ``initdb`` into a temp dir, ``pg_ctl start`` on 127.0.0.1 and a free
port (fsync off: the data is thrown away), stopped and removed at the end. Every test gets its own
fresh database (``db`` fixture). The server refuses to run as root, so as root it runs as the
``postgres`` system user via ``runuser``. Missing binaries or user: the tests skip with the reason.

``CUTOVER_TEST_PG_BIN`` names the directory holding initdb/pg_ctl/postgres; otherwise PATH and then
``/usr/lib/postgresql/<newest>/bin`` (Debian's layout) are searched. ``psql`` is the client.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
SUPERUSER = "cutover_test"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_server_bin() -> Path | None:
    """Directory holding initdb, pg_ctl and postgres, or None."""
    candidates: list[Path] = []
    if override := os.environ.get("CUTOVER_TEST_PG_BIN"):
        candidates.append(Path(override))
    if found := shutil.which("pg_ctl"):
        candidates.append(Path(found).resolve().parent)
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(debian)
    for directory in candidates:
        if all(os.access(directory / b, os.X_OK) for b in SERVER_BINARIES):
            return directory
    return None


@dataclass(frozen=True)
class PostgresServer:
    port: int
    host: str = "127.0.0.1"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"


def psql(url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run psql the way the hook Jobs do: ON_ERROR_STOP, no psqlrc."""
    result = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PGCONNECT_TIMEOUT": "5"},
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"psql {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    bin_dir = find_server_bin()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: set "
            "CUTOVER_TEST_PG_BIN or install them (Debian: apt-get install postgresql)"
        )
    if shutil.which("psql") is None:
        pytest.skip("psql not found on PATH (Debian: apt-get install postgresql-client)")

    as_user: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        if shutil.which("runuser") is None:
            pytest.skip("running as root and runuser (util-linux) is missing")
        as_user = ["runuser", "-u", "postgres", "--"]

    root = Path(tempfile.mkdtemp(prefix="cutover-pg-"))
    data, sockets, log = root / "data", root / "sockets", root / "server.log"
    sockets.mkdir()
    if owner is not None:
        for path in (root, sockets):
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def run(*command: str) -> None:
        subprocess.run([*as_user, *command], check=True, capture_output=True, timeout=60)

    port = free_port()
    server = PostgresServer(port=port)
    try:
        run(
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        options = (
            f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o", options, "start")
    except subprocess.CalledProcessError as error:
        detail = log.read_text() if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise AssertionError(
            f"could not start PostgreSQL: {error.cmd}\n{error.stderr!r}\n{detail}"
        ) from error
    try:
        yield server
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


_databases = itertools.count()


@pytest.fixture
def db(postgres: PostgresServer) -> str:
    """URL of a fresh, empty database on the session's server."""
    name = f"t{os.getpid()}_{next(_databases)}"
    psql(postgres.url(), "-c", f"CREATE DATABASE {name} TEMPLATE template0")
    return postgres.url(name)
