"""TileBody: a capture body streamed into a tile sink as it arrives, never joined.

Sinks are real (files under ``tmp_path``); their thread work runs inline, or
waits in :class:`HeldPool` to play a disk that falls behind.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from twisted.internet.defer import Deferred
from twisted.python.threadpool import ThreadPool

from imagecatcher.sink import BATCH_BYTES, MAX_PENDING, SinkFactory, TileSink
from imagecatcher.web.tilebody import FIELD_BYTES, TileBody
from tests.storefakes import (
    HeldPool,
    ImmediateReactor,
    SyncThreadPool,
    result_of,
    run,
)
from tests.unit.test_multipart import BOUNDARY, CTYPE, Field, encode

MAX_TILE = 100_000
MAX_BODY = MAX_TILE + 1000
NAME = "col0001_row0002_cam0.tif"
TILE = b"\r\n--" + BOUNDARY[:-1].encode() + b"\r\n" + os.urandom(300) + b"\r\n--\r"


class Pausable:
    """A producer that records whether it is paused."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's name
        """Record a pause."""
        self.events.append("pause")

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted's name
        """Record a resume."""
        self.events.append("resume")


class Sinks:
    """Opens real sinks in one directory; counts them."""

    def __init__(
        self, directory: Path, pool: ThreadPool | None = None, limit: int = MAX_TILE
    ) -> None:
        self.directory = directory
        self._factory = SinkFactory(
            directory, ImmediateReactor(), pool or SyncThreadPool(), limit
        )
        self.opened: list[TileSink] = []

    def open(self) -> TileSink:
        """A new sink."""
        sink = self._factory.open()
        self.opened.append(sink)
        return sink

    def files(self) -> list[Path]:
        """Files left in the directory."""
        return list(self.directory.iterdir()) if self.directory.exists() else []


@pytest.fixture
def sinks(tmp_path: Path) -> Sinks:
    """Sinks whose thread work runs at once."""
    return Sinks(tmp_path / "in")


def body_of(
    sinks: Sinks,
    ctype: str,
    length: int | None = None,
    producer: Pausable | None = None,
    max_tile: int = MAX_TILE,
) -> TileBody:
    """A TileBody over ``sinks`` with the test limits."""
    return TileBody(
        sinks.open,
        ctype,
        length=length,
        max_tile=max_tile,
        max_body=max_tile + 1000,
        producer=producer,
    )


def feed(body: TileBody, pieces: Iterable[bytes]) -> TileBody:
    """Write the pieces, as twisted.web would."""
    for piece in pieces:
        body.write(piece)
    return body


def tile_of(body: TileBody) -> bytes:
    """Take the body's sink, finish it, and return (then delete) its bytes."""
    sink = body.take()
    assert sink is not None
    received = run(sink.finish())
    data = received.path.read_bytes()
    assert received.md5 == hashlib.md5(data).digest() and received.size == len(data)
    run(sink.discard())
    return data


def chunks(data: bytes, size: int) -> list[bytes]:
    """``data`` in pieces of ``size`` bytes."""
    return [data[i : i + size] for i in range(0, len(data), size)]


FORM_FIELDS: Sequence[Field] = (
    Field("tile-file", TILE, f"col0001/{NAME}", "application/octet-stream"),
    Field("ignored", b"\x00" * 500),
    Field("tile-filename", NAME.encode()),
    Field("checksum", hashlib.md5(TILE).digest()),
    Field("checksum-str", hashlib.md5(TILE).hexdigest().encode()),
)


def check_form(body: TileBody) -> None:
    """The form's tile went to the sink and its fields were kept, in order."""
    assert body.error is None and body.too_large is None
    assert body.has_file and body.file_name == f"col0001/{NAME}"
    assert tile_of(body) == TILE
    assert body.fields == [
        ("tile-filename", NAME.encode()),
        ("checksum", hashlib.md5(TILE).digest()),
        ("checksum-str", hashlib.md5(TILE).hexdigest().encode()),
    ]


# -- raw bodies ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 7, 4096, 65536, BATCH_BYTES + 1])
def test_raw_body_goes_to_the_sink_as_it_arrives(sinks: Sinks, size: int) -> None:
    """Every chunk of a raw body reaches one sink; the file holds the body."""
    data = os.urandom(MAX_TILE if size > 7 else 5000)
    body = feed(body_of(sinks, "application/octet-stream"), chunks(data, size))
    assert not body.multipart and body.size == len(data) and body.tell() == len(data)
    assert tile_of(body) == data
    assert len(sinks.opened) == 1 and sinks.files() == []


