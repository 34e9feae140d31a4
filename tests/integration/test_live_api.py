"""The live pages' JSON and images on a running daemon, on both engines.

The fixture acquisition (1748 ROI tiles on a 108 x 152 grid) gets a few
tiles over TCP; the documents must say which are stored, which a renderer
failed, which wait in the spool while the store is down, and which are still
expected; previews and the mosaic image come from the stored bytes.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

from imagecatcher.config import Config
from imagecatcher.web.apidoc import build_document
from tests.conftest import FIXTURES
from tests.integration.httpclient import post_form, request
from tests.integration.liverig import UID, live_rig, tiff16


def _png(body: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(body))
    assert image.format == "PNG"
    return image


def test_live_documents_previews_and_mosaic(
    tmp_path: Path, engine_config: Config
) -> None:
    """Stored, failed, spooled and expected tiles are told apart from the
    database; previews and the mosaic image answer PNGs, errors JSON."""
    with live_rig(tmp_path, engine_config) as rig:
        stored = rig.cells[:5]
        failed, spooled = rig.cells[5], rig.cells[6]
        outside = (107, 0)  # not an ROI tile of the fixture
        assert outside not in rig.cells
        ids = {
            cell: rig.send(*cell, tiff16(i), camera=i % 4)
            for i, cell in enumerate([*stored, failed, outside])
        }
        not_image = rig.cells[7]
        ids[not_image] = rig.send(*not_image, b"a text file sent as a tile\n" * 50)
        rig.wait_state([*stored, failed, outside, not_image], "stored")

        doc = rig.live()
        flat = doc["tiles"]
        section = {
            (flat[i + 1], flat[i + 2]): doc["sections"][flat[i + 5]]
            for i in range(0, len(flat), 6)
            if flat[i + 5] >= 0
        }
        assert outside not in section and failed in section
        rig.set_state("FAILED", [(*failed, section[failed])])
        rig.wait_state([failed], "FAILED")

        status, headers, body = rig.get(
            f"/service/v1/tile/{ids[stored[0]]}/preview?size=64"
        )
        assert status == 200 and headers["Content-Type"] == "image/png"
        assert _png(body).size == (64, 64)
        for path, code in (
            (f"/service/v1/tile/{ids[not_image]}/preview", 415),
            (f"/service/v1/tile/{ids[stored[0]]}/preview?size=0", 400),
            (f"/service/v1/tile/{ids[stored[0]]}/preview?size=100000", 400),
            ("/service/v1/tile/999999999/preview", 404),
            ("/service/v1/acquisition/999999999999/live", 404),
            (f"/service/v1/acquisition/{UID}/mosaic.png?scale=1000", 400),
        ):
            status, headers, body = rig.get(path)
            assert status == code, (path, status, body)
            assert headers["Content-Type"] == "application/json"
            assert json.loads(body)["errormessage"]

        status, headers, body = rig.get(
            f"/service/v1/acquisition/{UID}/mosaic.png?scale=4&camera=0"
        )
        assert status == 200 and headers["X-Mosaic-Pending"] == "0"
        image = _png(body)
        assert image.size == (108 * 4, 152 * 4)

        col, row = stored[0]  # camera 0
        cell = image.crop((col * 4, row * 4, col * 4 + 4, row * 4 + 4))
        assert len(set(cell.get_flattened_data())) > 1
        col, row = stored[1]  # camera 1: not in this camera's image
        cell = image.crop((col * 4, row * 4, col * 4 + 4, row * 4 + 4))
        assert set(cell.get_flattened_data()) == {0}

        rig.store.stop()
        ids[spooled] = rig.send(*spooled, tiff16(99))
        rig.wait_state([spooled], "spooled")

        states = rig.states()
        captured = {*stored, failed, spooled, outside, not_image}
        assert {c for c, s in states.items() if s == "stored"} == {
            *stored,
            outside,
            not_image,
        }
        assert [c for c, s in states.items() if s == "FAILED"] == [failed]
        assert [c for c, s in states.items() if s == "spooled"] == [spooled]
        expected = {c for c, s in states.items() if s == "expected"}
        assert expected == set(rig.cells) - captured
        doc = rig.live()
        assert (doc["acqid"], doc["cols"], doc["rows"]) == (UID, 108, 152)
        assert doc["counts"]["stored"] == 7 and doc["counts"]["FAILED"] == 1
        assert doc["outside_roi"] == 1 and doc["has_rois"]
        assert doc["last"]["id"] == ids[spooled]
        assert doc["rate"]["per_minute"][-1] >= 1

        overview = rig.json("/service/v1/live/acquisitions")
        assert overview["total"] == 1
        (line,) = overview["acquisitions"]
        assert line["acqid"] == UID and not line["ended"]
        # Stored content, whatever a renderer made of it (the FAILED one too).
        assert (line["stored"], line["spooled"], line["failed"]) == (8, 1, 1)
        assert line["expected"] == len(rig.cells)
        assert line["expected_from"] == "rois" and line["tiles_per_second"] > 0

        # A second acquisition, ended: newest first (same start, higher UID), paged.
        other = UID + 1
        ini = (FIXTURES / "123_logfile.ini").read_bytes()
        form = [("acq-inilog", f"{other}_logfile.ini", ini)]
        assert post_form(rig.http, "/service/v1/start-acquisition", form)[0] == 200
        ended = request(rig.http, "POST", f"/service/v1/end-acquisition/{other}")
        assert ended[0] == 200, ended
        first = rig.json("/service/v1/live/acquisitions?offset=0&length=1")
        second = rig.json("/service/v1/live/acquisitions?offset=1&length=1")
        assert first["total"] == second["total"] == 2
        assert [a["acqid"] for a in first["acquisitions"]] == [other]
        assert first["acquisitions"][0]["ended"]
        assert first["acquisitions"][0]["expected_from"] == "grid"
        assert [a["acqid"] for a in second["acquisitions"]] == [UID]
        bad = rig.get("/service/v1/live/acquisitions?length=0")
        assert bad[0] == 400 and json.loads(bad[2])["errormessage"]

        status, headers, body = rig.get(f"/service/v1/tile/{ids[spooled]}/preview")
        assert status == 404 and json.loads(body)["errormessage"]

        for path, kind in (
            ("/", "text/html"),
            ("/ui/", "text/html"),
            ("/ui", "text/html"),
            (f"/ui/acquisition/{UID}", "text/html"),
            ("/ui/static/acquisition.js", "text/javascript"),
            ("/ui/static/live.css", "text/css"),
        ):
            status, headers, _ = rig.get(path)
            assert status == 200 and headers["Content-Type"].startswith(kind), path
        assert rig.get("/ui/static/nothing.js")[0] == 404


def test_openapi_fragment_names_every_live_route() -> None:
    """The assembled document describes the four live routes, errors by Error."""
    paths = build_document()["paths"]
    for path in (
        "/service/v1/live/acquisitions",
        "/service/v1/acquisition/{acqid}/live",
        "/service/v1/tile/{tileid}/preview",
        "/service/v1/acquisition/{acqid}/mosaic.png",
    ):
        responses = paths[path]["get"]["responses"]
        errors = [r for code, r in responses.items() if code >= "400"]
        assert errors and all(
            r["content"]["application/json"]["schema"]["$ref"]
            == "#/components/schemas/Error"
            for r in errors
        )
