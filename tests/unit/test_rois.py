"""Unit tests for ROI spec INI and ROI tiles CSV parsing (CONTRACT §7.2, §7.3, Q31)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from imagecatcher.domain import BadParameter
from imagecatcher.rois import (
    RoiRegion,
    RoiTile,
    RoiTileList,
    nominal_section,
    parse_roi_spec,
    parse_roi_tiles,
)

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
HEADER = "Col,Row,Inclusion,Excluded?,Included?,# Inclusions,Section number\r\n"


def fixture_text(name: str) -> str:
    """A shared fixture's text, line endings untouched."""
    return (FIXTURES / name).read_bytes().decode("utf-8")


# Nominal sections


@pytest.mark.parametrize(
    ("name", "nominal"),
    [
        ("5800", 5800),
        (".A.001", 1),
        ("456.B.123", 123),
        ("A.-7", -7),
        ("+3", 3),
        ("0", 0),
        ("x.2147483647", 2**31 - 1),
    ],
)
def test_nominal_section(name: str, nominal: int) -> None:
    """The text after the last '.' is read as a signed integer."""
    assert nominal_section(name) == nominal


@pytest.mark.parametrize(
    "name", [".A", "", "5.", "A", "5 ", " 5", "1_0", "\u0665", "2147483648", "1.5e3"]
)
def test_nominal_section_errors(name: str) -> None:
    """A missing, non-numeric or overflowing tail is BadParameter."""
    with pytest.raises(BadParameter):
        nominal_section(name)


# ROI spec


def test_fixture_spec_regions() -> None:
    """The shared spec has regions 0/5800, 1/5801, 2/5802."""
    assert parse_roi_spec(fixture_text("123_ROI_spec.ini")) == [
        RoiRegion("0", "5800", 5800),
        RoiRegion("1", "5801", 5801),
        RoiRegion("2", "5802", 5802),
    ]


def test_empty_spec_has_no_regions() -> None:
    """The empty fixture and a spec without the section give no regions."""
    assert parse_roi_spec(fixture_text("empty_ROI_spec.ini")) == []
    assert parse_roi_spec("[General]\na = 1\n") == []


def test_spec_names_and_quotes() -> None:
    """Region keys lose 'region ' (any case); values lose their quotes."""
    text = (
        "[Inclusion Section Numbers]\r\n"
        'REGION 7 = ".A.001"\r\n'
        "Region 8 = 456.B.123\r\n"
        'Other = "9"\r\n'
        "[inclusion section numbers]\r\n"
        'Region 9 = "ignored"\r\n'
    )
    assert parse_roi_spec(text) == [
        RoiRegion("7", ".A.001", 1),
        RoiRegion("8", "456.B.123", 123),
        RoiRegion("other", "9", 9),
    ]


def test_spec_errors_are_collected() -> None:
    """Every bad region is reported in one BadParameter, one per line."""
    text = (
        "[Inclusion Section Numbers]\n"
        'Region 0 = ".A"\n'
        'Region 1 = "5801"\n'
        'Region 2 = ""\n'
    )
    with pytest.raises(BadParameter) as exc:
        parse_roi_spec(text)
    assert str(exc.value).split("\n") == [
        "Error extracting the nominal section value from region: 0 (.A)",
        "Error extracting the nominal section value from region: 2 ()",
    ]


def test_spec_names_too_long_to_store() -> None:
    """Region names over 10 and section names over 64 characters are errors (Q38)."""
    text = (
        "[Inclusion Section Numbers]\n"
        'Region 0123456789 = "1"\n'
        'Region abcdefghijk = "2"\n'
        f'Region 2 = "{"x" * 62}.3"\n'
        f'Region 3 = "{"x" * 63}.4"\n'
    )
    with pytest.raises(BadParameter) as exc:
        parse_roi_spec(text)
    assert str(exc.value).split("\n") == [
        "Region name abcdefghijk is too long: 11 characters, at most 10 fit",
        "Section name of region 3 is too long: 65 characters, at most 64 fit",
    ]


