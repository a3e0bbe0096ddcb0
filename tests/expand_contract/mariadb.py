"""A real MariaDB server for the compatibility tests, on a private Unix socket (no TCP port).

One server per ``with mariadb_server()`` (a module-scoped fixture in the tests):
``mariadb-install-db`` into a temp dir, then ``mariadbd`` with ``--skip-grant-tables`` (the data
is thrown away and nobody else can reach the socket) and ``--skip-networking``; stopped and
removed at the end. As root the server runs as the ``mysql`` system user (``--user``), which owns
the data directory. Missing binaries: the tests skip and say why (Debian: ``apt-get install
mariadb-server``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVER = ("mariadbd", "mariadb-install-db")
CLIENT = "mariadb"
SEARCH = ("/usr/sbin", "/usr/bin", "/usr/local/bin")


def _find(binary: str) -> str | None:
    found = shutil.which(binary)
    if found:
        return found
    for directory in SEARCH:
        candidate = Path(directory) / binary
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


@dataclass(frozen=True)
class MariaDB:
    socket: Path
    client: str

    def run(self, database: str, sql: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``sql`` with the mariadb client, the way a hook Job would (stop on error)."""
        result = subprocess.run(
            [
                self.client,
                "--no-defaults",
                "-S",
                str(self.socket),
                "-u",
                "root",
                "-N",
                "-B",
                database,
            ],
            input=sql,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"mariadb exited {result.returncode}: {result.stderr}\n{sql}")
        return result


@contextlib.contextmanager
def mariadb_server() -> Iterator[MariaDB]:
    """A running server for the ``with`` block; skips the test when MariaDB is missing."""
    paths = {binary: _find(binary) for binary in (*SERVER, CLIENT)}
    missing = [name for name, path in paths.items() if path is None]
    if missing:
        pytest.skip(
            f"MariaDB not found ({', '.join(missing)}): Debian: apt-get install mariadb-server"
        )
    root = Path(tempfile.mkdtemp(prefix="cutover-mariadb-"))
    data, socket, log = root / "data", root / "server.sock", root / "server.log"
    user: list[str] = []
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("mysql")
        except KeyError:
            pytest.skip("running as root and there is no 'mysql' user to run MariaDB as")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        user = ["--user=mysql"]
    common = ["--no-defaults", f"--datadir={data}", *user]
    subprocess.run(
        [
            str(paths["mariadb-install-db"]),
            *common,
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    server = subprocess.Popen(
        [
            str(paths["mariadbd"]),
            *common,
            f"--socket={socket}",
            "--skip-networking",
            "--skip-grant-tables",
            f"--log-error={log}",
            f"--pid-file={root / 'server.pid'}",
            "--innodb-buffer-pool-size=32M",
            "--innodb-flush-log-at-trx-commit=0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    instance = MariaDB(socket=socket, client=str(paths[CLIENT]))
    try:
        deadline = time.monotonic() + 60
        while instance.run("mysql", "SELECT 1", check=False).returncode != 0:
            if server.poll() is not None or time.monotonic() > deadline:
                detail = log.read_text() if log.exists() else ""
                raise AssertionError(f"MariaDB did not start:\n{detail}")
            time.sleep(0.2)
        yield instance
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


_databases = itertools.count()


def fresh_database(server: MariaDB) -> str:
    """Name of a new, empty database on ``server``."""
    name = f"t{os.getpid()}_{next(_databases)}"
    server.run("mysql", f"CREATE DATABASE {name}")
    return name
