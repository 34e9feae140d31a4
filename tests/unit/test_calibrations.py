"""Unit tests for calibration JSON parsing and re-encoding (CONTRACT §7.4)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from imagecatcher.calibrations import (
    Calibration,
    mask_url,
    parse_calibration_date,
    parse_calibrations,
)
from imagecatcher.domain import CalibrationError

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
LENS_FILE = FIXTURES / "141028_lens_correction_with_offset.json"


def element(**overrides: Any) -> dict[str, Any]:
    """A valid calibration element, with top-level keys replaced by ``overrides``."""
    base: dict[str, Any] = {
        "id": "141028offset_temca2_camera0",
        "type": "list",
        "metadata": {
            "calibration_data": "141028",
            "group": "lens correction",
            "temca": "2",
            "camera": "0",
        },
        "specList": [{"className": "a.B", "dataString": "1 2 3"}],
    }
    base.update(overrides)
    return base


def with_metadata(**meta: Any) -> dict[str, Any]:
    """A valid element whose metadata values are replaced by ``meta``."""
    base = element()
    base["metadata"] = {**base["metadata"], **meta}
    return base


def parse_one(item: dict[str, Any]) -> Calibration:
    """Parse a one-element array and return its calibration."""
    (calibration,) = parse_calibrations(json.dumps([item]))
    return calibration


def test_fixture_parses_twelve_calibrations() -> None:
    """The lab's fixture holds 12 calibrations of 2014-10-28, temcas 2, 3, 7."""
    calibrations = parse_calibrations(LENS_FILE.read_bytes())
    assert len(calibrations) == 12
    assert {c.date for c in calibrations} == {datetime(2014, 10, 28)}
    assert {c.temca for c in calibrations} == {2, 3, 7}
    assert {c.camera for c in calibrations} == {0, 1, 2, 3}
    assert {(c.temca, c.camera) for c in calibrations} == {
        (t, c) for t in (2, 3, 7) for c in range(4)
    }
    assert len({c.name for c in calibrations}) == 12


def test_fixture_names_follow_the_lab_convention() -> None:
    """Each fixture name is <yyMMdd>offset_temca<T>_camera<C>."""
    for c in parse_calibrations(LENS_FILE.read_text(encoding="utf-8")):
        assert c.name == f"141028offset_temca{c.temca}_camera{c.camera}"


def test_fixture_json_config_has_only_contract_keys() -> None:
    """The stored JSON keeps only id, type, Metadata and specList."""
    raw = json.loads(LENS_FILE.read_text(encoding="utf-8"))
    for original, c in zip(
        raw, parse_calibrations(LENS_FILE.read_bytes()), strict=True
    ):
        stored = json.loads(c.json_config)
        assert set(stored) == {"id", "type", "Metadata", "specList"}
        assert set(stored["Metadata"]) == {
            "calibration_data",
            "group",
            "temca",
            "camera",
        }
        assert stored["id"] == c.name and stored["type"] == "list"
        assert stored["Metadata"]["calibration_data"] == "141028"
        assert stored["specList"] == [
            {"className": s["className"], "dataString": s["dataString"]}
            for s in original["specList"]
        ]


def test_json_config_drops_extra_keys() -> None:
    """Keys outside the contract are dropped at every level."""
    item = element(notes="x", specList=[{"className": "a", "dataString": "b", "z": 1}])
    item["metadata"]["extra"] = "y"
    stored = json.loads(parse_one(item).json_config)
    assert "notes" not in stored
    assert "extra" not in stored["Metadata"]
    assert stored["specList"] == [{"className": "a", "dataString": "b"}]


@pytest.mark.parametrize("key", ["metadata", "Metadata", "METADATA", "metaData"])
def test_metadata_key_is_case_insensitive(key: str) -> None:
    """The metadata object is found whatever the case of its key."""
    item = element()
    item[key] = item.pop("metadata")
    calibration = parse_one(item)
    assert (calibration.temca, calibration.camera) == (2, 0)
    assert calibration.date == datetime(2014, 10, 28)


