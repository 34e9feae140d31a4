"""Regression tests for what the TCP fuzzer found, and the limits against hostile peers."""

from __future__ import annotations

import hashlib

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.python.failure import Failure

from imagecatcher.protocol import (
    PREFIX,
    TileRequest,
    TileResponse,
    decode_response,
    encode_request,
    frame,
)
from imagecatcher.sink import TileSink
from imagecatcher.tcp import HELD_FRAMES, STREAM_MIN, TileFactory, TileProtocol

IMAGE = b"tile bytes" * 8


class GatedHandler:
    """Every capture waits for the test to open its gate."""

    def __init__(self) -> None:
        self.gates: list[Deferred[TileResponse]] = []

    async def capture(
        self, request: TileRequest, sink: TileSink | None = None
    ) -> TileResponse:
        """Wait for the gate."""
        gate: Deferred[TileResponse] = Deferred()
        self.gates.append(gate)
        return await gate


def request_frame(acq_id: int) -> bytes:
    """A framed, valid request."""
    checksum = hashlib.md5(IMAGE).digest()
    return frame(encode_request(acq_id, 1, -1, 0, 2, checksum, IMAGE))


def responses(transport: StringTransport) -> list[TileResponse]:
    """Every framed response written so far."""
    data, out = transport.value(), []
    while data:
        (length,) = PREFIX.unpack_from(data)
        out.append(decode_response(data[PREFIX.size : PREFIX.size + length]))
        data = data[PREFIX.size + length :]
    return out


def test_a_tile_answered_after_the_peer_left_arms_no_idle_timer() -> None:
    """A capture that finishes after the peer left leaves no timer behind
    (it used to re-arm the idle timer on the dead connection)."""
    clock = MemoryReactorClock()
    handler = GatedHandler()
    proto = TileProtocol(handler, idle_timeout=30.0)
    proto.callLater = clock.callLater  # type: ignore[method-assign, assignment]
    proto.makeConnection(StringTransport())
    proto.dataReceived(request_frame(1))
    proto.connectionLost(Failure(ConnectionDone()))
    handler.gates[0].callback(TileResponse(acq_id=1, tile_id=1))
    assert clock.getDelayedCalls() == []


class EchoHandler:
    """Answers at once with the request's acqId."""

    async def capture(
        self, request: TileRequest, sink: TileSink | None = None
    ) -> TileResponse:
        """Answer success."""
        return TileResponse(acq_id=request.acq_id, tile_id=1)


def test_connections_beyond_the_limit_are_closed_counted_and_logged_once() -> None:
    """Past max_connections, buildProtocol refuses (the port closes the socket
    unread); one warning per run of refusals; a closed connection frees a place."""
    factory = TileFactory(EchoHandler(), idle_timeout=0, max_connections=2)
    protos = [factory.buildProtocol(None) for _ in range(2)]
    for proto in protos:
        assert proto is not None
        proto.makeConnection(StringTransport())
    with capturedLogs() as events:
        assert [factory.buildProtocol(None) for _ in range(3)] == [None] * 3
    assert factory.refused == 3 and factory.open_connections == 2
    assert [e["log_level"] for e in events] == [LogLevel.warn]
    assert protos[0] is not None
    protos[0].connectionLost(Failure(ConnectionDone()))
    protos[0].connectionLost(Failure(ConnectionDone()))  # counted once
    assert factory.open_connections == 1
    with capturedLogs() as events:
        again = factory.buildProtocol(None)
    assert isinstance(again, TileProtocol) and factory.open_connections == 2
    assert [e["n"] for e in events] == [3]


def test_no_connection_limit_by_default() -> None:
    """max_connections 0 accepts any number of connections."""
    factory = TileFactory(EchoHandler())
    assert all(factory.buildProtocol(None) for _ in range(2000))
    assert factory.refused == 0


def _big_frame(acq_id: int) -> bytes:
    image = bytes(STREAM_MIN)
    return frame(
        encode_request(acq_id, 1, -1, 0, 2, hashlib.md5(image).digest(), image)
    )


def test_frames_kept_whole_are_capped_across_connections() -> None:
    """Big frames that cannot be streamed (here: sent ahead of an unanswered
    one) are held up to the factory's cap; past it they get status 1, the
    connection stays usable, and the bytes come back once answered."""
    handler = GatedHandler()
    factory = TileFactory(handler, idle_timeout=0)
    factory.max_frame = len(_big_frame(0)) - PREFIX.size  # cap: HELD_FRAMES of them
    transports = []
    for acq_id in range(HELD_FRAMES + 1):
        proto = factory.buildProtocol(None)
        assert proto is not None
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(request_frame(acq_id) + _big_frame(acq_id))
        transports.append(transport)
    assert factory.held.used == HELD_FRAMES * factory.max_frame
    assert len(handler.gates) == HELD_FRAMES + 1  # the small frames, each pending
    for gate in list(handler.gates):
        gate.callback(TileResponse(acq_id=7, tile_id=7))
    # The last connection's big frame found the cap reached: status 1.
    assert [r.status for r in responses(transports[-1])] == [0, 1]
    assert not transports[-1].disconnecting
    for gate in handler.gates[HELD_FRAMES + 1 :]:
        gate.callback(TileResponse(acq_id=8, tile_id=8))
    assert [r.status for r in responses(transports[0])] == [0, 0]
    assert factory.held.used == 0


def test_held_bytes_come_back_when_the_peer_leaves() -> None:
    """A big frame kept whole and cut off by its peer releases what it held."""
    handler = GatedHandler()
    factory = TileFactory(handler, idle_timeout=0)
    proto = factory.buildProtocol(None)
    assert proto is not None
    proto.makeConnection(StringTransport())
    proto.dataReceived(request_frame(1) + _big_frame(2)[:1000])
    assert factory.held.used == len(_big_frame(2)) - PREFIX.size > 0
    proto.connectionLost(Failure(ConnectionDone()))
    assert factory.held.used == 0
    handler.gates[0].callback(TileResponse(acq_id=1, tile_id=1))
    assert factory.held.used == 0 and factory.open_connections == 0
