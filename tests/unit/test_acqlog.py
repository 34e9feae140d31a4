"""Unit tests for the INI dialect and acquisition logs (CONTRACT §7.0, §7.1, Q15, Q16)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import attrs
import pytest

from imagecatcher.acqlog import (
    AcquisitionLog,
    acquisition_uid,
    parse_acquisition_log,
    parse_float,
    parse_ini,
    parse_int32,
    parse_log_date,
    unquote,
)
from imagecatcher.domain import BadParameter

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
LOG_FILE = FIXTURES / "123_logfile.ini"

SECTIONS = {
    "General": {
        "Date": '"03/04/2015 10:46:49 AM"',
        "Sample name": '"S"',
        "Microscopist name": '"M"',
        "Notes": '"n"',
    },
    "Camera Connections": {
        "Acq1": "TRUE",
        "Acq2": "FALSE",
        "Acq3": "FALSE",
        "Acq4": "FALSE",
    },
    "Mosaic Settings": {
        "Number of X steps": "10",
        "Number of Y steps": "20",
        "X sm step (pix)": "1",
        "Y sm step (pix)": "2",
        "X big step (pix)": "3",
        "Y big step (pix)": "4",
        "Center X (m)": "1.5E-5",
        "Center Y (m)": "-2",
    },
    "TEM Settings": {"Magnification": '"100"', "Pixels per um": '"1.5"'},
    "Machine IDs": {"TEM IP address": '"10.0.0.1"'},
    "ImageCatcher": {
        "project": '"p"',
        "owner": '"o"',
        "stack": '"s"',
        "mosaicType": '"m"',
    },
}


def log_text(
    overrides: dict[tuple[str, str], str | None] | None = None, eol: str = "\n"
) -> str:
    """A synthetic log: ``SECTIONS`` with (section, key) values replaced or dropped."""
    overrides = overrides or {}
    known = {(section, key) for section, values in SECTIONS.items() for key in values}
    assert set(overrides) <= known, "override of a key the synthetic log lacks"
    lines = []
    for section, values in SECTIONS.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            replaced = overrides.get((section, key), value)
            if replaced is not None:
                lines.append(f"{key} = {replaced}")
        lines.append("")
    return eol.join(lines)


def parse_with(overrides: dict[tuple[str, str], str | None]) -> AcquisitionLog:
    """Parse the synthetic log with ``overrides`` applied."""
    return parse_acquisition_log(log_text(overrides))


# INI dialect (§7.0)


def test_ini_sections_keys_and_values() -> None:
    """Keys are lower-cased and trimmed; values are trimmed and keep their quotes."""
    ini = parse_ini('[General]\n  Sample Name  =  "a = b"  \n[Other]\nK=\n')
    assert ini == {"General": {"sample name": '"a = b"'}, "Other": {"k": ""}}


def test_ini_crlf_comments_and_blank_lines() -> None:
    """CRLF endings, blank lines and ';'/'#' comments are accepted."""
    text = "; c\r\n# c\r\n\r\n  \t\r\n[S]\r\n ; x = 1\r\nk = v\r\n"
    assert parse_ini(text) == {"S": {"k": "v"}}


def test_ini_assignments_before_any_section() -> None:
    """Assignments before the first header belong to section ''."""
    assert parse_ini("a = 1\n[S]\nb = 2\n") == {"": {"a": "1"}, "S": {"b": "2"}}


def test_ini_repeated_key_last_wins_case_insensitively() -> None:
    """A key repeated in another case keeps the last value."""
    assert parse_ini("[S]\nKey = 1\nKEY = 2\nkey = 3\n") == {"S": {"key": "3"}}


def test_ini_repeated_section_merges() -> None:
    """A section header seen twice continues the same section."""
    assert parse_ini("[S]\na=1\n[T]\n[S]\nb=2\n") == {
        "S": {"a": "1", "b": "2"},
        "T": {},
    }


def test_ini_section_names_are_case_sensitive_and_trimmed() -> None:
    """[general] is not [General]; spaces inside the brackets are trimmed."""
    assert parse_ini("[ general ]\na=1\n[General]\na=2\n") == {
        "general": {"a": "1"},
        "General": {"a": "2"},
    }


def test_ini_equals_wins_over_header() -> None:
    """A header-like line with '=' is an assignment (tested before the header)."""
    assert parse_ini("[S]\n[a=b]\n") == {"S": {"[a": "b]"}}


def test_ini_only_first_equals_splits() -> None:
    """The value is everything after the first '='."""
    assert parse_ini("[S]\nk = a=b=c\n") == {"S": {"k": "a=b=c"}}


def test_ini_empty_and_bom() -> None:
    """An empty text has no sections; a leading byte-order mark is ignored."""
    assert parse_ini("") == {}
    assert parse_ini("\ufeff[S]\na=1\n") == {"S": {"a": "1"}}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[S]\nnot an assignment\n", "invalid INI syntax on line 2: not an assignment"),
        ("[S]\r\n\r\n  [T  \r\n", "invalid INI syntax on line 3: [T"),
        ("T]\n", "invalid INI syntax on line 1: T]"),
        ("[S]\n\x00\n", "invalid INI syntax on line 2: \x00"),
    ],
)
def test_ini_syntax_error_names_line(text: str, message: str) -> None:
    """A line that is neither blank, comment, assignment nor header fails the file."""
    with pytest.raises(BadParameter) as exc:
        parse_ini(text)
    assert str(exc.value) == message


def test_unquote_removes_one_surrounding_pair() -> None:
    """Only a pair of surrounding double quotes is removed."""
    assert unquote('"a"') == "a"
    assert unquote('""') == ""
    assert unquote('"a') == '"a'
    assert unquote('"') == '"'
    assert unquote('""a""') == '"a"'
    assert unquote("a") == "a"


# Numbers and dates


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("-12", -12), ("+7", 7), ("007", 7), ("2147483647", 2**31 - 1)],
)
def test_parse_int32_accepts(text: str, value: int) -> None:
    """Signed ASCII decimals within 32 bits parse."""
    assert parse_int32(text) == value


@pytest.mark.parametrize(
    "text", ["", " 1", "1 ", "1_000", "1.0", "0x10", "\u0661", "2147483648", "-"]
)
def test_parse_int32_rejects(text: str) -> None:
    """Spaces, underscores, non-ASCII digits and overflow are not integers."""
    with pytest.raises(ValueError):
        parse_int32(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [("242", 242.0), ("-1.9694E-5", -1.9694e-5), (".5", 0.5), ("5.", 5.0)],
)
def test_parse_float_accepts(text: str, value: float) -> None:
    """Plain decimal and exponent forms parse."""
    assert parse_float(text) == value


@pytest.mark.parametrize(
    "text", ["", "NaN", "inf", "1e999", "1_0", " 1", "1,5", "e5", "."]
)
def test_parse_float_rejects(text: str) -> None:
    """Non-finite values, spaces and separators are not numbers."""
    with pytest.raises(ValueError):
        parse_float(text)


@pytest.mark.parametrize(
    ("text", "when"),
    [
        ("03/04/2015 10:46:49 AM", datetime(2015, 3, 4, 10, 46, 49)),
        ("03/04/2015     10:46:49 AM", datetime(2015, 3, 4, 10, 46, 49)),
        ("03/04/2015 10:46:49   PM", datetime(2015, 3, 4, 22, 46, 49)),
        ("12/31/2015 12:00:00 AM", datetime(2015, 12, 31, 0, 0, 0)),
        ("12/31/2015 12:59:59 PM", datetime(2015, 12, 31, 12, 59, 59)),
        ("02/29/2016 01:00:00 PM", datetime(2016, 2, 29, 13, 0, 0)),
    ],
)
def test_log_date_parses(text: str, when: datetime) -> None:
    """The 12-hour format parses, with runs of spaces as one space."""
    assert parse_log_date(text) == when


@pytest.mark.parametrize(
    "text",
    [
        "",
        "3/4/2015 10:46:49 AM",
        "03/04/15 10:46:49 AM",
        "03/04/2015 10:46:49 am",
        "03/04/2015 10:46:49",
        "03/04/2015 13:00:00 PM",
        "03/04/2015 00:00:00 AM",
        "02/29/2015 10:00:00 AM",
        "13/01/2015 10:00:00 AM",
        "03/04/2015 10:60:00 AM",
        "03/04/2015\t10:46:49 AM",
        " 03/04/2015 10:46:49 AM",
        "2015-03-04 10:46:49",
    ],
)
def test_log_date_rejects(text: str) -> None:
    """Other layouts and impossible dates give None (the zero time)."""
    assert parse_log_date(text) is None


# Acquisition UID (§7.1.1)


@pytest.mark.parametrize(
    ("name", "uid"),
    [
        ("123_foo", 123),
        ("/123_foo", 123),
        ("/foo/123_bar", 123),
        ("123", 123),
        ("123_logfile.ini", 123),
        ("a_b/150407200041_logfile.ini", 150407200041),
        ("123__x_y", 123),
        ("0", 0),
        ("9223372036854775807_x", 2**63 - 1),
    ],
)
def test_acquisition_uid(name: str, uid: int) -> None:
    """The UID is the last component's text before its first '_'."""
    assert acquisition_uid(name) == uid


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "Cannot extract acquisition UID from an empty URL"),
        ("_123", "Invalid name component - missing ID before '_'"),
        ("/foo/_123", "Invalid name component - missing ID before '_'"),
        ("/foo_bar", "Error parsing acquisition UID: "),
        ("/123foo_bar", "Error parsing acquisition UID: "),
        ("foo/", "Error parsing acquisition UID: "),
        ("-1_x", "Error parsing acquisition UID: "),
        ("+1_x", "Error parsing acquisition UID: "),
        (" 1_x", "Error parsing acquisition UID: "),
        ("\u0661_x", "Error parsing acquisition UID: "),
        ("18446744073709551616_x", "Error parsing acquisition UID: "),
    ],
)
def test_acquisition_uid_errors(name: str, message: str) -> None:
    """Missing, empty, signed, non-ASCII or overflowing UIDs fail as in §7.1.1."""
    with pytest.raises(BadParameter) as exc:
        acquisition_uid(name)
    assert str(exc.value).startswith(message)
    assert message.endswith(": ") or str(exc.value) == message


