"""The fault suite's tools: processes it stops and starts, tile streams, the final check.

- :class:`StoppableMariaDB`: a private MariaDB started like the session
  fixture's, which a test may stop and start again on the same datadir and
  port while a daemon uses it (the session server is never stopped).
- :class:`FakeStore`: the fake sproxyd as a process, with a journal that
  tells what it holds.
- :class:`Daemon`: ``twistd imagecatcher`` that a test kills, stops and
  starts again.
- :class:`Tile`, :class:`Ledger`, :class:`Stream`: what a rig sends over TCP
  or HTTP and what it was answered.
- :func:`assert_exactly_stored`: every acknowledged tile is stored with
  identical bytes and checksum, and nothing else is.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import attrs
import pymysql

from imagecatcher.config import Config
from imagecatcher.names import tile_name_for
from imagecatcher.protocol import TileResponse
from imagecatcher.rois import parse_roi_tiles
from tests.conftest import FIXTURES, PROJECT, STRICT_SQL_MODE, MariaDB, _find, free_port
from tests.integration.daemon import http_get, twistd_argv
from tests.integration.dbcheck import rows
from tests.integration.httpclient import request, send_tile

#: The acquisition of the shared fixtures (start_fixture_acquisition).
UID = 123


def wait_for(what: str, check: Callable[[], object], timeout: float = 30.0) -> None:
    """Poll ``check`` every 0.1 s until it is true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


# -- processes ---------------------------------------------------------------------


class StoppableMariaDB:
    """A private mariadbd in ``base`` that can be stopped and started again."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.datadir = base / "data"
        self.socket = str(base / "mysqld.sock")
        self.port = free_port()
        self.server = MariaDB("127.0.0.1", self.port, self.socket)
        self._proc: subprocess.Popen[bytes] | None = None
        self._user = ["--user=root"] if os.geteuid() == 0 else []

    @property
    def running(self) -> bool:
        """Whether mariadbd runs now."""
        return self._proc is not None and self._proc.poll() is None

    def install(self) -> None:
        """Create the datadir, start the server and create the test user."""
        subprocess.run(
            [
                _find("mariadb-install-db", "mysql_install_db"),
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
                *self._user,
            ],
            check=True,
            capture_output=True,
        )
        self.start()
        conn = self.server.admin()
        with conn.cursor() as cur:
            for host in ("localhost", "127.0.0.1"):
                cur.execute(
                    f"CREATE USER '{self.server.user}'@'{host}'"
                    f" IDENTIFIED BY '{self.server.password}'"
                )
                cur.execute(
                    f"GRANT ALL PRIVILEGES ON *.* TO '{self.server.user}'@'{host}'"
                )
        conn.close()

    def start(self, timeout: float = 60) -> None:
        """Start mariadbd on the datadir and port and wait until it answers."""
        assert not self.running, "mariadbd runs already"
        log = open(self.base / "error.log", "ab")
        self._proc = subprocess.Popen(
            [
                _find("mariadbd", "mysqld"),
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--socket={self.socket}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--pid-file={self.base / 'mysqld.pid'}",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=64M",
                "--innodb-flush-log-at-trx-commit=2",
                "--character-set-server=utf8mb4",
                "--max-connections=200",
                "--sql-mode=" + STRICT_SQL_MODE,
                *self._user,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.server.admin().close()
                return
            except pymysql.MySQLError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "mariadbd did not start: "
                        + (self.base / "error.log").read_text()[-2000:]
                    ) from None
                time.sleep(0.1)

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM mariadbd and wait until it has exited."""
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def new_database(self, name: str) -> Config:
        """Create an empty database; a Config pointing at it."""
        conn = self.server.admin()
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        conn.close()
        return self.server.config(name)


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    def listening() -> bool:
        assert proc.poll() is None, f"exited {proc.returncode}: {log.read_text()}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    wait_for(f"port {port}", listening)


