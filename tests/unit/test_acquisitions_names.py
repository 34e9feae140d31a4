"""Ancillary file types (§5.6) and the base names files are stored under (§14, Q13)."""

from __future__ import annotations

import pytest

from imagecatcher.acquisitions import ANCILLARY_TYPES, ancillary_type, stored_file_name
from imagecatcher.domain import BadParameter


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("123_Add pulse.csv", "Add pulse.csv"),
        ("123_Controller elapsed.csv", "Controller elapsed.csv"),
        ("123_Controller timing.csv", "Controller timing.csv"),
        ("123_DAQ timing.csv", "DAQ timing.csv"),
        ("123_ROI_spec.ini", "ROI_spec.ini"),
        ("123_ROI_tiles.csv", "ROI_tiles.csv"),
        ("123_logfile.ini", "logfile.ini"),
        ("123_mosaic.png", "mosaic.png"),
        ("123_statistics.csv", "statistics.csv"),
        ("123_stored_image_list.csv", "stored_image_list.csv"),
        ("123_statistics_cam0.csv", "statistics.csv"),
        ("123_statistics_cam1.csv", "statistics.csv"),
        ("123_statistics_cam2.csv", "statistics.csv"),
        ("123_statistics_cam3.csv", "statistics.csv"),
        ("123_stored_image_list_cam2.csv", "stored_image_list.csv"),
        ("123_Add pulse_cam3.csv", "Add pulse.csv"),
        ("123_DAQ timing_cam0.csv", "DAQ timing.csv"),
        ("123_stored_image_list_cam4.csv", "unknown"),
        ("123_statistics_cam10.csv", "unknown"),
        ("123_mosaic_cam1.png", "unknown"),
        ("123_notes.txt", "unknown"),
        ("123_statistics.csv.bak", "unknown"),
        ("123_cam2.csv", "unknown"),
        ("", "unknown"),
    ],
)
def test_ancillary_type(name: str, expected: str) -> None:
    """The type is the first §5.6 suffix matched once _cam0-3.csv reads .csv."""
    assert ancillary_type(name) == expected


def test_every_type_matches_itself_as_a_bare_name() -> None:
    """Each §5.6 suffix, alone or after a prefix, names its own type."""
    for suffix in ANCILLARY_TYPES:
        assert ancillary_type(suffix) == suffix
        assert ancillary_type(f"140101_{suffix}") == suffix


def test_suffix_match_is_case_sensitive() -> None:
    """Suffixes match exactly, as in the reference (no case folding)."""
    assert ancillary_type("123_MOSAIC.PNG") == "unknown"


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("x.png", "x.png"),
        ("123_logfile.ini", "123_logfile.ini"),
        ("a/b/x.png", "x.png"),
        ("/abs/path/x.png", "x.png"),
        ("..\\..\\x.png", "x.png"),
        ("C:\\Users\\rig\\123_mosaic.png", "123_mosaic.png"),
        ("../../etc/passwd", "passwd"),
        ("dir/ spaced name.csv ", "spaced name.csv"),
        ("123_Add pulse.csv", "123_Add pulse.csv"),
        ("ünïcode.ini", "ünïcode.ini"),
        ("..x", "..x"),
        ("x" * 255, "x" * 255),
    ],
)
def test_stored_file_name_keeps_the_base_name(sent: str, stored: str) -> None:
    """Directories (either slash) are dropped; the base name is kept."""
    assert stored_file_name(sent) == stored


@pytest.mark.parametrize(
    "sent",
    [
        "",
        "   ",
        ".",
        "..",
        "a/..",
        "a\\..",
        "a/.",
        "dir/",
        "dir\\",
        "x\x00.png",
        "x\x01.png",
        "x\x1f.png",
        "x\x7f.png",
        "a\nb.png",
        "a\tb.png",
    ],
)
def test_stored_file_name_refuses_unsafe_names(sent: str) -> None:
    """Empty, '.', '..', control characters and NUL are refused."""
    with pytest.raises(BadParameter, match="Invalid file name"):
        stored_file_name(sent)


@pytest.mark.parametrize("sent", ["x.png\n", "\tx.png", "x.png\r", "x.png\x1f"])
def test_stored_file_name_refuses_control_characters_at_the_ends(sent: str) -> None:
    """A control character is refused wherever it is in the name."""
    with pytest.raises(BadParameter):
        stored_file_name(sent)


def test_stored_name_of_255_bytes_is_kept() -> None:
    """A base name of 255 UTF-8 bytes (a file name, and path's width) is kept whole."""
    suffix = "_stored_image_list_cam2.csv"
    name = "161105213017_" + "é" * 107 + "_" + suffix
    assert len(name.encode("utf-8")) == 255
    assert stored_file_name("C:\\rig\\161105213017\\" + name) == name


@pytest.mark.parametrize("sent", ["x" * 256, "dir/" + "x" * 256, " " + "x" * 256])
def test_stored_name_over_255_bytes_names_the_limit(sent: str) -> None:
    """A longer base name is refused naming the file and the limit."""
    with pytest.raises(BadParameter) as exc:
        stored_file_name(sent)
    assert str(exc.value) == (
        f"File name '{'x' * 37}...' is too long: 256 bytes in UTF-8, at most 255 fit"
    )


def test_stored_name_limit_counts_bytes() -> None:
    """128 two-byte letters (256 bytes) are refused although 128 characters fit path."""
    with pytest.raises(BadParameter, match=r"256 bytes in UTF-8, at most 255 fit$"):
        stored_file_name("é" * 128)


def test_directories_do_not_count_toward_the_limit() -> None:
    """Only the stored base name counts: a long directory prefix is dropped."""
    name = "161105213017_40x168_mosaic.png"
    assert stored_file_name("/" + "d" * 1000 + "/" + name) == name
