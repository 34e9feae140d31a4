"""What the API's resources share (CONTRACT §1.0).

Parameter parsing (path and query integers, booleans, paging), response
bodies (JSON and plain text, each with an explicit length) and the table
mapping errors to statuses.
"""

from __future__ import annotations

import json
import re

from twisted.web.iweb import IRequest

from imagecatcher.domain import (
    BadParameter,
    CalibrationError,
    CatcherError,
    StorageFull,
)
from imagecatcher.domain import NotFound as CatcherNotFound
from imagecatcher.sink import TooLarge
from imagecatcher.storage import StoreError

# -- errors ------------------------------------------------------------------------


class BodyTooLarge(BadParameter):
    """The body exceeds MAX_TILE_BYTES (HTTP 413)."""


class MoreThanOne(CatcherError):
    """Two tiles match where one was expected (HTTP 409)."""


#: The status of each known error; the first class that matches wins.
ERROR_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (BodyTooLarge, 413),
    (TooLarge, 413),  # a tile sink refused bytes past MAX_TILE_BYTES
    (MoreThanOne, 409),
    (BadParameter, 400),
    (CalibrationError, 400),
    (CatcherNotFound, 404),
    (StorageFull, 507),
    (CatcherError, 500),
    (StoreError, 500),
)


def status_of(error: object) -> int | None:
    """The status answering ``error``; None when the error is unexpected."""
    return next((s for kind, s in ERROR_STATUS if isinstance(error, kind)), None)


# -- response bodies ---------------------------------------------------------------


def plain_response(request: IRequest, status: int, message: str) -> bytes:
    """A plain-text body: the message and a newline (§1.0)."""
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return sized(request, (message + "\n").encode("utf-8"))


def json_response(request: IRequest, status: int, body: object) -> bytes:
    """A JSON body."""
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return sized(request, json.dumps(body).encode("utf-8"))


def sized(request: IRequest, body: bytes) -> bytes:
    """The body, with its Content-Length set."""
    # An explicit length spares small bodies the chunked encoding.
    request.setHeader(b"content-length", str(len(body)).encode("ascii"))
    return body


# -- parameters --------------------------------------------------------------------

MAX_ROWS = 1000


def page(offset: int, length: int) -> tuple[int, int]:
    """§8.1: (LIMIT, OFFSET) for ``offset``/``length`` query parameters."""
    if offset <= 0 and length <= 0:
        return MAX_ROWS, 0
    return (min(length, MAX_ROWS) if length > 0 else MAX_ROWS), max(offset, 0)


def paging(request: IRequest) -> tuple[int, int]:
    """(LIMIT, OFFSET) from the request's ``offset`` and ``length`` (§8.1)."""
    offset = parse_int64("offset", query(request, "offset") or "0")
    length = parse_int32("length", query(request, "length") or "-1")
    return page(offset, length)


def _parse_int(param: str, value: str, lo: int, hi: int) -> int:
    try:
        if not re.fullmatch(r"[+-]?\d{1,20}", value):
            raise ValueError("invalid syntax")
        number = int(value, 10)
        if not lo <= number <= hi:
            raise ValueError("value out of range")
    except ValueError as e:
        raise BadParameter(
            f"Error while parsing the {param} parameter - {value}: {e}"
        ) from None
    return number


def parse_uint64(param: str, value: str) -> int:
    """A path or query integer of type uint64 (§1.0)."""
    return _parse_int(param, value, 0, 2**64 - 1)


def parse_int64(param: str, value: str) -> int:
    """A path or query integer of type int64 (§1.0)."""
    return _parse_int(param, value, -(2**63), 2**63 - 1)


def parse_int32(param: str, value: str) -> int:
    """A path or query integer of type int32 (§1.0)."""
    return _parse_int(param, value, -(2**31), 2**31 - 1)


_BOOLEANS = {
    "1": True,
    "t": True,
    "T": True,
    "TRUE": True,
    "true": True,
    "True": True,
    "0": False,
    "f": False,
    "F": False,
    "FALSE": False,
    "false": False,
    "False": False,
}


def parse_bool(param: str, value: str) -> bool:
    """A boolean query parameter (§1.0)."""
    if value not in _BOOLEANS:
        raise BadParameter(
            f"Error while parsing the {param} parameter - {value}: invalid syntax"
        )
    return _BOOLEANS[value]


def query(request: IRequest, name: str) -> str | None:
    """A query parameter; present but empty counts as absent (§1.0)."""
    values = request.args.get(name.encode("ascii"))
    if not values or not values[0]:
        return None
    return str(values[0].decode("utf-8", errors="replace"))
