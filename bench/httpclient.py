"""A minimal keep-alive HTTP/1.1 client over a plain socket.

The daemon sends header names with spaces (``System Status``), which
:mod:`http.client` cannot parse, so the benchmark reads responses itself:
status line, headers split at the first colon, then a ``Content-Length``,
chunked or read-to-close body.  A body can be read into a caller's buffer so
that large downloads cost no extra copies.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from io import BufferedReader

Body = bytes | bytearray | memoryview


class HttpError(RuntimeError):
    """A malformed response or a connection closed mid-response."""


@dataclass(frozen=True)
class Response:
    """Status, headers (lower-case names, last one wins) and body."""

    status: int
    headers: Mapping[str, str]
    body: Body

    def text(self, limit: int = 300) -> str:
        """The body as text, truncated for error messages."""
        return bytes(self.body[:limit]).decode("utf-8", "replace")


def _read_exactly(reader: BufferedReader, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = reader.readinto(view[got:])
        if not n:
            raise HttpError(f"connection closed after {got} of {len(view)} bytes")
        got += n


class HttpConnection:
    """One persistent connection to ``host:port``; reconnects when closed."""

    def __init__(self, host: str, port: int, timeout: float = 60.0) -> None:
        self._address = (host, port)
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._reader: BufferedReader | None = None

    def _connect(self) -> tuple[socket.socket, BufferedReader]:
        if self._sock is None or self._reader is None:
            sock = socket.create_connection(self._address, timeout=self._timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reader = sock.makefile("rb", buffering=1 << 16)
            assert isinstance(reader, BufferedReader)
            self._sock, self._reader = sock, reader
        return self._sock, self._reader

    def close(self) -> None:
        """Close the socket (the next request opens a new one)."""
        if self._reader is not None:
            self._reader.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._reader = None

    def request(
        self,
        method: str,
        target: str,
        body: Body = b"",
        headers: Mapping[str, str] | None = None,
        into: bytearray | None = None,
    ) -> Response:
        """Send one request and read its response.

        With ``into``, a ``Content-Length`` body that fits is read into that
        buffer and the response body is a view of it.
        """
        sock, reader = self._connect()
        host, port = self._address
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            if len(body) <= 65536:
                sock.sendall(head + bytes(body))
            else:
                sock.sendall(head)
                sock.sendall(body)
            return self._read_response(reader, method, into)
        except BaseException:
            self.close()
            raise

    def _read_response(
        self, reader: BufferedReader, method: str, into: bytearray | None
    ) -> Response:
        status_line = reader.readline(65537)
        if not status_line:
            raise HttpError("connection closed before the response")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise HttpError(f"bad status line {status_line[:100]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        while True:
            line = reader.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body: Body
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if into is not None and length <= len(into):
                body = memoryview(into)[:length]
                _read_exactly(reader, body)
            else:
                buf = bytearray(length)
                _read_exactly(reader, memoryview(buf))
                body = buf
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked(reader)
        else:
            body = reader.read()
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Response(status, headers, body)

    @staticmethod
    def _read_chunked(reader: BufferedReader) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(reader.readline(1024).split(b";")[0].strip(), 16)
            if size == 0:
                while reader.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunk = bytearray(size)
            _read_exactly(reader, memoryview(chunk))
            chunks.append(bytes(chunk))
            reader.readline(3)