class FakeStore:
    """The fake sproxyd (``tests.integration.sproxyd_main``) as a process.

    Each start is empty (the fake keeps its objects in memory); the journal
    tells which objects the running fake holds.
    """

    def __init__(self, port: int, directory: Path) -> None:
        self.port = port
        self.journal = directory / "sproxyd.journal"
        self._log = directory / "sproxyd.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The CONTENT_STORE_URL naming it."""
        return f"sproxyd://127.0.0.1:{self.port}/proxy/bparc"

    def start(self) -> None:
        """Start the fake and wait until it listens."""
        out = open(self._log, "ab")
        argv = [sys.executable, "-m", "tests.integration.sproxyd_main"]
        self._proc = subprocess.Popen(
            [*argv, str(self.port), str(self.journal)],
            cwd=PROJECT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(PROJECT)},
        )
        out.close()
        _wait_port(self.port, self._proc, self._log)

    def stop(self) -> None:
        """Stop the fake (it forgets every object)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=20)
        self._proc = None

    def objects(self) -> dict[str, dict[str, Any]]:
        """What the fake holds now, by key: ``sha1``, ``size`` and ``path``."""
        held: dict[str, dict[str, Any]] = {}
        if not self.journal.exists():
            return held
        for line in self.journal.read_text().splitlines():
            record = json.loads(line)
            if record["op"] == "start":
                held.clear()
            elif record["op"] == "put":
                held[record["key"]] = record
            else:
                held.pop(record["key"], None)
        return held

    def __enter__(self) -> FakeStore:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class Daemon:
    """``twistd imagecatcher`` on loopback ports, started as often as a test wants.

    Every run appends to ``daemon.log`` in ``cwd``.
    """

    def __init__(
        self, config_path: Path, cwd: Path, http_port: int, tcp_port: int
    ) -> None:
        self.argv = twistd_argv(config_path, http_port, tcp_port)
        self.cwd = cwd
        self.http_port = http_port
        self.tcp_port = tcp_port
        self.log = cwd / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        """Start it and wait until both ports answer (ping may still say 500)."""
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            self.argv, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT
        )
        out.close()
        proc = self.proc

        def serving() -> bool:
            assert proc.poll() is None, f"exited {proc.returncode}: {self.log_text()}"
            try:
                http_get(self.http_port, "/service/v1/ping")
                socket.create_connection(("127.0.0.1", self.tcp_port), 1).close()
            except OSError:
                return False
            return True

        wait_for("the daemon to listen", serving)
        return proc

    def kill9(self) -> None:
        """SIGKILL it and reap it."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self) -> int:
        """SIGTERM it and wait for its exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the daemon did not stop within 60 s") from None
        self.proc = None
        return code

    def log_text(self) -> str:
        """Everything the daemon has logged so far."""
        return self.log.read_text(errors="replace")

    @contextmanager
    def running(self) -> Iterator[subprocess.Popen[bytes]]:
        """Started for the ``with`` block, stopped (SIGTERM) after it."""
        proc = self.start()
        try:
            yield proc
        finally:
            if self.proc is not None:
                self.stop()


# -- what the rig sends ------------------------------------------------------------


def roi_cells() -> list[tuple[int, int]]:
    """Every (col, row) of the fixture acquisition's ROI tiles, sorted."""
    tiles = parse_roi_tiles((FIXTURES / "123_ROI_tiles.csv").read_text())
    return sorted({(t.col, t.row) for t in tiles.tiles})


@attrs.frozen
class Tile:
    """One tile as a rig sends it."""

    col: int
    row: int
    data: bytes = attrs.field(repr=lambda v: f"<{len(v)} bytes>")
    camera: int = 0
    frame: int = -1

    @property
    def name(self) -> str:
        """The file name the daemon stores it under."""
        return tile_name_for(self.col, self.row, self.camera, self.frame)

    @property
    def md5(self) -> bytes:
        """The MD5 the rig sends with it."""
        return hashlib.md5(self.data).digest()

    @property
    def sha1(self) -> bytes:
        """The SHA-1 the daemon records for it."""
        return hashlib.sha1(self.data).digest()


def send_tcp(sock: socket.socket, tile: Tile, uid: int = UID) -> TileResponse:
    """Send one tile on a TCP connection and read its answer."""
    return send_tile(
        sock, uid, tile.camera, tile.frame, tile.col, tile.row, tile.md5, tile.data
    )


def put_http(
    port: int, tile: Tile, uid: int = UID, timeout: float = 30
) -> tuple[int, Any]:
    """Capture one tile with a raw HTTP PUT; (status, parsed JSON body or text)."""
    status, _, raw = request(
        port,
        "PUT",
        f"/service/v1/capture-image-content/{uid}"
        f"?tile-filename={tile.name}&checksum={tile.md5.hex()}",
        tile.data,
        {"Content-Type": "application/octet-stream"},
        timeout=timeout,
    )
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


