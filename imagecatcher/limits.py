"""Widths and ranges of the columns written from request values (CONTRACT §6.1).

Layer 0: constants and checks, no I/O.  The schema is the old service's and
does not change, so a value that does not fit its column is refused where it
is parsed, with :class:`~imagecatcher.domain.BadParameter` naming the field as
the client wrote it and the limit.  Without the check MariaDB (strict mode,
its default) refuses the row with error 1406 and the client sees a 500, while
SQLite, which ignores declared lengths, stores the value anyway.

A ``VARCHAR(n)`` column counts characters (utf8mb4 code points, as ``len``
counts them); a ``TEXT`` column holds 65,535 *bytes*, so UTF-8 bytes count
there.  ``INTEGER`` is 32-bit and ``BIGINT`` 64-bit, both signed; ``FLOAT``
is single precision.
"""

from __future__ import annotations

import math
import struct

from imagecatcher.domain import BadParameter

# ini_files_denorm (§7.1.2)
SAMPLE_NAME = 255
PROJECT_NAME = 80
PROJECT_OWNER = 80
STACK_NAME = 80
MOSAIC_TYPE = 32
MICROSCOPIST_NAME = 50
TEXT_BYTES = 65_535
"""A ``TEXT`` column: ``ini_file``, ``notes``, ``calibrations.json_config``."""

# image_mosaic_rois, acq_time_rois (§7.2)
SECTION_NAME = 64
REGION_NAME = 10

# calibrations, tem_camera_configurations (§7.4, §7.5)
CALIBRATION_NAME = 50
MASK_URL = 255
TRANSFORMATION_REF = 255

# file_object_fs_replicas (§2, §5.6)
FILE_NAME = 255
"""``path``: the stored tile or ancillary file name (its base name, §14)."""
JFS_PATH = 1024
JFS_KEY = 64
LOCATION_URL = 1024

# ancillary_file_types, roi_images (§5.6, §9)
ANCILLARY_TYPE = 255
TILE_STATE = 64
"""``current_state`` (and ``leased_from_state``)."""
TX_HASH = 80

# Integer and float columns
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
"""``INTEGER``."""
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""``BIGINT`` (``ini_files_denorm.uid``)."""
FLOAT32_MAX = struct.unpack("<f", b"\xff\xff\x7f\x7f")[0]
"""The largest finite ``FLOAT`` (3.4028234663852886e+38)."""

_EXCERPT = 40


def excerpt(text: str) -> str:
    """``text`` shortened for a message: at most 40 characters, ``...`` marking a cut."""
    if len(text) <= _EXCERPT:
        return text
    return text[: _EXCERPT - 3] + "..."


def check_length(field: str, value: str, limit: int) -> str:
    """Return ``value`` if a ``VARCHAR(limit)`` column holds it whole.

    :raises BadParameter: ``<field> is too long: <n> characters, at most
        <limit> fit``.
    """
    if len(value) > limit:
        raise BadParameter(
            f"{field} is too long: {len(value)} characters, at most {limit} fit"
        )
    return value


def check_bytes(field: str, value: str, limit: int = TEXT_BYTES) -> str:
    """Return ``value`` if it is at most ``limit`` bytes in UTF-8 (a ``TEXT`` column).

    :raises BadParameter: ``<field> is too long: <n> bytes in UTF-8, at most
        <limit> fit``.
    """
    if len(value) * 4 <= limit:  # no code point takes more than 4 bytes
        return value
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise BadParameter(
            f"{field} is too long: {size} bytes in UTF-8, at most {limit} fit"
        )
    return value


def range_error(field: str, lo: int, hi: int) -> BadParameter:
    """The error for an integer of ``field`` outside ``lo``..``hi``."""
    return BadParameter(f"{field} is out of range: it must be from {lo} to {hi}")


def check_int(field: str, value: int, lo: int = INT32_MIN, hi: int = INT32_MAX) -> int:
    """Return ``value`` if it is within ``lo``..``hi`` (by default an ``INTEGER``).

    :raises BadParameter: ``<field> is out of range: it must be from <lo> to
        <hi>``.
    """
    if not lo <= value <= hi:
        raise range_error(field, lo, hi)
    return value


def check_float32(field: str, value: float) -> float:
    """Return ``value`` if a single-precision ``FLOAT`` column holds it.

    Values are rounded to single precision on the way in; one whose rounding
    overflows (beyond about ±3.4e38), and NaN or infinity, is refused, as
    MariaDB refuses them.

    :raises BadParameter: ``<field> is out of range: at most
        3.4028234663852886e+38 in magnitude``.
    """
    try:
        fits = math.isfinite(value) and bool(struct.pack("<f", value))
    except OverflowError:
        fits = False
    if not fits:
        raise BadParameter(
            f"{field} is out of range: at most {FLOAT32_MAX!r} in magnitude"
        )
    return value
