"""The twisted.web request and channel of the HTTP site.

:class:`CatcherRequest` streams a ``capture-image-content`` body into a tile
sink as it arrives (:class:`~imagecatcher.web.tilebody.TileBody`), keeps
other request bodies in memory, capped, and lets a response carry the
queue-status header names that contain spaces (§1.0, Q2).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest
from twisted.web.server import Request

from imagecatcher.domain import QueueStatus
from imagecatcher.sink import TileSink
from imagecatcher.web.common import BodyTooLarge
from imagecatcher.web.tilebody import TileBody

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

    With a Content-Length the body lands in one preallocated buffer (no copy
    per chunk, no temporary file); without one, chunks are joined once.  Past
    the limit data is dropped and :attr:`too_large` is set, so the route can
    answer 413 instead of twisted.web spooling the body to disk.
    """

    def __init__(self, length: int | None, limit: int) -> None:
        self.too_large = length is not None and length > limit
        self._limit = limit
        self._fixed = (
            bytearray(length) if length is not None and not self.too_large else None
        )
        self._chunks: list[bytes] = []
        self._size = 0
        self._pos = 0

    def write(self, data: bytes) -> None:
        """Append received body bytes."""
        if self.too_large:
            return
        end = self._size + len(data)
        if self._fixed is not None:
            if end > len(self._fixed):
                self.too_large = True
                return
            self._fixed[self._size : end] = data
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.responseHeaders = QueueHeaders()
        # twisted.web sets this per instance from the Site; routes parse forms.
        self._parsePOSTFormSubmission = False

    @classmethod
    def for_daemon(
        cls, max_tile: int, open_sink: Callable[[], TileSink] | None
    ) -> type[CatcherRequest]:
        """The request class of one site: its tile limit and its tiles' sinks."""

        class DaemonRequest(CatcherRequest):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.open_sink = open_sink

        DaemonRequest.max_tile = max_tile
        DaemonRequest.max_body = max_tile + FORM_OVERHEAD
        return DaemonRequest

    def gotLength(self, length: int | None) -> None:
        open_sink = self.open_sink
        if open_sink is not None and self._is_capture():
            ctype = self.requestHeaders.getRawHeaders(b"content-type", [b""])[0]
            self.content = TileBody(
                open_sink,
                ctype.decode("latin-1"),
                length=length,
                max_tile=self.max_tile,
                max_body=self.max_body,
                producer=IPushProducer(self.channel.transport, None),
            )
        else:
            self.content = BodyBuffer(length, self.max_body)

    def _is_capture(self) -> bool:
        # The request line is still the channel's: Request.method and .uri
        # are set only once the whole body has arrived.
        method = getattr(self.channel, "_command", b"")
        target = getattr(self.channel, "_path", b"")
        return method in (b"PUT", b"POST") and bool(_CAPTURE_TARGET.fullmatch(target))

    def connectionLost(self, reason: Failure) -> None:
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


class NoKeepAliveChannel(HTTPChannel):
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
