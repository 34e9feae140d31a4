"""Unit tests for tile specs and tile-spec ids (CONTRACT §9.2, §9.3, §14, Q23, Q24)."""

from __future__ import annotations

import json
import struct

import attrs
import pytest

from imagecatcher.domain import BadParameter
from imagecatcher.tilespec import (
    INVALID,
    NO_TILE_READY,
    NO_TILE_READY_IN_SECTION,
    RESULT_TYPES,
    SERVED_ALL_ACQ,
    SERVED_ALL_SECTION,
    TILE_FOUND,
    SpecInput,
    TileSpecId,
    parse_tile_spec_id,
    parse_tile_state_body,
    stage_position,
    tile_spec,
)

FORMAT_HINT = (
    "it must <acqID>.<tileCol>.<tileRow>.<tileSection>"
    ".<#_of_prev_acquisitions_for_section>"
)


def _float32(value: float) -> float:
    """``value`` as read back from a single-precision column."""
    result: float = struct.unpack("f", struct.pack("f", value))[0]
    return result


# Fixture acquisition 123, tile col0008_row0080_cam0.tif in section 5801 (§9.2).
EXAMPLE = SpecInput(
    acq_uid=123,
    col=8,
    row=80,
    camera=0,
    temca_id=2,
    width=2560,
    height=2160,
    mask_url="http://masks.example/temca2_cam0.png",
    transformation_ref="141028offset_temca2_camera0",
    location_url="http://sc1-jrc:81/proxy/bparc/0b1e",
    jfs_path="/acquisitions/123/col0008_row0080_cam0.tif",
    nominal_section=5801,
    prev_acq_count=0,
    number_of_cameras=4,
    x_center=_float32(-1.9694e-5),
    y_center=_float32(-4.03052e-5),
    y_tem=0.0,
    pix_per_um=242.0,
    x_small_step=1950,
    y_small_step=1850,
    x_big_step=5550,
    y_big_step=5450,
    n_x_steps=54,
    n_y_steps=76,
)

FULL_EXAMPLE_JSON = """{"tileId":"123.008.080.5801.0","width":2560,"height":2160,"z":5801,
   "mipmapLevels":{"0":{"imageUrl":"http://sc1-jrc:81/proxy/bparc/0b1e?fName=/acquisitions/123/col0008_row0080_cam0.tif",
                        "maskUrl":"http://masks.example/temca2_cam0.png"}},
   "layout":{"camera":0,"imageCol":8,"imageRow":80,"rotation":0,"sectionId":"5801.0",
             "stageX":-81484.05199943227,"stageY":-2453.858386829961,"temca":"2"},
   "transforms":{"type":"list","specList":[{"type":"ref","refId":"141028offset_temca2_camera0"},
     {"type":"leaf","className":"mpicbg.trakem2.transform.AffineModel2D","dataString":"1.0 0.0 0.0 1.0 -81484 -2453"}]}}"""


def test_worked_example_stage_position() -> None:
    """The §9.2 worked example gives exactly the documented stage coordinates."""
    assert stage_position(EXAMPLE) == (-81484.05199943227, -2453.858386829961)


def test_worked_example_spec_fields() -> None:
    """The worked example's dataString, tileId and z are the documented ones."""
    spec = tile_spec(EXAMPLE)
    assert spec["transforms"]["specList"][1]["dataString"] == (
        "1.0 0.0 0.0 1.0 -81484 -2453"
    )
    assert spec["tileId"] == "123.008.080.5801.0"
    assert spec["z"] == 5801.0 and isinstance(spec["z"], float)
    assert spec["layout"]["sectionId"] == "5801.0"