@attrs.frozen
class Outcome:
    """What one tile was answered: ``acked``, ``refused`` or ``lost`` (no answer)."""

    channel: str
    tile: Tile
    sent: float
    answered: float
    kind: str
    tile_id: int = 0
    detail: Any = None


@attrs.define
class Ledger:
    """Everything a rig was told, kept across daemon restarts (thread-safe)."""

    #: The last acknowledged tile and its id, by tile name.
    acked: dict[str, tuple[int, Tile]] = attrs.field(factory=dict)
    #: Tiles sent without an answer (the daemon died): stored or not, re-send.
    unanswered: dict[str, Tile] = attrs.field(factory=dict)
    outcomes: list[Outcome] = attrs.field(factory=list)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def record(self, outcome: Outcome) -> None:
        """Remember one answer (or its absence)."""
        with self._lock:
            self.outcomes.append(outcome)
            name = outcome.tile.name
            if outcome.kind == "acked":
                self.acked[name] = (outcome.tile_id, outcome.tile)
                self.unanswered.pop(name, None)
            elif outcome.kind == "lost":
                self.unanswered[name] = outcome.tile

    def of(self, kind: str, channel: str | None = None) -> list[Outcome]:
        """The outcomes of that kind (on that channel)."""
        with self._lock:
            return [
                o
                for o in self.outcomes
                if o.kind == kind and channel in (None, o.channel)
            ]


class Stream(threading.Thread):
    """Sends tiles one after another over ``channel`` ("tcp" or "http").

    A TCP stream keeps one connection; an HTTP stream makes one PUT per tile.
    A tile without an answer is recorded ``lost``; then the stream ends,
    unless ``persist`` (it then waits for the daemon to come back).
    """

    def __init__(
        self,
        channel: str,
        daemon: Daemon,
        tiles: Iterable[Tile],
        ledger: Ledger,
        stop: threading.Event,
        pause: float = 0.0,
        persist: bool = False,
    ) -> None:
        super().__init__(name=f"{channel}-stream", daemon=True)
        self.channel = channel
        self._port = daemon.tcp_port if channel == "tcp" else daemon.http_port
        self._tiles = iter(tiles)
        self._ledger = ledger
        self._halt = stop
        self._pause = pause
        self._persist = persist
        self._sock: socket.socket | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for tile in self._tiles:
                if self._halt.is_set():
                    return
                if not self._one(tile) and not self._persist:
                    return
                if self._pause:
                    self._halt.wait(self._pause)
        except BaseException as e:  # reported by the test that joins
            self.error = e
        finally:
            if self._sock is not None:
                self._sock.close()

    def _one(self, tile: Tile) -> bool:
        sent = time.monotonic()
        try:
            if self.channel == "tcp":
                if self._sock is None:
                    self._sock = socket.create_connection(
                        ("127.0.0.1", self._port), timeout=30
                    )
                reply = send_tcp(self._sock, tile)
                outcome = Outcome(
                    "tcp",
                    tile,
                    sent,
                    time.monotonic(),
                    "acked" if reply.status == 0 else "refused",
                    reply.tile_id,
                    reply,
                )
            else:
                status, body = put_http(self._port, tile)
                outcome = Outcome(
                    "http",
                    tile,
                    sent,
                    time.monotonic(),
                    "acked" if status == 200 else "refused",
                    body["tile_id"] if status == 200 else 0,
                    (status, body),
                )
        except (OSError, http.client.HTTPException) as e:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            self._ledger.record(
                Outcome(self.channel, tile, sent, time.monotonic(), "lost", 0, e)
            )
            if self._persist:
                self._halt.wait(0.2)
            return False
        self._ledger.record(outcome)
        return True

    def finish(self, timeout: float = 60) -> None:
        """Join the thread; fail the test with its error, if any."""
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} did not finish"
        if self.error is not None:
            raise self.error


# -- the final check ---------------------------------------------------------------


