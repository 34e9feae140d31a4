"""Unit tests for the column limits and their checks (CONTRACT §6.1, issue 8)."""

from __future__ import annotations

import math
import struct

import pytest

from imagecatcher import limits
from imagecatcher.domain import BadParameter
from imagecatcher.limits import (
    FLOAT32_MAX,
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    TEXT_BYTES,
    check_bytes,
    check_float32,
    check_int,
    check_length,
    excerpt,
)


def test_widths_are_the_schema_widths() -> None:
    """The widths are those of sql/init/schema.sql and the migrations."""
    assert (
        limits.SAMPLE_NAME,
        limits.PROJECT_NAME,
        limits.PROJECT_OWNER,
        limits.STACK_NAME,
        limits.MOSAIC_TYPE,
        limits.MICROSCOPIST_NAME,
    ) == (255, 80, 80, 80, 32, 50)
    assert (limits.SECTION_NAME, limits.REGION_NAME) == (64, 10)
    assert (limits.CALIBRATION_NAME, limits.MASK_URL, limits.TRANSFORMATION_REF) == (
        50,
        255,
        255,
    )
    assert (limits.FILE_NAME, limits.JFS_PATH, limits.JFS_KEY) == (255, 1024, 64)
    assert (limits.TILE_STATE, limits.TX_HASH, limits.ANCILLARY_TYPE) == (64, 80, 255)
    assert TEXT_BYTES == 65_535


def test_length_at_the_limit_passes() -> None:
    """A value of exactly the column width is returned unchanged."""
    assert check_length("[General] Sample name", "S" * 255, 255) == "S" * 255


def test_length_over_the_limit_names_field_and_limit() -> None:
    """One character more is a BadParameter naming the field, the length and the limit."""
    with pytest.raises(BadParameter) as exc:
        check_length("[General] Sample name", "S" * 256, 255)
    assert str(exc.value) == (
        "[General] Sample name is too long: 256 characters, at most 255 fit"
    )


def test_length_counts_characters_not_bytes() -> None:
    """VARCHAR widths count characters: 50 two-byte letters fit VARCHAR(50)."""
    assert check_length("name", "é" * 50, 50) == "é" * 50
    with pytest.raises(BadParameter, match=r"51 characters, at most 50 fit$"):
        check_length("name", "é" * 51, 50)


def test_text_at_the_byte_limit_passes() -> None:
    """A TEXT value of exactly 65,535 UTF-8 bytes is returned unchanged."""
    value = "a" * (TEXT_BYTES - 2) + "é"
    assert check_bytes("acquisition log", value) is value


def test_text_over_the_byte_limit_names_field_and_limit() -> None:
    """One byte more is a BadParameter naming the field and the byte limit."""
    with pytest.raises(BadParameter) as exc:
        check_bytes("acquisition log", "a" * (TEXT_BYTES + 1))
    assert str(exc.value) == (
        "acquisition log is too long: 65536 bytes in UTF-8, at most 65535 fit"
    )


def test_text_counts_utf8_bytes() -> None:
    """Fewer characters than the limit are refused when their UTF-8 bytes exceed it."""
    value = "é" * (TEXT_BYTES // 2 + 1)  # 32,768 characters, 65,536 bytes
    assert len(value) < TEXT_BYTES
    with pytest.raises(BadParameter, match=r"65536 bytes in UTF-8, at most 65535"):
        check_bytes("[General] Notes", value)


@pytest.mark.parametrize("value", [INT32_MIN, -1, 0, INT32_MAX])
def test_int_within_range_passes(value: int) -> None:
    """INTEGER values from -2**31 to 2**31-1 are returned unchanged."""
    assert check_int("field", value) == value


@pytest.mark.parametrize("value", [INT32_MIN - 1, INT32_MAX + 1])
def test_int_out_of_range_names_field_and_range(value: int) -> None:
    """One beyond either end is a BadParameter naming the field and the range."""
    with pytest.raises(BadParameter) as exc:
        check_int("[Mosaic Settings] X sm step (pix)", value)
    assert str(exc.value) == (
        "[Mosaic Settings] X sm step (pix) is out of range: it must be from"
        " -2147483648 to 2147483647"
    )


def test_int_with_other_bounds() -> None:
    """Explicit bounds (a BIGINT UID) replace the INTEGER range."""
    assert check_int("acquisition UID", INT64_MAX, 0, INT64_MAX) == INT64_MAX
    with pytest.raises(BadParameter, match=r"from 0 to 9223372036854775807$"):
        check_int("acquisition UID", INT64_MAX + 1, 0, INT64_MAX)


@pytest.mark.parametrize(
    "value", [0.0, -1.9694e-5, FLOAT32_MAX, -FLOAT32_MAX, 3.4028235e38]
)
def test_float_that_a_float_column_holds_passes(value: float) -> None:
    """Values up to the largest single-precision float (after rounding) pass."""
    assert check_float32("[Mosaic Settings] Center X (m)", value) == value


@pytest.mark.parametrize(
    "value", [3.4028235677973366e38, -1e39, 1e300, math.inf, -math.inf, math.nan]
)
def test_float_beyond_single_precision_is_refused(value: float) -> None:
    """A value that overflows single precision, or is not finite, names the field."""
    with pytest.raises(BadParameter) as exc:
        check_float32("[Mosaic Settings] Center X (m)", value)
    assert str(exc.value) == (
        "[Mosaic Settings] Center X (m) is out of range:"
        " at most 3.4028234663852886e+38 in magnitude"
    )


def test_float32_max_is_the_largest_single() -> None:
    """FLOAT32_MAX packs into four bytes and the next double up does not."""
    assert struct.unpack("<f", struct.pack("<f", FLOAT32_MAX))[0] == FLOAT32_MAX
    with pytest.raises(OverflowError):
        struct.pack("<f", math.nextafter(FLOAT32_MAX * (1 + 2**-24), math.inf))


def test_excerpt_shortens_long_text() -> None:
    """Texts over 40 characters are cut to 40 with a marker; shorter ones are kept."""
    assert excerpt("x" * 40) == "x" * 40
    assert excerpt("x" * 41) == "x" * 37 + "..."