def test_spec_names_at_their_column_widths_are_kept_whole() -> None:
    """A 10-character region and a 64-character section name are stored as written."""
    section = "FAFB.é" + "x" * 54 + ".042"
    assert len(section) == 64
    text = f'[Inclusion Section Numbers]\nRegion ABCDEFGHIJ = "{section}"\n'
    assert parse_roi_spec(text) == [RoiRegion("abcdefghij", section, 42)]


def test_spec_section_number_out_of_range_names_region_and_range() -> None:
    """A section number beyond the INTEGER range names the region and the range."""
    text = (
        "[Inclusion Section Numbers]\n"
        'Region 0 = "A.2147483648"\n'
        f'Region 1 = "A.{"9" * 5000}"\n'
        'Region 2 = "A.-2147483648"\n'
    )
    with pytest.raises(BadParameter) as exc:
        parse_roi_spec(text)
    reason = (
        "the section number is out of range: it must be from -2147483648 to 2147483647"
    )
    assert str(exc.value).split("\n") == [
        f"Error extracting the nominal section value from region: 0 (A.2147483648): {reason}",
        "Error extracting the nominal section value from region: 1"
        f" (A.{'9' * 35}...): {reason}",
    ]


def test_spec_syntax_error() -> None:
    """An INI syntax error rejects the spec."""
    with pytest.raises(BadParameter, match=r"^invalid INI syntax on line 2: oops$"):
        parse_roi_spec("[Inclusion Section Numbers]\noops\n")


# ROI tiles CSV: the fixture


@pytest.fixture(scope="module")
def fixture_tiles() -> RoiTileList:
    """The parsed shared 123_ROI_tiles.csv."""
    return parse_roi_tiles(fixture_text("123_ROI_tiles.csv"))


def test_fixture_tile_counts(fixture_tiles: RoiTileList) -> None:
    """1 750 included records, 1 748 distinct tiles, per-section counts of §7.3."""
    tiles = fixture_tiles.tiles
    assert len(tiles) == 1750
    assert len({(t.col, t.row) for t in tiles}) == 1748
    assert Counter(t.section_name for t in tiles) == {
        "5800": 353,
        "5801": 705,
        "5802": 692,
    }
    assert fixture_tiles.warnings == []


def test_fixture_tile_membership(fixture_tiles: RoiTileList) -> None:
    """(47,21) is in all three sections, (8,80) in 5801, (6,17) and (10,20) nowhere."""
    sections: dict[tuple[int, int], set[str]] = {}
    for t in fixture_tiles.tiles:
        sections.setdefault((t.col, t.row), set()).add(t.section_name)
    assert sections[(47, 21)] == {"5800", "5801", "5802"}
    assert sections[(8, 80)] == {"5801"}
    assert (6, 17) not in sections
    assert (10, 20) not in sections


def test_fixture_grouping(fixture_tiles: RoiTileList) -> None:
    """by_section groups every tile under its section name."""
    groups = fixture_tiles.by_section()
    assert {name: len(tiles) for name, tiles in groups.items()} == {
        "5800": 353,
        "5801": 705,
        "5802": 692,
    }
    assert all(t.section_name == name for name, ts in groups.items() for t in ts)


def test_fixture_parses_fast() -> None:
    """The 16 418-record fixture parses well under 100 ms."""
    text = fixture_text("123_ROI_tiles.csv")
    best = min(_timed(parse_roi_tiles, text) for _ in range(3))
    assert best < 0.1


def _timed(parse: Callable[[str], object], text: str) -> float:
    """Seconds one call of ``parse(text)`` takes."""
    start = time.perf_counter()
    parse(text)
    return time.perf_counter() - start


# ROI tiles CSV: synthetic inputs


@pytest.mark.parametrize("text", ["", "\r\n", "\n\n  \n", "\ufeff"])
def test_no_records_means_no_tiles(text: str) -> None:
    """Empty or blank input gives no tiles and no error (Q31)."""
    assert parse_roi_tiles(text) == RoiTileList([], [])


def test_empty_fixture_has_no_tiles() -> None:
    """The empty tiles fixture gives no tiles."""
    assert parse_roi_tiles(fixture_text("empty_ROI_tiles.csv")).tiles == []


