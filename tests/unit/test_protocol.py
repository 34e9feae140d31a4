"""Unit tests for the raw TCP wire format (CONTRACT §3.1-§3.4)."""

from __future__ import annotations

import hashlib
import importlib
import random
from pathlib import Path

import flatbuffers
import pytest

from imagecatcher.protocol import (
    PREFIX,
    BadMessage,
    TileResponse,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    frame,
)

BENCH = Path(__file__).resolve().parents[3] / "shared" / "bench"
IMAGE = bytes(range(16)) * 4  # a multiple of 4 bytes: no trailing padding
CHECKSUM = hashlib.md5(IMAGE).digest()


def valid_request() -> bytes:
    """A well-formed request buffer for a stable tile."""
    return encode_request(123, 1, -1, 6, 17, CHECKSUM, IMAGE)


@pytest.mark.parametrize("frame_number", [-1, 0, 7])
def test_request_round_trip(frame_number: int) -> None:
    """Every request field survives encode then decode, frames -1 and 0 included."""
    request = decode_request(
        encode_request(2**63 + 5, 3, frame_number, 6, 17, CHECKSUM, IMAGE)
    )
    assert request.acq_id == 2**63 + 5
    assert (request.camera, request.frame, request.col, request.row) == (
        3,
        frame_number,
        6,
        17,
    )
    assert request.checksum == CHECKSUM
    assert isinstance(request.image, memoryview)
    assert request.image == IMAGE


def test_request_image_is_a_view_of_the_buffer() -> None:
    """The decoded image shares memory with the frame instead of copying it."""
    buf = bytearray(valid_request())
    request = decode_request(buf)  # type: ignore[arg-type]
    start = bytes(buf).index(IMAGE)
    buf[start] ^= 0xFF
    assert request.image[0] == IMAGE[0] ^ 0xFF


def test_request_with_empty_vectors() -> None:
    """Empty checksum and image vectors decode as empty bytes."""
    request = decode_request(encode_request(1, 0, 0, 0, 0, b"", b""))
    assert request.checksum == b""
    assert bytes(request.image) == b""


def test_response_round_trip() -> None:
    """Every response field survives encode then decode, negative ids included."""
    response = TileResponse(
        acq_id=2**64 - 1,
        tile_id=-834,
        status=1,
        system_status=2,
        tile_queue_status=1,
        content_queue_status=2,
    )
    assert decode_response(encode_response(response)) == response


def test_default_response_round_trip() -> None:
    """An all-zero response (every field absent) decodes as all zero."""
    assert decode_response(encode_response(TileResponse())) == TileResponse()


def test_absent_request_fields_read_zero() -> None:
    """A request holding only acqId reads 0 for the scalars and empty vectors."""
    builder = flatbuffers.Builder(64)
    builder.StartObject(7)
    builder.PrependUint64Slot(0, 42, 0)
    builder.Finish(builder.EndObject())
    request = decode_request(bytes(builder.Output()))
    assert request.acq_id == 42
    assert (request.camera, request.frame, request.col, request.row) == (0, 0, 0, 0)
    assert request.checksum == b""
    assert bytes(request.image) == b""


def test_absent_response_fields_read_zero() -> None:
    """A response holding only acqId reads 0 for every other field."""
    builder = flatbuffers.Builder(64)
    builder.StartObject(6)
    builder.PrependUint64Slot(0, 42, 0)
    builder.Finish(builder.EndObject())
    assert decode_response(bytes(builder.Output())) == TileResponse(acq_id=42)


def test_every_truncation_of_a_request_is_bad() -> None:
    """Each proper prefix of a valid request raises BadMessage, nothing else."""
    buf = valid_request()
    for length in range(len(buf)):
        with pytest.raises(BadMessage):
            decode_request(buf[:length])


def test_every_truncation_of_a_response_is_bad() -> None:
    """Truncating a response raises BadMessage and never another exception."""
    buf = encode_response(TileResponse(acq_id=9, tile_id=8, status=1))
    for length in range(len(buf)):
        with pytest.raises(BadMessage):
            decode_response(buf[:length])


