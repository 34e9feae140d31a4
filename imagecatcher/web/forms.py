"""``multipart/form-data`` bodies (RFC 7578), read with a push parser.

The framing is the `multipart <https://pypi.org/project/multipart/>`_
package's :class:`~multipart.PushMultipartParser`: it takes the body in
chunks of any size, as they arrive, and emits each part's headers, then its
payload in pieces, then its end.  :class:`FormReader` turns those events into
calls on a :class:`PartHandler`, so a route decides per part where the bytes
go (a tile sink, a small capped buffer, nowhere); :func:`parse_form` collects
a buffered body into :class:`Part` values for the small lifecycle forms.

Part names and file names come from the part's own ``Content-Disposition``
header, unquoted by the rule Go and werkzeug use (only ``\\"`` and ``\\\\``
are escapes), so ``C:\\dir\\x.png`` keeps its backslashes and the acquisition
UID in an INI log's file name survives.  Every malformation is a
:class:`~imagecatcher.domain.BadParameter` ``malformed multipart body: ...``.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import attrs
import multipart  # type: ignore[import-untyped]

from imagecatcher.domain import BadParameter

MALFORMED = "malformed multipart body"
_ESCAPE = re.compile(r'\\(["\\])')


@attrs.frozen
class PartHead:
    """A part's headers: its form name, file name and media type."""

    name: str
    filename: str | None
    content_type: str


@attrs.frozen
class Part:
    """One buffered form field or file."""

    name: str
    filename: str | None
    content_type: str
    data: bytes = attrs.field(eq=False, repr=lambda v: f"<{len(v)} bytes>")

    def text(self) -> str:
        """The body as UTF-8 text (invalid bytes replaced)."""
        return self.data.decode("utf-8", errors="replace")


class PartHandler(Protocol):
    """Where a :class:`FormReader` delivers each part."""

    def part_started(self, head: PartHead) -> None:
        """A part's headers have arrived; its payload follows."""

    def part_data(self, chunk: bytes) -> None:
        """The next piece of the current part's payload (never empty)."""

    def part_ended(self) -> None:
        """The current part is complete."""


def is_multipart(content_type: str | None) -> bool:
    """Whether a Content-Type header names multipart/form-data."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "multipart/form-data"


def boundary_of(content_type: str) -> str:
    """The boundary parameter of a multipart Content-Type; BadParameter if none."""
    _kind, options = multipart.parse_options_header(content_type)
    boundary = options.get("boundary", "")
    if not boundary:
        raise BadParameter(f"{MALFORMED}: no boundary in the Content-Type")
    return str(boundary)


def _unquote(value: str, filename: bool = False) -> str:
    """A parameter value without quotes; only ``\\"`` and ``\\\\`` are escapes."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return _ESCAPE.sub(r"\1", value[1:-1])
    return value


def _head(segment: Any) -> PartHead:
    """A segment's names, read from its raw Content-Disposition header."""
    # The parser already checked that the disposition is form-data.
    disposition = segment.header("Content-Disposition", "")
    _kind, params = multipart.parse_options_header(disposition, unquote=_unquote)
    name = params.get("name")
    if not name:
        raise BadParameter(f"{MALFORMED}: a part has no name")
    return PartHead(
        name=name,
        filename=params.get("filename"),
        content_type=segment.header("Content-Type", "text/plain").strip(),
    )


class FormReader:
    """Feeds body chunks to the push parser and its events to a handler.

    :meth:`feed` takes the body as it arrives (any split), :meth:`close`
    checks that the closing delimiter came.  Both raise BadParameter on a
    malformed body; after that the reader takes nothing more.
    """

    def __init__(self, content_type: str, handler: PartHandler) -> None:
        self._handler = handler
        try:
            self._parser = multipart.PushMultipartParser(boundary_of(content_type))
        except multipart.MultipartError as e:
            raise BadParameter(f"{MALFORMED}: {e}") from None

    def feed(self, chunk: bytes | bytearray) -> None:
        """Parse the next chunk of the body."""
        if not chunk:
            return  # the parser reads an empty chunk as the end of the body
        handler = self._handler
        try:
            for event in self._parser.parse(chunk):
                if event is None:
                    handler.part_ended()
                elif isinstance(event, multipart.MultipartSegment):
                    handler.part_started(_head(event))
                else:
                    handler.part_data(event)
        except multipart.MultipartError as e:
            raise BadParameter(f"{MALFORMED}: {e}") from None
        except BadParameter:
            self._parser.close(check_complete=False)
            raise

    def close(self) -> None:
        """The body is over: BadParameter unless the form was complete."""
        if self._parser.error is not None:
            raise BadParameter(f"{MALFORMED}: {self._parser.error}")
        try:
            self._parser.close()
        except multipart.MultipartError:
            raise BadParameter(
                f"{MALFORMED}: the body ended before the closing boundary"
            ) from None


class _Collect:
    """A PartHandler keeping every part in memory (the small forms)."""

    def __init__(self) -> None:
        self.parts: list[Part] = []
        self._head: PartHead | None = None
        self._chunks: list[bytes] = []

    def part_started(self, head: PartHead) -> None:
        self._head, self._chunks = head, []

    def part_data(self, chunk: bytes) -> None:
        self._chunks.append(chunk)

    def part_ended(self) -> None:
        head, chunks = self._head, self._chunks
        assert head is not None
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.parts.append(Part(head.name, head.filename, head.content_type, data))
        self._head, self._chunks = None, []


def whole(body: bytes | bytearray | memoryview) -> bytes | bytearray:
    """A body as the parser takes it: the buffer under a view that covers it all."""
    if not isinstance(body, memoryview):
        return body
    under = body.obj
    if isinstance(under, bytes | bytearray) and len(under) == body.nbytes:
        return under
    return bytes(body)


def parse_form(body: bytes | bytearray | memoryview, content_type: str) -> list[Part]:
    """Every part of a buffered form body; BadParameter on any malformation."""
    collect = _Collect()
    reader = FormReader(content_type, collect)
    reader.feed(whole(body))
    reader.close()
    return collect.parts