# The fixture (§7.1.2 expected values)


def test_fixture_log_values() -> None:
    """The shared 123_logfile.ini gives every value listed in §7.1.2."""
    text = LOG_FILE.read_bytes().decode("utf-8")
    assert "\r\n" in text
    log = parse_acquisition_log(text)
    assert acquisition_uid(LOG_FILE.name) == 123
    assert log.sample_name == "FAFB_00"
    assert log.microscopist_name == "Cam Robinson"
    assert log.when_acquired == datetime(2015, 3, 4, 10, 46, 49)
    assert log.number_of_cameras == 4
    assert (log.number_of_x_steps, log.number_of_y_steps) == (54, 76)
    assert (log.target_num_cols, log.target_num_rows) == (108, 152)
    assert (log.x_sm_step_pix, log.y_sm_step_pix) == (1950, 1850)
    assert (log.x_big_step_pix, log.y_big_step_pix) == (5550, 5450)
    assert (log.center_x_m, log.center_y_m) == (-1.9694e-5, -4.03052e-5)
    assert log.tem_magnification == 2900
    assert log.pixels_per_um == 242.0
    assert log.tem_ip == bytes([10, 101, 50, 60])
    assert (log.project_name, log.project_owner) == ("", "")
    assert (log.stack_name, log.mosaic_type) == ("", "")
    assert log.notes.startswith("300um condenser, 70um objective apertures\\0A690x")
    assert log.ini_text == text


