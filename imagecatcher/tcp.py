"""The raw TCP tile server (CONTRACT §3): framing, streaming, in-order responses.

:class:`TileProtocol` cuts the byte stream into frames.  For a tile, it reads
the FlatBuffer's root table as soon as its bytes are in, which gives the
``image`` vector's offset and length; the image bytes then go straight to a
sink (hashed and written off the reactor, see :mod:`imagecatcher.sink`) as
they arrive, and only the few bytes around it are kept.  Frames are answered
strictly in order: while one is being handled the transport is paused, so a
rig that sends ahead is held back by TCP flow control rather than by our
memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any
from typing import Protocol as TypingProtocol

import attrs

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from imagecatcher.clients import ClientAllowList, Network
from imagecatcher.domain import BadParameter, CatcherError, NotFound, QueueColour
from imagecatcher.listen import ConnectionLimit
from imagecatcher.metrics import Metrics
from imagecatcher.names import TileName, tile_name_for
from imagecatcher.pipeline import Pipeline, TileUpload
from imagecatcher.protocol import (
    PREFIX,
    BadMessage,
    NeedMore,
    TileRequest,
    TileResponse,
    decode_request,
    decode_request_around,
    encode_response,
    locate_image,
)
from imagecatcher.sink import TileSink, read_big_chunks
from imagecatcher.storage import StoreError

log = Logger()

#: Room for the FlatBuffers fields around the image in a request frame.
FRAME_OVERHEAD = 4096


class TileHandler(TypingProtocol):
    """Captures one decoded tile request and says how it went.

    A handler that also has ``open_sink() -> TileSink`` gets the image bytes
    of big frames streamed into a sink of its own as they arrive, and then
    ``capture(request, sink)`` with an empty ``request.image``.
    """

    async def capture(
        self, request: TileRequest, sink: TileSink | None = None
    ) -> TileResponse:
        """Store the tile; return the response to send."""


def _failure_response(acq_id: int) -> TileResponse:
    # Q5: a failure reports the system status RED; the queue fields stay green
    # because nothing is known about the queues here.
    return TileResponse(acq_id=acq_id, status=1, system_status=int(QueueColour.RED))


#: Frames shorter than this are kept whole: streaming them buys nothing.
STREAM_MIN = 64 * 1024
#: Most bytes kept of a streamed frame outside its image (FlatBuffers tables,
#: the checksum, padding); a frame whose fields need more is kept whole.
OUTSIDE_IMAGE_MAX = 64 * 1024


@attrs.define
class _Frame:
    """A frame being received: kept whole, or streamed around its image."""

    length: int
    mode: str  # "whole", "head" (image not located yet), "image", "skip"
    received: int = 0
    chunks: list[bytes | memoryview] = attrs.Factory(list)
    head: bytearray = attrs.Factory(bytearray)
    tail: bytearray = attrs.Factory(bytearray)
    image: tuple[int, int] = (0, 0)
    sink: TileSink | None = None
    error: str = ""
    held: int = 0  # bytes counted against the server's HeldBytes


@attrs.frozen
class _Done:
    """A complete frame waiting for its turn."""

    frame: bytes | None = None  # kept whole
    request: TileRequest | None = None  # streamed: fields, bytes in ``sink``
    sink: TileSink | None = None
    error: str = ""  # not a request: answered with a failure
    too_long: bool = False  # the boundary is lost: answer once, then close
    held: int = 0  # bytes counted against the server's HeldBytes


class HeldBytes:
    """The bytes of big frames kept whole in memory, across a server's connections.

    A tile's image normally streams into a sink as it arrives.  A big frame
    that cannot be streamed (sent ahead while an earlier one is handled, or
    laid out so that its image is not located from its first 64 KiB) is kept
    whole until it is answered; without a cap, peers sending such frames
    slowly on many connections could hold ``max_frame`` bytes each.  Past
    the cap a new such frame is read and dropped, and answered with status 1.
    """

    def __init__(self, limit: int | None) -> None:
        #: Most bytes held at once; None = no cap.
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> bool:
        """Count ``n`` more bytes, if they fit."""
        if self.limit is not None and self.used + n > self.limit:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        """``n`` bytes taken before are released."""
        self.used -= n


class _SinkThrottle:
    """Lets a sink pause the connection while its threads catch up."""

    def __init__(self, proto: TileProtocol) -> None:
        self._proto = proto

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's name
        self._proto.pause("sink")

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted's name
        self._proto.resume("sink")


class TileProtocol(Protocol, TimeoutMixin):
    """One rig connection: frames in, responses out, in order.

    A tile's ``image`` bytes go to a sink as they arrive when nothing is
    waiting to be answered (a rig waits for each acknowledgement, so that is
    the common case); only the few bytes around the image are kept.  Frames
    that arrive while earlier ones are being handled, short frames and frames
    whose image cannot be located from their first bytes are kept whole.
    While frames are being handled the transport is paused, so a rig that
    sends ahead is held back by TCP flow control rather than by our memory.
    """

    max_frame = 64 * 1024 * 1024 + FRAME_OVERHEAD

    def __init__(
        self,
        handler: TileHandler,
        idle_timeout: float,
        held: HeldBytes | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._handler = handler
        self._idle_timeout = idle_timeout
        self._held = held
        self._on_close = on_close
        self._queue: list[_Done] = []
        self._busy = False
        self._paused: set[str] = set()
        self._peer: IAddress | None = None
        self._prefix = bytearray()
        self._frame: _Frame | None = None
        self._boundary_lost = False

    def connectionMade(self) -> None:
        read_big_chunks(self.transport)
        self._peer = self.transport.getPeer()  # type: ignore[union-attr]
        self.setTimeout(self._idle_timeout or None)

    # -- flow control -------------------------------------------------------------

    def pause(self, reason: str) -> None:
        """Stop reading for ``reason`` (until :meth:`resume` with it)."""
        if not self._paused and self.transport is not None:
            self.transport.pauseProducing()  # type: ignore[attr-defined]
        self._paused.add(reason)

    def resume(self, reason: str) -> None:
        """Read again once no reason to pause remains."""
        if reason in self._paused:
            self._paused.discard(reason)
            if not self._paused and self.transport is not None:
                self.transport.resumeProducing()  # type: ignore[attr-defined]

    # -- framing ------------------------------------------------------------------

    @property
    def partial_bytes(self) -> int:
        """Bytes of an incomplete frame (prefix included) received so far."""
        if self._frame is not None:
            return PREFIX.size + self._frame.received
        return len(self._prefix)

    def dataReceived(self, data: bytes) -> None:
        self._receive(data)
        # Bytes of a next frame while one is pending: take no more until done.
        if self._busy and (self._queue or self._frame is not None or self._prefix):
            self.pause("busy")

    def _receive(self, data: bytes) -> None:
        self.resetTimeout()
        if self._boundary_lost:
            return  # after an over-long prefix nothing more can be framed
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            frame = self._frame
            if frame is None:
                take = min(PREFIX.size - len(self._prefix), len(view) - pos)
                self._prefix += view[pos : pos + take]
                pos += take
                if len(self._prefix) < PREFIX.size:
                    return
                (length,) = PREFIX.unpack(self._prefix)
                self._prefix = bytearray()
                if length > self.max_frame:
                    self._boundary_lost = True
                    self._too_long(length)
                    return
                frame = self._frame = self._new_frame(length)
                if length == 0:
                    self._complete(frame)
                continue
            take = min(frame.length - frame.received, len(view) - pos)
            self._feed(frame, view[pos : pos + take])
            pos += take
            if frame.received == frame.length:
                self._complete(frame)

    def _new_frame(self, length: int) -> _Frame:
        can_stream = (
            length >= STREAM_MIN
            and not self._busy
            and not self._queue
            and hasattr(self._handler, "open_sink")
        )
        frame = _Frame(length, "head" if can_stream else "whole")
        if not can_stream and length >= STREAM_MIN:
            self._hold(frame)
        return frame

    def _hold(self, frame: _Frame) -> None:
        """Count a big frame kept whole, or drop it when too much is held."""
        if self._held is None or self._held.take(frame.length):
            frame.held = frame.length
            return
        frame.mode, frame.chunks, frame.head = "skip", [], bytearray()
        frame.error = (
            f"frames that cannot be streamed hold {self._held.used} bytes already;"
            f" a {frame.length}-byte one would pass the limit of {self._held.limit}"
        )

    def _release_held(self, n: int) -> None:
        if n and self._held is not None:
            self._held.give(n)

    def _feed(self, frame: _Frame, chunk: memoryview) -> None:
        if frame.mode == "head":
            chunk = self._locate(frame, chunk)
        if not chunk:
            return
        start = frame.received
        frame.received += len(chunk)
        if frame.mode == "whole":
            frame.chunks.append(chunk)
        elif frame.mode == "image":
            self._route(frame, chunk, start)

    def _locate(self, frame: _Frame, chunk: memoryview) -> memoryview:
        """Keep leading bytes until the image is located; the rest of ``chunk``."""
        while frame.mode == "head":
            try:
                frame.image = locate_image(frame.head, frame.length)
            except NeedMore as more:
                needed = int(more.args[0])
                if needed > OUTSIDE_IMAGE_MAX or not chunk:
                    if needed > OUTSIDE_IMAGE_MAX:
                        self._keep_whole(frame)
                    return chunk
                take = chunk[: needed - len(frame.head)]
                frame.head += take
                frame.received += len(take)
                chunk = chunk[len(take) :]
                continue
            except BadMessage as e:
                frame.mode, frame.error = "skip", str(e)
                frame.received += len(chunk)
                return chunk[:0]
            if frame.image[0] < len(frame.head):
                self._keep_whole(frame)  # fields after the image start
                return chunk
            sink = self._handler.open_sink()  # type: ignore[attr-defined]
            sink.attach(_SinkThrottle(self))
            frame.sink, frame.mode = sink, "image"
        return chunk

    def _keep_whole(self, frame: _Frame) -> None:
        frame.chunks, frame.head, frame.mode = [bytes(frame.head)], bytearray(), "whole"
        self._hold(frame)

    def _route(self, frame: _Frame, chunk: memoryview, start: int) -> None:
        """Send the part of ``chunk`` (frame bytes from ``start``) inside the
        image to the sink; keep what lies before and after it."""
        begin, end = frame.image[0], frame.image[0] + frame.image[1]
        stop = start + len(chunk)
        if start < begin:
            frame.head += chunk[: min(stop, begin) - start]
        if stop > begin and start < end:
            assert frame.sink is not None
            frame.sink.write(chunk[max(start, begin) - start : min(stop, end) - start])
        if stop > end:
            frame.tail += chunk[max(start, end) - start :]
            if len(frame.head) + len(frame.tail) > OUTSIDE_IMAGE_MAX:
                frame.mode, frame.error = "skip", "too many bytes outside the image"
                self._release(frame.sink)
                frame.sink, frame.head, frame.tail = None, bytearray(), bytearray()

    def _complete(self, frame: _Frame) -> None:
        self._frame = None
        if frame.mode == "whole":
            chunks = frame.chunks
            whole = bytes(chunks[0]) if len(chunks) == 1 else b"".join(chunks)
            self._enqueue(_Done(frame=whole, held=frame.held))
        elif frame.mode == "head":  # the whole frame came before the image did
            self._enqueue(_Done(frame=bytes(frame.head)))
        elif frame.mode == "skip":
            self._enqueue(_Done(error=frame.error or "malformed frame"))
        else:
            try:
                request = decode_request_around(
                    frame.length, frame.head, frame.tail, frame.image
                )
            except BadMessage as e:
                self._release(frame.sink)
                self._enqueue(_Done(error=str(e)))
            else:
                self._enqueue(_Done(request=request, sink=frame.sink))

    def _too_long(self, length: int) -> None:
        log.warn(
            "closing {peer}: frame of {length} bytes exceeds {limit}",
            peer=self._peer,
            length=length,
            limit=self.max_frame,
        )
        # The frame boundary is lost: answer once, after the frames before it
        # (responses stay in order), then close.
        self._enqueue(_Done(too_long=True))

    # -- answering in order -------------------------------------------------------

    def _enqueue(self, done: _Done) -> None:
        self._queue.append(done)
        if not self._busy:
            self._next()

    def _next(self) -> None:
        # A loop, not recursion: a backlog of frames answered synchronously
        # (bad frames) must not exhaust the stack.  While a handler is
        # pending the connection is busy, and the transport is paused as soon
        # as more bytes arrive (dataReceived): a client that waits for its
        # acknowledgement, as a rig does, costs no pause and resume per tile.
        while self._queue:
            done = self._queue.pop(0)
            if done.too_long:
                self._drop_queue()
                self._send(_failure_response(0))
                self.transport.loseConnection()  # type: ignore[union-attr]
                return
            d = Deferred.fromCoroutine(self._handle(done))
            d.addErrback(self._unexpected)
            if not d.called:
                if not self._busy:
                    self._busy = True
                    self.setTimeout(None)  # a slow store is not an idle peer
                d.addCallback(lambda _: self._next())
                return
        if self._busy:
            self._busy = False
            self.resume("busy")
            if self.connected:
                self.setTimeout(self._idle_timeout or None)

    async def _handle(self, done: _Done) -> None:
        try:
            await self._answer(done)
        finally:
            self._release_held(done.held)

    async def _answer(self, done: _Done) -> None:
        if done.error:
            log.warn(
                "bad frame from {peer}: {reason}", peer=self._peer, reason=done.error
            )
            self._send(_failure_response(0))
            return
        if done.request is not None:
            request = done.request
        else:
            try:
                request = decode_request(done.frame or b"")
            except BadMessage as e:
                log.warn("bad frame from {peer}: {reason}", peer=self._peer, reason=e)
                self._send(_failure_response(0))
                return
        try:
            if done.sink is not None:
                response = await self._handler.capture(request, done.sink)
            else:
                response = await self._handler.capture(request)
        except Exception:
            # §3.4: a decoded request's failure still carries its acqId.
            log.failure("capturing a tile from {peer} failed", peer=self._peer)
            response = _failure_response(request.acq_id)
        self._send(response)

    def _unexpected(self, failure: Failure) -> None:
        log.failure(
            "unexpected error handling a tile from {peer}", failure, peer=self._peer
        )
        self._send(_failure_response(0))

    def _send(self, response: TileResponse) -> None:
        if self.transport is None or self.transport.disconnecting:  # type: ignore[attr-defined]
            return
        message = encode_response(response)
        self.transport.write(PREFIX.pack(len(message)) + message)

    def _release(self, sink: TileSink | None) -> None:
        if sink is not None:
            Deferred.fromCoroutine(sink.discard())

    def _drop_queue(self) -> None:
        for done in self._queue:
            self._release(done.sink)
            self._release_held(done.held)
        self._queue.clear()

    def timeoutConnection(self) -> None:
        log.info("closing idle connection from {peer}", peer=self._peer)
        self.transport.abortConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        # Twisted leaves ``connected`` set; a handler finishing after the peer
        # left must not re-arm the idle timer (it would hold this protocol,
        # and abort a dead transport, TCP_IDLE_TIMEOUT seconds later).
        self.connected = 0
        self.setTimeout(None)
        if self.partial_bytes:
            log.info(
                "{peer} left mid-frame; dropped {n} bytes",
                peer=self._peer,
                n=self.partial_bytes,
            )
        # Release the partial frame too: a pending handler may keep this
        # protocol alive for a while after the peer left.
        self._drop_queue()
        if self._frame is not None:
            self._release(self._frame.sink)
            self._release_held(self._frame.held)
        self._frame, self._prefix = None, bytearray()
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()


#: Frames kept whole that a server holds at once, in multiples of its largest
#: frame (see :class:`HeldBytes`).
HELD_FRAMES = 4


class TileFactory(Factory):
    """Builds a :class:`TileProtocol` per connection, up to ``max_connections``.

    A connection beyond ``max_connections`` (``TCP_MAX_CONNECTIONS``; 0 = no
    limit) is closed as soon as it is accepted, before any byte is read:
    counted in :attr:`refused`, and logged once per run of refusals.  So is
    one from a peer outside ``allowed_clients`` (``TCP_ALLOWED_CLIENTS``;
    empty = any peer), counted in :attr:`refused_clients` and logged each time.
    """

    #: Largest frame accepted (MAX_TILE_BYTES + FRAME_OVERHEAD in the daemon).
    max_frame = TileProtocol.max_frame

    def __init__(
        self,
        handler: TileHandler,
        idle_timeout: float = 300.0,
        max_connections: int = 0,
        allowed_clients: Sequence[Network] = (),
    ) -> None:
        self._handler = handler
        self._idle_timeout = idle_timeout
        self.limit = ConnectionLimit("TCP", "TCP_MAX_CONNECTIONS", max_connections)
        self.allowed = ClientAllowList(allowed_clients, "TCP_ALLOWED_CLIENTS")
        #: Big frames kept whole, across this server's connections.
        self.held = HeldBytes(None)

    @property
    def open_connections(self) -> int:
        """Connections open now."""
        return self.limit.open_connections

    @property
    def refused(self) -> int:
        """Connections closed at once because ``max_connections`` were open."""
        return self.limit.refused

    @property
    def refused_clients(self) -> int:
        """Connections closed at once because their peer is not allowed."""
        return self.allowed.refused

    def buildProtocol(self, addr: Any) -> TileProtocol | None:
        if not self.allowed.admit(addr) or not self.limit.admit(addr):
            return None
        self.held.limit = HELD_FRAMES * self.max_frame
        proto = TileProtocol(
            self._handler,
            self._idle_timeout,
            held=self.held,
            on_close=self.limit.closed,
        )
        proto.max_frame = self.max_frame
        proto.factory = self
        self.limit.opened()
        return proto


class PipelineHandler:
    """Feeds decoded TCP requests to the capture pipeline (§3.3, §3.4)."""

    def __init__(self, pipeline: Pipeline, metrics: Metrics | None = None) -> None:
        self._pipeline = pipeline
        self._metrics = metrics

    def _failure(self, acq_id: int, client_error: bool) -> TileResponse:
        status = self._pipeline.status()
        # §14: a client's mistake does not force the system status RED (Q5).
        system = status.system if client_error else QueueColour.RED
        return TileResponse(
            acq_id=acq_id,
            status=1,
            system_status=int(system),
            tile_queue_status=int(status.tile),
            content_queue_status=int(status.content),
        )

    def open_sink(self) -> TileSink:
        """A sink in the tile's durable home (see :meth:`Pipeline.open_sink`)."""
        return self._pipeline.open_sink()

    async def capture(
        self, request: TileRequest, sink: TileSink | None = None
    ) -> TileResponse:
        """Capture the tile; status 0 with its id, or status 1."""
        started = time.monotonic()
        outcome = "failed"  # for the metrics, until known
        try:
            try:
                name = tile_name_for(
                    request.col, request.row, request.camera, request.frame
                )
            except BadParameter:
                if sink is not None:
                    await sink.discard()
                raise
            tile = TileName(
                request.col, request.row, request.camera, request.frame, name
            )
            upload = TileUpload(
                request.acq_id, tile, request.image, request.checksum, sink=sink
            )
            result = await self._pipeline.capture(upload)
            outcome = "ok"
        except (BadParameter, NotFound) as e:
            outcome = "rejected"
            log.warn("tile from TCP refused: {reason}", reason=e)
            return self._failure(request.acq_id, client_error=True)
        except (CatcherError, StoreError) as e:
            log.warn("tile from TCP failed: {reason}", reason=e)
            return self._failure(request.acq_id, client_error=False)
        finally:
            if self._metrics is not None:
                if outcome == "ok":
                    size = sink.size if sink is not None else len(request.image)
                    seconds = time.monotonic() - started
                    self._metrics.tile_acknowledged("tcp", size, seconds)
                else:
                    self._metrics.tile_refused("tcp", outcome)
        status = result.status
        return TileResponse(
            acq_id=request.acq_id,
            tile_id=result.tile.tile_id,
            status=0,
            system_status=int(status.system),
            tile_queue_status=int(status.tile),
            content_queue_status=int(status.content),
        )