def test_full_example_object() -> None:
    """The tile spec equals the §9.2 "Full example" object, types included."""
    spec = tile_spec(EXAMPLE)
    assert spec == json.loads(FULL_EXAMPLE_JSON)
    layout = spec["layout"]
    assert isinstance(layout["sectionId"], str) and isinstance(layout["temca"], str)
    assert type(layout["camera"]) is int and type(layout["rotation"]) is int
    assert type(layout["imageCol"]) is int and type(layout["imageRow"]) is int
    assert type(spec["width"]) is int and type(spec["height"]) is int
    assert isinstance(layout["stageX"], float) and isinstance(layout["stageY"], float)


def test_full_example_serializes_round_trip() -> None:
    """The spec is plain JSON and survives dumps/loads unchanged."""
    spec = tile_spec(EXAMPLE)
    assert json.loads(json.dumps(spec)) == spec


def test_one_camera_formula() -> None:
    """One camera uses the small-step grid around the centre (§9.2)."""
    inp = attrs.evolve(
        EXAMPLE,
        number_of_cameras=1,
        x_center=1e-5,
        y_center=2e-5,
        y_tem=1e-6,
        pix_per_um=100.0,
        x_small_step=1000,
        y_small_step=900,
        n_x_steps=10,
        n_y_steps=7,
        col=3,
        row=5,
    )
    expected_x = -(1e-5 * 1e6 * 100.0) - 1000.0 * 10.0 / 2 + 3.0 * 1000.0
    expected_y = (2e-5 + 1e-6) * 1e6 * 100.0 - 900.0 * 7.0 / 2 + 5.0 * 900.0
    assert stage_position(inp) == (expected_x, expected_y)
    assert abs(expected_x + 3000.0) < 1e-9 and abs(expected_y - 3450.0) < 1e-9


def test_four_camera_formula_uses_real_division_and_remainder() -> None:
    """Four cameras divide col/row by 4 in floating point and add the remainder."""
    inp = attrs.evolve(
        EXAMPLE, x_center=0.0, y_center=0.0, col=7, row=6, n_x_steps=5, n_y_steps=3
    )
    x_pitch, y_pitch = 5550.0 + 1950.0, 5450.0 + 1850.0
    assert stage_position(inp) == (
        -x_pitch * (5 / 4) + x_pitch * (7 / 4) + 1950.0 * 3,
        -y_pitch * (3 / 4) + y_pitch * (6 / 4) + 1850.0 * 2,
    )


def test_four_camera_remainder_truncates_toward_zero() -> None:
    """A negative col keeps the sign of its remainder (-5 % 4 is -1)."""
    inp = attrs.evolve(EXAMPLE, x_center=0.0, n_x_steps=0, col=-5)
    assert stage_position(inp)[0] == 7500.0 * (-5 / 4) + 1950.0 * -1


@pytest.mark.parametrize("cameras", [0, 2, 3, 5, -1])
def test_other_camera_counts_are_at_origin(cameras: int) -> None:
    """Any camera count other than 1 or 4 puts the tile at stage 0, 0."""
    inp = attrs.evolve(EXAMPLE, number_of_cameras=cameras)
    assert stage_position(inp) == (0.0, 0.0)
    assert tile_spec(inp)["transforms"]["specList"][1]["dataString"] == (
        "1.0 0.0 0.0 1.0 0 0"
    )


def test_col_and_row_padding_keeps_long_numbers() -> None:
    """%03d pads to three digits but leaves 1234 as it is."""
    inp = attrs.evolve(EXAMPLE, col=1234, row=5)
    assert tile_spec(inp)["tileId"] == "123.1234.005.5801.0"


def test_previous_acquisitions_in_section_id_and_z() -> None:
    """Two earlier acquisitions give sectionId 5801.2 and z 5801.2."""
    spec = tile_spec(attrs.evolve(EXAMPLE, prev_acq_count=2))
    assert spec["layout"]["sectionId"] == "5801.2"
    assert spec["tileId"] == "123.008.080.5801.2"
    assert spec["z"] == 5801.2


