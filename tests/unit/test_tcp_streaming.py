"""The TCP receiver streams a tile's image bytes into a sink as they arrive (§3, STYLE §4)."""

from __future__ import annotations

import hashlib
import os

import flatbuffers
import pytest

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from imagecatcher.protocol import (
    PREFIX,
    TileRequest,
    TileResponse,
    decode_response,
    encode_request,
    frame,
)
from imagecatcher.tcp import STREAM_MIN, TileProtocol

IMAGE = os.urandom(3 * STREAM_MIN + 12345)
MD5 = hashlib.md5(IMAGE).digest()


class FakeSink:
    """Records what a real sink would hash and write."""

    def __init__(self, pause_after: int | None = None) -> None:
        self.chunks: list[bytes] = []
        self.discarded = False
        self.producer: object = None
        self._pause_after = pause_after

    def attach(self, producer: object) -> None:
        """Remember who to pause."""
        self.producer = producer

    def write(self, data: bytes | memoryview) -> None:
        """Keep a copy of the chunk; pause the producer past the threshold."""
        self.chunks.append(bytes(data))
        if self._pause_after is not None and len(self.data) > self._pause_after:
            self.producer.pauseProducing()  # type: ignore[attr-defined]
            self._pause_after = None

    @property
    def data(self) -> bytes:
        """Everything written so far."""
        return b"".join(self.chunks)

    async def discard(self) -> None:
        """Note the discard."""
        self.discarded = True


class StreamingHandler:
    """Opens fake sinks and answers with the request's column as tile id."""

    def __init__(self, gate: Deferred[None] | None = None) -> None:
        self.sinks: list[FakeSink] = []
        self.calls: list[tuple[TileRequest, FakeSink | None]] = []
        self.gate = gate
        self.pause_after: int | None = None

    def open_sink(self) -> FakeSink:
        """A new fake sink."""
        sink = FakeSink(self.pause_after)
        self.sinks.append(sink)
        return sink

    async def capture(
        self, request: TileRequest, sink: FakeSink | None = None
    ) -> TileResponse:
        """Record the call; wait for the gate when there is one."""
        self.calls.append((request, sink))
        if self.gate is not None:
            gate, self.gate = self.gate, None
            await gate
        return TileResponse(acq_id=request.acq_id, tile_id=request.col)


def connect(handler: StreamingHandler) -> tuple[TileProtocol, StringTransport]:
    """A TileProtocol on a StringTransport."""
    proto = TileProtocol(handler, 0.0)  # type: ignore[arg-type]
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def responses(transport: StringTransport) -> list[TileResponse]:
    """Every framed response written so far."""
    data, out = transport.value(), []
    while data:
        (length,) = PREFIX.unpack_from(data)
        out.append(decode_response(data[PREFIX.size : PREFIX.size + length]))
        data = data[PREFIX.size + length :]
    return out


def tile_frame(col: int = 7, image: bytes = IMAGE) -> bytes:
    """A framed request of acquisition 161105213017 (drift, five-digit frame)."""
    md5 = hashlib.md5(image).digest()
    return frame(encode_request(161105213017, 2, 54321, col, 5, md5, image))


def feed(proto: TileProtocol, data: bytes, size: int) -> None:
    """Deliver ``data`` in chunks of ``size`` bytes."""
    for i in range(0, len(data), size):
        proto.dataReceived(data[i : i + size])


@pytest.mark.parametrize("size", [1, 3, 4, 5, 97, 4096, 65536, 10**9])
def test_image_bytes_reach_the_sink_in_order(size: int) -> None:
    """However the frame is cut, the sink gets exactly the image, once, and the
    request's fields are read from the bytes around it."""
    data = tile_frame()
    if size == 1:
        data = data[:70_000]  # byte by byte: the head and a part of the image
    handler = StreamingHandler()
    proto, transport = connect(handler)
    feed(proto, data, size)
    if size == 1:
        assert len(handler.sinks) == 1 and IMAGE.startswith(handler.sinks[0].data)
        return
    [(request, sink)] = handler.calls
    assert sink is handler.sinks[0] and sink.data == IMAGE
    assert max(len(c) for c in sink.chunks) <= size
    assert (request.acq_id, request.camera, request.frame) == (161105213017, 2, 54321)
    assert (request.col, request.row, request.checksum) == (7, 5, MD5)
    assert len(request.image) == 0
    assert responses(transport) == [TileResponse(acq_id=161105213017, tile_id=7)]
    assert proto.partial_bytes == 0


