"""Limits against slow and greedy HTTP clients: the body watch, the connection cap,
and bodies that cost memory only as their bytes arrive."""

from __future__ import annotations

import tracemalloc
from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request

from imagecatcher.sink import SOCKET_READ_BYTES
from imagecatcher.web.request import (
    BodyBuffer,
    BodyWatch,
    CatcherChannel,
    CatcherRequest,
    CatcherSite,
)

MIB = 1024 * 1024
CAPTURE = (
    b"/service/v1/capture-image-content/123?tile-filename=col0001_row0002_cam0.tif"
)


class FakeSink:
    """Records writes and discards; pauses its producer on the first write
    when asked to."""

    def __init__(self, pause: bool = False) -> None:
        self.data = bytearray()
        self.discarded = False
        self.producer: Any = None
        self._pause = pause

    def attach(self, producer: Any) -> None:
        """Remember who to pause."""
        self.producer = producer

    def write(self, data: bytes) -> None:
        """Keep the bytes; pause once if asked to."""
        self.data += data
        if self._pause:
            self._pause = False
            self.producer.pauseProducing()

    async def discard(self) -> None:
        """Note the discard."""
        self.discarded = True


class Answer(Resource):
    """Answers every request with ``ok``; records the bodies' types."""

    isLeaf = True  # noqa: N815 - twisted.web's name

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Request] = []

    def render(self, request: Request) -> bytes:
        """Record and answer."""
        self.requests.append(request)
        return b"ok"


class Served:
    """A CatcherSite on a MemoryReactorClock, one connection on a StringTransport."""

    def __init__(
        self, timeout: float = 10.0, min_rate: int = 0, pause: bool = False
    ) -> None:
        self.clock = MemoryReactorClock()
        self.sinks: list[FakeSink] = []
        self.resource = Answer()
        self.site = CatcherSite(self.resource, reactor=self.clock)
        self.site.requestFactory = CatcherRequest.for_daemon(
            MIB,
            self._open_sink,  # type: ignore[arg-type]
            clock=self.clock,
            body_timeout=timeout,
            body_min_rate=min_rate,
        )
        self._pause = pause
        self.channel = self.site.buildProtocol(None)
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)

    def _open_sink(self) -> FakeSink:
        sink = FakeSink(self._pause)
        self.sinks.append(sink)
        return sink

    def send(self, data: bytes) -> None:
        """Bytes from the client."""
        self.channel.dataReceived(data)

    @property
    def dropped(self) -> bool:
        """Whether the server aborted the connection."""
        return bool(self.transport.disconnected)


def put_head(target: bytes, length: int) -> bytes:
    """A PUT's request line and headers."""
    return b"PUT %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (
        target,
        length,
    )


