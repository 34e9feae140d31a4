"""The INI dialect (CONTRACT §7.0) and the acquisition log (§7.1).

Parsing is lenient where the reference is (Q15): numbers that do not parse
become 0 and an unparsable ``Date`` becomes ``None`` ("zero time", the caller
stores its fallback).  A log is rejected with
:class:`~imagecatcher.domain.BadParameter` for an INI syntax error, invalid
camera connections, an unparsable ``pixels per um``, (Q16) a ``TEM IP
address`` that is not an IPv4 dotted quad, and (issue 8) a value its column
cannot hold: a text longer than its column, a log over 65,535 bytes, or a
number beyond its column's range.  Such values used to be cut, read as 0, or
refused by MariaDB with a 500; the message now names the INI key and the
limit (:mod:`imagecatcher.limits`).
"""

from __future__ import annotations

import ipaddress
import math
import re
from datetime import datetime

import attrs

from imagecatcher import limits
from imagecatcher.domain import BadParameter
from imagecatcher.limits import (
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    check_bytes,
    check_float32,
    check_int,
    check_length,
    range_error,
)

UINT64_MAX = 2**64 - 1

_INT = re.compile(r"[+-]?[0-9]+")
_UINT = re.compile(r"[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DATE = re.compile(
    r"([0-9]{2})/([0-9]{2})/([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) (AM|PM)"
)
_SPACES = re.compile(r" {2,}")

Ini = dict[str, dict[str, str]]
"""Sections by (case-sensitive) name, each mapping lower-cased keys to values."""


def parse_ini(text: str) -> Ini:
    """Parse INI ``text`` in the lab's dialect (§7.0).

    Lines are trimmed; blank lines and ``;``/``#`` comments are skipped; a line
    with ``=`` is an assignment (even ``[a=b]``), else ``[name]`` opens a
    section.  Assignments before any section go to section ``""``.  Keys are
    lower-cased, the last of a repeated key wins, values keep their quotes.  A
    leading byte-order mark is ignored.

    :raises BadParameter: ``invalid INI syntax on line <n>: <line>``.
    """
    sections: Ini = {}
    current = ""
    for number, raw in enumerate(text.removeprefix("\ufeff").split("\n"), 1):
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        key, equals, value = line.partition("=")
        if equals:
            sections.setdefault(current, {})[key.strip().lower()] = value.strip()
        elif line[0] == "[" and line[-1] == "]":
            current = line[1:-1].strip()
            sections.setdefault(current, {})
        else:
            raise BadParameter(f"invalid INI syntax on line {number}: {line}")
    return sections