def test_an_empty_raw_body_is_an_empty_tile(sinks: Sinks) -> None:
    """A body of no bytes still gives a sink and an empty file."""
    assert tile_of(body_of(sinks, "", length=0)) == b""


def test_raw_body_declared_too_large_opens_no_sink(sinks: Sinks) -> None:
    """A Content-Length over MAX_TILE_BYTES is refused before any byte is kept."""
    body = feed(body_of(sinks, "application/octet-stream", MAX_TILE + 1), [b"x"] * 10)
    assert body.too_large == f"Tile larger than {MAX_TILE} bytes"
    assert body.take() is None and sinks.opened == [] and body.size == 10


def test_raw_body_streamed_past_the_limit_stops_writing(sinks: Sinks) -> None:
    """Without a length, the bytes past the limit are counted, not written."""
    body = feed(body_of(sinks, "application/octet-stream"), [b"x" * 60_000] * 3)
    assert body.too_large == f"Tile larger than {MAX_TILE} bytes"
    sink = body.take()
    assert sink is not None and sink.size == 60_000
    run(sink.discard())
    assert sinks.files() == []


def test_the_file_api_twisted_web_uses(sinks: Sinks) -> None:
    """tell is the bytes received; seek and read do nothing (the body is gone)."""
    body = feed(body_of(sinks, ""), [b"abc", b"de"])
    assert body.tell() == 5 and body.seek(0, 0) == 0 and body.read() == b""
    assert tile_of(body) == b"abcde"


# -- multipart bodies -----------------------------------------------------------------


def test_form_split_at_every_byte(sinks: Sinks) -> None:
    """Two pieces cut at every offset (delimiters, headers, payload) give one tile."""
    form = encode(FORM_FIELDS)
    for cut in range(len(form) + 1):
        check_form(feed(body_of(sinks, CTYPE), [form[:cut], form[cut:]]))
    assert sinks.files() == []


def test_form_one_byte_at_a_time(sinks: Sinks) -> None:
    """A form arriving byte by byte gives the same tile and fields."""
    form = encode(FORM_FIELDS)
    check_form(feed(body_of(sinks, CTYPE, len(form)), chunks(form, 1)))


@pytest.mark.parametrize("size", [3, 1000, 65536])
def test_form_in_chunks(sinks: Sinks, size: int) -> None:
    """A form in chunks of any size gives the same tile and fields."""
    form = encode(FORM_FIELDS)
    check_form(feed(body_of(sinks, CTYPE), chunks(form, size)))


def test_the_tile_part_may_come_last(sinks: Sinks) -> None:
    """Fields before the tile part are kept as well as after it."""
    form = encode([*FORM_FIELDS[1:], FORM_FIELDS[0]])
    check_form(feed(body_of(sinks, CTYPE), chunks(form, 100)))


def test_unknown_parts_are_not_kept(sinks: Sinks) -> None:
    """A large unknown part is dropped: neither a field nor in the tile."""
    form = encode([Field("other", b"y" * 50_000), Field("tile-file", b"tile", NAME)])
    body = feed(body_of(sinks, CTYPE), chunks(form, 4096))
    assert body.fields == [] and tile_of(body) == b"tile"


def test_form_without_tile_part_opens_no_sink(sinks: Sinks) -> None:
    """No tile-file part: no sink, and the route is told so."""
    body = feed(body_of(sinks, CTYPE), [encode([Field("tile-filename", b"x")])])
    assert body.take() is None and not body.has_file and body.error is None
    assert body.fields == [("tile-filename", b"x")] and sinks.opened == []


def test_tile_part_past_the_limit_is_too_large(sinks: Sinks) -> None:
    """A tile part over MAX_TILE_BYTES is refused; what was written is discarded."""
    form = encode([Field("tile-file", b"t" * (MAX_TILE + 1), NAME)])
    body = feed(body_of(sinks, CTYPE), chunks(form, 4096))
    assert body.too_large == f"Tile larger than {MAX_TILE} bytes"
    sink = body.take()
    assert sink is not None and sink.size <= MAX_TILE
    run(sink.discard())
    assert sinks.files() == []


def test_form_body_past_its_limit_is_too_large(sinks: Sinks) -> None:
    """A form body over the tile limit plus framing is refused, declared or not."""
    declared = body_of(sinks, CTYPE, MAX_BODY + 1)
    assert declared.too_large == "Request body too large" and declared.take() is None
    form = encode([Field("other", b"o" * MAX_BODY), Field("tile-file", b"t", NAME)])
    streamed = feed(body_of(sinks, CTYPE), chunks(form, 4096))
    assert streamed.too_large == "Request body too large"
    assert streamed.take() is None and sinks.opened == []


