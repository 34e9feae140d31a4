"""The daemon under test: configuration, schema, process, acquisitions.

The daemon runs exactly as an operator would run it, ``twistd --nodaemon
--pidfile= imagecatcher --config <cfg>`` on loopback endpoints, from the
same virtualenv as the benchmark, with the store's configuration keys, and
its schema is created with ``imagecatcher-tools --config <cfg> db-init``.
``WORKERS`` is written only when ``--workers`` was given, so the daemon's own
default applies otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.httpclient import HttpConnection
from bench.mariadb import MariaDB, free_port
from bench.procs import spawn, stop

BIN = Path(sys.executable).parent
DATABASE = "image_capture_bench"


def daemon_settings(
    db: MariaDB, workdir: Path, store: Mapping[str, Any], workers: int | None
) -> dict[str, Any]:
    """The configuration keys of the benchmarked daemon."""
    settings = {
        "DB_DRIVER": "mysql",
        "DB_HOST": db.host,
        "DB_NAME": DATABASE,
        "DB_USER": db.user,
        "DB_PASSWORD": db.password,
        **store,
        "SPOOL_DIR": str(workdir / "spool"),
        "CONTENT_STORE_WORKERS": 4,
        "JFS_MAPPING": {"PING": "bench"},
    }
    if workers is not None:
        settings["WORKERS"] = workers
    return settings


def prepare(db: MariaDB, workdir: Path, settings: Mapping[str, Any]) -> Path:
    """Write the config, create the database and its schema; return the config."""
    (workdir / "spool").mkdir(parents=True, exist_ok=True)
    config = workdir / "config.json"
    config.write_text(json.dumps(settings, indent=2))
    db.create_database(DATABASE)
    done = subprocess.run(
        [str(BIN / "imagecatcher-tools"), "--config", str(config), "db-init"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if done.returncode != 0:
        raise RuntimeError(f"db-init failed: {done.stdout}{done.stderr}")
    return config


@dataclass(frozen=True)
class Daemon:
    """A running daemon: its ports, working directory (spool, log) and pid."""

    http_port: int
    tcp_port: int
    workdir: Path
    log: Path
    pid: int

    def http(self, timeout: float = 60.0) -> HttpConnection:
        """A new keep-alive connection to the HTTP API."""
        return HttpConnection("127.0.0.1", self.http_port, timeout)

    def start_acquisition(self, uid: int, inilog: bytes) -> int:
        """POST start-acquisition with ``<uid>_logfile.ini``; return the uid."""
        boundary = f"bench{uid:x}"
        body = b"".join(
            [
                f"--{boundary}\r\n".encode(),
                b'Content-Disposition: form-data; name="acq-inilog"; ',
                f'filename="{uid}_logfile.ini"\r\n'.encode(),
                b"Content-Type: application/octet-stream\r\n\r\n",
                inilog,
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
        conn = self.http()
        try:
            resp = conn.request(
                "POST",
                "/service/v1/start-acquisition",
                body,
                {"Content-Type": f"multipart/form-data; boundary={boundary}"},
            )
        finally:
            conn.close()
        if resp.status != 200 or json.loads(bytes(resp.body)).get("uid") != uid:
            raise RuntimeError(
                f"start-acquisition {uid}: HTTP {resp.status} {resp.text()}"
            )
        return uid


def _ping(port: int) -> int:
    conn = HttpConnection("127.0.0.1", port, timeout=5)
    try:
        return conn.request("GET", "/service/v1/ping").status
    finally:
        conn.close()


@contextmanager
def running_daemon(
    config: Path, workdir: Path, env: Mapping[str, str] | None = None
) -> Iterator[Daemon]:
    """Run twistd imagecatcher until the block ends; wait for ping 200 first."""
    http_port = free_port()
    tcp_port = free_port()
    while tcp_port == http_port:
        tcp_port = free_port()
    log = workdir / "daemon.log"
    argv = [
        str(BIN / "twistd"),
        "--nodaemon",
        "--pidfile=",
        "imagecatcher",
        "--config",
        str(config),
        "--httpserver",
        f"tcp:{http_port}:interface=127.0.0.1",
        "--tcpserver",
        f"tcp:{tcp_port}:interface=127.0.0.1",
    ]
    proc = spawn(argv, log, cwd=workdir, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"daemon exited {proc.returncode}:\n{tail}")
            try:
                if _ping(http_port) == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("daemon: no ping 200 within 60 s")
            time.sleep(0.2)
        yield Daemon(http_port, tcp_port, workdir, log, proc.pid)
    finally:
        stop(proc, timeout=45)