def content_rows(config: Config) -> dict[int, tuple[str, bytes, str, str]]:
    """Tiles with content recorded: id -> (name, SHA-1, jfs_key, location_url)."""
    found = rows(
        config,
        "SELECT t.tem_camera_image_id, r.path, f.sha1_checksum, r.jfs_key,"
        " r.location_url FROM tem_camera_images t"
        " JOIN file_objects f ON f.file_object_id = t.file_object_id"
        " JOIN file_object_fs_replicas r ON r.file_object_id = t.file_object_id"
        " WHERE f.sha1_checksum IS NOT NULL",
    )
    return {
        int(i): (str(name), bytes(sha1), str(key or ""), str(url or ""))
        for i, name, sha1, key, url in found
    }


def link_states(config: Config) -> dict[int, set[str]]:
    """The ROI link states of every tile that has links, by tile id."""
    states: dict[int, set[str]] = {}
    for tile_id, state in rows(
        config, "SELECT tem_camera_image_id, current_state FROM roi_images"
    ):
        states.setdefault(int(tile_id), set()).add(str(state))
    return states


def store_files(root: Path) -> dict[Path, bytes]:
    """Every file under a file store's root, by path relative to it."""
    return {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def spool_leftovers(spool: Path) -> list[str]:
    """Spool files that are neither set aside (``*.bad``) nor absent: entries,
    temporary files, tiles being received."""
    if not spool.is_dir():
        return []
    return sorted(
        str(p.relative_to(spool))
        for p in spool.rglob("*")
        if p.is_file() and not p.name.endswith(".bad")
    )


def assert_exactly_stored(
    http_port: int,
    config: Config,
    acked: Mapping[str, tuple[int, Tile]],
    *,
    store_root: Path | None = None,
    spool: Path | None = None,
    fake: FakeStore | None = None,
    unstored: Mapping[int, Tile] | None = None,
) -> None:
    """Every acknowledged tile is stored, identical and verified; nothing else is.

    ``unstored`` are tiles whose content is recorded but was never stored
    (``jfs_key`` empty): damaged spool entries set aside.
    """
    unstored = dict(unstored or {})
    wanted = {tile_id: tile for tile_id, tile in acked.values()}
    assert len(wanted) == len(acked), "two tile names were given one tile id"
    recorded = content_rows(config)
    assert set(recorded) == set(wanted) | set(unstored), (
        f"tiles with content {sorted(recorded)}, acknowledged {sorted(wanted)}"
    )
    for tile_id, tile in {**wanted, **unstored}.items():
        name, sha1, key, _ = recorded[tile_id]
        assert (name, sha1) == (tile.name, tile.sha1), (tile_id, name, tile)
        assert bool(key) == (tile_id in wanted), (tile_id, key)
    for tile_id, tile in wanted.items():
        status, _, content = request(
            http_port, "GET", f"/service/v1/tile/{tile_id}/content"
        )
        assert status == 200 and content == tile.data, (tile_id, status, len(content))
        status, _, verified = request(
            http_port,
            "GET",
            f"/service/v1/verify-tile/{UID}/tile/{tile_id}?checksum-algorithm=SHA1",
        )
        assert status == 200, verified
        assert json.loads(verified)["calculatedChecksum"] == tile.sha1.hex()
    if store_root is not None:
        files = store_files(store_root)
        receiving = [p for p in files if p.parts[0] == ".incoming"]
        assert not receiving, receiving
        tiles = {p: data for p, data in files.items() if p.suffix == ".tif"}
        expected = {
            Path(unquote(urlparse(recorded[i][3]).path)).relative_to(store_root): t
            for i, t in wanted.items()
        }
        assert set(tiles) == set(expected), (
            f"stray files {sorted(map(str, set(tiles) - set(expected)))},"
            f" missing {sorted(map(str, set(expected) - set(tiles)))}"
        )
        assert all(tiles[p] == t.data for p, t in expected.items())
    if spool is not None:
        assert not spool_leftovers(spool), spool_leftovers(spool)
    if fake is not None:
        held = fake.objects()
        good = {t.sha1.hex() for t in wanted.values()}
        tiles_held = {k: o for k, o in held.items() if o["path"].endswith(".tif")}
        strays = {k: o for k, o in tiles_held.items() if o["sha1"] not in good}
        assert not strays, f"objects never acknowledged: {strays}"
        for tile_id, tile in wanted.items():
            key = recorded[tile_id][2]
            assert held[key]["sha1"] == tile.sha1.hex(), (tile_id, key)
