"""The twisted.web site, channel and request of the HTTP API.

:class:`CatcherRequest` streams a ``capture-image-content`` body into a tile
sink as it arrives (:class:`~imagecatcher.web.tilebody.TileBody`), keeps
other request bodies in memory, capped, and lets a response carry the
queue-status header names that contain spaces (§1.0, Q2).  A body that stops
coming is dropped (:class:`BodyWatch`, ``HTTP_BODY_TIMEOUT`` and
``HTTP_BODY_MIN_RATE``); :class:`CatcherSite` closes connections beyond
``HTTP_MAX_CONNECTIONS`` as soon as they are accepted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest
from twisted.web.server import Request, Site

from imagecatcher.domain import QueueStatus
from imagecatcher.listen import ConnectionLimit
from imagecatcher.metrics import Metrics, route_of
from imagecatcher.sink import Producer, TileSink, read_big_chunks
from imagecatcher.web.access import CAPTURE_ENDPOINT, AccessPolicy
from imagecatcher.web.common import BodyTooLarge
from imagecatcher.web.tilebody import TileBody

log = Logger()

#: Room for multipart framing and small fields around a tile in a form body.
FORM_OVERHEAD = 64 * 1024
#: The request targets whose bodies are tiles (the capture route, §1.5).
_CAPTURE_TARGET = re.compile(
    rb"/service/v1/capture-image-content/[^/?#]+(?:\?.*)?", re.DOTALL
)


class QueueHeaders(Headers):
    """Response headers that may also carry names with spaces (Q2).

    Clients read ``System Status`` and its siblings, whose names are not
    HTTP tokens; twisted.web refuses to set such names, so they are kept
    aside and written after the regular headers.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spaced: list[tuple[bytes, bytes]] = []

    def getAllRawHeaders(self) -> Iterator[tuple[bytes, Sequence[bytes]]]:
        yield from super().getAllRawHeaders()
        for name, value in self.spaced:
            yield name, [value]


class BodyBuffer:
    """An in-memory request body capped at ``limit`` bytes.

    With a Content-Length the body lands in one buffer that grows as bytes
    arrive (no copy per chunk, no temporary file; the declared length is
    only a cap, so a client announcing 64 MiB and sending nothing costs
    nothing); without one, chunks are joined once.  Past the limit data is
    dropped and :attr:`too_large` is set, so the route can answer 413
    instead of twisted.web spooling the body to disk.
    """

    def __init__(self, length: int | None, limit: int) -> None:
        self.too_large = length is not None and length > limit
        self._limit = limit
        self._length = length
        self._fixed = bytearray() if length is not None and not self.too_large else None
        self._chunks: list[bytes] = []
        self._size = 0
        self._pos = 0

    def write(self, data: bytes) -> None:
        """Append received body bytes."""
        if self.too_large:
            return
        end = self._size + len(data)
        if self._fixed is not None:
            if self._length is not None and end > self._length:
                self.too_large = True
                return
            self._fixed += data
        else:
            if end > self._limit:
                self.too_large, self._chunks = True, []
                return
            self._chunks.append(data)
        self._size = self._pos = end

    def getbuffer(self) -> memoryview:
        """The body received so far, without copying it."""
        if self._fixed is not None:
            return memoryview(self._fixed)[: self._size]
        if len(self._chunks) != 1:
            self._chunks = [b"".join(self._chunks)]
        return memoryview(self._chunks[0])

    def seek(self, offset: int, whence: int = 0) -> int:
        """File API used by twisted.web."""
        base = (0, self._pos, self._size)[whence]
        self._pos = max(base + offset, 0)
        return self._pos

    def tell(self) -> int:
        """File API used by twisted.web."""
        return self._pos

    def read(self, n: int = -1) -> bytes:
        """File API used by twisted.web."""
        view = self.getbuffer()
        end = self._size if n < 0 else min(self._size, self._pos + n)
        data = bytes(view[self._pos : end])
        self._pos = end
        return data

    def close(self) -> None:
        """Release the buffer."""
        self._fixed, self._chunks = None, []


