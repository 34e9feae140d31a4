"""Hostile and sloppy clients against a running daemon (issue 12, item 6).

A seeded fuzzing client sends malformed, truncated and lying frames over many
TCP connections while a well-behaved rig keeps sending tiles: every good tile
is acknowledged and stored byte for byte, nothing else leaves a row or a
file, every fuzzing connection is answered or closed.  Hundreds of idle TCP
connections and a few uploads trickling in at a few bytes per second do not
keep a rig's tiles from being acknowledged; the trickles are dropped and
their partial tiles removed, and the daemon's memory stays bounded.  Only
functional assertions: nothing here times the daemon.
"""

from __future__ import annotations

import hashlib
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import attrs
import pytest

from imagecatcher.config import Config
from imagecatcher.protocol import PREFIX, TileResponse, decode_response, encode_request
from imagecatcher.tcp import FRAME_OVERHEAD
from tests.integration.daemon import (
    http_get,
    ports,
    run_tool,
    running,
    twistd_argv,
    write_config,
)
from tests.integration.dbcheck import scalar
from tests.integration.httpclient import (
    read_frame,
    send_tile,
    start_fixture_acquisition,
)

MIB = 1024 * 1024
MAX_TILE = 8 * MIB
MAX_FRAME = MAX_TILE + FRAME_OVERHEAD
ACQ = 123


@attrs.frozen
class Daemon:
    """A running daemon with a file store and acquisition 123 started."""

    http: int
    tcp: int
    directory: Path
    config: Config
    pid: int

    @property
    def objects(self) -> Path:
        """The file store's root."""
        return self.directory / "objects"

    @property
    def staging(self) -> Path:
        """Where tiles are received before they are placed."""
        return self.objects / ".incoming"

    def staged(self) -> list[Path]:
        """Files received and not placed (yet)."""
        return list(self.staging.iterdir()) if self.staging.exists() else []

    def files(self) -> set[Path]:
        """Every file under the store root, the staging directory included."""
        return {p for p in self.objects.rglob("*") if p.is_file()}

    def stored(self, name: str) -> bytes:
        """The stored bytes of a tile of acquisition 123."""
        return (self.objects / "FAFB" / "acquisitions" / str(ACQ) / name).read_bytes()

    def count(self, table: str) -> int:
        """Rows in ``table``."""
        return int(scalar(self.config, f"SELECT COUNT(*) FROM {table}"))

    def rss(self) -> int:
        """The daemon's resident memory in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def log(self) -> str:
        """What the daemon logged so far."""
        return (self.directory / "daemon.log").read_text(errors="replace")


@attrs.frozen
class Baseline:
    """What the store and database held before the tiles came."""

    files: set[Path]
    tiles: int
    replicas: int


def baseline(d: Daemon) -> Baseline:
    """Files and rows before any tile."""
    return Baseline(
        d.files(), d.count("tem_camera_images"), d.count("file_object_fs_replicas")
    )


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Start a daemon on a given engine's database with extra keys."""
    stack: list[object] = []

    def start(config: Config, **extra: object) -> Daemon:
        cfg = write_config(
            tmp_path,
            config,
            JFS_MAPPING={"PING": "FAFB", "FAFB_00": "FAFB"},
            MAX_TILE_BYTES=MAX_TILE,
            **extra,
        )
        result = run_tool(["--config", str(cfg), "db-init"], tmp_path)
        assert result.returncode == 0, result.stderr
        http_port, tcp_port = ports()
        ctx = running(twistd_argv(cfg, http_port, tcp_port), tmp_path, http_port)
        proc = ctx.__enter__()
        stack.append(ctx)
        start_fixture_acquisition(http_port)
        return Daemon(http_port, tcp_port, tmp_path, config, proc.pid)

    yield start
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)  # type: ignore[attr-defined]


