"""Values at and beyond their column limits against a running daemon (issue 8).

Every test runs on SQLite (which ignores declared lengths) and on MariaDB in
its default strict mode (which refuses a too-long value with error 1406): a
value at its limit is stored whole and read back unchanged, one beyond it is
a 400 naming the field and the limit, on both engines alike.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs
import pytest

from imagecatcher.calibrations import parse_calibrations
from imagecatcher.config import Config
from tests.conftest import FIXTURES
from tests.integration.daemon import ports, run_tool, running, twistd_argv, write_config
from tests.integration.dbcheck import rows, scalar
from tests.integration.httpclient import post_form, request, send_tile

UID = 161105213017
LOG_NAME = f"{UID}_logfile.ini"
START_ERROR = (
    "Error encountered while processing the acquisition log in"
    " start-acquisition request: "
)


@attrs.frozen
class Daemon:
    """A running daemon and where it keeps things."""

    http: int
    tcp: int
    directory: Path
    config: Config


@pytest.fixture
def daemon(tmp_path: Path, engine_config: Config) -> Iterator[Daemon]:
    """A daemon on an initialised database with a file store."""
    cfg = write_config(
        tmp_path, engine_config, JFS_MAPPING={"PING": "FAFB", "FAFB_00": "FAFB"}
    )
    assert run_tool(["--config", str(cfg), "db-init"], tmp_path).returncode == 0
    http_port, tcp_port = ports()
    with running(twistd_argv(cfg, http_port, tcp_port), tmp_path, http_port):
        yield Daemon(http_port, tcp_port, tmp_path, engine_config)


def _log(values: dict[str, str] | None = None, catcher: str = "") -> str:
    """The fixture log with ``Key = value`` lines replaced and an [ImageCatcher] section."""
    text = (FIXTURES / "123_logfile.ini").read_bytes().decode("utf-8")
    for key, value in (values or {}).items():
        text, n = re.subn(
            rf"^{re.escape(key)} = .*?$", f"{key} = {value}", text, count=1, flags=re.M
        )
        assert n == 1 and "\r" not in value, key
    text += "\r\n"  # the fixture's last line has no line end
    return text + (f"[ImageCatcher]\r\n{catcher}\r\n" if catcher else "")


def _start(d: Daemon, text: str, name: str = LOG_NAME) -> tuple[int, Any]:
    return post_form(
        d.http,
        "/service/v1/start-acquisition",
        [("acq-inilog", name, text.encode("utf-8"))],
    )


def _json(d: Daemon, method: str, path: str, body: bytes = b"") -> tuple[int, Any]:
    status, _, raw = request(d.http, method, path, body)
    return status, json.loads(raw)


def _acquisition(d: Daemon, uid: int = UID) -> dict[str, Any]:
    status, body = _json(d, "GET", f"/service/v1/acquisitions?acqid={uid}")
    assert status == 200 and body["length"] == 1, body
    acquisition: dict[str, Any] = body["acquisitions"][0]
    return acquisition


def _put_tile(d: Daemon, name: str, data: bytes) -> tuple[int, Any]:
    status, _, raw = request(
        d.http,
        "PUT",
        f"/service/v1/capture-image-content/{UID}?tile-filename={quote(name)}",
        data,
        {"Content-Type": "application/octet-stream"},
    )
    return status, json.loads(raw)


# The acquisition log (ini_files_denorm)

TEXTS = [  # (INI key, its line, column width, the /acquisitions key)
    ("Sample name", "General", 255, "SampleName"),
    ("Microscopist name", "General", 50, "MicroscopistName"),
    ("project", "ImageCatcher", 80, "ProjectName"),
    ("owner", "ImageCatcher", 80, "ProjectOwner"),
    ("stack", "ImageCatcher", 80, "StackName"),
    ("mosaicType", "ImageCatcher", 32, "MosaicType"),
]


def _log_with(texts: dict[str, str]) -> str:
    general = {k: f'"{v}"' for k, v in texts.items() if k[0].isupper()}
    catcher = "\r\n".join(f'{k} = "{v}"' for k, v in texts.items() if k[0].islower())
    return _log(general, catcher)


def test_log_texts_at_their_widths_are_stored_whole(daemon: Daemon) -> None:
    """Each INI text exactly as long as its column is stored and read back whole."""
    texts = {
        key: (f"FAFB00_{key}_é" + "x" * width)[:width] for key, _, width, _ in TEXTS
    }
    status, body = _start(daemon, _log_with(texts))
    assert (status, body) == (200, {"uid": UID})
    acquisition = _acquisition(daemon)
    for key, _, width, json_key in TEXTS:
        assert acquisition[json_key] == texts[key] and len(texts[key]) == width


def test_log_texts_over_their_widths_are_400_naming_the_key(daemon: Daemon) -> None:
    """One character more in any INI text is a 400 naming the key; nothing is stored."""
    for key, section, width, _ in TEXTS:
        status, body = _start(daemon, _log_with({key: "é" * (width + 1)}))
        assert status == 400, body
        assert body["errormessage"] == (
            f"{START_ERROR}[{section}] {key} is too long:"
            f" {width + 1} characters, at most {width} fit"
        )
    assert scalar(daemon.config, "SELECT COUNT(*) FROM ini_files_denorm") == 0


def _log_of_bytes(size: int) -> str:
    text = _log() + "; padding "
    pad = size - len(text.encode("utf-8"))
    return text + "é" * (pad // 2) + "x" * (pad % 2)


def test_log_of_65535_bytes_is_stored_whole(daemon: Daemon) -> None:
    """A log of 65,535 UTF-8 bytes fills the TEXT column; one byte more is a 400."""
    status, body = _start(daemon, _log_of_bytes(65_536))
    assert status == 400 and body["errormessage"] == (
        f"{START_ERROR}acquisition log is too long: 65536 bytes in UTF-8,"
        " at most 65535 fit"
    )
    text = _log_of_bytes(65_535)
    assert _start(daemon, text) == (200, {"uid": UID})
    assert scalar(daemon.config, "SELECT ini_file FROM ini_files_denorm") == text


def test_log_numbers_at_their_ranges_are_stored(daemon: Daemon) -> None:
    """INTEGER and FLOAT values at their limits are stored and read back."""
    text = _log(
        {
            "X sm step (pix)": "2147483647",
            "Y sm step (pix)": "-2147483648",
            "Magnification": '"2147483647"',
            "Number of X steps": "1073741823",  # 4 cameras: 2**31-2 columns
            "Center X (m)": "-3.4028234663852886E38",
        }
    )
    assert _start(daemon, text) == (200, {"uid": UID})
    acquisition = _acquisition(daemon)
    assert (acquisition["XSmallStepPix"], acquisition["YSmallStepPix"]) == (
        2**31 - 1,
        -(2**31),
    )
    assert acquisition["Magnification"] == 2**31 - 1
    # Stored as the largest single; MariaDB reports FLOAT to 6 significant digits.
    assert acquisition["XCenter"] == pytest.approx(-3.4028234663852886e38, rel=1e-5)
    assert acquisition["NTargetCols"] == 2**31 - 2


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "X sm step (pix)",
            "2147483648",
            "[Mosaic Settings] X sm step (pix) is out of range: it must be from"
            " -2147483648 to 2147483647",
        ),
        (
            "Number of Y steps",
            "1073741824",
            "[Mosaic Settings] Number of Y steps (doubled for 4 cameras) is out of"
            " range: it must be from -1073741824 to 1073741823",
        ),
        (
            "Center Y (m)",
            "3.5E38",
            "[Mosaic Settings] Center Y (m) is out of range: at most"
            " 3.4028234663852886e+38 in magnitude",
        ),
    ],
)
def test_log_numbers_beyond_their_ranges_are_400(
    daemon: Daemon, key: str, value: str, message: str
) -> None:
    """A number its column cannot hold is a 400 naming the key, not a 500 or a 0."""
    status, body = _start(daemon, _log({key: value}))
    assert (status, body) == (400, {"errormessage": START_ERROR + message})


def test_uid_at_the_bigint_limit_is_stored(daemon: Daemon) -> None:
    """UID 2**63-1 fits ini_files_denorm.uid; 2**63 is a 400 naming the UID."""
    status, body = _start(daemon, _log(), "9223372036854775808_logfile.ini")
    assert (status, body) == (
        400,
        {
            "errormessage": f"{START_ERROR}acquisition UID 9223372036854775808 is"
            " out of range: it must be from 0 to 9223372036854775807"
        },
    )
    top = 2**63 - 1
    assert _start(daemon, _log(), f"{top}_logfile.ini") == (200, {"uid": top})
    assert _acquisition(daemon, top)["AcqUID"] == top


def test_uid_beyond_bigint_is_an_unknown_acquisition(daemon: Daemon) -> None:
    """Capturing for a UID beyond BIGINT is the unknown-acquisition 404 on both engines."""
    status, _, raw = request(
        daemon.http,
        "PUT",
        "/service/v1/capture-image-content/9223372036854775808"
        "?tile-filename=col0008_row0080_cam0.tif",
        b"tile",
        {"Content-Type": "application/octet-stream"},
    )
    assert (status, json.loads(raw)) == (
        404,
        {
            "errormessage": "No mosaic image found for acquisition id 9223372036854775808"
        },
    )
    with socket.create_connection(("127.0.0.1", daemon.tcp), timeout=30) as s:
        reply = send_tile(s, 2**64 - 1, 0, -1, 8, 80, hashlib.md5(b"t").digest(), b"t")
    assert (reply.status, reply.tile_id) == (1, 0)


# ROI spec (image_mosaic_rois, acq_time_rois)


def _create_rois(d: Daemon, spec: str) -> tuple[int, Any]:
    return post_form(
        d.http,
        f"/service/v1/create-rois/{UID}",
        [("roi-spec", f"{UID}_ROI_spec.ini", spec.encode("utf-8"))],
    )


def test_roi_names_at_their_widths_are_stored_whole(daemon: Daemon) -> None:
    """A 10-character region and a 64-character section name are stored as sent."""
    assert _start(daemon, _log())[0] == 200
    section = ("FAFB00.é" + "x" * 64)[:59] + ".5800"
    assert len(section) == 64
    spec = f'[Inclusion Section Numbers]\r\nRegion ABCDEFGHIJ = "{section}"\r\n'
    assert _create_rois(daemon, spec) == (200, {})
    assert rows(
        daemon.config,
        "SELECT r.sample_section_name, r.sample_section_id, a.acq_region_name"
        " FROM image_mosaic_rois r JOIN acq_time_rois a"
        " ON a.image_mosaic_roi_id = r.image_mosaic_roi_id",
    ) == [(section, 5800, "abcdefghij")]


def test_roi_names_over_their_widths_are_400(daemon: Daemon) -> None:
    """An 11-character region, a 65-character section or a huge number is a 400."""
    assert _start(daemon, _log())[0] == 200
    spec = (
        "[Inclusion Section Numbers]\r\n"
        'Region ABCDEFGHIJK = "5800"\r\n'
        f'Region 1 = "{"S" * 60}.5801"\r\n'
        'Region 2 = "FAFB00.2147483648"\r\n'
    )
    assert _create_rois(daemon, spec) == (
        400,
        {
            "errormessage": "Region name abcdefghijk is too long: 11 characters,"
            " at most 10 fit\nSection name of region 1 is too long: 65 characters,"
            " at most 64 fit\nError extracting the nominal section value from"
            " region: 2 (FAFB00.2147483648): the section number is out of range:"
            " it must be from -2147483648 to 2147483647"
        },
    )
    assert scalar(daemon.config, "SELECT COUNT(*) FROM image_mosaic_rois") == 0


# Calibrations (calibrations, tem_camera_configurations)


def _calibration(name: str, json_bytes: int | None = None) -> dict[str, Any]:
    """A calibration of temca 2 camera 0 whose stored JSON has ``json_bytes`` bytes."""
    element: dict[str, Any] = {
        "id": name,
        "type": "list",
        "metadata": {
            "calibration_data": "161105",
            "group": "lens correction",
            "temca": "2",
            "camera": "0",
        },
        "specList": [{"className": "mpicbg.trakem2.transform.X", "dataString": ""}],
    }
    if json_bytes is not None:
        (parsed,) = parse_calibrations(json.dumps([element]))
        overhead = len(parsed.json_config.encode("utf-8"))
        element["specList"][0]["dataString"] = "0.5 " * ((json_bytes - overhead) // 4)
        element["specList"][0]["dataString"] += "1" * ((json_bytes - overhead) % 4)
    return element


def test_calibration_at_its_limits_is_stored_whole(daemon: Daemon) -> None:
    """A 50-character id and 65,535 bytes of stored JSON are stored and read back."""
    name = "161105offset_temca2_camera0_" + "v" * 22
    element = _calibration(name, 65_535)
    body = json.dumps([element]).encode()
    status, reply = _json(daemon, "POST", "/service/v1/calibrations", body)
    assert status == 200, reply
    status, stored = _json(daemon, "GET", f"/service/v1/calibration/name/{name}")
    assert status == 200 and stored["name"] == name
    assert stored["content"]["specList"] == element["specList"]
    assert len(json.dumps(stored["content"], separators=(",", ":"))) == 65_535
    assert (
        scalar(
            daemon.config,
            "SELECT tem_camera_transformation_ref FROM tem_camera_configurations"
            " WHERE tem_camera_configuration_id = 26",
        )
        == name
    )


def test_calibration_over_its_limits_is_400(daemon: Daemon) -> None:
    """A 51-character id or 65,536 bytes of JSON is a 400 naming the record."""
    long_name = "161105offset_temca2_camera0_" + "v" * 23
    status, reply = _json(
        daemon,
        "POST",
        "/service/v1/calibrations",
        json.dumps([_calibration(long_name)]).encode(),
    )
    assert (status, reply["errormessage"]) == (
        400,
        "Record 0: calibration id '161105offset_temca2_camera0_vvvvvvvvv...'"
        " is too long: 51 characters, at most 50 fit",
    )
    big = _calibration("161105offset_temca2_camera0", 65_536)
    status, reply = _json(
        daemon, "POST", "/service/v1/calibrations", json.dumps([big]).encode()
    )
    assert (status, reply["errormessage"]) == (
        400,
        "Record 0: JSON of calibration '161105offset_temca2_camera0' is too long:"
        " 65536 bytes in UTF-8, at most 65535 fit",
    )
    assert scalar(daemon.config, "SELECT COUNT(*) FROM calibrations") == 0


def test_mask_root_at_the_limit_is_stored_and_beyond_refused(daemon: Daemon) -> None:
    """The tool stores a 255-character mask URL; 256 fails before importing anything."""
    calibration_file = daemon.directory / "161105_lens_correction.json"
    calibration_file.write_text(json.dumps([_calibration("161105_temca2_camera0")]))
    config = str(daemon.directory / "config.json")
    tail = "/temca2_cam0.png"
    too_long = "http://masks.example/" + "m" * (256 - 21 - len(tail))
    args = ["--config", config, "import-calibration", "--calibration"]
    cwd = daemon.directory
    refused = run_tool([*args, str(calibration_file), "--mask_root", too_long], cwd)
    assert refused.returncode == 1
    assert (
        "mask URL of temca 2 camera 0 is too long: 256 characters, at most 255 fit"
        in refused.stderr
    )
    assert scalar(daemon.config, "SELECT COUNT(*) FROM calibrations") == 0
    root = too_long[:-1]
    done = run_tool([*args, str(calibration_file), "--mask_root", root], cwd)
    assert done.returncode == 0, done.stderr
    assert scalar(
        daemon.config,
        "SELECT tem_camera_mask_url FROM tem_camera_configurations"
        " WHERE tem_camera_configuration_id = 26",
    ) == (root + tail)


# Stored file names (file_object_fs_replicas)


def _long_tile_name(length: int) -> str:
    name = (
        "col" + "0" * (length - len("col12_row0005_cam3.tif")) + "12_row0005_cam3.tif"
    )
    assert len(name) == length
    return name


def test_tile_names_beyond_the_limits_are_400(daemon: Daemon) -> None:
    """A 256-character tile name or a col beyond INTEGER is a 400 naming the limit."""
    assert _start(daemon, _log())[0] == 200
    assert _put_tile(daemon, f"col0012/{_long_tile_name(256)}", b"x") == (
        400,
        {
            "errormessage": "Invalid tile file name: the file name is too long:"
            " 256 characters, at most 255 fit"
        },
    )
    assert _put_tile(daemon, "col2147483648_row0005_cam3.tif", b"x") == (
        400,
        {
            "errormessage": "Invalid tile file name: col is out of range: it must be"
            " from 0 to 2147483647"
        },
    )
    assert scalar(daemon.config, "SELECT COUNT(*) FROM tem_camera_images") == 0


# Tile states (roi_images)


def test_tile_states_at_and_beyond_64_characters(daemon: Daemon) -> None:
    """States of 64 characters are stored by next-tile and tile-state; 65 is a 400."""
    assert _start(daemon, _log())[0] == 200
    status, body = post_form(
        daemon.http,
        f"/service/v1/create-rois/{UID}",
        [
            (
                "roi-spec",
                f"{UID}_ROI_spec.ini",
                (FIXTURES / "123_ROI_spec.ini").read_bytes(),
            ),
            (
                "roi-tiles",
                f"{UID}_ROI_tiles.csv",
                (FIXTURES / "123_ROI_tiles.csv").read_bytes(),
            ),
        ],
    )
    assert status == 200, body
    assert _put_tile(daemon, "col0008_row0080_cam0.tif", b"tile")[0] == 200
    claimed, settled = "RENDERING_é" + "x" * 53, "RENDERED_é" + "y" * 54
    assert len(claimed) == len(settled) == 64

    def next_tile(state: str) -> tuple[int, Any]:
        return _json(
            daemon, "POST", f"/service/v1/next-tile?acqid={UID}&newState={quote(state)}"
        )

    assert next_tile(claimed + "x") == (
        400,
        {"errormessage": "newState is longer than 64 characters"},
    )
    status, found = next_tile(claimed)
    assert status == 200 and found["resultType"] == "TILE_FOUND", found
    tile_id = found["results"][0]["tilespec"]["tileId"]

    def states() -> list[Any]:
        return [
            r[0]
            for r in rows(
                daemon.config,
                "SELECT DISTINCT current_state FROM roi_images WHERE current_state <> 'CREATE'",
            )
        ]

    assert states() == [claimed]

    def tile_state(state: str) -> tuple[int, Any]:
        body = json.dumps({"state": state, "tileSpecIds": [tile_id]}).encode()
        return _json(daemon, "PUT", "/service/v1/tile-state", body)

    assert tile_state(settled + "y") == (
        400,
        {
            "errormessage": "Invalid tile state - tile state cannot be longer than"
            " 64 characters"
        },
    )
    assert tile_state(settled) == (200, {"nUpdates": 1})
    assert states() == [settled]