class CatcherRequest(Request):
    """A Request for this API: queue-status headers, tiles streamed to sinks.

    Once the headers are in (:meth:`gotLength`), a PUT or POST to
    ``capture-image-content`` gets a :class:`TileBody` that sends the tile's
    bytes to a sink from :attr:`open_sink` as they arrive, pausing the
    connection while the sink's writes fall behind; every other body is a
    :class:`BodyBuffer`.  twisted.web's own form parsing is off: routes parse
    multipart bodies themselves, keeping part file names and reporting
    malformed bodies.
    """

    _parsePOSTFormSubmission = False  # noqa: N815 - twisted.web's name
    #: Largest tile accepted (MAX_TILE_BYTES).
    max_tile = 64 * 1024 * 1024
    #: Largest body accepted (MAX_TILE_BYTES + room for multipart framing).
    max_body = max_tile + FORM_OVERHEAD
    #: Opens the sink of a capture body; None buffers capture bodies too.
    open_sink: Callable[[], TileSink] | None = None
    #: Schedules the body watch; None = bodies are not watched.
    clock: IReactorTime | None = None
    #: Seconds of each body window (HTTP_BODY_TIMEOUT); 0 = not watched.
    body_timeout: float = 0.0
    #: Bytes per second a body must average over each window (HTTP_BODY_MIN_RATE).
    body_min_rate: int = 0
    #: Who may capture (API_TOKENS); None = anyone.
    access: AccessPolicy | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.responseHeaders = QueueHeaders()
        # twisted.web sets this per instance from the Site; routes parse forms.
        self._parsePOSTFormSubmission = False
        self._watch: BodyWatch | None = None

    @classmethod
    def for_daemon(
        cls,
        max_tile: int,
        open_sink: Callable[[], TileSink] | None,
        *,
        clock: IReactorTime | None = None,
        body_timeout: float = 0.0,
        body_min_rate: int = 0,
        access: AccessPolicy | None = None,
    ) -> type[CatcherRequest]:
        """The request class of one site: its tile limit, its tiles' sinks,
        how slow a body may come (``clock`` runs the watch) and who may
        capture."""

        class DaemonRequest(CatcherRequest):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.open_sink = open_sink

        DaemonRequest.max_tile = max_tile
        DaemonRequest.max_body = max_tile + FORM_OVERHEAD
        DaemonRequest.clock = clock
        DaemonRequest.body_timeout = body_timeout
        DaemonRequest.body_min_rate = body_min_rate
        DaemonRequest.access = access
        return DaemonRequest

    def gotLength(self, length: int | None) -> None:
        if self.clock is not None and self.body_timeout > 0 and length != 0:
            self._watch = BodyWatch(
                self.clock, self.body_timeout, self.body_min_rate, self._body_stalled
            )
        open_sink = self.open_sink
        if open_sink is not None and self._is_capture():
            if self._capture_refused():
                self.content = BodyBuffer(length, 0)  # kept nowhere: dropped
                return
            ctype = self.requestHeaders.getRawHeaders(b"content-type", [b""])[0]
            producer: Producer | None = IPushProducer(self.channel.transport, None)
            if producer is not None and self._watch is not None:
                producer = _WatchedProducer(producer, self._watch)
            self.content = TileBody(
                open_sink,
                ctype.decode("latin-1"),
                length=length,
                max_tile=self.max_tile,
                max_body=self.max_body,
                producer=producer,
            )
        else:
            self.content = BodyBuffer(length, self.max_body)

    def _capture_refused(self) -> bool:
        """Whether the capture route will refuse this request's token.

        Checked at the headers, so a refused tile never reaches a sink.  The
        route answers (401 or 403) and the connection closes after it.  A
        client that waits for ``100 Continue`` is answered at once, its body
        unsent; any other's body is read and dropped first, so that it sees
        the answer rather than a reset connection.
        """
        if self.access is None:
            return False
        values = self.requestHeaders.getRawHeaders(b"authorization")
        refusal = self.access.refusal(CAPTURE_ENDPOINT, values[0] if values else None)
        if refusal is None:
            return False
        channel: Any = self.channel
        channel.persistent = False
        self.responseHeaders.setRawHeaders(b"connection", [b"close"])
        expect = self.requestHeaders.getRawHeaders(b"expect", [b""])[0]
        if expect.lower() == b"100-continue":
            # No 100 Continue goes out; the request is complete as it is.
            self.requestHeaders.removeHeader(b"expect")
            channel.length = 0
        return True

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 - twisted.web
        if self._watch is not None:
            self._watch.received(len(data))
        super().handleContentChunk(data)

    def requestReceived(  # noqa: N802 - twisted.web's name
        self, command: bytes, path: bytes, version: bytes
    ) -> None:
        # The whole body is in: what follows is the route's time, not the client's.
        if self._watch is not None:
            self._watch.finish()
        super().requestReceived(command, path, version)

    def _body_stalled(self, received: float) -> None:
        transport: Any = self.channel.transport
        log.warn(
            "dropping {peer}: {n} request body bytes in the last {seconds}s"
            " (HTTP_BODY_TIMEOUT {seconds}s, HTTP_BODY_MIN_RATE {rate} bytes/s)",
            peer=transport.getPeer(),
            n=received,
            seconds=self.body_timeout,
            rate=self.body_min_rate,
        )
        if isinstance(self.content, TileBody):
            self.content.abandon()  # the partial tile goes now, not at the close
        transport.abortConnection()

    def _is_capture(self) -> bool:
        # The request line is still the channel's: Request.method and .uri
        # are set only once the whole body has arrived.
        method = getattr(self.channel, "_command", b"")
        target = getattr(self.channel, "_path", b"")
        return method in (b"PUT", b"POST") and bool(_CAPTURE_TARGET.fullmatch(target))

    def connectionLost(self, reason: Failure) -> None:
        if self._watch is not None:
            self._watch.finish()
        # A client that leaves mid-body never reaches the route: nothing of
        # its tile may stay behind.
        if isinstance(self.content, TileBody):
            self.content.abandon()
        super().connectionLost(reason)


