"""Unit tests for the raw TCP tile server: framing and in-order answers (§3)."""

from __future__ import annotations

import hashlib

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.python.failure import Failure

from imagecatcher.protocol import (
    PREFIX,
    BadMessage,
    TileRequest,
    TileResponse,
    decode_response,
    encode_request,
    frame,
)
from imagecatcher.sink import SOCKET_READ_BYTES, TileSink
from imagecatcher.tcp import TileFactory, TileProtocol

IMAGE = b"tile bytes" * 8


class EchoHandler:
    """Answers at once with the request's acqId and its column as the tile id."""

    def __init__(self) -> None:
        self.requests: list[TileRequest] = []

    async def capture(
        self, request: TileRequest, sink: TileSink | None = None
    ) -> TileResponse:
        """Answer success immediately."""
        self.requests.append(request)
        return TileResponse(acq_id=request.acq_id, tile_id=request.col)


class GatedHandler:
    """Each capture waits for the Deferred registered under its acqId."""

    def __init__(self, *acq_ids: int) -> None:
        self.gates: dict[int, Deferred[TileResponse]] = {i: Deferred() for i in acq_ids}
        self.started: list[int] = []

    async def capture(
        self, request: TileRequest, sink: TileSink | None = None
    ) -> TileResponse:
        """Wait for the test to fire this request's gate."""
        self.started.append(request.acq_id)
        return await self.gates[request.acq_id]

    def open(self, acq_id: int) -> None:
        """Let the capture of ``acq_id`` answer success."""
        self.gates[acq_id].callback(TileResponse(acq_id=acq_id, tile_id=acq_id * 10))


class FailingHandler:
    """Every capture raises."""

    async def capture(
        self, request: TileRequest, sink: TileSink | None = None
    ) -> TileResponse:
        """Fail as an unexpected bug would."""
        raise RuntimeError("database on fire")


def request_frame(acq_id: int, col: int = 0) -> bytes:
    """A framed, valid request for ``acq_id``."""
    checksum = hashlib.md5(IMAGE).digest()
    return frame(encode_request(acq_id, 1, -1, col, 2, checksum, IMAGE))


def responses(transport: StringTransport) -> list[TileResponse]:
    """Decode every framed response written to ``transport``."""
    data, out = transport.value(), []
    while data:
        (length,) = PREFIX.unpack_from(data)
        out.append(decode_response(data[PREFIX.size : PREFIX.size + length]))
        data = data[PREFIX.size + length :]
    return out


def connect(
    handler: object, idle_timeout: float = 0.0
) -> tuple[TileProtocol, StringTransport]:
    """A TileProtocol for ``handler`` connected to a fresh StringTransport."""
    proto = TileProtocol(handler, idle_timeout)  # type: ignore[arg-type]
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def on_clock(proto: TileProtocol, clock: MemoryReactorClock) -> TileProtocol:
    """Make ``proto``'s TimeoutMixin schedule on ``clock`` (before makeConnection)."""
    proto.callLater = clock.callLater  # type: ignore[method-assign, assignment]
    return proto


def failure_response(acq_id: int = 0) -> TileResponse:
    """The response a failed request gets: status 1, system status RED."""
    return TileResponse(acq_id=acq_id, status=1, system_status=2)


def test_request_split_on_every_byte_is_answered_once() -> None:
    """A request trickling in byte by byte gets exactly one response."""
    handler = EchoHandler()
    proto, transport = connect(handler)
    for b in request_frame(7, col=3):
        proto.dataReceived(bytes([b]))
    assert [r.acq_id for r in handler.requests] == [7]
    assert bytes(handler.requests[0].image) == IMAGE
    assert responses(transport) == [TileResponse(acq_id=7, tile_id=3)]


def test_partial_bytes_counts_prefix_and_body() -> None:
    """Bytes of an incomplete frame, prefix included, are reported as partial."""
    handler = EchoHandler()
    proto, _ = connect(handler)
    proto.dataReceived(request_frame(1)[:6])
    assert proto.partial_bytes == 6 and handler.requests == []
    proto.dataReceived(request_frame(1)[6:])
    assert proto.partial_bytes == 0 and len(handler.requests) == 1


def test_several_frames_in_one_chunk_the_last_split() -> None:
    """Frames sharing one chunk, the last one split, are each answered once."""
    proto, transport = connect(EchoHandler())
    data = request_frame(1, col=1) + frame(b"") + request_frame(3, col=3)
    proto.dataReceived(data[:-2])
    assert [r.acq_id for r in responses(transport)] == [1, 0]
    proto.dataReceived(data[-2:])
    assert [r.tile_id for r in responses(transport)] == [1, 0, 3]


