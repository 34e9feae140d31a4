"""multipart/form-data forms (web.forms): names, escapes, binary bodies, malformations.

The framing is the ``multipart`` package's push parser; these tests pin what
the API relies on: part and file names as sent, payloads byte for byte however
the body is split, and a BadParameter for every malformed body.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import attrs
import pytest

from imagecatcher.domain import BadParameter
from imagecatcher.web.forms import (
    FormReader,
    Part,
    PartHead,
    is_multipart,
    parse_form,
)

BOUNDARY = "----catcher7MA4YWxkTrZu0gW"
CTYPE = f"multipart/form-data; boundary={BOUNDARY}"


@attrs.frozen
class Field:
    """What the test-side encoder writes for one part."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None
    extra: tuple[tuple[str, str], ...] = ()


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode(fields: Sequence[Field], boundary: str = BOUNDARY) -> bytes:
    """A body as RFC 7578 writes it, quoting names with backslash escapes."""
    out = bytearray()
    delimiter = b"--" + boundary.encode("latin-1")
    for field in fields:
        assert b"\r\n" + delimiter not in field.data, "payload contains the delimiter"
        disposition = f"form-data; name={_quote(field.name)}"
        if field.filename is not None:
            disposition += f"; filename={_quote(field.filename)}"
        out += delimiter + b"\r\n"
        out += f"Content-Disposition: {disposition}\r\n".encode()
        if field.content_type is not None:
            out += f"Content-Type: {field.content_type}\r\n".encode()
        for name, value in field.extra:
            out += f"{name}: {value}\r\n".encode()
        out += b"\r\n" + field.data + b"\r\n"
    out += delimiter + b"--\r\n"
    return bytes(out)


def _simple(parts: list[Part]) -> list[tuple[str, str | None, str, bytes]]:
    return [(p.name, p.filename, p.content_type, bytes(p.data)) for p in parts]


def test_fields_and_files_keep_names_and_types() -> None:
    """A text field and a file part keep their names, file name and type."""
    body = encode(
        [
            Field("tile-filename", b"col0006_row0017_cam1.tif"),
            Field("tile-file", b"\x00\x01TIFF", "x.tif", "application/octet-stream"),
        ]
    )
    assert _simple(parse_form(body, CTYPE)) == [
        ("tile-filename", None, "text/plain", b"col0006_row0017_cam1.tif"),
        ("tile-file", "x.tif", "application/octet-stream", b"\x00\x01TIFF"),
    ]


def test_no_parts_is_an_empty_list() -> None:
    """A body holding only the closing delimiter has no parts."""
    assert parse_form(f"--{BOUNDARY}--\r\n".encode(), CTYPE) == []


def test_quoted_filename_with_escaped_quote_and_semicolon() -> None:
    """Escaped quotes, backslashes and semicolons inside quotes belong to the value."""
    name = 'we"ird; name=evil\\x.ini'
    body = encode([Field("ancillary-file", b"x", filename=name)])
    (part,) = parse_form(body, CTYPE)
    assert part.name == "ancillary-file"
    assert part.filename == name


def test_unquoted_parameters_and_spacing() -> None:
    """Token values without quotes and odd spacing around ';' and '=' are read."""
    body = (
        f"--{BOUNDARY}\r\n"
        "content-disposition: Form-Data;name=tile-file ;  FILENAME = a.tif\r\n"
        "\r\nabc\r\n"
        f"--{BOUNDARY}--"
    ).encode()
    (part,) = parse_form(body, CTYPE)
    assert (part.name, part.filename, bytes(part.data)) == (
        "tile-file",
        "a.tif",
        b"abc",
    )


def test_windows_filename_keeps_its_backslashes() -> None:
    """A backslash not before a quote or backslash is kept (Go's and werkzeug's rule)."""
    body = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="f"; filename="C:\\dir\\x.png"\r\n'
        "\r\nx\r\n"
        f"--{BOUNDARY}--\r\n"
    ).encode()
    (part,) = parse_form(body, CTYPE)
    assert part.filename == "C:\\dir\\x.png"


def test_preamble_and_epilogue_are_ignored() -> None:
    """Text before the first delimiter and the epilogue after the last are skipped."""
    body = (
        "This is the preamble.\r\n"
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="a"\r\n'
        "\r\none\r\n"
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="b"\r\n'
        "\r\ntwo\r\n"
        f"--{BOUNDARY}--\r\nepilogue --{BOUNDARY}\r\ngarbage"
    ).encode()
    assert [(p.name, bytes(p.data)) for p in parse_form(body, CTYPE)] == [
        ("a", b"one"),
        ("b", b"two"),
    ]


