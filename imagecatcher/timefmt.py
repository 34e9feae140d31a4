"""Time formats of the API (CONTRACT §1.0, §8.2), with one time-zone rule.

Timestamps are stored in UTC (naive ``DATETIME`` values) and rendered as UTC;
query parameters carry no zone and are read as UTC too (§14, Q17).  So the
same instant reads the same everywhere, whatever the server's zone.
"""

from __future__ import annotations

import re
from datetime import datetime

from imagecatcher.domain import BadParameter

#: What Go prints for a never-set, non-nullable time.
ZERO = "0001-01-01T00:00:00Z"


def rfc3339(value: datetime | None) -> str | None:
    """Go-style RFC 3339 in UTC: fraction only when non-zero, trailing zeros cut."""
    if value is None:
        return None
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += "." + f"{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def rfc3339_required(value: datetime | None) -> str:
    """As :func:`rfc3339`, with Go's zero time for NULL."""
    return rfc3339(value) or ZERO


def tile_acquired(value: datetime | None) -> str | None:
    """``yyyyMMddHHmmss.SSSSSS`` (UTC), or None."""
    return None if value is None else value.strftime("%Y%m%d%H%M%S.%f")


_ACQ_FORMATS = (
    ("yyyyMMddHHmmss", 14),
    ("yyyyMMddHHmm", 12),
    ("yyyyMMddHH", 10),
    ("yyyyMMdd", 8),
)
_TILE_TIME = re.compile(r"(\d{14})(?:\.(\d+))?")
_TILE_PATTERNS = "[yyyyMMddHHmmss.SSSSSS yyyyMMddHHmmss.SSS yyyyMMddHHmmss]"


def _fail(param: str, value: str, patterns: str) -> BadParameter:
    return BadParameter(
        f"Could not parse time value '{value}' of '{param}' with any of the"
        f" {patterns} patterns"
    )


def _digits_to_datetime(digits: str, micro: int = 0) -> datetime:
    padded = digits + "0101000000"[len(digits) - 4 :] if len(digits) < 14 else digits
    return datetime(
        int(padded[0:4]),
        int(padded[4:6]),
        int(padded[6:8]),
        int(padded[8:10]),
        int(padded[10:12]),
        int(padded[12:14]),
        micro,
    )


def parse_acq_time(param: str, value: str) -> datetime:
    """``acq-from``/``acq-to``/``has-acq-*``: yyyyMMdd[HH[mm[ss]]] (§8.2)."""
    patterns = "[" + " ".join(p for p, _ in _ACQ_FORMATS) + "]"
    if not value.isascii() or not value.isdigit() or len(value) not in (8, 10, 12, 14):
        raise _fail(param, value, patterns)
    try:
        return _digits_to_datetime(value)
    except ValueError:
        raise _fail(param, value, patterns) from None


def parse_tile_time(param: str, value: str) -> datetime:
    """``tile-from``/``tile-to``: yyyyMMddHHmmss[.fraction] (§8.2)."""
    m = _TILE_TIME.fullmatch(value) if value.isascii() else None
    if m is None:
        raise _fail(param, value, _TILE_PATTERNS)
    fraction = (m.group(2) or "")[:6].ljust(6, "0")
    try:
        return _digits_to_datetime(m.group(1), int(fraction))
    except ValueError:
        raise _fail(param, value, _TILE_PATTERNS) from None
