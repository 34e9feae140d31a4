"""BodyBuffer and request_body: in-memory bodies, the size cap and the 413 error."""

from __future__ import annotations

import io
from typing import Any, cast

import pytest

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from imagecatcher.domain import BadParameter
from imagecatcher.web.common import ERROR_STATUS as _STATUS
from imagecatcher.web.common import BodyTooLarge
from imagecatcher.web.request import BodyBuffer, CatcherRequest, request_body


class _FakeRequest:
    """Just what request_body reads: the content attribute."""

    def __init__(self, content: Any) -> None:
        self.content = content


def _request(content: Any) -> IRequest:
    return cast(IRequest, _FakeRequest(content))


def _status_of(error: Exception) -> int:
    """The status http.py answers for an error (first match in _STATUS)."""
    return next(status for kind, status in _STATUS if isinstance(error, kind))


def test_known_length_fills_one_preallocated_buffer() -> None:
    """With a Content-Length every chunk lands in the same bytearray, uncopied."""
    buf = BodyBuffer(10, limit=100)
    before = buf.getbuffer().obj
    for chunk in (b"abc", b"", b"defg", b"hij"):
        buf.write(chunk)
    view = buf.getbuffer()
    assert isinstance(view.obj, bytearray) and view.obj is before
    assert view.obj is buf.getbuffer().obj
    assert bytes(view) == b"abcdefghij" and not buf.too_large


def test_known_length_view_covers_only_what_arrived() -> None:
    """A partly received body shows only the bytes received so far."""
    buf = BodyBuffer(10, limit=100)
    buf.write(b"abc")
    assert bytes(buf.getbuffer()) == b"abc"


def test_zero_length_body() -> None:
    """Content-Length 0 gives an empty body."""
    buf = BodyBuffer(0, limit=100)
    assert bytes(buf.getbuffer()) == b"" and buf.read() == b"" and not buf.too_large


def test_unknown_length_joins_chunks_once() -> None:
    """Without a length the chunks are joined, once, on first access."""
    buf = BodyBuffer(None, limit=100)
    for chunk in (b"ab", b"cd", b"e"):
        buf.write(chunk)
    view = buf.getbuffer()
    assert bytes(view) == b"abcde"
    assert buf.getbuffer().obj is view.obj
    buf.write(b"f")
    assert bytes(buf.getbuffer()) == b"abcdef"


def test_single_chunk_is_not_copied() -> None:
    """An unknown-length body of one chunk is served from that chunk."""
    chunk = b"only chunk"
    buf = BodyBuffer(None, limit=100)
    buf.write(chunk)
    assert buf.getbuffer().obj is chunk


def test_declared_length_over_limit_is_too_large_at_once() -> None:
    """A Content-Length over the limit marks the body too large and keeps nothing."""
    buf = BodyBuffer(101, limit=100)
    assert buf.too_large
    buf.write(b"x" * 50)
    assert bytes(buf.getbuffer()) == b""


def test_declared_length_at_limit_is_accepted() -> None:
    """A body exactly at the limit is fine."""
    buf = BodyBuffer(100, limit=100)
    buf.write(b"x" * 100)
    assert not buf.too_large and len(buf.getbuffer()) == 100


def test_streamed_body_over_limit_drops_data() -> None:
    """Without a length, passing the limit sets too_large and drops what was kept."""
    buf = BodyBuffer(None, limit=10)
    buf.write(b"x" * 10)
    assert not buf.too_large
    buf.write(b"y")
    assert buf.too_large
    buf.write(b"z" * 5)
    assert bytes(buf.getbuffer()) == b"" and buf.read() == b""


def test_more_than_declared_is_too_large() -> None:
    """Bytes beyond the declared Content-Length mark the body too large."""
    buf = BodyBuffer(3, limit=100)
    buf.write(b"abcd")
    assert buf.too_large


def test_file_api_for_twisted_web() -> None:
    """seek(0, 0) then read() returns the body, as twisted.web and Klein use it."""
    buf = BodyBuffer(None, limit=100)
    buf.write(b"hello ")
    buf.write(b"world")
    assert buf.seek(0, 0) == 0 and buf.tell() == 0
    assert buf.read(5) == b"hello" and buf.tell() == 5
    assert buf.read() == b" world" and buf.tell() == 11
    assert buf.read() == b"" and buf.read(3) == b""
    assert buf.seek(0) == 0 and buf.read() == b"hello world"
    assert buf.seek(-5, io.SEEK_END) == 6 and buf.read() == b"world"


def test_read_past_the_end_is_clipped() -> None:
    """read(n) larger than what is left returns what is left."""
    buf = BodyBuffer(4, limit=100)
    buf.write(b"abcd")
    buf.seek(2)
    assert buf.read(100) == b"cd" and buf.tell() == 4