def test_closing_delimiter_without_final_crlf() -> None:
    """The closing delimiter may end the body without a CRLF."""
    body = encode([Field("a", b"1")]).removesuffix(b"\r\n")
    assert _simple(parse_form(body, CTYPE)) == [("a", None, "text/plain", b"1")]


def test_empty_part_bodies() -> None:
    """A part may be empty, first, in the middle or last."""
    body = encode([Field("a", b""), Field("b", b"x"), Field("c", b"", "f.bin")])
    parts = parse_form(body, CTYPE)
    assert [(p.name, bytes(p.data)) for p in parts] == [
        ("a", b""),
        ("b", b"x"),
        ("c", b""),
    ]


def test_body_bytes_that_look_like_delimiters() -> None:
    """CR, LF, '--' and a delimiter cut short belong to the body."""
    tricky = (
        b"\r\n\r\n--\r\n--"
        + BOUNDARY[:-1].encode()
        + b"\r\n-"
        + BOUNDARY.encode()
        + b"\n--"
        + BOUNDARY.encode()
        + b"\r--"
        + BOUNDARY.encode()
        + b"\r\n"
    )
    body = encode([Field("tile-file", tricky, "t.tif"), Field("next", b"--")])
    assert [bytes(p.data) for p in parse_form(body, CTYPE)] == [tricky, b"--"]


def test_part_ending_in_cr_or_dash() -> None:
    """A payload ending in CR, LF or '-' is cut exactly at the delimiter's CRLF."""
    for tail in (b"\r", b"\n", b"\r\n", b"-", b"--", b"\r\n--"):
        body = encode([Field("a", b"data" + tail), Field("b", tail)])
        assert [bytes(p.data) for p in parse_form(body, CTYPE)] == [
            b"data" + tail,
            tail,
        ]


@pytest.mark.parametrize(
    "ctype",
    [
        'multipart/form-data; boundary="a b:c=d"',
        'Multipart/Form-Data; charset=utf-8; BOUNDARY="a b:c=d"; x=y',
    ],
)
def test_quoted_boundary_in_content_type(ctype: str) -> None:
    """A quoted boundary (with characters a token may not hold) is honoured."""
    body = encode([Field("a", b"1"), Field("b", b"2")], boundary="a b:c=d")
    assert [bytes(p.data) for p in parse_form(body, ctype)] == [b"1", b"2"]


def test_boundary_followed_by_other_parameters() -> None:
    """An unquoted boundary ends at ';' or whitespace."""
    ctype = f"multipart/form-data; boundary={BOUNDARY}; charset=utf-8"
    assert len(parse_form(encode([Field("a", b"1")]), ctype)) == 1


def test_extra_part_headers_and_header_case() -> None:
    """Headers other than disposition and type are ignored; names are case-blind."""
    body = (
        f"--{BOUNDARY}\r\n"
        "X-Trace:   abc  \r\n"
        "CONTENT-TYPE:image/tiff\r\n"
        "Content-Transfer-Encoding: binary\r\n"
        'CONTENT-DISPOSITION:form-data; name="tile-file"; filename="t.tif"\r\n'
        "\r\nII*\x00\r\n"
        f"--{BOUNDARY}--\r\n"
    ).encode("latin-1")
    assert _simple(parse_form(body, CTYPE)) == [
        ("tile-file", "t.tif", "image/tiff", b"II*\x00")
    ]


def test_utf8_names_and_text() -> None:
    """Names are UTF-8 and Part.text() decodes, replacing invalid bytes."""
    body = encode([Field("naïve", "é\n".encode() + b"\xff", filename="ü.ini")])
    (part,) = parse_form(body, CTYPE)
    assert (part.name, part.filename) == ("naïve", "ü.ini")
    assert part.text() == "é\n\ufffd"


def test_a_memoryview_body_is_parsed_from_its_buffer() -> None:
    """A view over a whole bytearray (a BodyBuffer's) is parsed like bytes."""
    buffer = bytearray(encode([Field("a", b"payload")]))
    (part,) = parse_form(memoryview(buffer), CTYPE)
    assert part.data == b"payload"


def test_a_view_of_part_of_a_buffer() -> None:
    """A view over part of a buffer is parsed as just those bytes."""
    body = encode([Field("a", b"payload")])
    buffer = b"junk" + body + b"junk"
    (part,) = parse_form(memoryview(buffer)[4 : 4 + len(body)], CTYPE)
    assert part.data == b"payload"