# Synthetic logs


def test_synthetic_log_values() -> None:
    """Every field of a complete one-camera log is read, quotes stripped as listed."""
    text = log_text()
    assert parse_acquisition_log(text) == AcquisitionLog(
        sample_name="S",
        microscopist_name="M",
        notes="n",
        when_acquired=datetime(2015, 3, 4, 10, 46, 49),
        number_of_cameras=1,
        x_sm_step_pix=1,
        y_sm_step_pix=2,
        x_big_step_pix=3,
        y_big_step_pix=4,
        center_x_m=1.5e-5,
        center_y_m=-2.0,
        number_of_x_steps=10,
        number_of_y_steps=20,
        tem_magnification=100,
        pixels_per_um=1.5,
        tem_ip=bytes([10, 0, 0, 1]),
        project_name="p",
        project_owner="o",
        stack_name="s",
        mosaic_type="m",
        ini_text=text,
    )


def test_one_camera_targets_are_the_steps() -> None:
    """With one camera the mosaic target is X by Y steps, undoubled."""
    log = parse_with({})
    assert (log.target_num_cols, log.target_num_rows) == (10, 20)


def test_crlf_log_parses_like_lf() -> None:
    """A CRLF log gives the same values as its LF twin (apart from ini_text)."""
    crlf = parse_acquisition_log(log_text(eol="\r\n"))
    lf = parse_acquisition_log(log_text())
    assert crlf.ini_text != lf.ini_text
    assert crlf == attrs.evolve(lf, ini_text=crlf.ini_text)


