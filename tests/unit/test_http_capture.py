"""capture-image-content through twisted.web: bodies stream into sinks, refusals leave nothing.

A real HTTPChannel and Site with the daemon's request class, the Klein API and
a real Pipeline over a FileStore, all synchronous (inline thread pool, a
clock that runs thread callbacks at once), fed raw request bytes in pieces.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import attrs
import pytest

from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from imagecatcher.db.repository import Repository
from imagecatcher.pipeline import Pipeline, Stage
from imagecatcher.sink import MAX_PENDING
from imagecatcher.spool import Spool
from imagecatcher.storage.fs import FileStore
from imagecatcher.web.access import AccessPolicy
from imagecatcher.web.app import CatcherAPI
from imagecatcher.web.request import BodyBuffer, CatcherRequest
from imagecatcher.web.tilebody import TileBody
from tests.storefakes import HeldPool, ImmediateReactor, SyncThreadPool, result_of
from tests.unit.test_multipart import BOUNDARY, CTYPE, Field, encode
from tests.unit.test_pipeline import ACQ, UID, FakeRepository, ThreadlessClock

MAX_TILE = 2 * 1024 * 1024
NAME = "col0006_row0017_cam1.tif"
PATH = f"/service/v1/capture-image-content/{UID}"


@attrs.define
class Answer:
    """A parsed HTTP response."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


@attrs.define
class Daemon:
    """The HTTP side of a daemon, in memory."""

    site: Site
    pipeline: Pipeline
    repo: FakeRepository
    root: Path
    pool: ThreadPool

    def connect(self) -> tuple[Any, StringTransport]:
        """A new connection: its protocol and transport."""
        protocol = self.site.buildProtocol(None)
        assert protocol is not None
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def send(self, raw: bytes, piece: int = 65536) -> Answer:
        """Send one request in pieces of ``piece`` bytes; the response."""
        protocol, transport = self.connect()
        for i in range(0, len(raw), piece):
            protocol.dataReceived(raw[i : i + piece])
        if isinstance(self.pool, HeldPool):
            self.pool.release()
        return parse(transport.value())

    def stored(self, name: str = NAME) -> bytes:
        """What the file store holds for a tile of the acquisition."""
        return (self.root / "FAFB" / "acquisitions" / str(UID) / name).read_bytes()

    def leftovers(self) -> list[Path]:
        """Files in the staging directory (received, never placed)."""
        staging = self.pipeline.staging_dir
        return list(staging.iterdir()) if staging.exists() else []

    def tiles(self) -> int:
        """Tiles recorded."""
        return len(self.repo.tiles)


