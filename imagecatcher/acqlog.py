"""The INI dialect (CONTRACT §7.0) and the acquisition log (§7.1).

Parsing is lenient where the reference is (Q15): numbers that do not parse
become 0 and an unparsable ``Date`` becomes ``None`` ("zero time", the caller
stores its fallback).  A log is rejected with
:class:`~imagecatcher.domain.BadParameter` only for an INI syntax error,
invalid camera connections, an unparsable ``pixels per um`` or (Q16) a
``TEM IP address`` that is not an IPv4 dotted quad.
"""

from __future__ import annotations

import ipaddress
import math
import re
from datetime import datetime

import attrs

from imagecatcher.domain import BadParameter

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
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
    and must be an unsigned 64-bit decimal: ``/foo/123_bar`` → 123.

    :raises BadParameter: with the messages of §7.1.1.
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
    uid = int(uid_text)
    if uid > UINT64_MAX:
        raise BadParameter(
            f"Error parsing acquisition UID: {uid_text!r} is out of the "
            "unsigned 64-bit range"
        )
    return uid


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


def _pixels_per_um(text: str) -> float:
    try:
        return parse_float(text)
    except ValueError:
        raise BadParameter(f"Invalid pixels per um {text!r}") from None


def _lenient_int(text: str) -> int:
    try:
        return parse_int32(text)
    except ValueError:
        return 0


def _lenient_float(text: str) -> float:
    try:
        return parse_float(text)
    except ValueError:
        return 0.0


def parse_acquisition_log(text: str) -> AcquisitionLog:
    """Parse an acquisition INI log (§7.1.2); ``ini_text`` keeps ``text`` whole.

    Missing keys read as empty values.  Only the keys of §7.1.2 marked so have
    their quotes stripped; the others must be bare to parse.

    :raises BadParameter: for an INI syntax error, invalid camera connections,
        an unparsable (or missing) ``pixels per um`` or a ``TEM IP address``
        that is not IPv4, checked in that order.
    """
    ini = parse_ini(text)

    def get(section: str, key: str, *, quoted: bool = False) -> str:
        value = ini.get(section, {}).get(key, "")
        return unquote(value) if quoted else value

    number_of_cameras = _number_of_cameras(ini.get("Camera Connections", {}))
    pixels_per_um = _pixels_per_um(get("TEM Settings", "pixels per um", quoted=True))
    tem_ip = _tem_ip(get("Machine IDs", "tem ip address", quoted=True))
    return AcquisitionLog(
        sample_name=get("General", "sample name", quoted=True),
        microscopist_name=get("General", "microscopist name", quoted=True),
        notes=get("General", "notes", quoted=True),
        when_acquired=parse_log_date(get("General", "date", quoted=True)),
        number_of_cameras=number_of_cameras,
        x_sm_step_pix=_lenient_int(get("Mosaic Settings", "x sm step (pix)")),
        y_sm_step_pix=_lenient_int(get("Mosaic Settings", "y sm step (pix)")),
        x_big_step_pix=_lenient_int(get("Mosaic Settings", "x big step (pix)")),
        y_big_step_pix=_lenient_int(get("Mosaic Settings", "y big step (pix)")),
        center_x_m=_lenient_float(get("Mosaic Settings", "center x (m)")),
        center_y_m=_lenient_float(get("Mosaic Settings", "center y (m)")),
        number_of_x_steps=_lenient_int(get("Mosaic Settings", "number of x steps")),
        number_of_y_steps=_lenient_int(get("Mosaic Settings", "number of y steps")),
        tem_magnification=_lenient_int(
            get("TEM Settings", "magnification", quoted=True)
        ),
        pixels_per_um=pixels_per_um,
        tem_ip=tem_ip,
        project_name=get("ImageCatcher", "project", quoted=True),
        project_owner=get("ImageCatcher", "owner", quoted=True),
        stack_name=get("ImageCatcher", "stack", quoted=True),
        mosaic_type=get("ImageCatcher", "mosaictype", quoted=True),
        ini_text=text,
    )
