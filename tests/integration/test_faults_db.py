"""Faults of the database: MariaDB stopped mid-stream, and down at start-up.

Each test runs its own private MariaDB (:class:`StoppableMariaDB`, started
like the session server, which other tests use and which is never stopped
here), so that it can take the database away from a running daemon.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import http_get, ports, run_tool, write_config
from tests.integration.faults import (
    Daemon,
    FakeStore,
    Ledger,
    StoppableMariaDB,
    Stream,
    Tile,
    assert_exactly_stored,
    roi_cells,
    spool_leftovers,
    wait_for,
)
from tests.integration.httpclient import start_fixture_acquisition

SEED = 12


@pytest.fixture(scope="module")
def private_db() -> Iterator[StoppableMariaDB]:
    """A MariaDB of this module's own, which its tests stop and start."""
    base = Path(tempfile.mkdtemp(prefix="ic-faultdb-"))
    server = StoppableMariaDB(base)
    try:
        server.install()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def faultdb(private_db: StoppableMariaDB) -> Iterator[StoppableMariaDB]:
    """The private MariaDB, running when the test starts and after it ends."""
    if not private_db.running:
        private_db.start()
    yield private_db
    if not private_db.running:
        private_db.start()


def _tiles(seed: int, cells: list[tuple[int, int]]) -> Iterator[Tile]:
    rng = random.Random(seed)
    for col, row in cells:
        yield Tile(col, row, rng.randbytes(rng.randint(30_000, 300_000)))


def _acks_after(ledger: Ledger, channel: str, since: float) -> int:
    return sum(1 for o in ledger.of("acked", channel) if o.sent >= since)


@pytest.mark.parametrize("store", ["file", "sproxyd"])
def test_database_stopped_mid_stream(
    tmp_path: Path, faultdb: StoppableMariaDB, store: str
) -> None:
    """MariaDB stopped while TCP and HTTP rigs stream: nothing is acknowledged
    while it is down (status 1 / HTTP 5xx), acknowledgements resume by
    themselves when it is back, and exactly the acknowledged tiles are stored."""
    config = faultdb.new_database(f"ic_faults_{store}_{os.getpid()}")
    http_port, tcp_port = ports()
    fake = FakeStore(ports()[0], tmp_path) if store == "sproxyd" else None
    extra = {} if fake is None else {"CONTENT_STORE_URL": fake.url}
    cfg = write_config(tmp_path, config, JFS_MAPPING={"PING": "FAFB"}, **extra)
    assert run_tool(["--config", str(cfg), "db-init"], tmp_path).returncode == 0
    daemon = Daemon(cfg, tmp_path, http_port, tcp_port)
    cells = roi_cells()
    random.Random(SEED).shuffle(cells)
    ledger = Ledger()
    stop = threading.Event()
    if fake is not None:
        fake.start()
    try:
        with daemon.running() as proc:
            start_fixture_acquisition(http_port)
            streams = [
                Stream(
                    ch,
                    daemon,
                    _tiles(SEED + i, cells[i::2]),
                    ledger,
                    stop,
                    pause=0.05,
                    persist=True,
                )
                for i, ch in enumerate(("tcp", "http"))
            ]
            for s in streams:
                s.start()
            wait_for(
                "acknowledgements on both channels",
                lambda: all(len(ledger.of("acked", ch)) >= 5 for ch in ("tcp", "http")),
            )
            faultdb.stop()
            down = time.monotonic()
            wait_for(
                "ping to report the database",
                lambda: (
                    b"Database check failed"
                    in http_get(http_port, "/service/v1/ping")[2]
                ),
            )
            time.sleep(3)
            back = time.monotonic()
            faultdb.start()
            up = time.monotonic()
            wait_for(
                "acknowledgements to resume on both channels",
                lambda: all(_acks_after(ledger, ch, up) >= 3 for ch in ("tcp", "http")),
                timeout=60,
            )
            stop.set()
            for s in streams:
                s.finish()
            assert daemon.proc is proc and proc.poll() is None  # never restarted
            outage = [
                o for o in ledger.outcomes if o.sent >= down and o.answered <= back
            ]
            assert not [o for o in outage if o.kind == "acked"], (
                "acknowledged while down"
            )
            for ch in ("tcp", "http"):
                refused = [o for o in outage if o.channel == ch and o.kind == "refused"]
                assert len(refused) >= 3, (ch, outage)
            for o in ledger.of("refused"):
                if o.channel == "tcp":
                    assert (o.detail.status, o.detail.system_status) == (1, 2), o
                else:
                    status, body = o.detail
                    message = body["errormessage"]
                    assert status == 500 and message, o
                    assert not message.startswith("Internal error"), o
            assert not ledger.of("lost"), ledger.of("lost")
            if fake is not None:
                wait_for(
                    "an empty spool", lambda: not spool_leftovers(tmp_path / "spool")
                )
            assert http_get(http_port, "/service/v1/ping")[0] == 200
            # One warning line per refused tile, not a traceback.
            log = daemon.log_text()
            assert "tile from TCP failed: (2003" in log
            assert "capturing a tile from" not in log
            assert "unexpected error serving" not in log
            assert_exactly_stored(
                http_port,
                config,
                ledger.acked,
                store_root=tmp_path / "objects" if fake is None else None,
                spool=tmp_path / "spool",
                fake=fake,
            )
    finally:
        stop.set()
        if fake is not None:
            fake.stop()