def parse(raw: bytes) -> Answer:
    """One HTTP/1.1 response with a Content-Length."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no response: {raw!r}"
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(lines[0].split()[1]), headers, body)


def make_daemon(
    tmp_path: Path,
    pool: ThreadPool | None = None,
    max_tile: int = MAX_TILE,
    access: AccessPolicy | None = None,
) -> Daemon:
    """A Site serving the API over a Pipeline and FileStore, synchronous."""
    pool = pool or SyncThreadPool()
    clock = ThreadlessClock()
    repo = FakeRepository(ACQ)
    store = FileStore(tmp_path / "objects", ImmediateReactor(), pool)
    pipeline = Pipeline(
        cast(Repository, repo),
        store,
        Spool(tmp_path / "spool", ImmediateReactor(), pool),
        clock,
        pool,
        tile_stage=Stage(1, 1, 1.0, clock),
        content_stage=Stage(1, 1, 1.0, clock),
        jfs_mapping={"FAFB_00": "FAFB"},
        local=store,
        max_tile_bytes=max_tile,
    )
    api = CatcherAPI(
        cast(Repository, repo),
        store,
        clock,
        pipeline.status,
        pipeline=pipeline,
        max_tile_bytes=max_tile,
        access=access,
    )
    site = Site(api.resource(), reactor=MemoryReactorClock())
    site.requestFactory = CatcherRequest.for_daemon(
        max_tile, pipeline.open_sink, access=access
    )
    return Daemon(site, pipeline, repo, tmp_path / "objects", pool)


@pytest.fixture
def daemon(tmp_path: Path) -> Daemon:
    """The in-memory daemon."""
    return make_daemon(tmp_path)


def request(
    method: str,
    target: str,
    body: bytes,
    headers: Iterable[tuple[str, str]] = (),
    chunked: bool = False,
) -> bytes:
    """The bytes of one request."""
    lines = [f"{method} {target} HTTP/1.1", "Host: x"]
    lines += [f"{k}: {v}" for k, v in headers]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        coded = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 5000]), body[i : i + 5000])
            for i in range(0, len(body), 5000)
        )
        body = coded + b"0\r\n\r\n"
    else:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def raw_put(data: bytes, name: str = NAME, *headers: tuple[str, str]) -> bytes:
    """A raw-body capture."""
    return request("PUT", f"{PATH}?tile-filename={name}", data, headers)


def form_post(fields: list[Field], *headers: tuple[str, str]) -> bytes:
    """A multipart capture."""
    return request("POST", PATH, encode(fields), [("Content-Type", CTYPE), *headers])


def md5_header(data: bytes) -> tuple[str, str]:
    """A Content-MD5 header for ``data``."""
    return ("Content-MD5", base64.b64encode(hashlib.md5(data).digest()).decode())


# -- captured ----------------------------------------------------------------------


@pytest.mark.parametrize("piece", [1000, 65536, 1 << 20])
def test_raw_tile_in_pieces_is_stored_byte_for_byte(daemon: Daemon, piece: int) -> None:
    """A raw PUT sent in pieces is stored exactly and acknowledged with its SHA-1."""
    data = os.urandom(MAX_TILE)
    answer = daemon.send(raw_put(data, NAME, md5_header(data)), piece)
    assert answer.status == 200, answer.body
    assert answer.json()["tile_file_checksum"] == hashlib.sha1(data).hexdigest()
    assert daemon.stored() == data and daemon.leftovers() == []


@pytest.mark.parametrize("piece", [7, 1000, 65536])
def test_multipart_tile_in_pieces_is_stored_byte_for_byte(
    daemon: Daemon, piece: int
) -> None:
    """A multipart POST in pieces: tile-file stored exactly, checksums verified."""
    data = os.urandom(300_000 if piece > 7 else 20_000)
    data = data.replace(b"\r\n--", b"\r\n-+")
    answer = daemon.send(
        form_post(
            [
                Field("tile-file", data, f"col0006/{NAME}"),
                Field("checksum", hashlib.md5(data).digest()),
                Field("checksum-str", hashlib.md5(data).hexdigest().encode()),
            ]
        ),
        piece,
    )
    assert answer.status == 200, answer.body
    assert answer.json()["tile_col"] == 6 and answer.json()["tile_row"] == 17
    assert daemon.stored() == data and daemon.leftovers() == []


def test_chunked_raw_tile_is_stored(daemon: Daemon) -> None:
    """A raw body without Content-Length (chunked) streams the same way."""
    data = os.urandom(100_000)
    raw = request("PUT", f"{PATH}?tile-filename={NAME}", data, chunked=True)
    answer = daemon.send(raw, 3000)
    assert answer.status == 200, answer.body
    assert daemon.stored() == data and daemon.leftovers() == []


def test_a_slow_disk_pauses_the_connection(tmp_path: Path) -> None:
    """While the sink's writes lag, the connection's transport is paused."""
    pool = HeldPool()
    daemon = make_daemon(tmp_path, pool, max_tile=4 * MAX_PENDING)
    data = os.urandom(2 * MAX_PENDING)
    protocol, transport = daemon.connect()
    raw = raw_put(data)
    head = len(raw) - len(data)
    protocol.dataReceived(raw[:head])
    states = []
    for i in range(head, len(raw), 65536):
        protocol.dataReceived(raw[i : i + 65536])
        states.append(transport.producerState)
    # the sink's pending bytes passed its bound before the body ended
    assert "paused" in states
    pool.release()
    answer = parse(transport.value())
    assert answer.status == 200, answer.body
    assert daemon.stored() == data and daemon.leftovers() == []
    assert transport.producerState == "producing"


# -- refused: nothing stays behind ------------------------------------------------------


def test_md5_mismatch_leaves_nothing(daemon: Daemon) -> None:
    """A Content-MD5 that does not match: 400, no tile, no file anywhere."""
    data = os.urandom(500_000)
    answer = daemon.send(raw_put(data, NAME, md5_header(b"other")), 4096)
    assert answer.status == 400 and "do not match" in answer.json()["errormessage"]
    assert daemon.tiles() == 0 and daemon.leftovers() == []
    assert not list(daemon.root.rglob("*.tif"))


def test_multipart_checksum_mismatch_leaves_nothing(daemon: Daemon) -> None:
    """A checksum-str that does not match the tile part: 400, nothing kept."""
    answer = daemon.send(
        form_post(
            [
                Field("tile-file", b"tile bytes", NAME),
                Field("checksum-str", hashlib.md5(b"x").hexdigest().encode()),
            ]
        )
    )
    assert answer.status == 400 and "do not match" in answer.json()["errormessage"]
    assert daemon.tiles() == 0 and daemon.leftovers() == []


@pytest.mark.parametrize(
    ("raw", "status", "message"),
    [
        (raw_put(b"data", "col1_row2.tif"), 400, "Invalid tile file name"),
        (
            request("PUT", PATH, b"data"),
            400,
            "Invalid tile file name",
        ),
        (
            request("PUT", f"{PATH}?tile-filename={NAME}&checksum=zz", b"data"),
            400,
            "not hexadecimal",
        ),
        (
            raw_put(b"data", NAME, ("Content-MD5", "!!")),
            400,
            "Invalid Content-MD5",
        ),
        (
            request(
                "PUT", f"/service/v1/capture-image-content/x?tile-filename={NAME}", b"d"
            ),
            400,
            "acqId",
        ),
        (
            request(
                "PUT",
                f"/service/v1/capture-image-content/999?tile-filename={NAME}",
                b"d",
            ),
            404,
            "No mosaic image found for acquisition id 999",
        ),
        (
            form_post([Field("tile-filename", NAME.encode())]),
            400,
            "No tile-file part",
        ),
        (
            form_post([Field("tile-file", b"t", "not-a-tile.bin")]),
            400,
            "Invalid tile file name",
        ),
        (
            form_post(
                [Field("tile-file", b"t", NAME), Field("checksum", b"short")],
            ),
            400,
            "an MD5 is 16 bytes",
        ),
        (
            form_post(
                [
                    Field("tile-file", b"t", NAME),
                    Field("checksum-str", hashlib.md5(b"t").hexdigest().encode()),
                    Field("checksum", hashlib.md5(b"u").digest()),
                ]
            ),
            400,
            "disagree",
        ),
        (
            request(
                "POST",
                PATH,
                encode([Field("tile-file", b"tile", NAME)])[:-10],
                [("Content-Type", CTYPE)],
            ),
            400,
            "Error parsing the request: malformed multipart body",
        ),
        (
            request(
                "POST",
                PATH,
                b"--" + BOUNDARY.encode() + b"\r\nno header\r\n\r\nx",
                [("Content-Type", CTYPE)],
            ),
            400,
            "malformed multipart body",
        ),
        (
            request(
                "POST",
                PATH,
                b"anything",
                [("Content-Type", "multipart/form-data")],
            ),
            400,
            "no boundary",
        ),
    ],
    ids=[
        "bad-name",
        "no-name",
        "bad-hex-checksum",
        "bad-content-md5",
        "bad-acqid",
        "unknown-acquisition",
        "no-tile-file-part",
        "bad-part-file-name",
        "short-checksum",
        "checksums-disagree",
        "truncated-form",
        "bad-part-header",
        "no-boundary",
    ],
)
def test_refused_captures_leave_nothing(
    daemon: Daemon, raw: bytes, status: int, message: str
) -> None:
    """Every refusal is a JSON error, and no tile or received file remains."""
    answer = daemon.send(raw, 1000)
    assert answer.status == status, answer.body
    assert answer.headers["content-type"] == "application/json"
    assert message in answer.json()["errormessage"]
    assert daemon.tiles() == 0 and daemon.leftovers() == []


@pytest.mark.parametrize("chunked", [False, True])
def test_oversized_raw_tile_is_413(daemon: Daemon, chunked: bool) -> None:
    """A tile over MAX_TILE_BYTES is 413 and closes; nothing is kept."""
    raw = request(
        "PUT", f"{PATH}?tile-filename={NAME}", b"x" * (MAX_TILE + 1), chunked=chunked
    )
    answer = daemon.send(raw)
    assert answer.status == 413 and "larger than" in answer.json()["errormessage"]
    assert answer.headers["connection"] == "close"
    assert daemon.tiles() == 0 and daemon.leftovers() == []


def test_oversized_multipart_tile_is_413(daemon: Daemon) -> None:
    """A tile-file part over MAX_TILE_BYTES is 413; the partial file is deleted."""
    answer = daemon.send(form_post([Field("tile-file", b"x" * (MAX_TILE + 1), NAME)]))
    assert answer.status == 413
    assert daemon.tiles() == 0 and daemon.leftovers() == []


@pytest.mark.parametrize("multipart", [False, True])
def test_disconnect_mid_body_leaves_nothing(daemon: Daemon, multipart: bool) -> None:
    """A client that hangs up mid-body never reaches the route; its file is deleted."""
    data = os.urandom(MAX_TILE)
    raw = form_post([Field("tile-file", data, NAME)]) if multipart else raw_put(data)
    protocol, _transport = daemon.connect()
    for i in range(0, len(raw) // 2, 65536):
        protocol.dataReceived(raw[i : i + 65536])
    assert daemon.leftovers(), "the sink wrote part of the tile"
    protocol.connectionLost(Failure(ConnectionDone()))
    assert daemon.tiles() == 0 and daemon.leftovers() == []


# -- which requests stream ---------------------------------------------------------------


class _Kinds(Resource):
    """Records the type of each request's content object."""

    isLeaf = True  # noqa: N815 - Twisted's name

    def __init__(self) -> None:
        super().__init__()
        self.kinds: list[type] = []

    def render(self, request: Request) -> bytes:
        self.kinds.append(type(request.content))
        return b"ok"


