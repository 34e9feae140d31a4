"""Query, content and render routes against a running daemon (§1.8-§1.18, §9)."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any
from urllib.parse import quote

from tests.conftest import FIXTURES
from tests.integration.dbcheck import scalar
from tests.integration.httpclient import request
from tests.integration.test_capture import Daemon, _put, _rois, _start, daemon

__all__ = ["daemon"]


def _get(d: Daemon, path: str) -> tuple[int, Any]:
    status, _, raw = request(d.http, "GET", path)
    return status, json.loads(raw) if raw else None


def _setup(d: Daemon) -> dict[tuple[int, int], bytes]:
    _start(d)
    _rois(d)
    tiles = {}
    for col, row in ((8, 80), (47, 21), (6, 17)):
        data = os.urandom(1000 + col)
        name = f"col{col:04d}_row{row:04d}_cam0.tif"
        assert _put(d, name, data)[0] == 200
        tiles[(col, row)] = data
    return tiles


def test_acquisitions_and_projects(daemon: Daemon) -> None:
    """acquisitions filters by id and tile state; keys are the contract's."""
    _setup(daemon)
    status, body = _get(daemon, "/service/v1/acquisitions?acqid=123")
    assert status == 200 and body["length"] == 1
    acq = body["acquisitions"][0]
    assert acq["AcqUID"] == 123 and acq["SampleName"] == "FAFB_00"
    assert acq["Acquired"] == "2015-03-04T10:46:49Z" and acq["Completed"] is None
    assert acq["NumberOfCameras"] == 4 and acq["PixPerUm"] == 242
    assert (
        _get(daemon, "/service/v1/acquisitions?exists-tile-in-state=READY")[1]["length"]
        == 1
    )
    assert (
        _get(daemon, "/service/v1/acquisitions?all-tiles-in-state=CREATE")[1]["length"]
        == 0
    )
    assert _get(daemon, "/service/v1/acquisitions?acq-from=20150305")[1]["length"] == 0
    evil = quote("FAFB_00' OR '1'='1")
    assert _get(daemon, f"/service/v1/acquisitions?sample={evil}")[1]["length"] == 0
    status, body = _get(daemon, "/service/v1/projects")
    assert status == 200 and body == {
        "length": 1,
        "projects": [{"ProjectName": "", "ProjectOwner": ""}],
    }


def test_tile_lists_and_lookups(daemon: Daemon) -> None:
    """Tile lists group by acquisition; a tile in three ROIs is listed once (Q9)."""
    _setup(daemon)
    status, body = _get(daemon, "/service/v1/acquisition/123/tiles")
    assert status == 200 and body["n_returned_tiles_for_all_acqs"] == 3
    assert body["acquisitions"][0]["acq_id"] == 123
    status, body = _get(daemon, "/service/v1/tiles?sample=FAFB_00&tile-state=READY")
    assert body["n_returned_tiles_for_all_acqs"] == 2  # (6,17) has no ROI
    status, info = _get(daemon, "/service/v1/acquisition/123/tile/47/21")
    assert status == 200 and info["state"] == "READY" and info["tile_temca"] == 2
    status, info = _get(daemon, "/service/v1/acquisition/123/tile/6/17")
    assert status == 200 and info["state"] == "" and info["section"] == 0
    status, body = _get(daemon, "/service/v1/acquisition/123/tile/1/1")
    assert status == 404 and body["errormessage"]
    status, body = _get(daemon, f"/service/v1/tile/{info['tile_id']}")
    assert status == 200 and body["tile_id"] == info["tile_id"]
    assert _get(daemon, "/service/v1/tile/99999999")[0] == 404
    first = _get(daemon, "/service/v1/acquisition/123/tiles?include-all=true")[1]
    assert first["n_returned_tiles_for_all_acqs"] == 1000  # the §8.1 cap
    rest = _get(
        daemon, "/service/v1/acquisition/123/tiles?include-all=true&offset=1000"
    )[1]
    assert rest["n_returned_tiles_for_all_acqs"] == 749  # 1,748 + (6,17), once each


def test_bad_query_parameters(daemon: Daemon) -> None:
    """Bad numbers, dates and booleans are 400 naming the parameter."""
    _setup(daemon)
    for path, param in (
        ("/service/v1/acquisitions?length=abc", "length"),
        ("/service/v1/acquisitions?acq-from=2015", "acq-from"),
        ("/service/v1/tiles?tile-from=yesterday", "tile-from"),
        ("/service/v1/tiles?col=x", "col"),
        ("/service/v1/tiles?include-all=maybe", "include-all"),
        ("/service/v1/acquisition/abc/tiles", "acqid"),
        ("/service/v1/tile/1x", "tileid"),
    ):
        status, body = _get(daemon, path)
        assert status == 400 and param in body["errormessage"], path


