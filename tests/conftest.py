"""Shared fixtures: a private MariaDB server and per-test databases on both engines."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import attrs
import pymysql
import pytest
import pytest_twisted

from imagecatcher.config import Config
from imagecatcher.db.pool import Database, open_database
from imagecatcher.db.repository import Repository

#: MariaDB's default SQL mode, spelled out so that no configuration file can relax it.
STRICT_SQL_MODE = (
    "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,"
    "NO_ENGINE_SUBSTITUTION"
)
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
PROJECT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A free TCP port on 127.0.0.1 below 32768 (outside the ephemeral range)."""
    for _ in range(200):
        port = 20000 + int.from_bytes(os.urandom(2), "big") % 12000
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


@attrs.frozen
class MariaDB:
    """A running private MariaDB server."""

    host: str
    port: int
    socket: str
    user: str = "image_capture"
    password: str = "image_capture"

    def admin(self) -> pymysql.connections.Connection:
        """A root connection over the unix socket."""
        return pymysql.connect(unix_socket=self.socket, user="root", autocommit=True)

    def config(self, database: str) -> Config:
        """A Config pointing at ``database`` on this server."""
        return Config(
            db_driver="mysql",
            db_host=f"{self.host}:{self.port}",
            db_name=database,
            db_user=self.user,
            db_password=self.password,
        )


def _find(*names: str) -> str:
    for name in names:
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
        if path:
            return path
    raise RuntimeError(
        f"none of {names} is installed (make test installs mariadb-server)"
    )


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    """Start mariadbd in a temporary datadir for the whole session."""
    base = Path(tempfile.mkdtemp(prefix="imagecatcher-mariadb-"))
    datadir, sock, port = base / "data", str(base / "mysqld.sock"), free_port()
    user = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run(
        [
            _find("mariadb-install-db", "mysql_install_db"),
            "--no-defaults",
            f"--datadir={datadir}",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
            *user,
        ],
        check=True,
        capture_output=True,
    )
    proc = subprocess.Popen(
        [
            _find("mariadbd", "mysqld"),
            "--no-defaults",
            f"--datadir={datadir}",
            f"--socket={sock}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={base / 'mysqld.pid'}",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=128M",
            "--innodb-flush-log-at-trx-commit=2",
            "--character-set-server=utf8mb4",
            "--max-connections=500",
            # Strict, as MariaDB is by default and as the lab runs it: a value
            # longer than its column is an error here, never a truncation.
            "--sql-mode=" + STRICT_SQL_MODE,
            *user,
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(base / "error.log", "wb"),
    )
    server = MariaDB("127.0.0.1", port, sock)
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = server.admin()
            break
        except pymysql.MySQLError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "mariadbd did not start: "
                    + (base / "error.log").read_text()[-2000:]
                ) from None
            time.sleep(0.2)
    with conn.cursor() as cur:
        for host in ("localhost", "127.0.0.1"):
            cur.execute(
                f"CREATE USER '{server.user}'@'{host}' IDENTIFIED BY '{server.password}'"
            )
            cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{server.user}'@'{host}'")
    conn.close()
    try:
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(base, ignore_errors=True)


_counter = itertools.count()


@pytest.fixture(params=["sqlite", "mariadb"])
def engine_config(request: pytest.FixtureRequest, tmp_path: Path) -> Config:
    """A Config for a fresh, empty database on each engine."""
    if request.param == "sqlite":
        return Config(db_driver="sqlite", sqlite_path=str(tmp_path / "test.sqlite"))
    return fresh_mariadb_database(request.getfixturevalue("mariadb"))


def fresh_mariadb_database(server: MariaDB) -> Config:
    """Create an empty database on ``server``; a Config pointing at it."""
    name = f"ic_test_{os.getpid()}_{next(_counter)}"
    conn = server.admin()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    conn.close()
    return server.config(name)


@pytest.fixture
def mariadb_config(mariadb: MariaDB) -> Config:
    """A Config for a fresh, empty database on the private MariaDB only."""
    return fresh_mariadb_database(mariadb)


@pytest.fixture
def reactor() -> Any:
    """The global reactor pytest-twisted runs."""
    from twisted.internet import reactor as global_reactor

    return global_reactor


@pytest_twisted.async_yield_fixture
async def database(engine_config: Config, reactor: Any) -> AsyncIterator[Database]:
    """An open Database on an empty database of each engine."""
    db = open_database(engine_config, reactor)
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def repo(database: Database, reactor: Any) -> Repository:
    """A Repository over the empty test database."""
    return Repository(database, reactor)