def test_vector_past_the_end_is_bad() -> None:
    """An image vector whose length runs past the buffer raises BadMessage."""
    buf = bytearray(valid_request())
    length_at = bytes(buf).index(PREFIX.pack(len(IMAGE)) + IMAGE)
    PREFIX.pack_into(buf, length_at, len(IMAGE) + 1)
    with pytest.raises(BadMessage, match="past the end"):
        decode_request(bytes(buf))


@pytest.mark.parametrize(
    "buf",
    [
        b"",
        b"\x00",
        b"\x00\x00\x00",
        b"\xff\xff\xff\xff",
        b"\x04\x00\x00\x00",
        b"\x08\x00\x00\x00\x00\x00\x00\x00",
        b"\x04\x00\x00\x00\xff\xff\xff\x7f",
        b"\x04\x00\x00\x00\x00\x00\x00\x80",
        b"garbage, not a flatbuffer",
    ],
)
def test_garbage_is_bad(buf: bytes) -> None:
    """Short or nonsensical buffers raise BadMessage from both decoders."""
    with pytest.raises(BadMessage):
        decode_request(buf)
    with pytest.raises(BadMessage):
        decode_response(buf)


def test_corrupted_requests_raise_only_bad_message() -> None:
    """Randomly corrupted and random buffers either decode or raise BadMessage."""
    rnd = random.Random(1234)
    valid = valid_request()
    for _ in range(3000):
        if rnd.random() < 0.5:
            buf = rnd.randbytes(rnd.randint(0, 48))
        else:
            corrupt = bytearray(valid)
            for _ in range(rnd.randint(1, 3)):
                corrupt[rnd.randrange(len(corrupt))] = rnd.getrandbits(8)
            buf = bytes(corrupt)
        for decode in (decode_request, decode_response):
            try:
                decode(buf)
            except BadMessage:
                pass


def test_reference_generated_request_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request built with the reference generated classes decodes field by field."""
    assert BENCH.is_dir(), f"{BENCH} is missing"
    monkeypatch.syspath_prepend(str(BENCH))
    gen = importlib.import_module("idls.tilerequests.ImageTileRequest")
    builder = flatbuffers.Builder(256)
    gen.StartImageVector(builder, len(IMAGE))
    for byte in reversed(IMAGE):
        builder.PrependUint8(byte)
    image = builder.EndVector()
    gen.StartChecksumVector(builder, len(CHECKSUM))
    for byte in reversed(CHECKSUM):
        builder.PrependUint8(byte)
    checksum = builder.EndVector()
    gen.Start(builder)
    gen.AddAcqId(builder, 123)
    gen.AddCamera(builder, 2)
    gen.AddFrame(builder, -1)
    gen.AddCol(builder, 6)
    gen.AddRow(builder, 17)
    gen.AddChecksum(builder, checksum)
    gen.AddImage(builder, image)
    builder.Finish(gen.End(builder))
    request = decode_request(bytes(builder.Output()))
    assert (request.acq_id, request.camera, request.frame) == (123, 2, -1)
    assert (request.col, request.row) == (6, 17)
    assert request.checksum == CHECKSUM
    assert request.image == IMAGE


def test_reference_generated_reader_reads_our_response(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reference generated response reader reads what encode_response writes."""
    assert BENCH.is_dir(), f"{BENCH} is missing"
    monkeypatch.syspath_prepend(str(BENCH))
    gen = importlib.import_module("idls.tilerequests.ImageTileResponse")
    buf = encode_response(
        TileResponse(acq_id=123, tile_id=834, status=1, system_status=2)
    )
    message = gen.ImageTileResponse.GetRootAs(buf, 0)
    assert (message.AcqId(), message.TileId()) == (123, 834)
    assert (message.Status(), message.SystemStatus()) == (1, 2)
    assert (message.TileQueueStatus(), message.ContentQueueStatus()) == (0, 0)


def test_frame_prefixes_little_endian_length() -> None:
    """frame() prepends the little-endian uint32 length of the message."""
    assert frame(b"abc") == b"\x03\x00\x00\x00abc"
    assert frame(b"") == b"\x00\x00\x00\x00"