def test_round_trip_random_binary_payloads() -> None:
    """Random binary parts (fixed seed) come back byte for byte, names included."""
    rng = random.Random(20240601)
    alphabet = "abcXYZ019 -_.;:=\"\\'/é"
    for _ in range(200):
        boundary = "b" + "".join(
            rng.choice("abcdef0123456789-'()+_,./:=?")
            for _ in range(rng.randint(1, 60))
        )
        quoted = rng.random() < 0.5
        ctype = (
            f'multipart/form-data; boundary="{boundary}"'
            if quoted or any(c in boundary for c in "()/:=?,")
            else f"multipart/form-data; boundary={boundary}"
        )
        fields = []
        for _ in range(rng.randint(1, 4)):
            size = rng.choice([0, 1, 2, rng.randint(0, 64), rng.randint(0, 4096)])
            data = bytearray(rng.randbytes(size))
            for _ in range(rng.randint(0, 3)):  # sprinkle near-delimiters
                at = rng.randint(0, len(data))
                cut = rng.randint(0, len(boundary) + 1)
                data[at:at] = (b"\r\n--" + boundary.encode())[: cut + 3]
            name = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
            filename = (
                None
                if rng.random() < 0.4
                else "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))
            )
            fields.append(Field(name, bytes(data), filename))
        if any(b"\r\n--" + boundary.encode() in f.data for f in fields):
            continue  # cannot be encoded with this boundary
        body = encode(fields, boundary)
        parts = parse_form(body, ctype)
        assert [(p.name, p.filename, bytes(p.data)) for p in parts] == [
            (f.name, f.filename, f.data) for f in fields
        ]


def test_every_truncation_is_rejected() -> None:
    """Every prefix of a body that stops before its closing '--' is BadParameter."""
    body = encode(
        [
            Field("a", b"one\r\n--x"),
            Field("tile-file", b"\x00" * 5, "t.tif"),
            Field("c", b""),
        ]
    )
    closing = body.rindex(b"--\r\n") + 2
    for cut in range(closing):
        with pytest.raises(BadParameter):
            parse_form(body[:cut], CTYPE)
    assert len(parse_form(body[:closing], CTYPE)) == 3


def _one(headers: str, data: str = "x", closing: bool = True) -> bytes:
    return (
        f"--{BOUNDARY}\r\n{headers}\r\n\r\n{data}\r\n"
        + (f"--{BOUNDARY}--\r\n" if closing else "")
    ).encode()


@pytest.mark.parametrize(
    ("body", "ctype", "message"),
    [
        (
            _one('Content-Disposition: form-data; name="a"'),
            "multipart/form-data",
            "no boundary",
        ),
        (
            _one('Content-Disposition: form-data; name="a"'),
            "multipart/form-data; boundary=",
            "no boundary",
        ),
        (
            _one('Content-Disposition: form-data; name="a"'),
            "multipart/form-data; boundary=other",
            "ended before the closing boundary",
        ),
        (b"", CTYPE, "ended before the closing boundary"),
        (
            _one('Content-Disposition: form-data; name="a"', closing=False),
            CTYPE,
            "ended before the closing boundary",
        ),
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="a"\r\nx\r\n--{BOUNDARY}--\r\n'.encode(),
            CTYPE,
            "Malformed segment header",
        ),
        (
            _one('Content-Disposition: form-data; name="a"\r\nnot a header'),
            CTYPE,
            "Malformed segment header",
        ),
        (_one("Content-Type: text/plain"), CTYPE, "Missing Content-Disposition"),
        (
            _one('Content-Disposition: attachment; name="a"'),
            CTYPE,
            "Content-Disposition segment header: Wrong type",
        ),
        (
            _one('Content-Disposition: form-data; filename="a.tif"'),
            CTYPE,
            "has no name",
        ),
        (_one("Content-Disposition: form-data"), CTYPE, "has no name"),
        (
            f"--{BOUNDARY}junk\r\n".encode()
            + _one('Content-Disposition: form-data; name="a"'),
            CTYPE,
            "Unexpected byte after first boundary",
        ),
        (
            f"--{BOUNDARY}\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(),
            CTYPE,
            "Missing Content-Disposition",
        ),
    ],
    ids=[
        "no-boundary-parameter",
        "empty-boundary-parameter",
        "boundary-never-found",
        "empty-body",
        "missing-closing-delimiter",
        "header-block-without-end",
        "header-line-without-colon",
        "missing-content-disposition",
        "disposition-not-form-data",
        "disposition-without-name",
        "disposition-without-parameters",
        "text-after-delimiter",
        "part-without-headers",
    ],
)
def test_malformed_bodies_are_bad_parameters(
    body: bytes, ctype: str, message: str
) -> None:
    """Each malformation raises BadParameter naming what is wrong."""
    with pytest.raises(BadParameter, match=f"^malformed multipart body: .*{message}"):
        parse_form(body, ctype)