def test_not_json_is_an_error() -> None:
    """A body that is not JSON raises CalibrationError."""
    with pytest.raises(CalibrationError, match="Invalid calibration JSON"):
        parse_calibrations(b"[{not json")


def test_not_utf8_is_an_error() -> None:
    """A body that is not UTF-8 raises CalibrationError."""
    with pytest.raises(CalibrationError, match="Invalid calibration JSON"):
        parse_calibrations(b'["\xff\xfe"]')


@pytest.mark.parametrize("body", ['{"id": "x"}', '"x"', "3", "null"])
def test_not_an_array_is_an_error(body: str) -> None:
    """A JSON value other than an array raises CalibrationError."""
    with pytest.raises(CalibrationError, match="expected an array"):
        parse_calibrations(body)


def test_empty_array_is_no_calibration() -> None:
    """An empty array parses to no calibration."""
    assert parse_calibrations("[]") == []


def test_element_not_an_object_names_record() -> None:
    """An array element that is not an object names its record."""
    with pytest.raises(CalibrationError, match=r"^Record 1: expected an object"):
        parse_calibrations(json.dumps([element(), "x"]))


@pytest.mark.parametrize("date", ["1410280", "14102", "14-10-28", "141328", "141032"])
def test_bad_date_names_record(date: str) -> None:
    """A malformed or impossible date is reported with its record and value."""
    with pytest.raises(CalibrationError) as info:
        parse_calibrations(json.dumps([with_metadata(calibration_data=date)]))
    assert str(info.value).startswith(f"Record 0: Wrong calibration date {date}")


def test_missing_date_is_an_error() -> None:
    """An element without calibration_data is rejected."""
    item = element()
    del item["metadata"]["calibration_data"]
    with pytest.raises(CalibrationError, match=r"^Record 0: Wrong calibration date"):
        parse_one(item)


def test_error_names_the_failing_record() -> None:
    """The record index in an error is the position of the bad element."""
    bad = with_metadata(calibration_data="xx")
    with pytest.raises(CalibrationError, match=r"^Record 2: "):
        parse_calibrations(json.dumps([element(), element(), bad]))


@pytest.mark.parametrize("temca", ["two", "", None, "2.5"])
def test_non_numeric_temca_is_an_error(temca: Any) -> None:
    """A temca that is not an integer string is rejected, naming the record."""
    with pytest.raises(CalibrationError, match=r"^Record 0: Wrong temca"):
        parse_one(with_metadata(temca=temca))


def test_non_numeric_camera_is_an_error() -> None:
    """A camera that is not an integer string is rejected, naming the record."""
    with pytest.raises(CalibrationError, match=r"^Record 0: Wrong camera"):
        parse_one(with_metadata(camera="zero"))


def test_numeric_json_values_are_accepted() -> None:
    """temca and camera given as JSON numbers are read as integers."""
    calibration = parse_one(with_metadata(temca=7, camera=3))
    assert (calibration.temca, calibration.camera) == (7, 3)


def test_missing_id_is_an_error() -> None:
    """An element without an id is rejected."""
    item = element()
    del item["id"]
    with pytest.raises(CalibrationError, match=r"^Record 0: missing calibration id"):
        parse_one(item)


def test_metadata_not_an_object_is_an_error() -> None:
    """A metadata value that is not an object is rejected."""
    with pytest.raises(CalibrationError, match=r"^Record 0: metadata is not an object"):
        parse_one(element(metadata=["x"]))


@pytest.mark.parametrize(
    ("text", "year"),
    [("690101", 1969), ("991231", 1999), ("000101", 2000), ("680101", 2068)],
)
def test_two_digit_year_pivot(text: str, year: int) -> None:
    """Years 00-68 are 20xx and 69-99 are 19xx."""
    assert parse_calibration_date(text) == datetime(year, int(text[2:4]), int(text[4:]))


def test_mask_url() -> None:
    """The mask URL joins the root, the temca and the camera."""
    assert mask_url("http://masks/root", 2, 3) == "http://masks/root/temca2_cam3.png"


