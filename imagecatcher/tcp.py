"""The raw TCP tile server (CONTRACT §3): framing and in-order responses.

:class:`FrameReceiver` cuts the byte stream into frames without re-joining
its buffer per chunk (a tile of 20 MiB arriving in 64 KiB reads costs one
join).  :class:`TileProtocol` answers frames strictly in order: while a
frame is being handled the transport is paused, so a rig that sends ahead
is held back by TCP flow control rather than by our memory.
"""

from __future__ import annotations

from typing import Any
from typing import Protocol as TypingProtocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from imagecatcher.domain import BadParameter, CatcherError, NotFound, QueueColour
from imagecatcher.names import TileName, tile_name_for
from imagecatcher.pipeline import Pipeline, TileUpload
from imagecatcher.protocol import (
    PREFIX,
    BadMessage,
    TileRequest,
    TileResponse,
    decode_request,
    encode_response,
)
from imagecatcher.storage import StoreError

log = Logger()

#: Room for the FlatBuffers fields around the image in a request frame.
FRAME_OVERHEAD = 4096


class TileHandler(TypingProtocol):
    """Captures one decoded tile request and says how it went."""

    async def capture(self, request: TileRequest) -> TileResponse:
        """Store the tile; return the response to send."""


class FrameReceiver(Protocol):
    """Delivers each length-prefixed frame whole to :meth:`frame_received`."""

    max_frame = 64 * 1024 * 1024 + FRAME_OVERHEAD

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._need = PREFIX.size
        self._in_body = False
        self._boundary_lost = False

    def dataReceived(self, data: bytes) -> None:
        if self._boundary_lost:
            return  # after an over-long prefix nothing more can be framed
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered < self._need:
            return  # a tile trickling in costs no copies
        buf = b"".join(self._chunks)
        offset = 0
        while len(buf) - offset >= self._need:
            if not self._in_body:
                (length,) = PREFIX.unpack_from(buf, offset)
                offset += PREFIX.size
                if length > self.max_frame:
                    self._chunks, self._buffered = [], 0
                    self._boundary_lost = True
                    self.frame_too_long(length)
                    return
                self._need, self._in_body = length, True
            else:
                body = buf[offset : offset + self._need]
                offset += self._need
                self._need, self._in_body = PREFIX.size, False
                self.frame_received(body)
        rest = buf[offset:]
        self._chunks, self._buffered = ([rest] if rest else []), len(rest)

    @property
    def partial_bytes(self) -> int:
        """Bytes of an incomplete frame (prefix included) still buffered."""
        return self._buffered + (PREFIX.size if self._in_body else 0)

    def frame_received(self, frame: bytes) -> None:
        """Handle one complete frame."""
        raise NotImplementedError

    def frame_too_long(self, length: int) -> None:
        """The announced length exceeds :attr:`max_frame`."""
        raise NotImplementedError


def _failure_response(acq_id: int) -> TileResponse:
    # Q5: a failure reports the system status RED; the queue fields stay green
    # because nothing is known about the queues here.
    return TileResponse(acq_id=acq_id, status=1, system_status=int(QueueColour.RED))