def test_fields_are_capped(sinks: Sinks) -> None:
    """Small parts beyond their cap are a malformed request (400), not memory."""
    form = encode([Field("tile-filename", b"n" * (FIELD_BYTES + 1))])
    body = feed(body_of(sinks, CTYPE), chunks(form, 1000))
    assert body.error is not None and "exceed" in str(body.error)
    assert body.fields == []


def test_two_tile_parts_are_refused(sinks: Sinks) -> None:
    """A second tile-file part is an error; the first one's sink is discarded."""
    form = encode([Field("tile-file", b"one", NAME), Field("tile-file", b"two", NAME)])
    body = feed(body_of(sinks, CTYPE), [form])
    assert body.error is not None and "more than one tile-file" in str(body.error)
    sink = body.take()
    assert sink is not None
    run(sink.discard())
    assert sinks.files() == []


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (b"--" + BOUNDARY.encode() + b"junk\r\n", "Unexpected byte"),
        (encode(FORM_FIELDS)[:-40], "ended before the closing boundary"),
        (
            encode([Field("tile-file", TILE, NAME)]).replace(
                b"Content-Disposition: form-data", b"Content-Disposition: attachment"
            ),
            "Wrong type",
        ),
    ],
    ids=["bad-delimiter", "truncated", "not-form-data"],
)
def test_malformed_forms_are_remembered(
    sinks: Sinks, form: bytes, message: str
) -> None:
    """A malformed form is an error for the route; the sink opened is discarded."""
    body = feed(body_of(sinks, CTYPE), chunks(form, 1000))
    sink = body.take()
    assert body.error is not None and message in str(body.error)
    assert str(body.error).startswith("malformed multipart body: ")
    if sink is not None:
        run(sink.discard())
    assert sinks.files() == []


def test_a_form_without_boundary_is_an_error_at_once(sinks: Sinks) -> None:
    """multipart/form-data without a boundary parameter is refused, no sink opened."""
    body = feed(body_of(sinks, "multipart/form-data"), [b"whatever"])
    assert body.error is not None and "no boundary" in str(body.error)
    assert body.take() is None and sinks.opened == []


# -- ownership ------------------------------------------------------------------------


@pytest.mark.parametrize("ctype", ["application/octet-stream", CTYPE])
def test_a_body_abandoned_mid_way_leaves_nothing(sinks: Sinks, ctype: str) -> None:
    """A client that leaves mid-body: abandon() deletes what was written."""
    data = encode(FORM_FIELDS) if ctype == CTYPE else os.urandom(MAX_TILE)
    body = feed(body_of(sinks, ctype), chunks(data[: len(data) // 2], 1000))
    assert len(sinks.opened) == 1
    body.abandon()
    body.close()  # twisted.web's cleanup after it: harmless
    assert sinks.files() == []


def test_a_taken_sink_is_the_routes(sinks: Sinks) -> None:
    """After take(), close() and abandon() leave the sink to its new owner."""
    body = feed(body_of(sinks, ""), [b"tile"])
    sink = body.take()
    body.abandon()
    body.close()
    assert sink is not None
    assert run(sink.finish()).path.read_bytes() == b"tile"
    run(sink.discard())


def test_a_slow_disk_pauses_the_client(tmp_path: Path) -> None:
    """While the sink's writes fall behind, the producer (the connection) is paused."""
    pool = HeldPool()
    limit = 64 * 1024 * 1024
    sinks = Sinks(tmp_path / "in", pool, limit)
    producer = Pausable()
    body = body_of(sinks, "", producer=producer, max_tile=limit)
    sent = 0
    while not producer.events:
        body.write(b"z" * 65536)
        sent += 65536
        assert sent <= MAX_PENDING + 2 * BATCH_BYTES, "never paused"
    assert producer.events == ["pause"]
    pool.release()
    assert producer.events == ["pause", "resume"]
    sink = body.take()
    assert sink is not None
    finished = Deferred.fromCoroutine(sink.finish())
    pool.release()
    received = result_of(finished)
    assert received.size == sent and received.path.read_bytes() == b"z" * sent
    discarded = Deferred.fromCoroutine(sink.discard())
    pool.release()
    result_of(discarded)
    assert sinks.files() == []