# Column limits (issue 8)


def test_name_of_50_characters_is_kept() -> None:
    """A calibration id as long as calibration_name (50) is kept whole."""
    name = "141028offset_temca2_camera0_" + "x" * 22
    assert len(name) == 50
    assert parse_one(element(id=name)).name == name


def test_name_over_50_characters_names_record_and_limit() -> None:
    """A 51-character id is refused naming the record, the id and the width."""
    name = "141028offset_temca2_camera0_" + "x" * 23
    with pytest.raises(CalibrationError) as info:
        parse_one(element(id=name))
    assert str(info.value) == (
        "Record 0: calibration id '141028offset_temca2_camera0_xxxxxxxxx...'"
        " is too long: 51 characters, at most 50 fit"
    )


def _with_json_bytes(size: int) -> dict[str, Any]:
    """A valid element whose stored JSON is ``size`` UTF-8 bytes long."""
    item = element(specList=[{"className": "a.B", "dataString": ""}])
    overhead = len(parse_one(item).json_config.encode("utf-8"))
    item["specList"][0]["dataString"] = "1" * (size - overhead)
    return item


def test_stored_json_of_65535_bytes_is_kept() -> None:
    """Stored JSON of exactly 65,535 bytes (json_config is TEXT) is kept whole."""
    item = _with_json_bytes(65_535)
    stored = parse_one(item).json_config
    assert len(stored.encode("utf-8")) == 65_535
    assert json.loads(stored)["specList"] == item["specList"]


def test_stored_json_over_65535_bytes_names_the_calibration() -> None:
    """One byte more is refused naming the record, the calibration and the limit."""
    with pytest.raises(CalibrationError) as info:
        parse_one(_with_json_bytes(65_536))
    assert str(info.value) == (
        "Record 0: JSON of calibration '141028offset_temca2_camera0'"
        " is too long: 65536 bytes in UTF-8, at most 65535 fit"
    )


@pytest.mark.parametrize("field", ["temca", "camera"])
@pytest.mark.parametrize("value", ["2147483648", "-2147483649", "9" * 5000])
def test_temca_or_camera_out_of_range_names_it(field: str, value: str) -> None:
    """A temca or camera beyond the INTEGER range is refused naming the field."""
    with pytest.raises(CalibrationError) as info:
        parse_one(with_metadata(**{field: value}))
    assert str(info.value) == (
        f"Record 0: {field} is out of range: it must be from -2147483648 to 2147483647"
    )


def test_temca_at_the_integer_limit_is_kept() -> None:
    """A temca of 2**31-1 parses (the import then finds no camera for it)."""
    assert parse_one(with_metadata(temca="2147483647")).temca == 2**31 - 1


def test_mask_url_of_255_characters_is_kept() -> None:
    """A mask URL as long as tem_camera_mask_url (255) is returned whole."""
    root = "http://masks.example/" + "r" * (255 - 21 - len("/temca2_cam3.png"))
    url = mask_url(root, 2, 3)
    assert len(url) == 255 and url.endswith("/temca2_cam3.png")


def test_mask_url_over_255_characters_is_refused() -> None:
    """One character more is a CalibrationError naming the camera and the width."""
    root = "http://masks.example/" + "r" * (256 - 21 - len("/temca2_cam3.png"))
    with pytest.raises(CalibrationError) as info:
        mask_url(root, 2, 3)
    assert str(info.value) == (
        "mask URL of temca 2 camera 3 is too long: 256 characters, at most 255 fit"
    )


@pytest.mark.parametrize(
    "body", ["[" + "9" * 5000 + "]", "[" * 100_000 + "]" * 100_000]
)
def test_json_python_cannot_read_is_an_error(body: str) -> None:
    """Numbers of thousands of digits and deep nesting are CalibrationError, not a crash."""
    with pytest.raises(CalibrationError, match=r"^Invalid calibration JSON: "):
        parse_calibrations(body)
