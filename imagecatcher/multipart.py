"""A strict ``multipart/form-data`` reader (RFC 7578) over an in-memory body.

Twisted's own form parsing drops part file names, which the API needs (the
acquisition UID comes from the INI log's file name), and answers malformed
bodies by hanging up; this reader keeps names and reports every defect as a
:class:`~imagecatcher.domain.BadParameter`.  Part bodies are zero-copy views
into the request body.
"""

from __future__ import annotations

import re

import attrs

from imagecatcher.domain import BadParameter

_BOUNDARY = re.compile(r'boundary=(?:"([^"]{1,200})"|([^\s;"]{1,200}))', re.I)
_PARAM = re.compile(r';\s*([A-Za-z0-9_*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))')


@attrs.frozen
class Part:
    """One form field or file."""

    name: str
    filename: str | None
    content_type: str
    data: memoryview = attrs.field(eq=False, repr=lambda v: f"<{len(v)} bytes>")

    def text(self) -> str:
        """The body as UTF-8 text (invalid bytes replaced)."""
        return bytes(self.data).decode("utf-8", errors="replace")


def is_multipart(content_type: str | None) -> bool:
    """Whether a Content-Type header names multipart/form-data."""
    return bool(content_type) and content_type.split(";", 1)[0].strip().lower() == (  # type: ignore[union-attr]
        "multipart/form-data"
    )


def _disposition(value: str) -> tuple[str, str | None]:
    kind, _, rest = value.partition(";")
    if kind.strip().lower() != "form-data":
        raise BadParameter(
            f"malformed multipart body: part disposition {kind.strip()!r}"
        )
    params: dict[str, str] = {}
    for m in _PARAM.finditer(";" + rest):
        raw = m.group(2) if m.group(2) is not None else m.group(3)
        # Only \" and \\ are escapes; other backslashes (C:\dir\x.png) stay.
        params[m.group(1).lower()] = re.sub(r'\\(["\\])', r"\1", raw)
    if "name" not in params:
        raise BadParameter("malformed multipart body: a part has no name")
    return params["name"], params.get("filename")


def parse_multipart(body: bytes | memoryview, content_type: str) -> list[Part]:
    """Split a form body into parts; BadParameter on any malformation."""
    m = _BOUNDARY.search(content_type)
    if m is None:
        raise BadParameter("malformed multipart body: no boundary in the Content-Type")
    boundary = (m.group(1) or m.group(2)).encode("latin-1")
    data: bytes | bytearray
    if isinstance(body, memoryview):
        whole = body.obj
        # Search the request's own buffer when the view covers all of it.
        if isinstance(whole, bytes | bytearray) and len(whole) == body.nbytes:
            data = whole
        else:
            data = bytes(body)
    else:
        data = body
    view = memoryview(data)
    delimiter = b"--" + boundary
    start = data.find(delimiter)
    if start < 0:
        raise BadParameter("malformed multipart body: boundary not found")
    parts: list[Part] = []
    pos = start + len(delimiter)
    while True:
        if data.startswith(b"--", pos):
            return parts  # the closing delimiter
        line_end = data.find(b"\r\n", pos)
        if line_end < 0 or data[pos:line_end].strip(b" \t"):
            raise BadParameter("malformed multipart body: bad delimiter line")
        head_end = data.find(b"\r\n\r\n", line_end)
        if head_end < 0:
            raise BadParameter("malformed multipart body: part headers never end")
        headers: dict[str, str] = {}
        for line in data[line_end + 2 : head_end].split(b"\r\n"):
            name, sep, value = line.decode("utf-8", errors="replace").partition(":")
            if not sep:
                raise BadParameter("malformed multipart body: bad part header")
            headers[name.strip().lower()] = value.strip()
        if "content-disposition" not in headers:
            raise BadParameter(
                "malformed multipart body: part without Content-Disposition"
            )
        field, filename = _disposition(headers["content-disposition"])
        content_start = head_end + 4
        end = data.find(b"\r\n" + delimiter, content_start)
        if end < 0:
            raise BadParameter(
                "malformed multipart body: truncated (no closing boundary)"
            )
        parts.append(
            Part(
                name=field,
                filename=filename,
                content_type=headers.get("content-type", "text/plain"),
                data=view[content_start:end],
            )
        )
        pos = end + 2 + len(delimiter)