def test_z_collides_for_ten_previous_acquisitions() -> None:
    """z is the decimal reading, so 10 earlier acquisitions collide with 1 (Q23)."""
    ten = tile_spec(attrs.evolve(EXAMPLE, prev_acq_count=10))
    one = tile_spec(attrs.evolve(EXAMPLE, prev_acq_count=1))
    assert ten["layout"]["sectionId"] == "5801.10" and ten["z"] == one["z"] == 5801.1


def test_data_string_truncates_toward_zero() -> None:
    """Negative stage coordinates are truncated toward zero, not floored."""
    inp = attrs.evolve(
        EXAMPLE,
        number_of_cameras=1,
        x_center=0.0,
        y_center=0.0,
        pix_per_um=1.0,
        x_small_step=2.5,
        y_small_step=0.75,
        n_x_steps=1,
        n_y_steps=2,
        col=0,
        row=1,
    )
    assert stage_position(inp) == (-1.25, 0.0)
    assert tile_spec(inp)["transforms"]["specList"][1]["dataString"] == (
        "1.0 0.0 0.0 1.0 -1 0"
    )
    small = attrs.evolve(inp, x_small_step=0.5, n_x_steps=1)
    assert tile_spec(small)["transforms"]["specList"][1]["dataString"] == (
        "1.0 0.0 0.0 1.0 0 0"
    )


def test_image_url_without_base() -> None:
    """An empty TILES_URL_BASE gives <location_url>?fName=<jfs_path> (§14)."""
    assert tile_spec(EXAMPLE, "")["mipmapLevels"]["0"]["imageUrl"] == (
        "http://sc1-jrc:81/proxy/bparc/0b1e"
        "?fName=/acquisitions/123/col0008_row0080_cam0.tif"
    )


def test_image_url_with_base() -> None:
    """A set TILES_URL_BASE gives <TILES_URL_BASE><jfs_path> (§14)."""
    spec = tile_spec(EXAMPLE, "http://tiles.example/jfs")
    assert spec["mipmapLevels"]["0"]["imageUrl"] == (
        "http://tiles.example/jfs/acquisitions/123/col0008_row0080_cam0.tif"
    )


def test_missing_mask_and_ref_are_empty_strings() -> None:
    """NULL mask URL and transformation ref become empty strings."""
    spec = tile_spec(attrs.evolve(EXAMPLE, mask_url=None, transformation_ref=None))
    assert spec["mipmapLevels"]["0"]["maskUrl"] == ""
    assert spec["transforms"]["specList"][0] == {"type": "ref", "refId": ""}


def test_result_types_in_reference_order() -> None:
    """The result types are strings in the reference's numeric order (§9.1)."""
    assert RESULT_TYPES == (
        NO_TILE_READY,
        TILE_FOUND,
        NO_TILE_READY_IN_SECTION,
        SERVED_ALL_SECTION,
        SERVED_ALL_ACQ,
        INVALID,
    )
    assert RESULT_TYPES == (
        "NO_TILE_READY",
        "TILE_FOUND",
        "NO_TILE_READY_IN_SECTION",
        "SERVED_ALL_SECTION",
        "SERVED_ALL_ACQ",
        "INVALID",
    )


def test_parse_tile_spec_id() -> None:
    """A well-formed id yields its five integers."""
    assert parse_tile_spec_id("123.008.080.5801.0") == TileSpecId(123, 8, 80, 5801, 0)


def test_parse_tile_spec_id_negative_and_extremes() -> None:
    """Negative fields and the int64 limits are accepted."""
    text = f"-1.-2.-3.{2**63 - 1}.{-(2**63)}"
    assert parse_tile_spec_id(text) == TileSpecId(-1, -2, -3, 2**63 - 1, -(2**63))