def test_a_declared_length_costs_no_memory_before_the_bytes_come() -> None:
    """A body announcing 64 MiB and sending little holds only what it sent
    (a preallocated buffer used to take the whole 64 MiB at once)."""
    tracemalloc.start()
    try:
        buf = BodyBuffer(64 * MIB, limit=65 * MIB)
        buf.write(b"x" * 1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MIB
    assert bytes(buf.getbuffer()) == b"x" * 1000 and not buf.too_large


def test_a_body_past_its_declared_length_is_too_large() -> None:
    """More bytes than the Content-Length said mark the body too large."""
    buf = BodyBuffer(4, limit=100)
    buf.write(b"abc")
    buf.write(b"de")
    assert buf.too_large


def test_watch_calls_a_window_without_bytes_a_stall() -> None:
    """No byte for a whole window: stalled; any byte keeps the body going."""
    clock = MemoryReactorClock()
    stalls: list[int] = []
    watch = BodyWatch(clock, 10.0, 0, stalls.append)
    clock.advance(9)
    watch.received(1)
    clock.advance(1)
    assert stalls == []
    clock.advance(10)
    assert stalls == [0]
    assert clock.getDelayedCalls() == []


def test_watch_asks_the_minimum_rate_over_each_window() -> None:
    """With a minimum rate, a window must bring rate x window bytes."""
    clock = MemoryReactorClock()
    stalls: list[int] = []
    watch = BodyWatch(clock, 10.0, 100, stalls.append)
    watch.received(1000)
    clock.advance(10)
    watch.received(999)
    assert stalls == []
    clock.advance(10)
    assert stalls == [999]


def test_watch_does_not_run_while_the_server_holds_the_body_back() -> None:
    """Stopped (a sink paused the connection), no window runs; start begins
    a fresh one; finish ends the watch for good."""
    clock = MemoryReactorClock()
    stalls: list[int] = []
    watch = BodyWatch(clock, 10.0, 0, stalls.append)
    watch.stop()
    clock.advance(100)
    assert stalls == [] and clock.getDelayedCalls() == []
    watch.start()
    clock.advance(9)
    assert stalls == []
    watch.finish()
    watch.start()
    clock.advance(100)
    assert stalls == [] and clock.getDelayedCalls() == []


def test_watch_does_not_judge_a_window_noticed_late() -> None:
    """A window whose end the reactor noticed late (it was busy) starts over."""
    clock = MemoryReactorClock()
    stalls: list[int] = []
    BodyWatch(clock, 10.0, 0, stalls.append)
    clock.advance(30)  # one call, fired 20 s late
    assert stalls == []
    clock.advance(10)
    assert stalls == [0]


def test_a_capture_body_that_stops_is_dropped_and_its_sink_discarded() -> None:
    """A raw tile body that stops coming: the connection is aborted and the
    partial tile's sink discarded, without waiting for the close."""
    served = Served(timeout=10.0)
    served.send(put_head(CAPTURE, 1000) + b"abc")
    served.clock.advance(10)  # the first window had its bytes
    assert not served.dropped
    with capturedLogs() as events:
        served.clock.advance(10)
    [sink] = served.sinks
    assert served.dropped and sink.discarded
    assert [e["log_level"] for e in events] == [LogLevel.warn]
    assert events[0]["n"] == 0
    served.channel.connectionLost(Failure(ConnectionDone()))
    assert not [c for c in served.clock.getDelayedCalls() if "BodyWatch" in repr(c)]


def test_a_trickling_body_is_dropped_below_the_minimum_rate() -> None:
    """A few bytes per second is too slow for a minimum rate of 100 bytes/s."""
    served = Served(timeout=10.0, min_rate=100)
    served.send(put_head(b"/start", 10_000))
    for _ in range(10):
        served.send(b"abc")
        served.clock.advance(1)
    assert served.dropped


def test_a_paused_capture_body_is_not_dropped() -> None:
    """While the tile's sink holds the connection back, the body may be silent."""
    served = Served(timeout=10.0, pause=True)
    served.send(put_head(CAPTURE, 1000) + b"abc")
    served.clock.advance(50)  # (twisted.web's own idle timeout is 60 s)
    assert not served.dropped
    served.sinks[0].producer.resumeProducing()
    served.clock.advance(10)
    assert served.dropped


def test_a_complete_body_is_watched_no_more() -> None:
    """Once the body is in, the route's time is not the client's."""
    served = Served(timeout=10.0)
    served.send(put_head(b"/start", 5) + b"hello")
    assert len(served.resource.requests) == 1
    assert not [c for c in served.clock.getDelayedCalls() if "BodyWatch" in repr(c)]
    served.clock.advance(50)
    assert not served.dropped


def test_bodies_are_not_watched_with_a_zero_timeout() -> None:
    """HTTP_BODY_TIMEOUT 0 turns the watch off."""
    served = Served(timeout=0.0)
    served.send(put_head(b"/start", 5) + b"he")
    served.clock.advance(50)
    assert not served.dropped


def test_connections_beyond_the_limit_are_closed_counted_and_logged_once() -> None:
    """Past max_connections, buildProtocol refuses (the port closes the socket
    unread); one warning per run of refusals; a closed connection frees a place."""
    site = CatcherSite(Answer(), max_connections=2, reactor=MemoryReactorClock())
    channels = [site.buildProtocol(None) for _ in range(2)]
    assert all(isinstance(c, CatcherChannel) for c in channels)
    for channel in channels:
        channel.makeConnection(StringTransport())
    with capturedLogs() as events:
        assert [site.buildProtocol(None) for _ in range(3)] == [None] * 3
    assert site.refused == 3 and site.open_connections == 2
    assert [e["log_level"] for e in events] == [LogLevel.warn]
    channels[0].connectionLost(Failure(ConnectionDone()))
    assert site.open_connections == 1
    with capturedLogs() as events:
        assert isinstance(site.buildProtocol(None), CatcherChannel)
    assert site.open_connections == 2 and [e["n"] for e in events] == [3]


def test_no_http_connection_limit_by_default() -> None:
    """max_connections 0 accepts any number of connections."""
    site = CatcherSite(Answer(), reactor=MemoryReactorClock())
    assert all(site.buildProtocol(None) for _ in range(2000))
    assert site.refused == 0 and site.open_connections == 2000


class SocketLikeTransport(StringTransport):
    """A StringTransport with a TCP connection's read size."""

    bufferSize = 65536  # noqa: N815 - twisted.internet.tcp's name


def test_a_channel_reads_big_chunks() -> None:
    """An HTTP connection asks its socket for SOCKET_READ_BYTES per read, not
    Twisted's 64 KiB: a tile body arrives in a few chunks."""
    site = CatcherSite(Answer(), reactor=MemoryReactorClock())
    channel = site.buildProtocol(None)
    transport = SocketLikeTransport()
    channel.makeConnection(transport)
    assert transport.bufferSize == SOCKET_READ_BYTES > 65536