@pytest.mark.parametrize(
    ("method", "target", "kind"),
    [
        ("PUT", f"{PATH}?tile-filename={NAME}", TileBody),
        ("POST", PATH, TileBody),
        ("GET", PATH, BodyBuffer),
        ("POST", f"{PATH}/extra", BodyBuffer),
        ("POST", "/service/v1/capture-image-content/", BodyBuffer),
        ("POST", "/service/v1/start-acquisition", BodyBuffer),
        ("POST", "/service/v1/end-acquisition/1", BodyBuffer),
    ],
)
def test_only_capture_bodies_stream(
    tmp_path: Path, method: str, target: str, kind: type
) -> None:
    """PUT/POST to capture-image-content get a TileBody; other requests a buffer.

    A TileBody whose route never runs (here: a plain resource) is discarded
    when the request ends.
    """
    daemon = make_daemon(tmp_path)
    kinds = _Kinds()
    daemon.site.resource = kinds
    protocol, _transport = daemon.connect()
    protocol.dataReceived(request(method, target, b"some body"))
    assert kinds.kinds == [kind]
    assert daemon.leftovers() == []


# -- another Request class: the body is buffered, then fed the same way -----------------


def _stub(daemon: Daemon) -> HTTPClient:
    return cast(HTTPClient, StubTreq(daemon.site.resource))


@pytest.mark.parametrize("multipart", [False, True])
def test_buffered_bodies_are_captured_too(daemon: Daemon, multipart: bool) -> None:
    """Through a plain twisted Request (StubTreq) the route feeds the buffered body."""
    data = os.urandom(50_000).replace(b"\r\n--", b"\r\n-+")
    if multipart:
        headers: dict[bytes | str, bytes | str] = {"Content-Type": CTYPE}
        d = _stub(daemon).post(
            f"http://x{PATH}",
            data=encode([Field("tile-file", data, NAME)]),
            headers=headers,
        )
    else:
        d = _stub(daemon).put(f"http://x{PATH}?tile-filename={NAME}", data=data)
    response = result_of(d)
    assert response.code == 200, result_of(response.content())
    assert daemon.stored() == data and daemon.leftovers() == []


def test_buffered_bad_request_leaves_nothing(daemon: Daemon) -> None:
    """A refused buffered capture discards the sink it was fed into."""
    d = _stub(daemon).put(f"http://x{PATH}?tile-filename=bad.tif", data=b"data")
    response = result_of(d)
    assert response.code == 400 and daemon.leftovers() == []