@pytest.mark.parametrize(
    ("ctype", "expected"),
    [
        ("multipart/form-data; boundary=x", True),
        ("Multipart/Form-Data", True),
        ("  multipart/form-data  ;boundary=x", True),
        ("multipart/mixed; boundary=x", False),
        ("application/octet-stream", False),
        ("multipart/form-data-ish", False),
        ("", False),
        (None, False),
    ],
)
def test_is_multipart(ctype: str | None, expected: bool) -> None:
    """Only the multipart/form-data media type (any case, any parameters) counts."""
    assert is_multipart(ctype) is expected


class Recorder:
    """A PartHandler that rebuilds the parts it is fed."""

    def __init__(self) -> None:
        self.parts: list[tuple[PartHead, bytes]] = []
        self.events: list[str] = []
        self._head: PartHead | None = None
        self._data = bytearray()

    def part_started(self, head: PartHead) -> None:
        self.events.append("start")
        self._head, self._data = head, bytearray()

    def part_data(self, chunk: bytes) -> None:
        assert chunk, "payload pieces are never empty"
        self.events.append("data")
        self._data += chunk

    def part_ended(self) -> None:
        self.events.append("end")
        assert self._head is not None
        self.parts.append((self._head, bytes(self._data)))


def _read(pieces: Sequence[bytes], ctype: str = CTYPE) -> Recorder:
    recorder = Recorder()
    reader = FormReader(ctype, recorder)
    for piece in pieces:
        reader.feed(piece)
    reader.close()
    return recorder


_TRICKY = (
    b"\r\n--"
    + BOUNDARY[:-1].encode()
    + b"x\r\r\n-\r\n--"
    + BOUNDARY[:5].encode()
    + b"\r"
)
_SPLIT_FIELDS = [
    Field(
        "tile-file", _TRICKY + bytes(range(256)) + _TRICKY, "col0001_row0002_cam0.tif"
    ),
    Field("tile-filename", b"col0001_row0002_cam0.tif"),
    Field("checksum", b"\r\n" * 8),
    Field("empty", b""),
]


def test_a_body_split_anywhere_gives_the_same_parts() -> None:
    """Two pieces, cut at every byte (inside delimiters and headers too), parse alike."""
    body = encode(_SPLIT_FIELDS)
    expected = [(f.name, f.filename, f.data) for f in _SPLIT_FIELDS]
    for cut in range(len(body) + 1):
        got = _read([body[:cut], body[cut:]]).parts
        assert [(h.name, h.filename, d) for h, d in got] == expected, cut


def test_a_body_one_byte_at_a_time() -> None:
    """A body fed one byte at a time gives the same parts and events in order."""
    body = encode(_SPLIT_FIELDS)
    recorder = _read([body[i : i + 1] for i in range(len(body))])
    assert [(h.name, h.filename, d) for h, d in recorder.parts] == [
        (f.name, f.filename, f.data) for f in _SPLIT_FIELDS
    ]
    assert recorder.events[0] == "start" and recorder.events[-1] == "end"
    assert recorder.events.count("start") == recorder.events.count("end") == 4


def test_a_large_part_arrives_in_pieces_without_a_join() -> None:
    """A part bigger than any chunk reaches the handler chunk by chunk."""
    payload = bytes(range(256)) * 1024
    body = encode([Field("tile-file", payload, "t.tif")])
    chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)]
    recorder = _read(chunks)
    assert recorder.parts[0][1] == payload
    assert recorder.events.count("data") >= len(payload) // 4096


def test_bare_lf_line_breaks_are_malformed() -> None:
    """Line breaks must be CRLF: a body written with LF alone is refused."""
    body = encode([Field("a", b"1")]).replace(b"\r\n", b"\n")
    with pytest.raises(BadParameter, match="malformed multipart body"):
        parse_form(body, CTYPE)


def test_nothing_is_read_after_an_error() -> None:
    """After a malformation every further chunk is refused too."""
    reader = FormReader(CTYPE, Recorder())
    with pytest.raises(BadParameter):
        reader.feed(f"--{BOUNDARY}junk\r\n".encode())
    with pytest.raises(BadParameter):
        reader.feed(b"more")
    with pytest.raises(BadParameter):
        reader.close()
