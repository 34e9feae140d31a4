"""Nothing acknowledged is lost: kill -9 mid-stream, SIGTERM, remote stores."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imagecatcher.config import Config
from imagecatcher.rois import parse_roi_tiles
from tests.conftest import FIXTURES, PROJECT
from tests.integration.daemon import ports, run_tool, twistd_argv, write_config
from tests.integration.dbcheck import rows
from tests.integration.httpclient import send_tile, start_fixture_acquisition


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert proc.poll() is None, "process exited"
            assert time.monotonic() < deadline, f"port {port} never opened"
            time.sleep(0.05)


@contextmanager
def _process(
    argv: list[str], cwd: Path, port: int, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    out = open(log, "ab")
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
    )
    try:
        _wait_port(port, proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()


def _fake_sproxyd(port: int, cwd: Path) -> list[str]:
    return [sys.executable, "-m", "tests.integration.sproxyd_main", str(port)]


def _roi_cells() -> list[tuple[int, int]]:
    tiles = parse_roi_tiles((FIXTURES / "123_ROI_tiles.csv").read_text())
    cells = sorted({(t.col, t.row) for t in tiles.tiles if t.section_name == "5801"})
    return cells[:40]


def _prepare(http_port: int) -> None:
    start_fixture_acquisition(http_port)


def _stored_state(
    config: Config,
) -> dict[tuple[int, int], tuple[bytes | None, str, str]]:
    found = rows(
        config,
        "SELECT t.mosaic_col, t.mosaic_row, f.sha1_checksum, r.jfs_key, l.current_state"
        " FROM tem_camera_images t JOIN file_objects f ON f.file_object_id = t.file_object_id"
        " JOIN file_object_fs_replicas r ON r.file_object_id = t.file_object_id"
        " JOIN roi_images l ON l.tem_camera_image_id = t.tem_camera_image_id"
        " WHERE t.frame_number = -1",
    )
    return {
        (int(c), int(r)): (None if s is None else bytes(s), k or "", state)
        for c, r, s, k, state in found
    }


def test_kill_9_mid_stream_loses_no_acknowledged_tile(
    tmp_path: Path, engine_config: Config
) -> None:
    """SIGKILL during a TCP stream; after restart every acked tile is stored and READY."""
    http_port, tcp_port = ports()
    store_port, _ = ports()
    cfg = write_config(
        tmp_path,
        engine_config,
        CONTENT_STORE_URL=f"sproxyd://127.0.0.1:{store_port}/proxy/bparc",
        JFS_MAPPING={"PING": "FAFB"},
    )
    assert run_tool(["--config", str(cfg), "db-init"], tmp_path).returncode == 0
    argv = twistd_argv(cfg, http_port, tcp_port)
    acked: dict[tuple[int, int], bytes] = {}
    with _process(argv, tmp_path, tcp_port, tmp_path / "daemon1.log") as daemon:
        with _process(
            _fake_sproxyd(store_port, tmp_path),
            PROJECT,
            store_port,
            tmp_path / "sproxyd.log",
        ):
            _prepare(http_port)
        # The store is down now: every tile is acknowledged from the spool.
        with socket.create_connection(("127.0.0.1", tcp_port), timeout=30) as s:
            for i, (col, row) in enumerate(_roi_cells()):
                data = os.urandom(20_000 + i)
                if i == 30:
                    # Kill while this tile is in flight.
                    from imagecatcher.protocol import PREFIX, encode_request

                    message = encode_request(
                        123, 0, -1, col, row, hashlib.md5(data).digest(), data
                    )
                    s.sendall(PREFIX.pack(len(message)) + message[: len(message) // 2])
                    daemon.send_signal(signal.SIGKILL)
                    daemon.wait()
                    break
                reply = send_tile(
                    s, 123, 0, -1, col, row, hashlib.md5(data).digest(), data
                )
                assert reply.status == 0, reply
                acked[(col, row)] = data
    assert len(acked) == 30
    spooled = _stored_state(engine_config)
    assert all(spooled[cell][1] == "" for cell in acked)  # none reached the store
    # Restart with the store up: the spool drains.
    with _process(
        _fake_sproxyd(store_port, tmp_path),
        PROJECT,
        store_port,
        tmp_path / "sproxyd.log",
    ):
        with _process(argv, tmp_path, tcp_port, tmp_path / "daemon2.log"):
            deadline = time.monotonic() + 60
            while True:
                state = _stored_state(engine_config)
                if all(state[cell][1] and state[cell][2] == "READY" for cell in acked):
                    break
                assert time.monotonic() < deadline, (
                    tmp_path / "daemon2.log"
                ).read_text()
                time.sleep(0.2)
            for cell, data in acked.items():
                sha1, key, _ = state[cell]
                assert sha1 == hashlib.sha1(data).digest()
                url = f"http://127.0.0.1:{store_port}/proxy/bparc/{key}"
                with urllib.request.urlopen(url, timeout=10) as response:
                    assert response.read() == data
    assert not list((tmp_path / "spool").glob("*.tile"))


def test_sigterm_finishes_in_flight_tiles(
    tmp_path: Path, engine_config: Config
) -> None:
    """SIGTERM while tiles stream: every acknowledged tile is stored and READY."""
    http_port, tcp_port = ports()
    cfg = write_config(tmp_path, engine_config, JFS_MAPPING={"PING": "FAFB"})
    assert run_tool(["--config", str(cfg), "db-init"], tmp_path).returncode == 0
    argv = twistd_argv(cfg, http_port, tcp_port)
    acked: dict[tuple[int, int], bytes] = {}
    with _process(argv, tmp_path, tcp_port, tmp_path / "daemon.log") as daemon:
        _prepare(http_port)
        with socket.create_connection(("127.0.0.1", tcp_port), timeout=30) as s:
            for i, (col, row) in enumerate(_roi_cells()):
                data = os.urandom(500_000)
                if i == 10:
                    daemon.send_signal(signal.SIGTERM)
                try:
                    reply = send_tile(
                        s, 123, 0, -1, col, row, hashlib.md5(data).digest(), data
                    )
                except (ConnectionError, OSError):
                    break
                if reply.status == 0:
                    acked[(col, row)] = data
        assert daemon.wait(timeout=60) in (0, -signal.SIGTERM)
    assert len(acked) >= 10
    state = _stored_state(engine_config)
    for cell, data in acked.items():
        assert state[cell][0] == hashlib.sha1(data).digest()
        assert state[cell][1] and state[cell][2] == "READY"
    log = (tmp_path / "daemon.log").read_text()
    assert "Main loop terminated" in log and json is not None