def test_keys_are_case_insensitive() -> None:
    """Keys match whatever their case in the file."""
    text = log_text().replace("Sample name", "SAMPLE NAME").replace("Acq1", "acq1")
    log = parse_acquisition_log(text)
    assert log.sample_name == "S"
    assert log.number_of_cameras == 1


def test_section_names_are_case_sensitive() -> None:
    """A [general] section is not [General]: its values are not read."""
    log = parse_acquisition_log(log_text().replace("[General]", "[general]"))
    assert (log.sample_name, log.when_acquired) == ("", None)


def test_quotes_kept_where_not_stripped() -> None:
    """Mosaic numbers are not unquoted, so a quoted number reads as 0."""
    log = parse_with({("Mosaic Settings", "Number of X steps"): '"54"'})
    assert log.number_of_x_steps == 0


def test_unquoted_values_where_stripping_applies() -> None:
    """Bare values of quote-stripped keys are read as they are."""
    log = parse_with(
        {("General", "Sample name"): "FAFB", ("TEM Settings", "Pixels per um"): "3"}
    )
    assert (log.sample_name, log.pixels_per_um) == ("FAFB", 3.0)


def test_bad_numbers_become_zero() -> None:
    """Unparsable numbers other than pixels per um read as 0 (Q15)."""
    log = parse_with(
        {
            ("Mosaic Settings", "X sm step (pix)"): "abc",
            ("Mosaic Settings", "Y sm step (pix)"): "4.0",
            ("Mosaic Settings", "Center X (m)"): "NaN",
            ("Mosaic Settings", "Center Y (m)"): None,
            ("TEM Settings", "Magnification"): '"2900x"',
        }
    )
    assert (log.x_sm_step_pix, log.y_sm_step_pix) == (0, 0)
    assert (log.center_x_m, log.center_y_m) == (0.0, 0.0)
    assert log.tem_magnification == 0


def test_bad_date_is_none() -> None:
    """An unparsable or missing Date gives when_acquired None (Q15)."""
    assert parse_with({("General", "Date"): '"yesterday"'}).when_acquired is None
    assert parse_with({("General", "Date"): None}).when_acquired is None


def test_notes_escapes_kept_literally() -> None:
    """Escape sequences such as \\0A in Notes stay as written."""
    assert parse_with({("General", "Notes"): '"a\\0Ab"'}).notes == "a\\0Ab"