def request_body(request: IRequest) -> memoryview:
    """The request body; BodyTooLarge when it went past the limit."""
    content = request.content
    if isinstance(content, BodyBuffer):
        if content.too_large:
            raise BodyTooLarge("Request body too large")
        return content.getbuffer()
    content.seek(0)
    return memoryview(content.read())


class BodyWatch:
    """Drops a request whose body stops coming (HTTP_BODY_TIMEOUT, HTTP_BODY_MIN_RATE).

    Body bytes are counted in windows of ``window`` seconds; a window that
    brings fewer than ``max(1, min_rate * window)`` bytes calls ``stalled``
    with the count.  No window runs while the server itself holds the body
    back (a tile sink pausing the connection: :meth:`stop`, then
    :meth:`start` on resuming).  A window whose end is noticed late (the
    reactor was busy, so the bytes may still wait unread in the kernel) is
    not judged: a new one starts.
    """

    def __init__(
        self,
        clock: IReactorTime,
        window: float,
        min_rate: int,
        stalled: Callable[[int], None],
    ) -> None:
        self._clock = clock
        self._window = window
        self._need = max(1.0, min_rate * window)
        self._stalled = stalled
        self._call: IDelayedCall | None = None
        self._received = 0
        self._start = 0.0
        self._done = False
        self.start()

    def received(self, n: int) -> None:
        """``n`` more body bytes arrived."""
        self._received += n

    def start(self) -> None:
        """Begin a new window (unless the body is over)."""
        self.stop()
        if self._done:
            return
        self._received, self._start = 0, self._clock.seconds()
        self._call = self._clock.callLater(self._window, self._check)

    def stop(self) -> None:
        """No window runs until :meth:`start`."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def finish(self) -> None:
        """The body is complete, or the connection gone: watch no more."""
        self._done = True
        self.stop()

    def _check(self) -> None:
        self._call = None
        late = self._clock.seconds() - self._start - self._window
        if self._received >= self._need or late > max(1.0, self._window / 4):
            self.start()
            return
        self._done = True
        self._stalled(self._received)


class _WatchedProducer:
    """The connection as a tile sink's producer: while the sink holds it
    back, the body watch pauses too."""

    def __init__(self, producer: Producer, watch: BodyWatch) -> None:
        self._producer = producer
        self._watch = watch

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's name
        self._watch.stop()
        self._producer.pauseProducing()

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted's name
        self._producer.resumeProducing()
        self._watch.start()


class CatcherChannel(HTTPChannel):
    """An HTTP channel that reads big chunks (a tile body arrives in few) and
    tells its :class:`CatcherSite` when it closes."""

    #: Called once when the connection is lost (set by the site).
    on_close: Callable[[], None] | None = None

    def connectionMade(self) -> None:
        read_big_chunks(self.transport)
        super().connectionMade()

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:  # noqa: B008
        try:
            super().connectionLost(reason)
        finally:
            on_close, self.on_close = self.on_close, None
            if on_close is not None:
                on_close()


class CatcherSite(Site):
    """A Site that closes connections beyond ``max_connections`` at once.

    ``max_connections`` is ``HTTP_MAX_CONNECTIONS`` (0 = no limit).  A
    connection beyond it is closed as soon as it is accepted, before any byte
    is read: counted in :attr:`refused`, and logged once per run of refusals.
    With ``metrics``, every answered request is counted by route template,
    method and status.
    """

    protocol = CatcherChannel  # type: ignore[assignment]

    def __init__(
        self,
        resource: Any,
        *,
        max_connections: int = 0,
        metrics: Metrics | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(resource, **kwargs)
        self.limit = ConnectionLimit("HTTP", "HTTP_MAX_CONNECTIONS", max_connections)
        self._metrics = metrics

    def log(self, request: Any) -> None:
        """Write the access log line; count the request."""
        super().log(request)
        if self._metrics is not None:
            self._metrics.http_request(route_of(request), request.method, request.code)

    @property
    def open_connections(self) -> int:
        """Connections open now."""
        return self.limit.open_connections

    @property
    def refused(self) -> int:
        """Connections closed at once because ``max_connections`` were open."""
        return self.limit.refused

    def buildProtocol(self, addr: Any) -> Any:
        if not self.limit.admit(addr):
            return None
        channel = super().buildProtocol(addr)
        if isinstance(channel, CatcherChannel):
            channel.on_close = self.limit.closed
            self.limit.opened()
        return channel


class NoKeepAliveChannel(CatcherChannel):
    """An HTTP channel that closes after each response (DISABLE_SO_KEEP_ALIVE)."""

    def checkPersistence(self, request: Any, version: bytes) -> bool:
        request.responseHeaders.setRawHeaders(b"connection", [b"close"])
        return False


def set_queue_headers(request: IRequest, status: QueueStatus) -> None:
    """Send the three queue colours (§1.0), tile and content unswapped (Q1).

    The historical names with spaces go out when the request supports them;
    hyphenated aliases (``System-Status``...) always do.
    """
    values = (
        ("System", status.system),
        ("Tile Queue", status.tile),
        ("Content Queue", status.content),
    )
    headers = request.responseHeaders
    for prefix, colour in values:
        value = colour.name.encode("ascii")
        request.setHeader(f"{prefix}-Status".replace(" ", "-").encode("ascii"), value)
        if isinstance(headers, QueueHeaders):
            headers.spaced.append((f"{prefix} Status".encode("ascii"), value))
