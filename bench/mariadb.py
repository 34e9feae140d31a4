"""A private MariaDB server for one benchmark run.

``mariadb-install-db`` creates a datadir in a temporary directory (which also
holds the server's own tmpdir), then ``mariadbd`` serves it on a unix socket (root, for the benchmark's own SQL)
and on 127.0.0.1 at a free port below 32768 (the daemon's ``DB_HOST``).  No
system service, configuration file or data outside that directory is used.
InnoDB keeps its durable default (``innodb_flush_log_at_trx_commit=1``), as
a production server would.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pymysql

from bench.procs import spawn, stop

#: Server options besides paths and ports (recorded in the results).
SERVER_OPTIONS = (
    "--skip-log-bin",
    "--innodb-buffer-pool-size=512M",
    "--innodb-log-file-size=256M",
    "--character-set-server=utf8mb4",
    "--max-connections=200",
)


def free_port(low: int = 20000, high: int = 32000) -> int:
    """A TCP port in ``[low, high)`` that nothing listens on at 127.0.0.1."""
    candidates = list(range(low, high))
    random.shuffle(candidates)
    for port in candidates[:500]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in [{low}, {high})")


def _program(*names: str) -> str:
    for name in names:
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
        if path:
            return path
    raise RuntimeError(f"none of {names} found; `make os-deps` installs mariadb-server")


@dataclass(frozen=True)
class MariaDB:
    """A running private server and the account the daemon uses."""

    socket: str
    port: int
    pid: int = 0
    user: str = "image_capture"
    password: str = "image_capture"

    @property
    def host(self) -> str:
        """``DB_HOST`` for the daemon."""
        return f"127.0.0.1:{self.port}"

    def connect(self, database: str | None = None) -> pymysql.Connection:
        """An autocommit root connection over the unix socket."""
        return pymysql.connect(
            unix_socket=self.socket,
            user="root",
            database=database,
            autocommit=True,
        )

    def create_database(self, name: str) -> None:
        """Create an empty utf8mb4 database."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        finally:
            conn.close()


def _wait_ready(server: MariaDB, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            server.connect().close()
            return
        except pymysql.MySQLError:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"mariadbd did not start:\n{tail}") from None
            time.sleep(0.2)


@contextmanager
def private_mariadb(base: Path) -> Iterator[MariaDB]:
    """Install a datadir under ``base``, run the server, stop it on exit."""
    datadir = base / "data"
    tmpdir = base / "tmp"  # its own, not /tmp: nothing else may sweep it
    tmpdir.mkdir(parents=True, exist_ok=True)
    log = base / "mariadbd.log"
    as_root = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run(
        [
            _program("mariadb-install-db", "mysql_install_db"),
            "--no-defaults",
            f"--datadir={datadir}",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
            *as_root,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    sock, port = str(base / "mysqld.sock"), free_port()
    proc = spawn(
        [
            _program("mariadbd", "mysqld"),
            "--no-defaults",
            f"--datadir={datadir}",
            f"--socket={sock}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={base / 'mysqld.pid'}",
            f"--tmpdir={tmpdir}",
            *SERVER_OPTIONS,
            *as_root,
        ],
        log,
    )
    server = MariaDB(socket=sock, port=port, pid=proc.pid)
    try:
        _wait_ready(server, proc, log)
        conn = server.connect()
        try:
            with conn.cursor() as cur:
                for host in ("localhost", "127.0.0.1"):
                    cur.execute(
                        "CREATE USER %s@%s IDENTIFIED BY %s",
                        (server.user, host, server.password),
                    )
                    cur.execute(
                        f"GRANT ALL PRIVILEGES ON *.* TO '{server.user}'@'{host}'"
                    )
        finally:
            conn.close()
        yield server
    finally:
        stop(proc, timeout=60)