def test_frame_at_the_limit_is_answered() -> None:
    """A frame exactly max_frame long is handled, not refused."""
    handler = EchoHandler()
    proto, transport = connect(handler)
    message = request_frame(5, col=2)[PREFIX.size :]
    proto.max_frame = len(message)
    proto.dataReceived(frame(message))
    assert responses(transport) == [TileResponse(acq_id=5, tile_id=2)]


def test_several_requests_in_one_chunk_are_answered_in_order() -> None:
    """Requests sent ahead in one chunk are all answered, in order."""
    proto, transport = connect(EchoHandler())
    proto.dataReceived(b"".join(request_frame(i, col=i) for i in range(1, 6)))
    assert responses(transport) == [
        TileResponse(acq_id=i, tile_id=i) for i in range(1, 6)
    ]
    assert transport.producerState == "producing"


def test_many_bad_frames_in_one_chunk_are_all_answered() -> None:
    """Thousands of empty frames in one chunk each get a failure, without recursion."""
    proto, transport = connect(EchoHandler())
    proto.dataReceived(frame(b"") * 5000)
    assert responses(transport) == [failure_response()] * 5000
    assert transport.producerState == "producing" and not transport.disconnecting


def test_long_backlog_behind_a_pending_request_is_answered() -> None:
    """Thousands of frames queued behind a pending request are answered in order."""
    handler = GatedHandler(1)
    proto, transport = connect(handler)
    proto.dataReceived(request_frame(1) + frame(b"") * 5000)
    handler.open(1)
    answers = responses(transport)
    assert answers[0] == TileResponse(acq_id=1, tile_id=10)
    assert answers[1:] == [failure_response()] * 5000
    assert transport.producerState == "producing"


def test_too_long_frame_gets_one_failure_and_close() -> None:
    """A frame longer than max_frame is answered once with status 1, then closed."""
    handler = EchoHandler()
    proto, transport = connect(handler)
    proto.max_frame = 100
    proto.dataReceived(PREFIX.pack(101) + b"x" * 50)
    proto.dataReceived(b"y" * 51 + request_frame(3))
    assert responses(transport) == [failure_response()]
    assert transport.disconnecting and handler.requests == []


def test_too_long_frame_is_answered_after_earlier_frames() -> None:
    """The failure for an over-long frame follows the answers to frames before it."""
    handler = GatedHandler(1, 2)
    proto, transport = connect(handler)
    proto.max_frame = 1000
    proto.dataReceived(request_frame(1) + request_frame(2) + PREFIX.pack(1001))
    assert transport.value() == b"" and not transport.disconnecting
    handler.open(1)
    handler.open(2)
    assert responses(transport) == [
        TileResponse(acq_id=1, tile_id=10),
        TileResponse(acq_id=2, tile_id=20),
        failure_response(),
    ]
    assert transport.disconnecting


def test_garbage_frame_gets_failure_and_connection_stays_open() -> None:
    """An undecodable frame gets status 1 and the next request is still served."""
    handler = EchoHandler()
    proto, transport = connect(handler)
    with capturedLogs() as events:
        proto.dataReceived(frame(b"\xff" * 12))
    assert responses(transport) == [failure_response()]
    assert [e["log_level"] for e in events] == [LogLevel.warn]
    assert isinstance(events[0]["reason"], BadMessage)
    assert not transport.disconnecting
    proto.dataReceived(request_frame(5, col=4))
    assert responses(transport)[1:] == [TileResponse(acq_id=5, tile_id=4)]


def test_responses_stay_in_order_when_handlers_finish_out_of_order() -> None:
    """The second request starts after the first answers, even if its gate fires first."""
    handler = GatedHandler(1, 2)
    proto, transport = connect(handler)
    proto.dataReceived(request_frame(1) + request_frame(2))
    assert handler.started == [1]
    assert transport.producerState == "paused"
    handler.open(2)
    assert handler.started == [1] and transport.value() == b""
    assert transport.producerState == "paused"
    handler.open(1)
    assert handler.started == [1, 2]
    assert responses(transport) == [
        TileResponse(acq_id=1, tile_id=10),
        TileResponse(acq_id=2, tile_id=20),
    ]
    assert transport.producerState == "producing"


def test_frame_arriving_while_busy_waits_its_turn() -> None:
    """A request arriving while another is pending is started only after it answers."""
    handler = GatedHandler(1, 2)
    proto, transport = connect(handler)
    proto.dataReceived(request_frame(1))
    proto.dataReceived(request_frame(2))
    assert handler.started == [1]
    handler.open(1)
    assert handler.started == [1, 2] and transport.producerState == "paused"
    handler.open(2)
    assert [r.acq_id for r in responses(transport)] == [1, 2]
    assert transport.producerState == "producing"