def test_missing_texts_are_empty() -> None:
    """Missing text keys and a missing [ImageCatcher] section read as ''."""
    text = log_text().replace("[ImageCatcher]", "[Other]")
    log = parse_acquisition_log(text)
    assert (log.project_name, log.project_owner, log.stack_name) == ("", "", "")
    assert parse_with({("General", "Microscopist name"): None}).microscopist_name == ""


@pytest.mark.parametrize(
    ("acq", "message"),
    [
        (
            ("TRUE", "TRUE", "TRUE", "FALSE"),
            "Invalid camera connections (TRUE, TRUE, TRUE, FALSE) ",
        ),
        (
            ("true", "TRUE", "TRUE", "TRUE"),
            "Invalid camera connections (true, TRUE, TRUE, TRUE) ",
        ),
        (
            ("FALSE", "FALSE", "FALSE", "FALSE"),
            "Invalid camera connections (FALSE, FALSE, FALSE, FALSE) ",
        ),
        (
            ('"TRUE"', "FALSE", "FALSE", "FALSE"),
            'Invalid camera connections ("TRUE", FALSE, FALSE, FALSE) ',
        ),
        (
            (None, "FALSE", "FALSE", "FALSE"),
            "Invalid camera connections (, FALSE, FALSE, FALSE) ",
        ),
    ],
)
def test_invalid_camera_connections(acq: tuple[str | None, ...], message: str) -> None:
    """Connections other than four TRUE, or TRUE and three FALSE, are rejected verbatim."""
    overrides = {
        ("Camera Connections", f"Acq{n}"): value for n, value in enumerate(acq, 1)
    }
    with pytest.raises(BadParameter) as exc:
        parse_acquisition_log(log_text(overrides))
    assert str(exc.value) == message


def test_four_cameras() -> None:
    """Four TRUE connections mean 4 cameras and doubled targets."""
    overrides: dict[tuple[str, str], str | None] = {
        ("Camera Connections", f"Acq{n}"): "TRUE" for n in range(1, 5)
    }
    log = parse_acquisition_log(log_text(overrides))
    assert log.number_of_cameras == 4
    assert (log.target_num_cols, log.target_num_rows) == (20, 40)


@pytest.mark.parametrize("value", ['"abc"', '""', None, '"NaN"', '"1,5"'])
def test_bad_pixels_per_um_is_rejected(value: str | None) -> None:
    """An unparsable or missing pixels per um rejects the log (Q15)."""
    with pytest.raises(BadParameter, match=r"^Invalid pixels per um"):
        parse_with({("TEM Settings", "Pixels per um"): value})


@pytest.mark.parametrize(
    "value",
    [
        '"fe80::1"',
        '"::ffff:10.0.0.1"',
        '"10.0.0"',
        '"10.0.0.256"',
        '"host"',
        '"010.0.0.1"',
    ],
)
def test_bad_tem_ip_is_rejected_naming_it(value: str) -> None:
    """A malformed or IPv6 TEM IP address is BadParameter naming the value (Q16)."""
    with pytest.raises(BadParameter) as exc:
        parse_with({("Machine IDs", "TEM IP address"): value})
    assert str(exc.value).startswith("Invalid TEM IP address")
    assert value.strip('"') in str(exc.value)


@pytest.mark.parametrize("value", ['""', None])
def test_empty_tem_ip_is_zero(value: str | None) -> None:
    """An empty or missing TEM IP address means 0.0.0.0."""
    assert parse_with({("Machine IDs", "TEM IP address"): value}).tem_ip == bytes(4)


def test_syntax_error_rejects_log() -> None:
    """An INI syntax error anywhere rejects the whole log."""
    with pytest.raises(BadParameter, match=r"^invalid INI syntax on line 1: garbage$"):
        parse_acquisition_log("garbage\n" + log_text())