def test_header_only() -> None:
    """A header without records gives no tiles."""
    assert parse_roi_tiles(HEADER) == RoiTileList([], [])


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        ("Col,Row,Inclusion\n", "Section number"),
        ("col,row,inclusion,section number\n", "Col, Row, Inclusion, Section number"),
        ("Col,Row ,Inclusion,Section number\n", "Row"),
        ("1,2,0,5800\n", "Col, Row, Inclusion, Section number"),
    ],
)
def test_missing_header_columns(header: str, missing: str) -> None:
    """A header lacking a required column (exact names) is BadParameter naming it."""
    with pytest.raises(BadParameter) as exc:
        parse_roi_tiles(header + "1,2,0,5800\n")
    assert str(exc.value) == f"ROI tiles CSV header lacks the column(s): {missing}"


def test_columns_found_by_name_in_any_order() -> None:
    """Columns are located by header name; extra columns are ignored."""
    text = "Section number, X, Inclusion,Row,Col\n 5800, y, 2, 7, 3\n"
    assert parse_roi_tiles(text).tiles == [RoiTile(3, 7, "5800")]


def test_records_skipped_silently() -> None:
    """Blank lines, one-field records and negative inclusions yield nothing."""
    text = HEADER + "\r\n5\r\n\r\n0,0,-1,0,0,0,\r\n0,1,-2,0,0,0,5800\r\n,,,\r\n"
    assert parse_roi_tiles(text) == RoiTileList([], [])


def test_records_skipped_with_warnings() -> None:
    """Bad inclusion, section, col or row skip the record with a warning naming its line."""
    text = (
        HEADER
        + "1,1,x,0,0,0,5800\r\n"
        + "1,2,0,0,0,0,.A\r\n"
        + "a,3,0,0,0,0,5800\r\n"
        + "1,99999999999,0,0,0,0,5800\r\n"
        + "1,4,0\r\n"
        + "1,5,0,0,0,0,5801\r\n"
    )
    result = parse_roi_tiles(text)
    assert result.tiles == [RoiTile(1, 5, "5801")]
    assert len(result.warnings) == 5
    for line, warning in enumerate(result.warnings, 2):
        assert warning.startswith(f"ROI tiles CSV line {line}: record skipped, ")
    assert "Inclusion 'x'" in result.warnings[0]
    assert "Section number '.A'" in result.warnings[1]
    assert "Col 'a'" in result.warnings[2]
    assert "Section number ''" in result.warnings[4]


def test_variable_fields_spaces_and_quotes() -> None:
    """Leading spaces are ignored, quoted fields parse, the section name is kept."""
    text = HEADER + '  2,  3, 1, 0, 1, 1, ".A.001"\n4,5,0,0,0,0,"456.B.123",extra\n'
    assert parse_roi_tiles(text).tiles == [
        RoiTile(2, 3, ".A.001"),
        RoiTile(4, 5, "456.B.123"),
    ]


def test_duplicates_are_kept() -> None:
    """Repeated records repeat their tile (creation is idempotent downstream)."""
    text = HEADER + "1,1,0,0,0,0,5800\n1,1,0,0,0,0,5800\n"
    assert parse_roi_tiles(text).tiles == [RoiTile(1, 1, "5800")] * 2


def test_blank_lines_before_header() -> None:
    """Blank lines and a byte-order mark before the header are skipped."""
    text = "\ufeff\r\n\r\n" + HEADER + "1,1,0,0,0,0,5800\r\n"
    assert parse_roi_tiles(text).tiles == [RoiTile(1, 1, "5800")]


@pytest.mark.parametrize(
    "body", ['1,"2"x,0,0,0,0,5800\n', '1,2,0,0,0,0,"5800\n', '"a"b,2\n']
)
def test_malformed_csv(body: str) -> None:
    """Malformed quoting is BadParameter naming the line."""
    with pytest.raises(BadParameter, match=r"^Malformed ROI tiles CSV on line "):
        parse_roi_tiles(HEADER + body)