def unquote(value: str) -> str:
    """``value`` without one pair of surrounding double quotes, if it has them."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1]
    return value


def parse_int32(text: str) -> int:
    """Parse a signed decimal integer that fits 32 bits (ASCII digits only).

    :raises ValueError: for anything else, including surrounding spaces.
    """
    if not _INT.fullmatch(text):
        raise ValueError(f"not an integer: {text!r}")
    value = int(text)
    if not INT32_MIN <= value <= INT32_MAX:
        raise ValueError(f"integer out of the 32-bit range: {text!r}")
    return value


def parse_float(text: str) -> float:
    """Parse a finite decimal number such as ``-1.9694E-5`` (no NaN, no inf).

    :raises ValueError: for anything else, including surrounding spaces.
    """
    value = float(text) if _FLOAT.fullmatch(text) else math.nan
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {text!r}")
    return value


def parse_log_date(text: str) -> datetime | None:
    """Parse ``MM/dd/yyyy hh:mm:ss AM/PM`` (runs of spaces count as one).

    Every field has exactly 2 digits (the year 4), the hour is 01-12 and
    ``AM``/``PM`` is upper-case; 12 AM is midnight.  ``None`` when it does not
    parse or names no valid time.
    """
    match = _DATE.fullmatch(_SPACES.sub(" ", text))
    if not match:
        return None
    month, day, year, hour, minute, second = (int(g) for g in match.groups()[:6])
    if not 1 <= hour <= 12:
        return None
    hour = hour % 12 + (12 if match[7] == "PM" else 0)
    try:
        return datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None


def acquisition_uid(file_name: str) -> int:
    """The acquisition UID named by a log's file name (§7.1.1).

    The UID is the last ``/`` component up to its first ``_`` (or all of it)
    and must be an unsigned 64-bit decimal: ``/foo/123_bar`` → 123.  It must
    also fit ``ini_files_denorm.uid``, a signed BIGINT.

    :raises BadParameter: with the messages of §7.1.1, or ``acquisition UID
        <uid> is out of range: ...`` above 2**63-1.
    """
    if not file_name:
        raise BadParameter("Cannot extract acquisition UID from an empty URL")
    uid_text, underscore, _ = file_name.rpartition("/")[2].partition("_")
    if underscore and not uid_text:
        raise BadParameter("Invalid name component - missing ID before '_'")
    if not _UINT.fullmatch(uid_text):
        raise BadParameter(
            f"Error parsing acquisition UID: {uid_text!r} is not a decimal number"
        )
    uid = int(uid_text) if len(uid_text) <= 40 else UINT64_MAX + 1
    if uid > UINT64_MAX:
        raise BadParameter(
            f"Error parsing acquisition UID: {limits.excerpt(uid_text)!r} is out"
            " of the unsigned 64-bit range"
        )
    return check_int(f"acquisition UID {uid}", uid, 0, INT64_MAX)


@attrs.frozen
class AcquisitionLog:
    """The values of an acquisition INI log that are stored (§7.1.2)."""

    sample_name: str
    microscopist_name: str
    notes: str
    when_acquired: datetime | None
    """``None`` when ``Date`` is missing or unparsable (the "zero time")."""
    number_of_cameras: int
    x_sm_step_pix: int
    y_sm_step_pix: int
    x_big_step_pix: int
    y_big_step_pix: int
    center_x_m: float
    center_y_m: float
    number_of_x_steps: int
    number_of_y_steps: int
    tem_magnification: int
    pixels_per_um: float
    tem_ip: bytes
    """The 4 bytes of the TEM's IPv4 address (``0.0.0.0`` when not given)."""
    project_name: str
    project_owner: str
    stack_name: str
    mosaic_type: str
    ini_text: str

    @property
    def _steps_factor(self) -> int:
        return 2 if self.number_of_cameras == 4 else 1

    @property
    def target_num_cols(self) -> int:
        """Mosaic columns: X steps, doubled for 4 cameras."""
        return self.number_of_x_steps * self._steps_factor

    @property
    def target_num_rows(self) -> int:
        """Mosaic rows: Y steps, doubled for 4 cameras."""
        return self.number_of_y_steps * self._steps_factor


def _number_of_cameras(connections: dict[str, str]) -> int:
    acq = [connections.get(f"acq{n}", "") for n in range(1, 5)]
    if acq == ["TRUE"] * 4:
        return 4
    if acq == ["TRUE"] + ["FALSE"] * 3:
        return 1
    raise BadParameter(f"Invalid camera connections ({', '.join(acq)}) ")


def _tem_ip(text: str) -> bytes:
    if not text:
        return bytes(4)
    try:
        return ipaddress.IPv4Address(text).packed
    except ValueError:
        raise BadParameter(
            f"Invalid TEM IP address {text!r}: an IPv4 dotted quad is required"
        ) from None


def _pixels_per_um(field: str, text: str) -> float:
    if not _FLOAT.fullmatch(text):
        raise BadParameter(f"Invalid pixels per um {limits.excerpt(text)!r}")
    return check_float32(field, float(text))


def _lenient_int(
    field: str, text: str, lo: int = INT32_MIN, hi: int = INT32_MAX
) -> int:
    """An integer key: 0 when it names no integer (Q15), refused when out of range."""
    if not _INT.fullmatch(text):
        return 0
    if len(text.lstrip("+-0")) > 20:  # far beyond any column; int() may refuse it
        raise range_error(field, lo, hi)
    return check_int(field, int(text), lo, hi)