def test_camera_error_reported_before_others() -> None:
    """With several rejections the camera connections are reported first."""
    text = log_text(
        {
            ("Camera Connections", "Acq1"): "NO",
            ("TEM Settings", "Pixels per um"): "x",
            ("Machine IDs", "TEM IP address"): "x",
        }
    )
    with pytest.raises(BadParameter, match=r"^Invalid camera connections"):
        parse_acquisition_log(text)


# Column limits (issue 8): refused with the INI key and the limit, never cut


TEXT_KEYS = [
    ("General", "Sample name", "sample_name", 255),
    ("General", "Microscopist name", "microscopist_name", 50),
    ("ImageCatcher", "project", "project_name", 80),
    ("ImageCatcher", "owner", "project_owner", 80),
    ("ImageCatcher", "stack", "stack_name", 80),
    ("ImageCatcher", "mosaicType", "mosaic_type", 32),
]


@pytest.mark.parametrize(("section", "key", "attr", "limit"), TEXT_KEYS)
def test_text_at_its_column_width_is_kept_whole(
    section: str, key: str, attr: str, limit: int
) -> None:
    """A text value exactly as long as its column is parsed unchanged."""
    value = "é" + "x" * (limit - 1)
    assert getattr(parse_with({(section, key): f'"{value}"'}), attr) == value


@pytest.mark.parametrize(("section", "key", "attr", "limit"), TEXT_KEYS)
def test_text_over_its_column_width_names_the_key(
    section: str, key: str, attr: str, limit: int
) -> None:
    """One character more is a BadParameter naming the INI key and the width."""
    with pytest.raises(BadParameter) as exc:
        parse_with({(section, key): '"' + "x" * (limit + 1) + '"'})
    assert str(exc.value) == (
        f"[{section}] {key} is too long: {limit + 1} characters, at most {limit} fit"
    )


