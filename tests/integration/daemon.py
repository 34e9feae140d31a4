"""Run the real daemon and tools as subprocesses, the way a user does."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from imagecatcher.config import Config
from tests.conftest import free_port

BIN = Path(sys.executable).parent


def script(name: str) -> str:
    """Path of a console script installed beside the test interpreter."""
    return str(BIN / name)


def write_config(directory: Path, config: Config, **extra: Any) -> Path:
    """Write a JSON config for ``config``'s database plus ``extra`` keys."""
    data: dict[str, Any] = {
        "DB_DRIVER": config.db_driver,
        "SQLITE_PATH": str(Path(config.sqlite_path).absolute()),
        "DB_HOST": config.db_host,
        "DB_NAME": config.db_name,
        "DB_USER": config.db_user,
        "DB_PASSWORD": config.db_password,
        "CONTENT_STORE_URL": f"file://{directory / 'objects'}",
        "SPOOL_DIR": str(directory / "spool"),
        # The test machine's disk may be nearly full; the default keeps 256 MiB.
        "SPOOL_MIN_FREE_BYTES": 1024 * 1024,
    }
    data.update(extra)
    path = directory / "config.json"
    path.write_text(json.dumps(data))
    return path


def run_tool(
    args: Sequence[str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run imagecatcher-tools and capture its output."""
    return subprocess.run(
        [script("imagecatcher-tools"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def http_get(
    port: int, path: str, timeout: float = 5
) -> tuple[int, list[tuple[str, str]], bytes]:
    """A minimal raw HTTP/1.1 GET (header names may contain spaces)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = [
        (name.strip(), value.strip())
        for name, _, value in (line.partition(":") for line in lines[1:])
    ]
    return status, headers, body


@contextmanager
def running(
    argv: Sequence[str], cwd: Path, http_port: int, timeout: float = 30
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a daemon command and wait until its ping answers 200."""
    log = open(cwd / "daemon.log", "wb")
    proc = subprocess.Popen(list(argv), cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(
                    f"daemon exited {proc.returncode}: {(cwd / 'daemon.log').read_text()}"
                )
            try:
                if http_get(http_port, "/service/v1/ping")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no ping 200 in {timeout}s: {(cwd / 'daemon.log').read_text()}"
                )
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def twistd_argv(
    config_path: Path, http_port: int | None, tcp_port: int | None
) -> list[str]:
    """``twistd -n imagecatcher`` on loopback ports."""
    argv = [
        script("twistd"),
        "--nodaemon",
        "--pidfile=",
        "imagecatcher",
        "--config",
        str(config_path),
    ]
    if http_port:
        argv += ["--httpserver", f"tcp:{http_port}:interface=127.0.0.1"]
    if tcp_port:
        argv += ["--tcpserver", f"tcp:{tcp_port}:interface=127.0.0.1"]
    return argv


def ports() -> tuple[int, int]:
    """Two distinct free loopback ports."""
    a = free_port()
    b = free_port()
    while b == a:
        b = free_port()
    return a, b


__all__ = [
    "http_get",
    "os",
    "ports",
    "run_tool",
    "running",
    "script",
    "twistd_argv",
    "write_config",
]
