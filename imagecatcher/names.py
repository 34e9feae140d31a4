"""Tile file names (CONTRACT §2): parsing and synthesis.

A tile is named either *stable* (``col0006_row0017_cam1.tif``, frame -1) or
*drift* (``Dump_cam0_frame02948_col0012_row0156.tif``, frame >= 0).  Only the
last ``/`` component of a client's text is considered, and it is also the
stored name for every channel (§14, Q13).

Unlike the reference, the patterns are anchored (Q14): the whole last component
must match, so ``xcol1_row2_cam3.tifZ`` is rejected.  Components with NUL,
backslash or control characters are rejected too.  Every rejection raises
:class:`~imagecatcher.domain.BadParameter` ``Invalid tile file name``; a
component longer than ``file_object_fs_replicas.path`` (255) or a number
beyond the INTEGER columns adds which limit it broke (issue 8).
"""

from __future__ import annotations

import re

import attrs

from imagecatcher import limits
from imagecatcher.domain import BadParameter
from imagecatcher.limits import INT32_MAX, check_int, check_length

INVALID_TILE_NAME = "Invalid tile file name"
STABLE_FRAME = -1

_STABLE = re.compile(r"col(\d+)_row(\d+)_cam(\d+)\.tif", re.ASCII)
_DRIFT = re.compile(r"Dump_cam(\d)_frame(\d+)_col(\d+)_row(\d+)\.tif", re.ASCII)
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\]")


@attrs.frozen
class TileName:
    """A parsed tile file name; ``name`` is the base name that is stored."""

    col: int
    row: int
    camera: int
    frame: int
    name: str

    @property
    def stable(self) -> bool:
        """Whether this is a stable tile (frame -1) rather than a drift frame."""
        return self.frame == STABLE_FRAME


def _numbers(match: re.Match[str], *fields: str) -> list[int]:
    try:
        return [
            check_int(field, int(digits), 0, INT32_MAX)
            for field, digits in zip(fields, match.groups(), strict=True)
        ]
    except BadParameter as e:
        raise BadParameter(f"{INVALID_TILE_NAME}: {e}") from None


def parse_tile_name(text: str) -> TileName:
    """Parse the tile file name ``text`` (a path; only its last ``/`` part counts).

    The last component is the stored name, so it must fit
    ``file_object_fs_replicas.path``; the directories before it do not count.

    :raises BadParameter: ``Invalid tile file name`` when the last component is
        neither a stable nor a drift name, or is unsafe (see the module doc);
        ``Invalid tile file name: <limit broken>`` when it is too long or a
        number is beyond the INTEGER range.
    """
    name = text.rpartition("/")[2]
    try:
        # Non-ASCII text can never match, so characters are bytes here.
        check_length("the file name", name, limits.FILE_NAME)
    except BadParameter as e:
        raise BadParameter(f"{INVALID_TILE_NAME}: {e}") from None
    if _FORBIDDEN.search(name):
        raise BadParameter(INVALID_TILE_NAME)
    if match := _STABLE.fullmatch(name):
        col, row, camera = _numbers(match, "col", "row", "cam")
        return TileName(col, row, camera, STABLE_FRAME, name)
    if match := _DRIFT.fullmatch(name):
        camera, frame, col, row = _numbers(match, "cam", "frame", "col", "row")
        return TileName(col, row, camera, frame, name)
    raise BadParameter(INVALID_TILE_NAME)


def _check_coordinates(col: int, row: int, camera: int, frame: int) -> None:
    drift = frame != STABLE_FRAME
    if not (
        0 <= col <= INT32_MAX
        and 0 <= row <= INT32_MAX
        and 0 <= camera <= (9 if drift else INT32_MAX)
        and (not drift or 0 <= frame <= INT32_MAX)
    ):
        raise BadParameter(
            f"{INVALID_TILE_NAME}: col {col}, row {row}, camera {camera}, "
            f"frame {frame} cannot be named"
        )


def stable_name(col: int, row: int, camera: int) -> str:
    """The stable tile name ``col%04d_row%04d_cam%d.tif``.

    :raises BadParameter: for a negative or 32-bit-overflowing number.
    """
    _check_coordinates(col, row, camera, STABLE_FRAME)
    return f"col{col:04d}_row{row:04d}_cam{camera}.tif"


def drift_name(camera: int, frame: int, col: int, row: int) -> str:
    """The drift frame name ``Dump_cam%d_frame%06d_col%04d_row%04d.tif``.

    :raises BadParameter: unless the camera is one digit and the frame, col and
        row are non-negative 32-bit numbers.
    """
    if frame == STABLE_FRAME:
        raise BadParameter(f"{INVALID_TILE_NAME}: frame -1 is not a drift frame")
    _check_coordinates(col, row, camera, frame)
    return f"Dump_cam{camera}_frame{frame:06d}_col{col:04d}_row{row:04d}.tif"


def tile_name_for(col: int, row: int, camera: int, frame: int) -> str:
    """The name synthesised for a tile sent without one (raw TCP, §2).

    Frame -1 gives :func:`stable_name`, any other frame :func:`drift_name`; the
    result always parses back with :func:`parse_tile_name`.

    :raises BadParameter: for values that name no tile (see those functions).
    """
    if frame == STABLE_FRAME:
        return stable_name(col, row, camera)
    return drift_name(camera, frame, col, row)