def _checksum_last(image: bytes) -> bytes:
    """A request whose checksum vector lies after the image in the buffer."""
    b = flatbuffers.Builder(len(image) + 128)
    checksum_vec = b.CreateByteVector(hashlib.md5(image).digest())
    image_vec = b.CreateByteVector(image)
    b.StartObject(7)
    b.PrependUint64Slot(0, 42, 0)
    b.PrependInt32Slot(2, -1, 0)
    b.PrependInt32Slot(3, 3, 0)
    b.PrependUOffsetTRelativeSlot(5, checksum_vec, 0)
    b.PrependUOffsetTRelativeSlot(6, image_vec, 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


def test_fields_after_the_image_are_kept() -> None:
    """A builder that puts the checksum after the image is read correctly too."""
    handler = StreamingHandler()
    proto, _ = connect(handler)
    feed(proto, frame(_checksum_last(IMAGE)), 1000)
    [(request, sink)] = handler.calls
    assert sink is not None and sink.data == IMAGE
    assert (request.acq_id, request.frame, request.col, request.checksum) == (
        42,
        -1,
        3,
        MD5,
    )


def test_garbage_frame_is_refused_and_the_connection_stays_open() -> None:
    """A big frame that is no FlatBuffer gets status 1; the next tile is served."""
    handler = StreamingHandler()
    proto, transport = connect(handler)
    garbage = b"\xff" * (STREAM_MIN * 2)
    feed(proto, frame(garbage) + tile_frame(col=9), 8192)
    assert [r.status for r in responses(transport)] == [1, 0]
    assert [r.tile_id for r in responses(transport)] == [0, 9]
    assert not transport.disconnecting


def test_peer_leaving_mid_image_discards_the_sink() -> None:
    """A tile cut off by the peer leaves no file behind: its sink is discarded."""
    handler = StreamingHandler()
    proto, _ = connect(handler)
    feed(proto, tile_frame()[: STREAM_MIN * 2], 4096)
    proto.connectionLost(Failure(ConnectionDone()))
    [sink] = handler.sinks
    assert sink.discarded and handler.calls == []
    assert proto.partial_bytes == 0


def test_frames_arriving_while_busy_are_kept_whole_and_answered_in_order() -> None:
    """The tile behind one still being handled is not streamed; both are answered
    in order once the first finishes."""
    gate: Deferred[None] = Deferred()
    handler = StreamingHandler(gate)
    proto, transport = connect(handler)
    proto.dataReceived(tile_frame(col=1) + tile_frame(col=2))
    assert len(handler.calls) == 1 and responses(transport) == []
    assert transport.producerState == "paused"
    gate.callback(None)
    assert [r.tile_id for r in responses(transport)] == [1, 2]
    second_request, second_sink = handler.calls[1]
    assert second_sink is None and bytes(second_request.image) == IMAGE
    assert transport.producerState == "producing"


def test_a_sink_falling_behind_pauses_the_connection() -> None:
    """The sink can hold the peer back; the pause is its own, not the busy one."""
    handler = StreamingHandler()
    handler.pause_after = STREAM_MIN
    proto, transport = connect(handler)
    proto.dataReceived(tile_frame()[: STREAM_MIN * 3])
    assert transport.producerState == "paused"
    proto.resume("sink")
    assert transport.producerState == "producing"


def test_small_frames_are_not_streamed() -> None:
    """A frame below STREAM_MIN is decoded whole; no sink is opened."""
    handler = StreamingHandler()
    proto, _ = connect(handler)
    proto.dataReceived(tile_frame(image=b"tiny"))
    [(request, sink)] = handler.calls
    assert sink is None and bytes(request.image) == b"tiny" and handler.sinks == []
