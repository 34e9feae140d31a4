"""A capture request's body, streamed into a tile sink as it arrives (§1.5).

twisted.web hands a request's body to ``request.content.write`` chunk by
chunk, long before the route runs.  For ``capture-image-content`` that object
is a :class:`TileBody`: a raw body goes chunk by chunk to a
:class:`~imagecatcher.sink.TileSink` in the tile's durable home, which hashes
and writes it off the reactor; a multipart body goes through the push parser
of :mod:`imagecatcher.web.forms`, and only the ``tile-file`` part's payload
reaches the sink.  The small parts the route reads (``tile-filename``,
``checksum``, ``checksum-str``) are buffered, capped; other parts are
counted and dropped.  Nothing is joined or copied whole, and memory per tile
is what the sink holds before it pauses the connection (a few MiB).

A body past the limit, or a malformed form, is remembered and the rest of
the body dropped; the route answers 413 or 400 once the body is in.  The
route takes the sink with :meth:`TileBody.take` and then owns it (hands it to
the pipeline or discards it); a request that ends before that (the client
left mid-body, or the route never ran) discards it here.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from imagecatcher.domain import BadParameter
from imagecatcher.sink import Producer, TileSink
from imagecatcher.web.common import BodyTooLarge
from imagecatcher.web.forms import FormReader, PartHead, is_multipart

log = Logger()

#: Bytes the small parts of a capture form may hold together.
FIELD_BYTES = 64 * 1024
#: The parts whose content the capture route reads; ``tile-file`` is streamed.
FIELD_PARTS = frozenset({"tile-filename", "checksum", "checksum-str"})
TILE_PART = "tile-file"


class TileBody:
    """The body of one capture request: counted, parsed and sunk as it arrives.

    :param open_sink: gives the sink for the tile's bytes (``Pipeline.open_sink``).
    :param content_type: the request's Content-Type; multipart/form-data
        selects the form encoding, anything else is a raw body.
    :param length: the declared Content-Length, if any.
    :param max_tile: the largest tile accepted (``MAX_TILE_BYTES``).
    :param max_body: the largest form body accepted (tile plus framing).
    :param producer: paused by the sink while its writes fall behind (the
        connection's transport).
    """

    def __init__(
        self,
        open_sink: Callable[[], TileSink],
        content_type: str,
        *,
        length: int | None,
        max_tile: int,
        max_body: int,
        producer: Producer | None = None,
    ) -> None:
        self._open_sink = open_sink
        self._producer = producer
        self._max_tile = max_tile
        self.multipart = is_multipart(content_type)
        self._limit = max_body if self.multipart else max_tile
        #: Why the body is refused as too large (413), once it is.
        self.too_large: str | None = None
        #: Why the form is refused (400), once it is.
        self.error: BadParameter | None = None
        #: The small parts, in order: (form name, content).
        self.fields: list[tuple[str, bytes]] = []
        #: Whether a ``tile-file`` part came, and its file name.
        self.has_file = False
        self.file_name: str | None = None
        #: Bytes received (the whole body).
        self.size = 0
        self._sink: TileSink | None = None
        self._owned = True  # until take(): this object discards the sink
        self._reader: FormReader | None = None
        self._part: str | None = None  # the current part's name
        self._field: list[bytes] = []
        self._field_bytes = 0
        self._tile_bytes = 0
        if length is not None and length > self._limit:
            self._refuse()
        elif self.multipart:
            try:
                self._reader = FormReader(content_type, self)
            except BadParameter as e:
                self.error = e
        else:
            self._sink = self._new_sink()

    def _new_sink(self) -> TileSink:
        sink = self._open_sink()
        sink.attach(self._producer)
        return sink

    def _refuse(self) -> None:
        if self.multipart:
            self.too_large = "Request body too large"
        else:
            self.too_large = f"Tile larger than {self._max_tile} bytes"

    # -- the file API twisted.web uses -------------------------------------------

    def write(self, data: bytes | bytearray) -> None:
        """Take the next chunk of the body."""
        self.size += len(data)
        if self.too_large is not None or self.error is not None:
            return  # counted and dropped: the route refuses the request
        if self.size > self._limit:
            self._refuse()
            return
        if self._reader is None:
            if self._sink is not None:
                self._sink.write(data)
            return
        try:
            self._reader.feed(data)
        except BodyTooLarge as e:
            self.too_large = str(e)
        except BadParameter as e:
            self.error = e

    def tell(self) -> int:
        """Bytes received (twisted.web reads it as the body's length)."""
        return self.size

    def seek(self, offset: int, whence: int = 0) -> int:
        """A no-op: the body is not kept here."""
        return 0

    def read(self, n: int = -1) -> bytes:
        """Nothing: the body went to the sink as it arrived."""
        return b""

    def close(self) -> None:
        """The request is over: discard the sink unless the route took it."""
        self.abandon()

    # -- the form's parts (PartHandler) ---------------------------------------------

    def part_started(self, head: PartHead) -> None:
        """Route a part: the tile to a sink, small fields to a buffer."""
        self._part = head.name
        if head.name == TILE_PART:
            if self.has_file:
                raise BadParameter("more than one tile-file part in the request")
            self.has_file, self.file_name = True, head.filename
            self._sink = self._new_sink()
        elif head.name in FIELD_PARTS:
            self._field = []

    def part_data(self, chunk: bytes) -> None:
        """Pass the tile's bytes on; keep a field's; drop the rest."""
        if self._part == TILE_PART:
            self._tile_bytes += len(chunk)
            if self._tile_bytes > self._max_tile:
                raise BodyTooLarge(f"Tile larger than {self._max_tile} bytes")
            assert self._sink is not None
            self._sink.write(chunk)
        elif self._part in FIELD_PARTS:
            self._field_bytes += len(chunk)
            if self._field_bytes > FIELD_BYTES:
                raise BadParameter(
                    f"the form fields of the request exceed {FIELD_BYTES} bytes"
                )
            self._field.append(chunk)

    def part_ended(self) -> None:
        """Keep a finished field."""
        if self._part in FIELD_PARTS:
            assert self._part is not None
            self.fields.append((self._part, b"".join(self._field)))
            self._field = []
        self._part = None

    # -- ownership --------------------------------------------------------------------

    def take(self) -> TileSink | None:
        """The whole body has arrived: check the form, hand over the sink.

        From now on the caller owns the sink: it gives it to the pipeline or
        discards it.  None when no sink was opened (a refused body, a form
        without a ``tile-file`` part).
        """
        if self._owned and self._reader is not None and self.error is None:
            if self.too_large is None:
                try:
                    self._reader.close()
                except BadParameter as e:
                    self.error = e
        self._owned = False
        return self._sink

    def abandon(self) -> None:
        """Discard the sink now, unless the route took it (idempotent)."""
        if not self._owned:
            return
        self._owned = False
        sink, self._sink = self._sink, None
        if sink is not None:
            done = Deferred.fromCoroutine(sink.discard())
            done.addErrback(lambda f: log.failure("discarding a tile", f))