def test_content_routes(daemon: Daemon) -> None:
    """Content streams the stored bytes, honours Range and has an ETag."""
    tiles = _setup(daemon)
    data = tiles[(8, 80)]
    status, headers, raw = request(
        daemon.http, "GET", "/service/v1/acquisition/123/tile/8/80/content"
    )
    assert status == 200 and raw == data and headers["Content-Type"] == "image/tiff"
    assert headers["ETag"] == f'"{hashlib.sha1(data).hexdigest()}"'
    status, headers, raw = request(
        daemon.http,
        "GET",
        "/service/v1/acquisition/123/tile/8/80/content",
        headers={"Range": "bytes=10-19"},
    )
    assert status == 206 and raw == data[10:20]
    assert headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    info = _get(daemon, "/service/v1/acquisition/123/tile/8/80")[1]
    status, _, raw = request(
        daemon.http, "GET", f"/service/v1/tile/{info['tile_id']}/content"
    )
    assert status == 200 and raw == data
    status, headers, raw = request(daemon.http, "GET", "/service/v1/tile/99999/content")
    assert status == 404 and headers["Content-Type"].startswith("text/plain")


def test_verify_tile_reports_the_truth(daemon: Daemon) -> None:
    """verify-tile answers 200 for intact content and 417 once the bytes change (Q6)."""
    _setup(daemon)
    info = _get(daemon, "/service/v1/acquisition/123/tile/8/80")[1]
    status, body = _get(daemon, f"/service/v1/verify-tile/123/tile/{info['tile_id']}")
    assert status == 200 and body["calculated_sha1"] == info["tile_file_checksum"]
    path = daemon.directory / "objects/FAFB/acquisitions/123/col0008_row0080_cam0.tif"
    path.write_bytes(b"tampered")
    status, body = _get(daemon, f"/service/v1/verify-tile/123/tile/{info['tile_id']}")
    assert status == 417 and "does not match" in body["errormessage"]
    assert _get(daemon, "/service/v1/verify-tile/123/tile/999999")[0] == 404


def _next(d: Daemon, query: str) -> tuple[int, Any]:
    status, _, raw = request(d.http, "POST", f"/service/v1/next-tile?{query}")
    return status, json.loads(raw)


def test_next_tile_and_tile_state(daemon: Daemon) -> None:
    """The render loop: specs of §9.2, tile-state, SERVED_ALL_ACQ after the end."""
    _setup(daemon)
    body = (FIXTURES / "141028_lens_correction_with_offset.json").read_bytes()
    assert request(daemon.http, "POST", "/service/v1/calibrations", body)[0] == 200
    status, reply = _next(daemon, "acqid=123&section=5801&ntiles=1")
    assert status == 200 and reply["resultType"] == "TILE_FOUND"
    assert reply["requestedSection"] == 5801
    (result,) = reply["results"]
    spec = result["tilespec"]
    assert spec["tileId"] == "123.008.080.5801.0" and result["section"] == 5801
    assert spec["layout"]["stageX"] == -81484.05199943227
    assert spec["layout"]["stageY"] == -2453.858386829961
    assert spec["transforms"]["specList"][0]["refId"] == "141028offset_temca2_camera0"
    assert spec["mipmapLevels"]["0"]["imageUrl"].endswith(
        "?fName=/acquisitions/123/col0008_row0080_cam0.tif"
    )
    ids = [result["tilespec"]["tileId"]]
    while True:
        status, reply = _next(daemon, "acqid=123&ntiles=10")
        if reply["resultType"] != "TILE_FOUND":
            break
        ids += [r["tilespec"]["tileId"] for r in reply["results"]]
    assert reply["resultType"] == "NO_TILE_READY"  # not ended yet
    assert len(ids) == len(set(ids)) == 4  # (47,21) once per ROI; (6,17) has none
    status, _, raw = request(
        daemon.http,
        "PUT",
        "/service/v1/tile-state",
        json.dumps({"state": "COMPLETE", "tileSpecIds": ids}).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200 and json.loads(raw) == {"nUpdates": 4}
    assert (
        scalar(
            daemon.config,
            "SELECT COUNT(*) FROM roi_images WHERE current_state = 'COMPLETE'",
        )
        == 4
    )
    status, _, raw = request(
        daemon.http,
        "PUT",
        "/service/v1/tile-state",
        b'{"state":"X","tileSpecIds":["1.2.3.4.5","1"]}',
    )
    assert (
        status == 400
        and "Invalid tile spec ID format: '1'" in json.loads(raw)["errormessage"]
    )
    assert _next(daemon, "acqid=123&ntiles=0")[0] == 400


def test_served_all_after_end(daemon: Daemon) -> None:
    """After end-acquisition, serving every tile answers SERVED_ALL_ACQ."""
    _setup(daemon)
    request(daemon.http, "POST", "/service/v1/end-acquisition/123")
    while _next(daemon, "acqid=123&ntiles=100")[1]["resultType"] == "TILE_FOUND":
        pass
    assert _next(daemon, "acqid=123")[1]["resultType"] == "SERVED_ALL_ACQ"
