"""Unit tests for tile file-name parsing and synthesis (CONTRACT §2, Q13, Q14)."""

from __future__ import annotations

import pytest

from imagecatcher.domain import BadParameter
from imagecatcher.names import (
    TileName,
    drift_name,
    parse_tile_name,
    stable_name,
    tile_name_for,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "col0006_row0017_cam1.tif",
            TileName(6, 17, 1, -1, "col0006_row0017_cam1.tif"),
        ),
        (
            "col0004/col0004_row0017_cam0.tif",
            TileName(4, 17, 0, -1, "col0004_row0017_cam0.tif"),
        ),
        (
            "Dump_cam0_frame02948_col0012_row0156.tif",
            TileName(12, 156, 0, 2948, "Dump_cam0_frame02948_col0012_row0156.tif"),
        ),
        (
            "/a/b\\c/Dump_cam9_frame0_col1_row2.tif",
            TileName(1, 2, 9, 0, "Dump_cam9_frame0_col1_row2.tif"),
        ),
        ("col1_row2_cam3.tif", TileName(1, 2, 3, -1, "col1_row2_cam3.tif")),
        (
            "col2147483647_row0_cam12.tif",
            TileName(2**31 - 1, 0, 12, -1, "col2147483647_row0_cam12.tif"),
        ),
        (
            "col" + "0" * 200 + "7_row1_cam0.tif",
            TileName(7, 1, 0, -1, "col" + "0" * 200 + "7_row1_cam0.tif"),
        ),
    ],
)
def test_valid_names_parse(text: str, expected: TileName) -> None:
    """The spec's examples and edge cases give their numbers and base name."""
    assert parse_tile_name(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "col1_row2.tif",
        "xcol1_row2_cam3.tifZ",
        "xcol1_row2_cam3.tif",
        "col1_row2_cam3.tifZ",
        "col1_row2_cam3.tif/",
        "col1_row2_cam3.tif\n",
        "dir\\col1_row2_cam3.tif",
        "col1_row2_cam3.tif\x00",
        "col1\x00_row2_cam3.tif",
        "col1_row2_cam3\x1f.tif",
        "COL1_ROW2_CAM3.TIF",
        "col-1_row2_cam3.tif",
        "col+1_row2_cam3.tif",
        "col\u0661_row2_cam3.tif",
        "Dump_cam10_frame1_col1_row2.tif",
        "Dump_cam_frame1_col1_row2.tif",
        "dump_cam1_frame1_col1_row2.tif",
    ],
)
def test_invalid_names_are_rejected(text: str) -> None:
    """Unanchored and unsafe names are BadParameter ``Invalid tile file name``."""
    with pytest.raises(BadParameter, match=r"^Invalid tile file name$"):
        parse_tile_name(text)


def test_longest_name_is_255_bytes() -> None:
    """A component of exactly 255 bytes (file_object_fs_replicas.path) is accepted."""
    name = "col" + "0" * (255 - len("col1_row1_cam0.tif")) + "1_row1_cam0.tif"
    assert len(name) == 255
    assert parse_tile_name("col0012/" + name) == TileName(1, 1, 0, -1, name)


def test_name_over_255_bytes_names_the_limit() -> None:
    """A 256-character base name is refused naming the stored-name width."""
    name = "col" + "0" * (256 - len("col1_row1_cam0.tif")) + "1_row1_cam0.tif"
    with pytest.raises(BadParameter) as exc:
        parse_tile_name("col0012/" + name)
    assert str(exc.value) == (
        "Invalid tile file name: the file name is too long: 256 characters,"
        " at most 255 fit"
    )


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("col2147483648_row0_cam0.tif", "col"),
        ("col0_row2147483648_cam0.tif", "row"),
        ("col0_row0_cam2147483648.tif", "cam"),
        ("Dump_cam0_frame2147483648_col0_row0.tif", "frame"),
        ("Dump_cam0_frame0_col99999999999999999999_row0.tif", "col"),
        ("Dump_cam0_frame0_col0_row" + "9" * 200 + ".tif", "row"),
    ],
)
def test_number_out_of_range_names_it(text: str, field: str) -> None:
    """A col, row, camera or frame beyond the INTEGER range names the number."""
    with pytest.raises(BadParameter) as exc:
        parse_tile_name(text)
    assert str(exc.value) == (
        f"Invalid tile file name: {field} is out of range: it must be from 0"
        " to 2147483647"
    )


def test_numbers_at_the_integer_limit_parse() -> None:
    """2**31-1 as col, row and frame fits the INTEGER columns."""
    top = 2**31 - 1
    assert parse_tile_name(f"Dump_cam9_frame{top}_col{top}_row{top}.tif") == (
        TileName(top, top, 9, top, f"Dump_cam9_frame{top}_col{top}_row{top}.tif")
    )


def test_stable_property() -> None:
    """Frame -1 is stable, any other frame is a drift frame."""
    assert parse_tile_name("col1_row2_cam3.tif").stable
    assert not parse_tile_name("Dump_cam0_frame0_col1_row2.tif").stable


def test_directories_are_dropped_from_the_stored_name() -> None:
    """Only the last '/' component becomes the stored name (§14, Q13)."""
    assert parse_tile_name("a/b/col0001_row0002_cam0.tif").name == (
        "col0001_row0002_cam0.tif"
    )


def test_synthesised_names_use_printf_padding() -> None:
    """Stable and drift names are zero padded to 4 and 6 digits."""
    assert stable_name(6, 17, 1) == "col0006_row0017_cam1.tif"
    assert stable_name(12345, 0, 11) == "col12345_row0000_cam11.tif"
    assert drift_name(0, 2948, 12, 156) == "Dump_cam0_frame002948_col0012_row0156.tif"


@pytest.mark.parametrize(
    ("col", "row", "camera", "frame", "expected"),
    [
        (6, 17, 1, -1, "col0006_row0017_cam1.tif"),
        (12, 156, 0, 0, "Dump_cam0_frame000000_col0012_row0156.tif"),
        (12, 156, 9, 1234567, "Dump_cam9_frame1234567_col0012_row0156.tif"),
    ],
)
def test_tile_name_for_picks_by_frame(
    col: int, row: int, camera: int, frame: int, expected: str
) -> None:
    """Frame -1 gives a stable name, others a drift name that parses back."""
    name = tile_name_for(col, row, camera, frame)
    assert name == expected
    assert parse_tile_name(name) == TileName(col, row, camera, frame, name)


@pytest.mark.parametrize(
    ("col", "row", "camera", "frame"),
    [
        (-1, 0, 0, -1),
        (0, -1, 0, 0),
        (0, 0, -1, -1),
        (0, 0, 10, 0),
        (0, 0, 0, -2),
        (2**31, 0, 0, -1),
        (0, 0, 0, 2**31),
    ],
)
def test_unnameable_tiles_are_rejected(
    col: int, row: int, camera: int, frame: int
) -> None:
    """Values that would not parse back (negative, camera >= 10 for drift) fail."""
    with pytest.raises(BadParameter, match=r"^Invalid tile file name: "):
        tile_name_for(col, row, camera, frame)


def test_drift_name_refuses_the_stable_frame() -> None:
    """drift_name with frame -1 is an error rather than a stable name."""
    with pytest.raises(BadParameter):
        drift_name(0, -1, 1, 2)
