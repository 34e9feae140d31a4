"""A whole acquisition against a running daemon: HTTP, TCP, file store (§1.3-§1.7)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from imagecatcher.config import Config
from imagecatcher.protocol import PREFIX
from tests.conftest import FIXTURES
from tests.integration.daemon import ports, run_tool, running, twistd_argv, write_config
from tests.integration.dbcheck import rows, scalar
from tests.integration.httpclient import post_form, request, send_tile


@attrs.frozen
class Daemon:
    """A running daemon and where it keeps things."""

    http: int
    tcp: int
    directory: Path
    config: Config

    def stored(self, uid: int, name: str) -> bytes:
        """The bytes the file store holds for an acquisition file."""
        return (
            self.directory / "objects" / "FAFB" / "acquisitions" / str(uid) / name
        ).read_bytes()


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


def _start(d: Daemon) -> Any:
    status, body = post_form(
        d.http,
        "/service/v1/start-acquisition",
        [
            (
                "acq-inilog",
                "123_logfile.ini",
                (FIXTURES / "123_logfile.ini").read_bytes(),
            )
        ],
    )
    assert status == 200, body
    return body


def _rois(d: Daemon) -> None:
    status, body = post_form(
        d.http,
        "/service/v1/create-rois/123",
        [
            (
                "roi-spec",
                "123_ROI_spec.ini",
                (FIXTURES / "123_ROI_spec.ini").read_bytes(),
            ),
            (
                "roi-tiles",
                "123_ROI_tiles.csv",
                (FIXTURES / "123_ROI_tiles.csv").read_bytes(),
            ),
        ],
    )
    assert (status, body) == (200, {})


def _put(
    d: Daemon, name: str, data: bytes, **query: str
) -> tuple[int, dict[str, str], Any]:
    params = "&".join(f"{k}={v}" for k, v in {"tile-filename": name, **query}.items())
    status, headers, raw = request(
        d.http,
        "PUT",
        f"/service/v1/capture-image-content/123?{params}",
        data,
        {"Content-Type": "application/octet-stream"},
    )
    return status, headers, json.loads(raw)


def _link_state(d: Daemon, col: int, row: int, frame: int = -1) -> list[str]:
    return [
        r[0]
        for r in rows(
            d.config,
            "SELECT l.current_state FROM roi_images l JOIN tem_camera_images t"
            " ON t.tem_camera_image_id = l.tem_camera_image_id"
            " WHERE t.mosaic_col = %s AND t.mosaic_row = %s AND t.frame_number = %s",
            (col, row, frame),
        )
    ]


def test_start_and_rois_match_the_fixture_facts(daemon: Daemon) -> None:
    """start-acquisition answers uid 123; create-rois makes 3 ROIs, 1,748 tiles, 1,750 links."""
    assert _start(daemon) == {"uid": 123}
    _rois(daemon)
    cfg = daemon.config
    assert scalar(cfg, "SELECT temca_id FROM tem_camera_image_mosaics") == 2
    assert scalar(cfg, "SELECT COUNT(*) FROM image_mosaic_rois") == 3
    assert scalar(cfg, "SELECT COUNT(*) FROM acq_time_rois") == 3
    assert (
        scalar(cfg, "SELECT COUNT(*) FROM tem_camera_images WHERE frame_number = -1")
        == 1748
    )
    assert (
        scalar(cfg, "SELECT COUNT(*) FROM roi_images WHERE current_state = 'CREATE'")
        == 1750
    )
    _rois(daemon)  # a second import changes nothing
    assert scalar(cfg, "SELECT COUNT(*) FROM roi_images") == 1750


def test_capture_over_every_channel(daemon: Daemon) -> None:
    """Raw PUT, multipart POST and TCP, stable and drift, land with matching checksums."""
    _start(daemon)
    _rois(daemon)
    cfg = daemon.config
    data = os.urandom(300_000)
    md5 = hashlib.md5(data)
    status, headers, body = _put(
        daemon, "col0008_row0080_cam0.tif", data, checksum=md5.hexdigest()
    )
    assert status == 200, body
    assert (
        body["tile_camera"] == 0
        and body["tile_frame"] == -1
        and body["tile_temca"] == 2
    )
    assert body["tile_jfs_path"] == "/acquisitions/123/col0008_row0080_cam0.tif"
    assert body["tile_file_checksum"] == hashlib.sha1(data).hexdigest()
    assert headers["System-Status"] == "GREEN"
    assert daemon.stored(123, "col0008_row0080_cam0.tif") == data
    assert _link_state(daemon, 8, 80) == ["READY"]
    created = scalar(
        cfg,
        "SELECT tem_camera_image_id FROM tem_camera_images WHERE mosaic_col = 8"
        " AND mosaic_row = 80 AND frame_number = -1",
    )
    assert body["tile_id"] == created
    sha1, stored_md5 = rows(
        cfg,
        "SELECT f.sha1_checksum, f.md5_checksum FROM file_objects f JOIN tem_camera_images t"
        " ON t.file_object_id = f.file_object_id WHERE t.tem_camera_image_id = %s",
        (created,),
    )[0]
    assert (
        bytes(sha1) == hashlib.sha1(data).digest() and bytes(stored_md5) == md5.digest()
    )

    multi = os.urandom(1000)
    status, reply = post_form(
        daemon.http,
        "/service/v1/capture-image-content/123",
        [
            ("tile-file", "col0047/col0047_row0021_cam1.tif", multi),
            ("checksum-str", None, hashlib.md5(multi).hexdigest().encode()),
        ],
    )
    assert status == 200, reply
    assert daemon.stored(123, "col0047_row0021_cam1.tif") == multi
    assert _link_state(daemon, 47, 21) == ["READY"] * 3

    tcp_data = os.urandom(50_000)
    with socket.create_connection(("127.0.0.1", daemon.tcp), timeout=30) as s:
        stable = send_tile(
            s, 123, 2, -1, 9, 80, hashlib.md5(tcp_data).digest(), tcp_data
        )
        drift = send_tile(
            s, 123, 0, 2948, 8, 80, hashlib.md5(tcp_data).digest(), tcp_data
        )
    assert stable.status == 0 and stable.tile_id > 0
    assert drift.status == 0 and drift.tile_id not in (0, stable.tile_id)
    assert daemon.stored(123, "col0009_row0080_cam2.tif") == tcp_data
    assert daemon.stored(123, "Dump_cam0_frame002948_col0008_row0080.tif") == tcp_data
    assert _link_state(daemon, 8, 80, 2948) == [
        "READY"
    ]  # inherits the stable tile's ROI


def test_outside_every_region_has_no_link(daemon: Daemon) -> None:
    """A tile outside every region is created without ROI link or state."""
    _start(daemon)
    _rois(daemon)
    status, _, body = _put(daemon, "col0006_row0017_cam1.tif", b"tile")
    assert status == 200 and body["tile_camera"] == 1
    assert _link_state(daemon, 6, 17) == []


def test_resend_is_idempotent_and_recapture_replaces(daemon: Daemon) -> None:
    """Identical bytes keep the tile and write nothing; new bytes replace the content."""
    _start(daemon)
    _rois(daemon)
    first = _put(daemon, "col0008_row0080_cam0.tif", b"one")[2]
    path = daemon.directory / "objects/FAFB/acquisitions/123/col0008_row0080_cam0.tif"
    mtime = path.stat().st_mtime_ns
    again = _put(daemon, "col0008_row0080_cam0.tif", b"one")[2]
    assert again["tile_id"] == first["tile_id"] and path.stat().st_mtime_ns == mtime
    rows(daemon.config, "SELECT 1")  # the database is still reachable
    replaced = _put(daemon, "col0008_row0080_cam0.tif", b"two")[2]
    assert replaced["tile_id"] == first["tile_id"]
    assert daemon.stored(123, "col0008_row0080_cam0.tif") == b"two"
    assert (
        scalar(
            daemon.config,
            "SELECT COUNT(*) FROM tem_camera_images WHERE mosaic_col = 8"
            " AND mosaic_row = 80",
        )
        == 1
    )


def test_content_md5_header_is_verified(daemon: Daemon) -> None:
    """A wrong Content-MD5 is 400 and stores nothing; a right one is accepted."""
    _start(daemon)
    data = b"x" * 1000
    wrong = base64.b64encode(hashlib.md5(b"y").digest()).decode()
    status, _, raw = request(
        daemon.http,
        "PUT",
        "/service/v1/capture-image-content/123?tile-filename=col0001_row0001_cam0.tif",
        data,
        {"Content-MD5": wrong},
    )
    assert status == 400 and b"do not match" in raw
    assert scalar(daemon.config, "SELECT COUNT(*) FROM tem_camera_images") == 0
    right = base64.b64encode(hashlib.md5(data).digest()).decode()
    status, _, _ = request(
        daemon.http,
        "PUT",
        "/service/v1/capture-image-content/123?tile-filename=col0001_row0001_cam0.tif",
        data,
        {"Content-MD5": right},
    )
    assert status == 200


@pytest.mark.parametrize(
    ("name", "query", "status"),
    [
        ("col1_row2.tif", "", 400),
        ("../../etc/passwd", "", 400),
        ("col1_row2_cam0.tif'; DROP TABLE tem_camera_images; --", "", 400),
        ("xcol1_row2_cam3.tifZ", "", 400),
        ("col0001_row0002_cam0.tif", "&checksum=zz", 400),
        ("col0001_row0002_cam0.tif", "&checksum=" + "00" * 16, 400),
    ],
)
def test_bad_capture_requests(
    daemon: Daemon, name: str, query: str, status: int
) -> None:
    """Bad names, path tricks, SQL metacharacters and bad checksums are 400 and store nothing."""
    _start(daemon)
    from urllib.parse import quote

    code, headers, raw = request(
        daemon.http,
        "PUT",
        f"/service/v1/capture-image-content/123?tile-filename={quote(name)}{query}",
        b"data",
    )
    assert code == status and json.loads(raw)["errormessage"]
    assert headers["Content-Type"] == "application/json"
    assert scalar(daemon.config, "SELECT COUNT(*) FROM tem_camera_images") == 0
    assert not list((daemon.directory / "objects").rglob("*.tif"))


def test_unknown_acquisition(daemon: Daemon) -> None:
    """An unknown acquisition is 404 over HTTP and status 1 over TCP (§14)."""
    code, _, raw = request(
        daemon.http,
        "PUT",
        "/service/v1/capture-image-content/999?tile-filename=col0001_row0001_cam0.tif",
        b"x",
    )
    assert code == 404
    assert (
        json.loads(raw)["errormessage"]
        == "No mosaic image found for acquisition id 999"
    )
    with socket.create_connection(("127.0.0.1", daemon.tcp), timeout=30) as s:
        reply = send_tile(s, 999, 0, -1, 1, 1, hashlib.md5(b"x").digest(), b"x")
    assert reply.status == 1 and reply.tile_id == 0 and reply.acq_id == 999


def test_bad_tcp_frames_leave_nothing(daemon: Daemon) -> None:
    """Wrong MD5, garbage, a truncated frame and an oversized prefix leave no row or object."""
    _start(daemon)
    with socket.create_connection(("127.0.0.1", daemon.tcp), timeout=30) as s:
        assert send_tile(s, 123, 0, -1, 1, 1, b"\0" * 16, b"data").status == 1
        assert send_tile(s, 123, 0, -1, 1, 1, b"", b"data").status == 1  # no checksum
        s.sendall(PREFIX.pack(5) + b"\xff" * 5)  # garbage
        from imagecatcher.protocol import decode_response
        from tests.integration.httpclient import read_frame

        assert decode_response(read_frame(s)).status == 1
        ok = send_tile(s, 123, 0, -1, 2, 2, hashlib.md5(b"ok").digest(), b"ok")
        assert ok.status == 0  # the connection stayed usable
    with socket.create_connection(("127.0.0.1", daemon.tcp), timeout=30) as s:
        s.sendall(PREFIX.pack(1000) + b"partial")  # truncated: peer leaves mid-frame
    with socket.create_connection(("127.0.0.1", daemon.tcp), timeout=30) as s:
        s.sendall(PREFIX.pack(2**31))  # oversized
        from imagecatcher.protocol import decode_response as dr
        from tests.integration.httpclient import read_frame as rf

        assert dr(rf(s)).status == 1
        assert s.recv(1) == b""  # then closed: the frame boundary is lost
    assert scalar(daemon.config, "SELECT COUNT(*) FROM tem_camera_images") == 1
    assert [p.name for p in (daemon.directory / "objects").rglob("*.tif")] == [
        "col0002_row0002_cam0.tif"
    ]


def test_malformed_multipart(daemon: Daemon) -> None:
    """Malformed multipart bodies are 400 with a JSON message on every form route."""
    _start(daemon)
    bad = b'--xyz\r\nContent-Disposition: form-data; name="acq-inilog"\r\n\r\nno end'
    for path in (
        "/service/v1/start-acquisition",
        "/service/v1/create-rois/123",
        "/service/v1/capture-image-content/123",
        "/service/v1/end-acquisition/123",
    ):
        code, _, raw = request(
            daemon.http,
            "POST",
            path,
            bad,
            {"Content-Type": "multipart/form-data; boundary=xyz"},
        )
        assert (
            code == 400 and "malformed multipart" in json.loads(raw)["errormessage"]
        ), path


def test_end_acquisition_reports_each_file(daemon: Daemon) -> None:
    """end-acquisition stores files, reports per-file results and rejects empty ones."""
    _start(daemon)
    png = os.urandom(2000)
    status, body = post_form(
        daemon.http,
        "/service/v1/store-ancillary-files/123",
        [("ancillary-file", "123_40x168_mosaic.png", png)],
    )
    assert status == 200
    (entry,) = body["af_results"]
    assert entry["jfs_path"] == "/acquisitions/123/123_40x168_mosaic.png"
    assert entry["path"] == "123_40x168_mosaic.png" and entry["id"] > 0
    assert daemon.stored(123, "123_40x168_mosaic.png") == png
    status, body = post_form(
        daemon.http,
        "/service/v1/end-acquisition/123",
        [
            ("ancillary-file", "empty_ROI_tiles.csv", b""),
            ("ancillary-file", "../../123_mosaic.png", png),
        ],
    )
    assert status == 400
    first, second = body["af_results"]
    assert first == {
        "errormessage": "Empty content encountered for empty_ROI_tiles.csv",
        "name": "empty_ROI_tiles.csv",
    }
    assert (
        second["path"] == "123_mosaic.png"
    )  # the path trick is reduced to the base name
    assert scalar(daemon.config, "SELECT when_completed FROM ini_files_denorm") is None
    status, body = post_form(
        daemon.http,
        "/service/v1/end-acquisition/123",
        [("ancillary-file", "123_40x168_mosaic.png", png)],
    )
    assert status == 200
    assert (
        scalar(daemon.config, "SELECT when_completed FROM ini_files_denorm") is not None
    )
    assert (
        scalar(daemon.config, "SELECT COUNT(*) FROM ancillary_files") == 2
    )  # Q12: upsert


def test_calibration_routes(daemon: Daemon) -> None:
    """POST calibrations imports the fixture; GET lists; by-name finds or 404s."""
    body = (FIXTURES / "141028_lens_correction_with_offset.json").read_bytes()
    status, _, raw = request(daemon.http, "POST", "/service/v1/calibrations", body)
    reply = json.loads(raw)
    assert status == 200 and reply["length"] == 12
    assert reply["calibrations"][0]["calibration_date"] == "20141028"
    assert "Metadata" in reply["calibrations"][0]["content"]
    status, _, raw = request(
        daemon.http, "GET", "/service/v1/calibrations?offset=10&length=2"
    )
    assert [c["id"] for c in json.loads(raw)["calibrations"]] == [11, 12]
    status, _, raw = request(
        daemon.http, "GET", "/service/v1/calibration/name/141028offset_temca7_camera3"
    )
    assert status == 200 and json.loads(raw)["name"] == "141028offset_temca7_camera3"
    status, _, raw = request(daemon.http, "GET", "/service/v1/calibration/name/invalid")
    assert (status, json.loads(raw)) == (404, {})
    status, _, raw = request(daemon.http, "POST", "/service/v1/calibrations", b"[{]")
    assert status == 400
    status, _, raw = request(daemon.http, "GET", "/service/v1/calibrations?length=abc")
    assert status == 400 and "length" in json.loads(raw)["errormessage"]