def wait_until(check: Callable[[], bool], seconds: float = 60.0) -> bool:
    """Poll ``check`` until it holds or ``seconds`` pass; whether it held."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


# -- the well-behaved rig --------------------------------------------------------------


@attrs.frozen
class Tile:
    """A tile the rig sent and what the daemon said."""

    name: str
    data: bytes
    reply: TileResponse


def rig(d: Daemon, cols: range, row: int, sizes: list[int], seed: int) -> list[Tile]:
    """One rig connection: a tile per column, each waiting for its answer."""
    rng = random.Random(seed)
    tiles = []
    with socket.create_connection(("127.0.0.1", d.tcp), timeout=120) as s:
        for i, col in enumerate(cols):
            data = rng.randbytes(sizes[i % len(sizes)])
            reply = send_tile(s, ACQ, 0, -1, col, row, hashlib.md5(data).digest(), data)
            tiles.append(Tile(f"col{col:04d}_row{row:04d}_cam0.tif", data, reply))
    return tiles


def check_tiles(d: Daemon, before: Baseline, tiles: list[Tile]) -> None:
    """Every tile acknowledged and stored byte for byte; nothing else kept."""
    assert [t.reply.status for t in tiles] == [0] * len(tiles)
    assert len({t.reply.tile_id for t in tiles}) == len(tiles)
    for tile in tiles:
        assert d.stored(tile.name) == tile.data, tile.name
    assert d.count("tem_camera_images") == before.tiles + len(tiles)
    assert d.count("file_object_fs_replicas") == before.replicas + len(tiles)
    assert wait_until(lambda: not d.staged(), 30), d.staged()
    placed = {d.objects / "FAFB" / "acquisitions" / str(ACQ) / t.name for t in tiles}
    assert d.files() == before.files | placed


# -- the fuzzing client ----------------------------------------------------------------


def fuzz_payload(rng: random.Random) -> bytes:
    """A request that can never be stored: its checksum is wrong, or its
    acquisition does not exist; then up to three mutations."""
    image = rng.randbytes(rng.choice([0, 9, 1000, 70_000, 300_000, 1_200_000]))
    if rng.random() < 0.5:
        acq, checksum = ACQ, hashlib.md5(image + b"not it").digest()
    else:
        acq, checksum = 2**40 + rng.randrange(2**20), hashlib.md5(image).digest()
    hostile = [-(2**31), -2, -1, 10, 10_000, 2**31 - 1]

    def field(valid: int) -> int:  # mostly a valid value: the tile gets far
        return rng.choice(hostile) if rng.random() < 0.2 else rng.randrange(valid)

    camera, col, row = field(10), field(2000), field(2000)
    frame_no = -1 if rng.random() < 0.5 else field(100_000)
    buf = bytearray(encode_request(acq, camera, frame_no, col, row, checksum, image))
    for _ in range(rng.randrange(4)):
        op = rng.randrange(5)
        at = rng.randrange(min(len(buf), 100))
        if op == 0:
            buf[at] ^= 1 << rng.randrange(8)
        elif op == 1 and at + 4 <= len(buf):
            value = rng.choice(
                [0, 1, 0x7FFFFFFF, 0xFFFFFFFF, len(buf), rng.getrandbits(32)]
            )
            struct.pack_into("<I", buf, at, value)
        elif op == 2 and at + 2 <= len(buf):
            struct.pack_into("<H", buf, at, rng.getrandbits(16))
        elif op == 3:
            del buf[rng.randrange(len(buf) + 1) :]
        else:
            buf += rng.randbytes(rng.choice([1, 64, 70_000]))
    return bytes(buf)


def fuzz_stream(rng: random.Random) -> tuple[bytes, bool]:
    """What one fuzzing connection sends; whether it then waits for answers."""
    parts = []
    for _ in range(rng.randrange(1, 6)):
        kind = rng.randrange(10)
        if kind < 6:
            payload = fuzz_payload(rng)
            length = len(payload)
            if rng.random() < 0.1:
                length = max(0, length + rng.randrange(-8, 9))
        elif kind < 8:
            payload = rng.randbytes(rng.choice([0, 3, 40, 100_000]))
            length = len(payload)
        elif kind == 8:
            payload, length = b"", 0
        else:
            # Over-long: nothing after it can be framed, so nothing is sent
            # (bytes the daemon would never read could turn its close into
            # a reset that loses the answers).
            length = rng.choice([MAX_FRAME + 1, 2**31, 2**32 - 1])
            parts.append(PREFIX.pack(length))
            break
        parts.append(PREFIX.pack(length) + payload)
    stream = b"".join(parts)
    if rng.random() < 0.3:
        stream = stream[: rng.randrange(len(stream) + 1)]
    return stream, rng.random() < 0.8


def framing(stream: bytes) -> tuple[int, int | None]:
    """Complete frames before anything else, and where an over-long prefix
    that follows them ends (§3.1 read plainly)."""
    frames, pos = 0, 0
    while len(stream) - pos >= PREFIX.size:
        (length,) = PREFIX.unpack_from(stream, pos)
        if length > MAX_FRAME:
            return frames, pos + PREFIX.size
        if len(stream) - pos - PREFIX.size < length:
            break
        frames += 1
        pos += PREFIX.size + length
    return frames, None


def fuzz_connection(d: Daemon, rng: random.Random) -> str:
    """Send one fuzzed stream in random pieces; check what comes back."""
    stream, wait = fuzz_stream(rng)
    frames, too_long_end = framing(stream)
    too_long = too_long_end is not None
    if too_long_end is not None:  # a lying length may have made one anywhere
        stream = stream[:too_long_end]
    with socket.create_connection(("127.0.0.1", d.tcp), timeout=60) as s:
        try:
            pos = 0
            while pos < len(stream):
                size = rng.choice([1, 7, 100, 4096, 65536, 1 << 20])
                s.sendall(stream[pos : pos + size])
                pos += size
        except OSError as e:
            raise AssertionError(f"the daemon closed a connection early: {e}") from e
        if not wait:
            return "left"
        answers = [decode_response(read_frame(s)) for _ in range(frames + too_long)]
        assert all(a.status == 1 for a in answers), answers
        if too_long:
            assert answers[-1].acq_id == 0
            try:
                assert s.recv(1) == b""  # closed: the frame boundary is lost
            except ConnectionResetError:
                pass
            return "closed"
        return "answered"


def test_fuzzing_clients_do_not_disturb_a_rig(
    engine_config: Config, start_daemon: Callable[..., Daemon]
) -> None:
    """Four fuzzing clients (120 connections of garbage) while a rig sends 24
    tiles: the rig is served throughout, nothing stray is kept, every fuzzing
    connection is answered or closed, and the daemon logged no traceback."""
    d = start_daemon(engine_config)
    before = baseline(d)
    rig_done = threading.Event()

    def fuzzer(seed: int) -> list[str]:
        rng = random.Random(seed)
        outcomes = [fuzz_connection(d, rng) for _ in range(30)]
        while not rig_done.is_set():  # keep at it until the rig is done
            outcomes.append(fuzz_connection(d, rng))
        return outcomes

    with ThreadPoolExecutor(5) as pool:
        fuzzers = [pool.submit(fuzzer, seed) for seed in range(4)]
        try:
            tiles = rig(d, range(24), 1, [1000, 70_000, 300_000, 2 * MIB], seed=99)
        finally:
            rig_done.set()
        outcomes = [o for f in fuzzers for o in f.result()]
    assert len(outcomes) >= 120
    assert {"answered", "closed", "left"} <= set(outcomes)
    check_tiles(d, before, tiles)
    assert http_get(d.http, "/service/v1/ping")[0] == 200
    assert "Traceback" not in d.log()


# -- idle connections and slow uploads -------------------------------------------------


def trickle(d: Daemon, head: bytes, first: bytes, stop: threading.Event) -> bool:
    """Send a request head and a first burst, then 3 bytes a second until
    the daemon drops the connection (True) or ``stop`` is set (False)."""
    with socket.create_connection(("127.0.0.1", d.http), timeout=5) as s:
        s.sendall(head + first)
        while not stop.wait(1.0):
            try:
                s.sendall(b"abc")
                s.settimeout(0.01)
                if s.recv(65536) == b"":
                    return True
            except TimeoutError:
                pass
            except OSError:
                return True
            finally:
                s.settimeout(5)
    return False


def put_head(length: int, name: str) -> bytes:
    """A raw capture PUT's head."""
    return (
        f"PUT /service/v1/capture-image-content/{ACQ}?tile-filename={name} HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def form_head(length: int, boundary: str) -> bytes:
    """A multipart capture POST's head."""
    return (
        f"POST /service/v1/capture-image-content/{ACQ} HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nContent-Length: {length}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
    ).encode()


def test_idle_connections_and_trickling_uploads_do_not_hold_up_a_rig(
    mariadb_config: Config, start_daemon: Callable[..., Daemon]
) -> None:
    """300 idle TCP connections and five uploads at 3 bytes a second stay open
    while a rig sends 20 tiles of 1-5 MiB on 4 connections: every tile is
    acknowledged and stored, the trickles are dropped with nothing left in
    the staging directory, and the daemon's memory grows less than 150 MiB."""
    d = start_daemon(mariadb_config, HTTP_BODY_TIMEOUT=2, HTTP_BODY_MIN_RATE=100)
    before = baseline(d)
    rss_before = d.rss()
    idle = []
    for i in range(300):
        s = socket.create_connection(("127.0.0.1", d.tcp), timeout=30)
        if i % 3 == 1:
            s.sendall(PREFIX.pack(5 * MIB)[:2])  # half a prefix
        elif i % 3 == 2:
            s.sendall(PREFIX.pack(5 * MIB) + b"\x10\x00")  # a big frame begun
        idle.append(s)
    stop = threading.Event()
    first = random.Random(5).randbytes(600 * 1024)  # enough to open a sink's file
    boundary = "b0undary"
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="tile-file";'
        ' filename="col0900_row0001_cam0.tif"\r\n\r\n'
    ).encode()
    with ThreadPoolExecutor(9) as pool:
        trickles = [
            pool.submit(
                trickle,
                d,
                put_head(4 * MIB, f"col09{i:02d}_row0000_cam0.tif"),
                first,
                stop,
            )
            for i in range(3)
        ] + [
            pool.submit(trickle, d, form_head(4 * MIB, boundary), part + first, stop)
            for _ in range(2)
        ]
        assert wait_until(lambda: len(d.staged()) == 5, 30)  # the trickles' sinks
        sizes = [1 * MIB, 3 * MIB, 5 * MIB, 2 * MIB, 4 * MIB]
        rigs = [pool.submit(rig, d, range(5), row, sizes, seed=row) for row in range(4)]
        tiles = [t for r in rigs for t in r.result()]
        dropped = [t.result(timeout=60) for t in trickles]
        stop.set()
    assert dropped == [True] * 5
    assert all(s.fileno() != -1 for s in idle)
    for s in idle[::50]:  # still open: the limit is far away and none was dropped
        s.settimeout(0.05)
        with pytest.raises(TimeoutError):
            s.recv(1)
    for s in idle:
        s.close()
    check_tiles(d, before, tiles)
    grown = d.rss() - rss_before
    assert grown < 150 * MIB, f"RSS grew {grown / MIB:.1f} MiB"
    assert "dropping" in d.log()


