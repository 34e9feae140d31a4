"""Tile specs for renderers and tile-spec ids for ``tile-state`` (CONTRACT §9).

Layer 0: pure functions and attrs values, no I/O. ``next-tile`` (§9.1) reads a
:class:`SpecInput` per handed-out tile and serializes :func:`tile_spec`;
``tile-state`` (§9.3) parses its body with :func:`parse_tile_state_body`. A
tile-spec id names stable tiles only (§14, Q24): the repository restricts the
update to ``frame_number = -1``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import attrs

from imagecatcher import limits
from imagecatcher.domain import BadParameter

# §9.1 result types, in the reference's numeric order (index = number).
NO_TILE_READY = "NO_TILE_READY"
TILE_FOUND = "TILE_FOUND"
NO_TILE_READY_IN_SECTION = "NO_TILE_READY_IN_SECTION"
SERVED_ALL_SECTION = "SERVED_ALL_SECTION"
SERVED_ALL_ACQ = "SERVED_ALL_ACQ"
INVALID = "INVALID"
RESULT_TYPES: tuple[str, ...] = (
    NO_TILE_READY,
    TILE_FOUND,
    NO_TILE_READY_IN_SECTION,
    SERVED_ALL_SECTION,
    SERVED_ALL_ACQ,
    INVALID,
)

AFFINE_CLASS = "mpicbg.trakem2.transform.AffineModel2D"
MAX_STATE_LENGTH = limits.TILE_STATE  # roi_images.current_state (§6.1)

_INT64_MIN, _INT64_MAX = limits.INT64_MIN, limits.INT64_MAX
_DIGITS = re.compile(r"-?[0-9]+")


@attrs.frozen
class SpecInput:
    """Everything one tile spec is built from (tile, camera, acquisition, ROI).

    ``*_step`` values are pixels, ``x_center``/``y_center``/``y_tem`` metres
    (as read back from the FLOAT columns), ``pix_per_um`` pixels per µm.
    """

    acq_uid: int
    col: int
    row: int
    camera: int
    temca_id: int
    width: int
    height: int
    mask_url: str | None
    transformation_ref: str | None
    location_url: str
    jfs_path: str
    nominal_section: int
    prev_acq_count: int
    number_of_cameras: int
    x_center: float
    y_center: float
    y_tem: float
    pix_per_um: float
    x_small_step: float
    y_small_step: float
    x_big_step: float
    y_big_step: float
    n_x_steps: int
    n_y_steps: int

    @property
    def section_id(self) -> str:
        """``<nominalSection>.<PrevAcqCount>`` (§9.2), decimal, no padding."""
        return f"{self.nominal_section}.{self.prev_acq_count}"


def _rem(a: int, n: int) -> int:
    """Integer remainder truncating toward zero (the sign follows ``a``)."""
    r = abs(a) % n
    return -r if a < 0 else r


def stage_position(inp: SpecInput) -> tuple[float, float]:
    """``(stageX, stageY)`` by the §9.2 formulas; ``(0.0, 0.0)`` for 2, 3, 5… cameras."""
    x_scaled = -(float(inp.x_center) * 1e6 * float(inp.pix_per_um))
    y_scaled = (float(inp.y_center) + float(inp.y_tem)) * 1e6 * float(inp.pix_per_um)
    xs, ys = float(inp.x_small_step), float(inp.y_small_step)
    nx, ny = float(inp.n_x_steps), float(inp.n_y_steps)
    col, row = float(inp.col), float(inp.row)
    if inp.number_of_cameras == 1:
        return (
            x_scaled - xs * nx / 2 + col * xs,
            y_scaled - ys * ny / 2 + row * ys,
        )
    if inp.number_of_cameras == 4:
        x_pitch = float(inp.x_big_step) + xs
        y_pitch = float(inp.y_big_step) + ys
        return (
            x_scaled
            - x_pitch * (nx / 4)
            + x_pitch * (col / 4)
            + xs * float(_rem(inp.col, 4)),
            y_scaled
            - y_pitch * (ny / 4)
            + y_pitch * (row / 4)
            + ys * float(_rem(inp.row, 4)),
        )
    return 0.0, 0.0


def image_url(inp: SpecInput, tiles_url_base: str = "") -> str:
    """``imageUrl`` per §14: ``<location_url>?fName=<jfs_path>`` unless a base is set."""
    if tiles_url_base:
        return tiles_url_base + inp.jfs_path
    return f"{inp.location_url}?fName={inp.jfs_path}"


def tile_spec(inp: SpecInput, tiles_url_base: str = "") -> dict[str, Any]:
    """The JSON object of §9.2 for one tile (key names are contractual).

    :raises OverflowError, ValueError: a stage coordinate is not finite.
    """
    stage_x, stage_y = stage_position(inp)
    section_id = inp.section_id
    data_string = f"1.0 0.0 0.0 1.0 {math.trunc(stage_x)} {math.trunc(stage_y)}"
    return {
        "tileId": f"{inp.acq_uid}.{inp.col:03d}.{inp.row:03d}.{section_id}",
        "width": inp.width,
        "height": inp.height,
        "z": float(section_id),
        "mipmapLevels": {
            "0": {
                "imageUrl": image_url(inp, tiles_url_base),
                "maskUrl": inp.mask_url or "",
            }
        },
        "layout": {
            "sectionId": section_id,
            "temca": str(inp.temca_id),
            "camera": inp.camera,
            "imageCol": inp.col,
            "imageRow": inp.row,
            "stageX": stage_x,
            "stageY": stage_y,
            "rotation": 0,
        },
        "transforms": {
            "type": "list",
            "specList": [
                {"type": "ref", "refId": inp.transformation_ref or ""},
                {"type": "leaf", "className": AFFINE_CLASS, "dataString": data_string},
            ],
        },
    }


@attrs.frozen
class TileSpecId:
    """A parsed ``<acqUID>.<col>.<row>.<section>.<prevAcqCount>`` (§9.3).

    Negative (or, for ``acq_uid``, zero) fields add no condition to the update;
    ``prev_acq_count`` is parsed but ignored (Q24).
    """

    acq_uid: int
    col: int
    row: int
    section: int
    prev_acq_count: int


_FIELD_ERRORS = (
    "Invalid acq ID value",
    "Invalid tile column value",
    "Invalid tile row value",
    "Invalid section value",
    "Invalid value for number of previous acquisitions",
)


def _parse_int64(text: str) -> int:
    """A signed 64-bit decimal of ASCII digits with an optional leading ``-``."""
    if not _DIGITS.fullmatch(text):
        raise ValueError("invalid syntax")
    if len(text.lstrip("-").lstrip("0")) > 19:  # spare int() a huge conversion
        raise ValueError("value out of range")
    value = int(text, 10)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError("value out of range")
    return value


def parse_tile_spec_id(text: str) -> TileSpecId:
    """Parse one tile-spec id with the §9.3 checks and messages.

    :raises BadParameter: not exactly 5 fields, or a field is not an int64.
    """
    fields = text.split(".")
    if len(fields) != 5:
        raise BadParameter(
            f"Invalid tile spec ID format: '{text}' - it must "
            "<acqID>.<tileCol>.<tileRow>.<tileSection>"
            ".<#_of_prev_acquisitions_for_section>"
        )
    values: list[int] = []
    for field, label in zip(fields, _FIELD_ERRORS, strict=True):
        try:
            values.append(_parse_int64(field))
        except ValueError as e:
            raise BadParameter(f"{label} {field} in {text}: {e}") from None
    acq_uid, col, row, section, prev = values
    return TileSpecId(acq_uid, col, row, section, prev)


class _JsonObject(tuple[tuple[str, Any], ...]):
    """A decoded JSON object as its ``(key, value)`` pairs, duplicates kept."""

    __slots__ = ()


def _lookup(pairs: _JsonObject, name: str) -> Any:
    """The value of ``name`` matched case-insensitively; the last match wins."""
    wanted = name.casefold()
    found: Any = None
    for key, value in pairs:
        if key.casefold() == wanted:
            found = value
    return found


def parse_tile_state_body(body: bytes) -> tuple[str, list[TileSpecId]]:
    """``(state, ids)`` from a ``tile-state`` body (§9.3, §14 Q24).

    :raises BadParameter: not a JSON object, a missing/empty/over-long or
        non-string ``state``, ``tileSpecIds`` not a list of strings, an empty
        id list, or a malformed id.
    """
    try:
        doc = json.loads(body, object_pairs_hook=_JsonObject)
    except (ValueError, RecursionError) as e:
        raise BadParameter(f"Invalid tile state request body: {e}") from None
    if not isinstance(doc, _JsonObject):
        raise BadParameter("Invalid tile state request body: expected a JSON object")
    state = _lookup(doc, "state")
    ids = _lookup(doc, "tileSpecIds")
    if state is None or state == "":
        raise BadParameter("Invalid tile state - tile state cannot be empty")
    if not isinstance(state, str):
        raise BadParameter("Invalid tile state - tile state must be a string")
    if len(state) > MAX_STATE_LENGTH:
        raise BadParameter(
            f"Invalid tile state - tile state cannot be longer than "
            f"{MAX_STATE_LENGTH} characters"
        )
    if ids is None:
        ids = []
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BadParameter(
            "Invalid tile spec IDs - tileSpecIds must be a list of strings"
        )
    if not ids:
        raise BadParameter("A condition must be specified for updating the ROI state")
    return state, [parse_tile_spec_id(i) for i in ids]