def _padded_log(size: int) -> str:
    """The synthetic log grown by a comment line to ``size`` UTF-8 bytes."""
    text = log_text() + "; "
    pad = size - len(text.encode("utf-8"))
    return text + "é" * (pad // 2) + "x" * (pad % 2)


def test_log_of_65535_bytes_is_kept_whole() -> None:
    """A log of exactly 65,535 UTF-8 bytes (the TEXT column) is kept whole."""
    text = _padded_log(65_535)
    assert len(text.encode("utf-8")) == 65_535
    assert parse_acquisition_log(text).ini_text == text


def test_log_over_65535_bytes_is_refused() -> None:
    """One byte more is refused naming the acquisition log and the byte limit."""
    with pytest.raises(BadParameter) as exc:
        parse_acquisition_log(_padded_log(65_536))
    assert str(exc.value) == (
        "acquisition log is too long: 65536 bytes in UTF-8, at most 65535 fit"
    )


def test_long_notes_fit_within_the_log_limit() -> None:
    """Notes are part of the log, so any notes of a storable log are kept whole."""
    notes = "ü" * 32_000
    log = parse_with({("General", "Notes"): f'"{notes}"'})
    assert log.notes == notes


INT_KEYS = [
    ("Mosaic Settings", "X sm step (pix)", "x_sm_step_pix", ""),
    ("Mosaic Settings", "Y sm step (pix)", "y_sm_step_pix", ""),
    ("Mosaic Settings", "X big step (pix)", "x_big_step_pix", ""),
    ("Mosaic Settings", "Y big step (pix)", "y_big_step_pix", ""),
    ("Mosaic Settings", "Number of X steps", "number_of_x_steps", ""),
    ("Mosaic Settings", "Number of Y steps", "number_of_y_steps", ""),
    ("TEM Settings", "Magnification", "tem_magnification", '"'),
]


@pytest.mark.parametrize(("section", "key", "attr", "quote"), INT_KEYS)
@pytest.mark.parametrize("value", [2**31 - 1, -(2**31)])
def test_integer_at_the_integer_range_is_kept(
    section: str, key: str, attr: str, quote: str, value: int
) -> None:
    """INI integers from -2**31 to 2**31-1 fit their INTEGER column."""
    log = parse_with({(section, key): f"{quote}{value}{quote}"})
    assert getattr(log, attr) == value


@pytest.mark.parametrize(("section", "key", "attr", "quote"), INT_KEYS)
@pytest.mark.parametrize("text", ["2147483648", "-2147483649", "9" * 5000])
def test_integer_out_of_range_names_the_key(
    section: str, key: str, attr: str, quote: str, text: str
) -> None:
    """An integer beyond the INTEGER range is refused naming the key, not read as 0."""
    with pytest.raises(BadParameter) as exc:
        parse_with({(section, key): f"{quote}{text}{quote}"})
    assert str(exc.value) == (
        f"[{section}] {key} is out of range: it must be from -2147483648 to 2147483647"
    )


def _four_cameras(**steps: str) -> dict[tuple[str, str], str | None]:
    overrides: dict[tuple[str, str], str | None] = {
        ("Camera Connections", f"Acq{n}"): "TRUE" for n in range(1, 5)
    }
    for axis, value in steps.items():
        overrides[("Mosaic Settings", f"Number of {axis} steps")] = value
    return overrides


def test_four_camera_steps_up_to_half_the_range_are_kept() -> None:
    """With 4 cameras, 2**30-1 steps give 2**31-2 mosaic columns, which fit."""
    log = parse_with(_four_cameras(X="1073741823", Y="-1073741824"))
    assert (log.target_num_cols, log.target_num_rows) == (2**31 - 2, -(2**31))


@pytest.mark.parametrize("axis", ["X", "Y"])
def test_four_camera_steps_whose_double_overflows_are_refused(axis: str) -> None:
    """With 4 cameras the doubled step count must fit the mosaic's INTEGER too."""
    with pytest.raises(BadParameter) as exc:
        parse_with(_four_cameras(**{axis: "1073741824"}))
    assert str(exc.value) == (
        f"[Mosaic Settings] Number of {axis} steps (doubled for 4 cameras)"
        " is out of range: it must be from -1073741824 to 1073741823"
    )


FLOAT_KEYS = [
    ("Mosaic Settings", "Center X (m)", "center_x_m", ""),
    ("Mosaic Settings", "Center Y (m)", "center_y_m", ""),
    ("TEM Settings", "Pixels per um", "pixels_per_um", '"'),
]


@pytest.mark.parametrize(("section", "key", "attr", "quote"), FLOAT_KEYS)
def test_float_at_the_single_precision_limit_is_kept(
    section: str, key: str, attr: str, quote: str
) -> None:
    """The largest single-precision magnitude fits a FLOAT column."""
    text = f"{quote}-3.4028234663852886E38{quote}"
    assert getattr(parse_with({(section, key): text}), attr) == -3.4028234663852886e38


@pytest.mark.parametrize(("section", "key", "attr", "quote"), FLOAT_KEYS)
@pytest.mark.parametrize("text", ["3.5E38", "-1e39", "1e999"])
def test_float_beyond_single_precision_names_the_key(
    section: str, key: str, attr: str, quote: str, text: str
) -> None:
    """A number a FLOAT column cannot hold is refused naming the key, not read as 0."""
    with pytest.raises(BadParameter) as exc:
        parse_with({(section, key): f"{quote}{text}{quote}"})
    assert str(exc.value) == (
        f"[{section}] {key} is out of range: at most 3.4028234663852886e+38 in magnitude"
    )


@pytest.mark.parametrize(
    "name", ["9223372036854775808_logfile.ini", "18446744073709551615"]
)
def test_uid_beyond_bigint_names_the_uid_and_range(name: str) -> None:
    """A UID that ini_files_denorm.uid (signed BIGINT) cannot hold is refused."""
    uid = name.partition("_")[0]
    with pytest.raises(BadParameter) as exc:
        acquisition_uid(name)
    assert str(exc.value) == (
        f"acquisition UID {uid} is out of range: it must be from 0 to 9223372036854775807"
    )