def test_handler_exception_gets_failure_response() -> None:
    """A capture that raises is answered with status 1 and system status RED."""
    proto, transport = connect(FailingHandler())
    with capturedLogs() as events:
        proto.dataReceived(request_frame(9))
    assert responses(transport) == [failure_response(acq_id=9)]
    failures = [e["log_failure"] for e in events if "log_failure" in e]
    assert [f.type for f in failures] == [RuntimeError]
    assert not transport.disconnecting
    assert transport.producerState == "producing"


def test_idle_connection_is_aborted_after_timeout() -> None:
    """A connection silent for the idle timeout is aborted; data resets the timer."""
    clock = MemoryReactorClock()
    proto = on_clock(TileProtocol(EchoHandler(), idle_timeout=10.0), clock)
    transport = StringTransport()
    proto.makeConnection(transport)
    clock.advance(9)
    proto.dataReceived(request_frame(1)[:3])
    clock.advance(9)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnected and transport.disconnecting


def test_zero_idle_timeout_means_no_timer() -> None:
    """An idle timeout of 0 schedules nothing."""
    clock = MemoryReactorClock()
    proto = on_clock(TileProtocol(EchoHandler(), idle_timeout=0), clock)
    proto.makeConnection(StringTransport())
    assert clock.getDelayedCalls() == []


def test_connection_lost_cancels_idle_timer() -> None:
    """Losing the connection cancels the idle timer."""
    clock = MemoryReactorClock()
    proto = on_clock(TileProtocol(EchoHandler(), idle_timeout=10.0), clock)
    proto.makeConnection(StringTransport())
    proto.connectionLost(Failure(ConnectionDone()))
    assert clock.getDelayedCalls() == []


def test_peer_leaving_mid_frame_leaves_nothing_queued() -> None:
    """After the peer leaves, queued frames are dropped and partial bytes released."""
    handler = GatedHandler(1, 2)
    proto, _ = connect(handler)
    proto.dataReceived(request_frame(1) + request_frame(2) + request_frame(3)[:20])
    assert proto.partial_bytes == 20
    proto.connectionLost(Failure(ConnectionDone()))
    assert proto.partial_bytes == 0
    handler.open(1)
    assert handler.started == [1]


def test_factory_builds_connected_protocols() -> None:
    """The factory builds one TileProtocol per connection, bound to itself."""
    handler = EchoHandler()
    factory = TileFactory(handler, idle_timeout=5.0)
    proto = factory.buildProtocol(None)
    assert isinstance(proto, TileProtocol) and proto.factory is factory
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(request_frame(4, col=2))
    assert responses(transport) == [TileResponse(acq_id=4, tile_id=2)]
    proto.connectionLost(Failure(ConnectionDone()))


def test_idle_timer_waits_while_a_tile_is_being_handled() -> None:
    """A slow handler does not count as an idle peer; the timer restarts after it."""
    clock = MemoryReactorClock()
    handler = GatedHandler(1)
    proto = on_clock(TileProtocol(handler, idle_timeout=10.0), clock)
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(request_frame(1))
    clock.advance(60)
    assert not transport.disconnecting
    handler.open(1)
    clock.advance(9)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnecting


def test_a_client_waiting_for_its_answer_is_not_paused() -> None:
    """One whole frame and nothing after it (a rig waits for each answer):
    the transport keeps reading, with no pause and resume per tile; bytes
    arriving while it is pending pause it until the answer."""
    handler = GatedHandler(1, 2)
    proto, transport = connect(handler)
    proto.dataReceived(request_frame(1))
    assert handler.started == [1]
    assert transport.producerState == "producing"
    proto.dataReceived(request_frame(2)[:3])
    assert transport.producerState == "paused"
    handler.open(1)
    assert transport.producerState == "producing"
    proto.dataReceived(request_frame(2)[3:])
    assert handler.started == [1, 2] and transport.producerState == "producing"
    handler.open(2)
    assert [r.acq_id for r in responses(transport)] == [1, 2]


def test_a_connection_reads_big_chunks() -> None:
    """A tile connection asks its socket for SOCKET_READ_BYTES per read, not
    Twisted's 64 KiB."""

    class SocketLike(StringTransport):
        bufferSize = 65536  # noqa: N815 - twisted.internet.tcp's name

    proto = TileProtocol(EchoHandler(), 0.0)
    transport = SocketLike()
    proto.makeConnection(transport)
    assert transport.bufferSize == SOCKET_READ_BYTES > 65536