def _lenient_float(field: str, text: str) -> float:
    """A FLOAT key: 0 when it names no number (Q15), refused when out of range."""
    if not _FLOAT.fullmatch(text):
        return 0.0
    return check_float32(field, float(text))


def parse_acquisition_log(text: str) -> AcquisitionLog:
    """Parse an acquisition INI log (§7.1.2); ``ini_text`` keeps ``text`` whole.

    Missing keys read as empty values.  Only the keys of §7.1.2 marked so have
    their quotes stripped; the others must be bare to parse.  ``Notes`` is
    part of the log, so the log's 65,535-byte limit bounds it too.

    :raises BadParameter: for a log over 65,535 UTF-8 bytes, an INI syntax
        error, invalid camera connections, an unparsable (or missing) ``pixels
        per um``, a ``TEM IP address`` that is not IPv4, then a text longer
        than its column or a number beyond its column's range (checked in
        that order; the message names the key as the lab writes it).
    """
    check_bytes("acquisition log", text)
    ini = parse_ini(text)

    def get(section: str, key: str, *, quoted: bool = False) -> str:
        value = ini.get(section, {}).get(key.lower(), "")
        return unquote(value) if quoted else value

    def text_of(section: str, key: str, limit: int) -> str:
        return check_length(f"[{section}] {key}", get(section, key, quoted=True), limit)

    def int_of(section: str, key: str, *, quoted: bool = False) -> int:
        return _lenient_int(f"[{section}] {key}", get(section, key, quoted=quoted))

    def float_of(section: str, key: str) -> float:
        return _lenient_float(f"[{section}] {key}", get(section, key))

    number_of_cameras = _number_of_cameras(ini.get("Camera Connections", {}))
    pixels_per_um = _pixels_per_um(
        "[TEM Settings] Pixels per um",
        get("TEM Settings", "Pixels per um", quoted=True),
    )
    tem_ip = _tem_ip(get("Machine IDs", "TEM IP address", quoted=True))
    # With 4 cameras the mosaic has twice as many columns and rows as steps,
    # and tem_camera_image_mosaics.target_num_cols/rows are INTEGER too.
    factor = 2 if number_of_cameras == 4 else 1

    def steps_of(axis: str) -> int:
        key = f"Number of {axis} steps"
        doubled = " (doubled for 4 cameras)" if factor == 2 else ""
        return _lenient_int(
            f"[Mosaic Settings] {key}{doubled}",
            get("Mosaic Settings", key),
            INT32_MIN // factor,
            INT32_MAX // factor,
        )

    return AcquisitionLog(
        sample_name=text_of("General", "Sample name", limits.SAMPLE_NAME),
        microscopist_name=text_of(
            "General", "Microscopist name", limits.MICROSCOPIST_NAME
        ),
        notes=get("General", "Notes", quoted=True),
        when_acquired=parse_log_date(get("General", "Date", quoted=True)),
        number_of_cameras=number_of_cameras,
        x_sm_step_pix=int_of("Mosaic Settings", "X sm step (pix)"),
        y_sm_step_pix=int_of("Mosaic Settings", "Y sm step (pix)"),
        x_big_step_pix=int_of("Mosaic Settings", "X big step (pix)"),
        y_big_step_pix=int_of("Mosaic Settings", "Y big step (pix)"),
        center_x_m=float_of("Mosaic Settings", "Center X (m)"),
        center_y_m=float_of("Mosaic Settings", "Center Y (m)"),
        number_of_x_steps=steps_of("X"),
        number_of_y_steps=steps_of("Y"),
        tem_magnification=int_of("TEM Settings", "Magnification", quoted=True),
        pixels_per_um=pixels_per_um,
        tem_ip=tem_ip,
        project_name=text_of("ImageCatcher", "project", limits.PROJECT_NAME),
        project_owner=text_of("ImageCatcher", "owner", limits.PROJECT_OWNER),
        stack_name=text_of("ImageCatcher", "stack", limits.STACK_NAME),
        mosaic_type=text_of("ImageCatcher", "mosaicType", limits.MOSAIC_TYPE),
        ini_text=text,
    )