@pytest.mark.parametrize("text", ["1", "", "1.2.3.4", "1.2.3.4.5.6", "....."])
def test_wrong_field_count(text: str) -> None:
    """An id without exactly five fields is a format error naming the id."""
    with pytest.raises(BadParameter) as info:
        parse_tile_spec_id(text)
    assert str(info.value) == f"Invalid tile spec ID format: '{text}' - {FORMAT_HINT}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x.2.3.4.5", "Invalid acq ID value x in x.2.3.4.5: invalid syntax"),
        ("1.c.3.4.5", "Invalid tile column value c in 1.c.3.4.5: invalid syntax"),
        ("1.2.r.4.5", "Invalid tile row value r in 1.2.r.4.5: invalid syntax"),
        ("1.2.3.s.5", "Invalid section value s in 1.2.3.s.5: invalid syntax"),
        (
            "1.2.3.4.p",
            "Invalid value for number of previous acquisitions p in 1.2.3.4.p: "
            "invalid syntax",
        ),
        ("1..3.4.5", "Invalid tile column value  in 1..3.4.5: invalid syntax"),
        ("+1.2.3.4.5", "Invalid acq ID value +1 in +1.2.3.4.5: invalid syntax"),
        ("1.-.3.4.5", "Invalid tile column value - in 1.-.3.4.5: invalid syntax"),
        ("1. 2.3.4.5", "Invalid tile column value  2 in 1. 2.3.4.5: invalid syntax"),
        ("1.2.٣.4.5", "Invalid tile row value ٣ in 1.2.٣.4.5: invalid syntax"),
        ("1.2.3.0x4.5", "Invalid section value 0x4 in 1.2.3.0x4.5: invalid syntax"),
        ("1.2_0.3.4.5", "Invalid tile column value 2_0 in 1.2_0.3.4.5: invalid syntax"),
        (
            f"{2**63}.2.3.4.5",
            f"Invalid acq ID value {2**63} in {2**63}.2.3.4.5: value out of range",
        ),
        (
            f"1.2.3.{-(2**63) - 1}.5",
            f"Invalid section value {-(2**63) - 1} in 1.2.3.{-(2**63) - 1}.5: "
            "value out of range",
        ),
    ],
)
def test_bad_field_values(text: str, message: str) -> None:
    """Each non-integer field is reported with its own §9.3 message."""
    with pytest.raises(BadParameter) as info:
        parse_tile_spec_id(text)
    assert str(info.value) == message


def test_huge_field_is_out_of_range() -> None:
    """A field of thousands of digits is out of range, not an int() limit error."""
    big = "9" * 5000
    with pytest.raises(BadParameter, match=r"value out of range$"):
        parse_tile_spec_id(f"1.2.3.4.{big}")


def test_leading_zeros_are_accepted() -> None:
    """Leading zeros do not count toward the 64-bit range."""
    assert parse_tile_spec_id("0" * 30 + "7.1.2.3.4").acq_uid == 7


def test_parse_body() -> None:
    """The §9.3 example body yields its state and both ids."""
    body = b'{"state": "COMPLETE", "tileSpecIds": ["123.008.080.5801.0", "123.008.081.5801.0"]}'
    assert parse_tile_state_body(body) == (
        "COMPLETE",
        [TileSpecId(123, 8, 80, 5801, 0), TileSpecId(123, 8, 81, 5801, 0)],
    )


def test_body_keys_are_case_insensitive_and_extras_ignored() -> None:
    """Key names match case-insensitively and unknown keys are ignored."""
    body = b'{"STATE": "FAILED", "TileSpecIDs": ["1.2.3.4.5"], "note": {"x": 1}}'
    assert parse_tile_state_body(body) == ("FAILED", [TileSpecId(1, 2, 3, 4, 5)])


def test_body_last_case_variant_wins() -> None:
    """Of several case variants of one key, the last one counts."""
    body = b'{"state": "A", "State": "B", "state": "C", "tileSpecIds": ["1.2.3.4.5"]}'
    assert parse_tile_state_body(body)[0] == "C"