def test_connections_beyond_the_limit_are_closed_at_once(
    mariadb_config: Config, start_daemon: Callable[..., Daemon]
) -> None:
    """With TCP_MAX_CONNECTIONS 5 the sixth connection is closed unread; one
    place freed lets a rig in, and its tile is stored."""
    d = start_daemon(mariadb_config, TCP_MAX_CONNECTIONS=5)
    before = baseline(d)
    held = [
        socket.create_connection(("127.0.0.1", d.tcp), timeout=30) for _ in range(5)
    ]
    time.sleep(0.5)  # let the daemon accept them
    with socket.create_connection(("127.0.0.1", d.tcp), timeout=30) as extra:
        try:
            assert extra.recv(1) == b""
        except ConnectionResetError:
            pass
    held.pop().close()
    tiles: list[Tile] = []

    def accepted() -> bool:
        tile = _one_tile(d)
        if tile is not None:
            tiles.append(tile)
        return tile is not None

    assert wait_until(accepted, 30)
    for s in held:
        s.close()
    check_tiles(d, before, tiles)
    assert "TCP_MAX_CONNECTIONS" in d.log()


def _one_tile(d: Daemon) -> Tile | None:
    """Send one tile if a connection is accepted; None when it is refused."""
    data = b"one tile"
    try:
        with socket.create_connection(("127.0.0.1", d.tcp), timeout=30) as s:
            reply = send_tile(s, ACQ, 0, -1, 1, 1, hashlib.md5(data).digest(), data)
    except (ConnectionError, OSError):
        return None
    return Tile("col0001_row0001_cam0.tif", data, reply)
