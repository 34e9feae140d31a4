"""ROI spec INI (CONTRACT §7.2) and ROI tiles CSV (§7.3).

The spec names the regions of an acquisition and the section each covers; the
CSV lists, per mosaic tile, the region it is included in and that region's
section name.  Both parsers are pure; creating the rows is the caller's job.
"""

from __future__ import annotations

import csv
import io
import re

import attrs

from imagecatcher import limits
from imagecatcher.acqlog import parse_ini, parse_int32, unquote
from imagecatcher.domain import BadParameter
from imagecatcher.limits import INT32_MAX, INT32_MIN, check_length, excerpt

SPEC_SECTION = "Inclusion Section Numbers"
_INTEGER = re.compile(r"[+-]?[0-9]+")
CSV_COLUMNS = ("Col", "Row", "Inclusion", "Section number")


@attrs.frozen
class RoiRegion:
    """One region of a ROI spec and the section it covers."""

    region: str
    section_name: str
    nominal_section: int


@attrs.frozen
class RoiTile:
    """A stable tile (frame -1) that belongs to the ROI of ``section_name``."""

    col: int
    row: int
    section_name: str


@attrs.frozen
class RoiTileList:
    """The tiles of a ROI tiles CSV, in file order, and its skipped records."""

    tiles: list[RoiTile]
    warnings: list[str]
    """One message per record that was skipped for a bad value."""

    def by_section(self) -> dict[str, list[RoiTile]]:
        """The tiles grouped by section name, groups in order of appearance."""
        groups: dict[str, list[RoiTile]] = {}
        for tile in self.tiles:
            groups.setdefault(tile.section_name, []).append(tile)
        return groups


class SectionOutOfRange(BadParameter):
    """A section number is an integer, but beyond the INTEGER columns' range."""


_SECTION_RANGE = (
    f"the section number is out of range: it must be from {INT32_MIN} to {INT32_MAX}"
)


def nominal_section(name: str) -> int:
    """The nominal section of a section name: its text after the last ``.``.

    ``5800`` → 5800, ``.A.001`` → 1, ``456.B.123`` → 123, ``-3`` → -3.

    :raises BadParameter: when that text is not a decimal (``.A``, ``""``,
        ``5.``); :class:`SectionOutOfRange` when it is one beyond the 32-bit
        range of ``sample_section_id`` and ``nominal_section_number``.
    """
    tail = name.rpartition(".")[2]
    try:
        return parse_int32(tail)
    except ValueError:
        if _INTEGER.fullmatch(tail):
            raise SectionOutOfRange(_SECTION_RANGE) from None
        raise BadParameter(f"Invalid nominal section in {excerpt(name)!r}") from None


def parse_roi_spec(text: str) -> list[RoiRegion]:
    """The regions of a ROI spec INI, in file order (§7.2).

    Only section ``[Inclusion Section Numbers]`` is read: ``Region 0 = "5800"``
    gives region ``0``, section ``5800``, nominal 5800.  Every region is
    checked before failing; an empty file has no regions.

    :raises BadParameter: for INI syntax errors, or listing (one per line) each
        region whose section name has no nominal section value
        (``Error extracting the nominal section value from region: <region>
        (<value>)``, plus the range when the number is too large) or whose
        region or section name is longer than its column
        (:data:`~imagecatcher.limits.REGION_NAME`,
        :data:`~imagecatcher.limits.SECTION_NAME`).
    """
    regions: list[RoiRegion] = []
    errors: list[str] = []
    for key, value in parse_ini(text).get(SPEC_SECTION, {}).items():
        region = key.removeprefix("region ")
        section_name = unquote(value)
        where = f"region: {excerpt(region)} ({excerpt(section_name)})"
        try:
            nominal = nominal_section(section_name)
        except SectionOutOfRange as e:
            errors.append(
                f"Error extracting the nominal section value from {where}: {e}"
            )
            continue
        except BadParameter:
            errors.append(f"Error extracting the nominal section value from {where}")
            continue
        try:
            check_length(f"Region name {excerpt(region)}", region, limits.REGION_NAME)
            check_length(
                f"Section name of region {excerpt(region)}",
                section_name,
                limits.SECTION_NAME,
            )
        except BadParameter as e:
            errors.append(str(e))
            continue
        regions.append(RoiRegion(region, section_name, nominal))
    if errors:
        raise BadParameter("\n".join(errors))
    return regions


def _header_indexes(header: list[str]) -> tuple[int, int, int, int]:
    missing = [name for name in CSV_COLUMNS if name not in header]
    if missing:
        raise BadParameter(
            f"ROI tiles CSV header lacks the column(s): {', '.join(missing)}"
        )
    col, row, inclusion, section = (header.index(name) for name in CSV_COLUMNS)
    return col, row, inclusion, section


def parse_roi_tiles(text: str) -> RoiTileList:
    """The tiles listed in a ROI tiles CSV (§7.3).

    The first non-blank record is the header; columns are found by the exact
    names ``Col``, ``Row``, ``Inclusion`` and ``Section number``.  A later
    record yields a tile when its ``Inclusion`` is >= 0; records with one
    field, blank records and inclusions < 0 are skipped silently, records with
    a bad inclusion, section number, col or row with a warning.  Empty or
    blank input yields no tiles.

    :raises BadParameter: when the header lacks a required column or the CSV
        is malformed (e.g. an unterminated quote).
    """
    reader = csv.reader(
        io.StringIO(text.removeprefix("\ufeff"), newline=""),
        skipinitialspace=True,
        strict=True,
    )
    records = (record for record in reader if any(record))
    tiles: list[RoiTile] = []
    warnings: list[str] = []
    try:
        header = next(records, None)
        if header is None:
            return RoiTileList(tiles, warnings)
        col_at, row_at, inclusion_at, section_at = _header_indexes(header)
        width = max(col_at, row_at, inclusion_at, section_at) + 1
        for record in records:
            if len(record) == 1:
                continue
            if len(record) < width:
                record += [""] * (width - len(record))
            tile = _tile(
                record[col_at], record[row_at], record[inclusion_at], record[section_at]
            )
            if isinstance(tile, RoiTile):
                tiles.append(tile)
            elif tile:
                warnings.append(
                    f"ROI tiles CSV line {reader.line_num}: record skipped, {tile}"
                )
    except csv.Error as e:
        raise BadParameter(
            f"Malformed ROI tiles CSV on line {reader.line_num}: {e}"
        ) from None
    return RoiTileList(tiles, warnings)


def _tile(col: str, row: str, inclusion: str, section: str) -> RoiTile | str:
    """The tile of one record, or why it is skipped (``""``: no warning)."""
    try:
        if parse_int32(inclusion) < 0:
            return ""
    except ValueError:
        return f"invalid Inclusion {inclusion!r}"
    try:
        nominal_section(section)
    except BadParameter:
        return f"invalid Section number {section!r}"
    try:
        return RoiTile(parse_int32(col), parse_int32(row), section)
    except ValueError:
        return f"invalid Col {col!r} or Row {row!r}"