def test_database_down_at_start_up(tmp_path: Path, faultdb: StoppableMariaDB) -> None:
    """With MariaDB down the daemon refuses to start, with a message naming the
    database and a non-zero exit, binding no port; once it is up, the daemon
    starts and captures over TCP and HTTP."""
    config = faultdb.new_database(f"ic_faults_start_{os.getpid()}")
    http_port, tcp_port = ports()
    cfg = write_config(tmp_path, config, JFS_MAPPING={"PING": "FAFB"})
    assert run_tool(["--config", str(cfg), "db-init"], tmp_path).returncode == 0
    daemon = Daemon(cfg, tmp_path, http_port, tcp_port)
    faultdb.stop()
    result = subprocess.run(
        daemon.argv, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Database unavailable" in output, output
    assert f"cannot connect to MySQL at 127.0.0.1:{faultdb.port}" in output, output
    for port in (http_port, tcp_port):
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # still free: nothing was bound
    faultdb.start()
    ledger = Ledger()
    cells = roi_cells()[:8]
    with daemon.running():
        start_fixture_acquisition(http_port)
        for i, ch in enumerate(("tcp", "http")):
            stream = Stream(
                ch, daemon, _tiles(i, cells[i::2]), ledger, threading.Event()
            )
            stream.start()
            stream.finish()
        assert len(ledger.acked) == 8 and not ledger.of("refused")
        assert_exactly_stored(
            http_port,
            config,
            ledger.acked,
            store_root=tmp_path / "objects",
            spool=tmp_path / "spool",
        )


def test_tile_refused_by_the_database_leaves_the_file_store_as_it_was(
    tmp_path: Path, faultdb: StoppableMariaDB
) -> None:
    """While a backup's global read lock makes every write time out, a new tile
    and a re-capture are refused, and neither leaves its bytes in the file store."""
    config = faultdb.new_database(f"ic_faults_locked_{os.getpid()}")
    http_port, tcp_port = ports()
    cfg = write_config(tmp_path, config, JFS_MAPPING={"PING": "FAFB"})
    assert run_tool(["--config", str(cfg), "db-init"], tmp_path).returncode == 0
    daemon = Daemon(cfg, tmp_path, http_port, tcp_port)
    admin = faultdb.server.admin()
    with admin.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.lock_wait_timeout")
        (saved,) = cur.fetchone()
        # Sessions take the global value when they connect: the daemon's will.
        cur.execute("SET GLOBAL lock_wait_timeout = 2")
    ledger = Ledger()
    (a, b, c) = roi_cells()[:3]
    first = [Tile(*a, b"first bytes of a" * 1000), Tile(*b, b"bytes of b" * 1000)]
    try:
        with daemon.running():
            start_fixture_acquisition(http_port)
            for ch, tile in zip(("tcp", "http"), first, strict=True):
                _stream_one(daemon, ch, tile, ledger)
            assert len(ledger.acked) == 2
            with admin.cursor() as cur:
                cur.execute("FLUSH TABLES WITH READ LOCK")
            try:
                _stream_one(daemon, "tcp", Tile(*a, b"other bytes" * 1000), ledger)
                _stream_one(daemon, "http", Tile(*c, b"bytes of c" * 1000), ledger)
            finally:
                with admin.cursor() as cur:
                    cur.execute("UNLOCK TABLES")
            assert len(ledger.of("refused")) == 2, ledger.outcomes
            assert_exactly_stored(
                http_port, config, ledger.acked, store_root=tmp_path / "objects"
            )
    finally:
        with admin.cursor() as cur:
            cur.execute(f"SET GLOBAL lock_wait_timeout = {int(saved)}")
        admin.close()


def _stream_one(daemon: Daemon, channel: str, tile: Tile, ledger: Ledger) -> None:
    stream = Stream(channel, daemon, [tile], ledger, threading.Event())
    stream.start()
    stream.finish()