def test_seek_relative_to_current_position() -> None:
    """seek(n, SEEK_CUR) moves from the current position, like a file."""
    buf = BodyBuffer(None, limit=100)
    buf.write(b"0123456789")
    buf.seek(2)
    assert buf.seek(3, io.SEEK_CUR) == 5 and buf.read(1) == b"5"


def test_tell_after_writing_is_the_body_length() -> None:
    """After writes the position is at the end, like a file opened for writing."""
    buf = BodyBuffer(5, limit=100)
    buf.write(b"ab")
    buf.write(b"cde")
    assert buf.tell() == 5


def test_close_releases_the_buffer() -> None:
    """close() drops the body; a view handed out before stays valid."""
    buf = BodyBuffer(3, limit=100)
    buf.write(b"abc")
    view = buf.getbuffer()
    buf.close()
    assert bytes(view) == b"abc"
    assert bytes(buf.getbuffer()) == b""


def test_request_body_returns_the_buffer_itself() -> None:
    """request_body hands out the BodyBuffer's memory without copying."""
    buf = BodyBuffer(3, limit=100)
    buf.write(b"abc")
    body = request_body(_request(buf))
    assert bytes(body) == b"abc" and body.obj is buf.getbuffer().obj


@pytest.mark.parametrize("length", [None, 4])
def test_request_body_too_large_is_413(length: int | None) -> None:
    """A too-large body raises BodyTooLarge, a BadParameter answered with 413."""
    buf = BodyBuffer(length, limit=3)
    buf.write(b"abcd")
    with pytest.raises(BodyTooLarge) as caught:
        request_body(_request(buf))
    assert isinstance(caught.value, BadParameter)
    assert _status_of(caught.value) == 413
    assert _status_of(BadParameter("x")) == 400


def test_request_body_of_a_plain_file() -> None:
    """Any other content object is rewound and read whole."""
    content = io.BytesIO(b"plain body")
    content.seek(0, io.SEEK_END)
    assert bytes(request_body(_request(content))) == b"plain body"


class _Recorder(Resource):
    """Records every request it serves and its body (or the refusal)."""

    isLeaf = True  # noqa: N815 - Twisted's name

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Request] = []
        self.content_types: list[type] = []
        self.bodies: list[bytes | BodyTooLarge] = []

    def render(self, request: Request) -> bytes:
        self.requests.append(request)
        self.content_types.append(type(request.content))
        try:
            self.bodies.append(bytes(request_body(request)))
        except BodyTooLarge as e:
            self.bodies.append(e)
        return b"ok"


def _serve(raw: bytes, max_body: int = 1000) -> tuple[_Recorder, bytes]:
    """Feed one raw request to a Site using CatcherRequest over a StringTransport."""

    class Limited(CatcherRequest):
        pass

    Limited.max_body = max_body
    recorder = _Recorder()
    site = Site(recorder, reactor=MemoryReactorClock())
    site.requestFactory = Limited
    channel = site.buildProtocol(None)
    assert channel is not None
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(raw)
    return recorder, transport.value()


def test_twisted_web_delivers_a_body_through_body_buffer() -> None:
    """A real HTTPChannel fills BodyBuffer and the resource reads the whole body."""
    recorder, answer = _serve(
        b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world"
    )
    assert recorder.bodies == [b"hello world"]
    assert recorder.content_types == [BodyBuffer]
    assert answer.startswith(b"HTTP/1.1 200")


def test_twisted_web_delivers_a_chunked_body() -> None:
    """A chunked (length-less) body is joined and delivered whole."""
    recorder, _answer = _serve(
        b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    assert recorder.bodies == [b"hello world"]


def test_too_large_body_through_twisted_web_is_refused() -> None:
    """A Content-Length over max_body keeps nothing and request_body refuses it."""
    recorder, _answer = _serve(
        b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world",
        max_body=4,
    )
    (refused,) = recorder.bodies
    assert isinstance(refused, BodyTooLarge)


def test_malformed_multipart_post_reaches_the_resource() -> None:
    """twisted.web does not answer a malformed multipart POST itself (routes do)."""
    recorder, answer = _serve(
        b"POST /x HTTP/1.1\r\nHost: h\r\n"
        b"Content-Type: multipart/form-data; boundary=zz\r\n"
        b"Content-Length: 7\r\n\r\ngarbage"
    )
    assert recorder.bodies == [b"garbage"]
    assert answer.startswith(b"HTTP/1.1 200")


def test_catcher_request_disables_twisted_form_parsing() -> None:
    """A CatcherRequest created by a default Site has twisted's form parsing off."""
    recorder, _answer = _serve(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
    assert recorder.requests[0]._parsePOSTFormSubmission is False
