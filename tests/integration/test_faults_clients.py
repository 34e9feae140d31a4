"""Faults of the peers: hostile or broken TCP clients beside a working rig.

Silent connections, a peer that stops mid-tile, one that resets mid-tile,
garbage frames, a wrong MD5 and a length prefix past the limit, all at once,
while a TCP rig and an HTTP rig stream: the rigs' tiles are all
acknowledged, the silent peers are closed after ``TCP_IDLE_TIMEOUT``, and
exactly the rigs' tiles are stored (nothing half-received stays in
``.incoming``).
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import threading
from pathlib import Path

from imagecatcher.config import Config
from imagecatcher.protocol import PREFIX, decode_response, encode_request
from tests.integration.daemon import ports, run_tool, write_config
from tests.integration.faults import (
    UID,
    Daemon,
    Ledger,
    Stream,
    Tile,
    assert_exactly_stored,
    roi_cells,
    wait_for,
)
from tests.integration.httpclient import read_frame, start_fixture_acquisition

IDLE = 2


def _closed(sock: socket.socket) -> bool:
    """Whether the daemon has closed ``sock`` (reads EOF or a reset)."""
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def _big_frame(col: int, row: int) -> bytes:
    data = os.urandom(3 * 1024 * 1024)
    message = encode_request(UID, 0, -1, col, row, hashlib.md5(data).digest(), data)
    return PREFIX.pack(len(message)) + message


def test_hostile_tcp_peers_do_not_disturb_a_rig(tmp_path: Path) -> None:
    """While broken and hostile TCP peers connect, every rig tile is
    acknowledged and stored, the silent peers are closed after the idle
    timeout, and nothing of the peers' tiles is stored or left behind."""
    config = Config(db_driver="sqlite", sqlite_path=str(tmp_path / "ic.sqlite"))
    cfg = write_config(
        tmp_path, config, JFS_MAPPING={"PING": "FAFB"}, TCP_IDLE_TIMEOUT=IDLE
    )
    assert run_tool(["--config", str(cfg), "db-init"], tmp_path).returncode == 0
    daemon = Daemon(cfg, tmp_path, *ports())
    cells = roi_cells()
    rig_cells, peer_cells = cells[:40], cells[40:]
    ledger = Ledger()
    stop = threading.Event()
    with daemon.running():
        start_fixture_acquisition(daemon.http_port)
        address = ("127.0.0.1", daemon.tcp_port)
        silent = [socket.create_connection(address) for _ in range(20)]
        stalled = socket.create_connection(address)
        frame = _big_frame(*peer_cells[0])
        stalled.sendall(frame[: len(frame) // 2])  # then says nothing more
        reset = socket.create_connection(address)
        reset.sendall(_big_frame(*peer_cells[1])[: 2 * 1024 * 1024])
        reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        reset.close()  # RST mid-tile
        streams = [
            Stream(
                ch,
                daemon,
                (Tile(c, r, os.urandom(200_000)) for c, r in rig_cells[i::2]),
                ledger,
                stop,
            )
            for i, ch in enumerate(("tcp", "http"))
        ]
        for stream in streams:
            stream.start()
        with socket.create_connection(address, timeout=30) as rude:
            for garbage in (b"\xff" * 5, b"", os.urandom(70_000)):
                rude.sendall(PREFIX.pack(len(garbage)) + garbage)
                assert decode_response(read_frame(rude)).status == 1
            data = os.urandom(500_000)
            col, row = peer_cells[2]
            wrong = encode_request(UID, 0, -1, col, row, b"\0" * 16, data)
            rude.sendall(PREFIX.pack(len(wrong)) + wrong)
            assert decode_response(read_frame(rude)).status == 1
            rude.sendall(PREFIX.pack(2**31))
            assert decode_response(read_frame(rude)).status == 1
            wait_for("the oversized frame's connection to close", lambda: _closed(rude))
        for stream in streams:
            stream.finish()
        assert len(ledger.acked) == len(rig_cells) and not ledger.of("refused")
        wait_for(
            "the silent and stalled peers to be closed",
            lambda: all(_closed(peer) for peer in [*silent, stalled]),
            timeout=IDLE + 10,
        )
        for peer in [*silent, stalled]:
            peer.close()
        store = tmp_path / "objects"
        wait_for(
            "nothing left in .incoming",
            lambda: not list((store / ".incoming").iterdir()),
        )
        assert_exactly_stored(
            daemon.http_port,
            config,
            ledger.acked,
            store_root=store,
            spool=tmp_path / "spool",
        )
    log = daemon.log_text()
    assert "closing idle connection" in log and "left mid-frame" in log
    assert "exceeds" in log