class TileProtocol(FrameReceiver, TimeoutMixin):
    """One rig connection: frames in, responses out, in order."""

    def __init__(self, handler: TileHandler, idle_timeout: float) -> None:
        super().__init__()
        self._handler = handler
        self._idle_timeout = idle_timeout
        #: Frames waiting their turn; None marks an over-long frame (answer, close).
        self._queue: list[bytes | None] = []
        self._busy = False
        self._peer: IAddress | None = None

    def connectionMade(self) -> None:
        self._peer = self.transport.getPeer()  # type: ignore[union-attr]
        self.setTimeout(self._idle_timeout or None)

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        super().dataReceived(data)

    def frame_received(self, frame: bytes) -> None:
        self._enqueue(frame)

    def frame_too_long(self, length: int) -> None:
        log.warn(
            "closing {peer}: frame of {length} bytes exceeds {limit}",
            peer=self._peer,
            length=length,
            limit=self.max_frame,
        )
        # The frame boundary is lost: answer once, after the frames before it
        # (responses stay in order), then close.
        self._enqueue(None)

    def _enqueue(self, frame: bytes | None) -> None:
        self._queue.append(frame)
        if not self._busy:
            self._next()

    def _next(self) -> None:
        # A loop, not recursion: a backlog of frames answered synchronously
        # (bad frames) must not exhaust the stack.  The transport is paused
        # only while a handler is pending.
        while self._queue:
            frame = self._queue.pop(0)
            if frame is None:
                self._queue.clear()
                self._send(_failure_response(0))
                self.transport.loseConnection()  # type: ignore[union-attr]
                return
            d = Deferred.fromCoroutine(self._handle(frame))
            d.addErrback(self._unexpected)
            if not d.called:
                if not self._busy:
                    self._busy = True
                    self.transport.pauseProducing()  # type: ignore[union-attr]
                    self.setTimeout(None)  # a slow store is not an idle peer
                d.addCallback(lambda _: self._next())
                return
        if self._busy:
            self._busy = False
            self.transport.resumeProducing()  # type: ignore[union-attr]
            if self.connected:
                self.setTimeout(self._idle_timeout or None)

    async def _handle(self, frame: bytes) -> None:
        try:
            request = decode_request(frame)
        except BadMessage as e:
            log.warn("bad frame from {peer}: {reason}", peer=self._peer, reason=e)
            self._send(_failure_response(0))
            return
        try:
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

    def timeoutConnection(self) -> None:
        log.info("closing idle connection from {peer}", peer=self._peer)
        self.transport.abortConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self.setTimeout(None)
        if self.partial_bytes:
            log.info(
                "{peer} left mid-frame; dropped {n} bytes",
                peer=self._peer,
                n=self.partial_bytes,
            )
        # Release the partial frame too: a pending handler may keep this
        # protocol alive for a while after the peer left.
        self._queue.clear()
        self._chunks, self._buffered = [], 0
        self._need, self._in_body = PREFIX.size, False


class TileFactory(Factory):
    """Builds a :class:`TileProtocol` per connection."""

    #: Largest frame accepted (MAX_TILE_BYTES + FRAME_OVERHEAD in the daemon).
    max_frame = FrameReceiver.max_frame

    def __init__(self, handler: TileHandler, idle_timeout: float = 300.0) -> None:
        self._handler = handler
        self._idle_timeout = idle_timeout

    def buildProtocol(self, addr: Any) -> TileProtocol:
        proto = TileProtocol(self._handler, self._idle_timeout)
        proto.max_frame = self.max_frame
        proto.factory = self
        return proto


class PipelineHandler:
    """Feeds decoded TCP requests to the capture pipeline (§3.3, §3.4)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

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

    async def capture(self, request: TileRequest) -> TileResponse:
        """Capture the tile; status 0 with its id, or status 1."""
        try:
            name = tile_name_for(
                request.col, request.row, request.camera, request.frame
            )
            tile = TileName(
                request.col, request.row, request.camera, request.frame, name
            )
            upload = TileUpload(request.acq_id, tile, request.image, request.checksum)
            result = await self._pipeline.capture(upload)
        except (BadParameter, NotFound) as e:
            log.warn("tile from TCP refused: {reason}", reason=e)
            return self._failure(request.acq_id, client_error=True)
        except (CatcherError, StoreError) as e:
            log.warn("tile from TCP failed: {reason}", reason=e)
            return self._failure(request.acq_id, client_error=False)
        status = result.status
        return TileResponse(
            acq_id=request.acq_id,
            tile_id=result.tile.tile_id,
            status=0,
            system_status=int(status.system),
            tile_queue_status=int(status.tile),
            content_queue_status=int(status.content),
        )