def test_appendix_a_step_7() -> None:
    """Appendix A step 7: two good ids parse, a one-field id is a format error."""
    ok = b'{"state":"NEW_STATE","tileSpecIds":["1.2.3.4.5","1.2.6.7.9"]}'
    assert parse_tile_state_body(ok) == (
        "NEW_STATE",
        [TileSpecId(1, 2, 3, 4, 5), TileSpecId(1, 2, 6, 7, 9)],
    )
    bad = b'{"state":"NEW_STATE","tileSpecIds":["1.2.3.4.5","1"]}'
    with pytest.raises(BadParameter) as info:
        parse_tile_state_body(bad)
    assert str(info.value) == f"Invalid tile spec ID format: '1' - {FORMAT_HINT}"


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b'{"state": "X"', b"\xff\xfe\x00", b"[" * 100000],
)
def test_body_not_json(body: bytes) -> None:
    """A body that is not JSON is a BadParameter."""
    with pytest.raises(BadParameter, match=r"^Invalid tile state request body"):
        parse_tile_state_body(body)


@pytest.mark.parametrize(
    "body", [b"[]", b'["state"]', b'"state"', b"null", b"42", b"true"]
)
def test_body_not_an_object(body: bytes) -> None:
    """A JSON value other than an object is a BadParameter."""
    with pytest.raises(BadParameter, match=r"expected a JSON object$"):
        parse_tile_state_body(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"tileSpecIds": ["1.2.3.4.5"]}',
        b'{"state": "", "tileSpecIds": ["1.2.3.4.5"]}',
        b'{"state": null, "tileSpecIds": ["1.2.3.4.5"]}',
        b"{}",
    ],
)
def test_missing_or_empty_state(body: bytes) -> None:
    """A missing, null or empty state is rejected with the §9.3 message."""
    with pytest.raises(BadParameter) as info:
        parse_tile_state_body(body)
    assert str(info.value) == "Invalid tile state - tile state cannot be empty"


@pytest.mark.parametrize("state", [b"1", b"true", b'["A"]', b'{"a": "b"}'])
def test_non_string_state(state: bytes) -> None:
    """A state that is not a JSON string is a BadParameter."""
    body = b'{"state": ' + state + b', "tileSpecIds": ["1.2.3.4.5"]}'
    with pytest.raises(BadParameter, match=r"must be a string$"):
        parse_tile_state_body(body)


def test_state_length_limit() -> None:
    """A state of 64 characters fits the column; 65 is a BadParameter."""
    ok = json.dumps({"state": "é" * 64, "tileSpecIds": ["1.2.3.4.5"]}).encode()
    assert parse_tile_state_body(ok)[0] == "é" * 64
    long = json.dumps({"state": "S" * 65, "tileSpecIds": ["1.2.3.4.5"]}).encode()
    with pytest.raises(BadParameter, match=r"longer than 64 characters$"):
        parse_tile_state_body(long)


@pytest.mark.parametrize(
    "ids", [b'"1.2.3.4.5"', b"[1]", b'["1.2.3.4.5", null]', b"{}", b'[["1"]]']
)
def test_ids_must_be_a_list_of_strings(ids: bytes) -> None:
    """tileSpecIds other than a list of strings is a BadParameter."""
    body = b'{"state": "COMPLETE", "tileSpecIds": ' + ids + b"}"
    with pytest.raises(BadParameter, match=r"must be a list of strings$"):
        parse_tile_state_body(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"state": "COMPLETE", "tileSpecIds": []}',
        b'{"state": "COMPLETE", "tileSpecIds": null}',
        b'{"state": "COMPLETE"}',
    ],
)
def test_empty_id_list_is_bad_parameter(body: bytes) -> None:
    """An empty or missing id list is a 400 BadParameter, not the old 500 (Q24)."""
    with pytest.raises(BadParameter) as info:
        parse_tile_state_body(body)
    assert str(info.value) == "A condition must be specified for updating the ROI state"


def test_state_checked_before_ids() -> None:
    """An empty state is reported even when the ids are malformed too."""
    body = b'{"state": "", "tileSpecIds": ["1"]}'
    with pytest.raises(BadParameter, match=r"cannot be empty$"):
        parse_tile_state_body(body)
