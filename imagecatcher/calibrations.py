"""Calibration JSON (CONTRACT §7.4): parsing and the stored re-encoding.

The body is a JSON array; each element names a lens-correction calibration for
one (temca, camera).  What is stored in ``calibrations.json_config`` is the
element re-encoded with only the contractual keys (``Metadata`` capitalised,
the date key spelled ``calibration_data`` as the lab's files spell it).

Values the columns cannot hold are refused naming the record (issue 8): an id
longer than ``calibration_name`` (50), stored JSON over 65,535 bytes, a temca
or camera beyond the INTEGER range, a mask URL longer than 255 characters.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import attrs

from imagecatcher import limits
from imagecatcher.domain import BadParameter, CalibrationError
from imagecatcher.limits import check_bytes, check_int, check_length, excerpt

_INTEGER = re.compile(r"[+-]?[0-9]+")


@attrs.frozen
class Calibration:
    """One calibration as imported."""

    name: str
    date: datetime
    temca: int
    camera: int
    json_config: str


def _two_digit_year(yy: int) -> int:
    return 2000 + yy if yy <= 68 else 1900 + yy  # the usual 69 pivot


def parse_calibration_date(text: str) -> datetime:
    """Read ``yyMMdd`` (e.g. ``141028``) as midnight of that day."""
    if len(text) != 6 or not text.isdigit():
        raise ValueError("expected yyMMdd")
    return datetime(_two_digit_year(int(text[:2])), int(text[2:4]), int(text[4:6]))


def _metadata(element: dict[str, Any]) -> dict[str, Any]:
    for key, value in element.items():
        if key.lower() == "metadata":
            if not isinstance(value, dict):
                raise ValueError("metadata is not an object")
            return value
    return {}


def _number(label: str, value: Any) -> int:
    text = str(value).strip()
    if not _INTEGER.fullmatch(text):
        raise ValueError(f"Wrong {label} {excerpt(repr(value))}: not an integer")
    if len(text.lstrip("+-0")) > 20:  # far beyond the range; int() may refuse it
        raise limits.range_error(label, limits.INT32_MIN, limits.INT32_MAX)
    return check_int(label, int(text))


def _reencode(element: dict[str, Any], meta: dict[str, Any]) -> str:
    specs = element.get("specList")
    spec_list = [
        {"className": s.get("className", ""), "dataString": s.get("dataString", "")}
        for s in (specs if isinstance(specs, list) else [])
        if isinstance(s, dict)
    ]
    stored = {
        "id": element.get("id", ""),
        "type": element.get("type", ""),
        "Metadata": {
            k: meta.get(k, "") for k in ("calibration_data", "group", "temca", "camera")
        },
        "specList": spec_list,
    }
    return json.dumps(stored, separators=(",", ":"))


def parse_calibrations(body: bytes | str) -> list[Calibration]:
    """Parse a calibration array; raise CalibrationError naming the record."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:  # JSON, UTF-8, too many digits
        raise CalibrationError(f"Invalid calibration JSON: {e}") from None
    if not isinstance(data, list):
        raise CalibrationError("Invalid calibration JSON: expected an array")
    result = []
    for i, element in enumerate(data):
        if not isinstance(element, dict):
            raise CalibrationError(f"Record {i}: expected an object")
        try:
            meta = _metadata(element)
            date_text = str(meta.get("calibration_data", ""))
            try:
                date = parse_calibration_date(date_text)
            except ValueError as e:
                raise ValueError(f"Wrong calibration date {date_text}: {e}") from None
            name = element.get("id")
            if not isinstance(name, str) or not name:
                raise ValueError("missing calibration id")
            shown = repr(excerpt(name))
            check_length(f"calibration id {shown}", name, limits.CALIBRATION_NAME)
            result.append(
                Calibration(
                    name=name,
                    date=date,
                    temca=_number("temca", meta.get("temca")),
                    camera=_number("camera", meta.get("camera")),
                    json_config=check_bytes(
                        f"JSON of calibration {shown}", _reencode(element, meta)
                    ),
                )
            )
        except (ValueError, BadParameter) as e:
            raise CalibrationError(f"Record {i}: {e}") from None
    return result


def mask_url(mask_root: str, temca: int, camera: int) -> str:
    """The mask URL the tools set for a camera (§7.5).

    :raises CalibrationError: when ``tem_camera_mask_url`` (255) cannot hold it.
    """
    url = f"{mask_root}/temca{temca}_cam{camera}.png"
    try:
        return check_length(
            f"mask URL of temca {temca} camera {camera}", url, limits.MASK_URL
        )
    except BadParameter as e:
        raise CalibrationError(str(e)) from None
