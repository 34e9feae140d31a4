"""Listening sockets of a running daemon: SO_REUSEPORT, backlog, a taken port."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from imagecatcher.config import Config
from tests.integration.daemon import ports, run_tool, running, twistd_argv, write_config


def _init(tmp_path: Path, **extra: object) -> Path:
    db = Config(db_driver="sqlite", sqlite_path=str(tmp_path / "t.sqlite"))
    cfg = write_config(tmp_path, db, **extra)
    result = run_tool(["--config", str(cfg), "db-init"], tmp_path)
    assert result.returncode == 0, result.stderr
    return cfg


def test_ports_are_bound_with_so_reuseport(tmp_path: Path) -> None:
    """Both ports take SO_REUSEPORT sharers, somaxconn's backlog and SO_RCVBUF."""
    cfg = _init(tmp_path, SO_RECEIVE_BUFSIZE=262144)
    http_port, tcp_port = ports()
    with running(twistd_argv(cfg, http_port, tcp_port), tmp_path, http_port):
        for port in (http_port, tcp_port):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                s.bind(("127.0.0.1", port))
            with socket.socket() as s, pytest.raises(OSError):
                s.bind(("127.0.0.1", port))
        if shutil.which("ss"):
            listing = subprocess.run(
                ["ss", "-Hltnm", f"sport = :{http_port}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            # State Recv-Q Send-Q ...: a listener's Send-Q is its backlog.
            expected = min(int(Path("/proc/sys/net/core/somaxconn").read_text()), 65535)
            assert int(listing.split()[2]) == expected
            # Linux doubles SO_RCVBUF for its bookkeeping (socket(7)).
            assert f"rb{2 * 262144}," in listing, listing


def test_so_reuseport_false_is_exclusive(tmp_path: Path) -> None:
    """SO_REUSEPORT false: no other socket can bind the daemon's port."""
    cfg = _init(tmp_path, SO_REUSEPORT=False)
    http_port, _ = ports()
    with running(twistd_argv(cfg, http_port, None), tmp_path, http_port):
        with socket.socket() as s, pytest.raises(OSError):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(("127.0.0.1", http_port))


def test_taken_port_aborts_start_up(tmp_path: Path) -> None:
    """A port held without SO_REUSEPORT stops start-up with a message naming it."""
    cfg = _init(tmp_path)
    http_port, _ = ports()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", http_port))
        blocker.listen()
        result = subprocess.run(
            twistd_argv(cfg, http_port, None),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert f"Couldn't listen on 127.0.0.1:{http_port}" in out, out
