"""Regression tests for what the schema fuzzing (test_openapi_fuzz) found."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from imagecatcher.web.apidoc import build_document
from imagecatcher.web.apidoc.common import EXAMPLE_UID
from tests.conftest import FIXTURES
from tests.integration.httpclient import post_form, request
from tests.integration.test_capture import Daemon, daemon

__all__ = ["daemon"]

#: A valid uint64 acqid (§1.0) that no signed BIGINT column can hold.
HUGE_UID = 2**64 - 2


def _start(d: Daemon) -> None:
    """Register the fixture acquisition under a 12-digit UID, as a rig does."""
    log = (FIXTURES / "123_logfile.ini").read_bytes()
    status, body = post_form(
        d.http,
        "/service/v1/start-acquisition",
        [("acq-inilog", f"{EXAMPLE_UID}_logfile.ini", log)],
    )
    assert status == 200 and body == {"uid": EXAMPLE_UID}, body


def _json(d: Daemon, method: str, path: str) -> tuple[int, Any]:
    status, _, raw = request(d.http, method, path)
    return status, json.loads(raw)


def test_uid_beyond_bigint_finds_nothing(daemon: Daemon) -> None:
    """An acqid past 2**63-1 matches nothing, on SQLite too (it was a 500)."""
    _start(daemon)
    status, body = _json(daemon, "GET", f"/service/v1/acquisitions?acqid={HUGE_UID}")
    assert (status, body) == (200, {"acquisitions": [], "length": 0})
    empty = {
        "acquisitions": [],
        "n_returned_acqs": 0,
        "n_returned_tiles_for_all_acqs": 0,
    }
    assert _json(daemon, "GET", f"/service/v1/tiles?acqid={HUGE_UID}") == (200, empty)
    assert _json(daemon, "GET", f"/service/v1/acquisition/{HUGE_UID}/tiles") == (
        200,
        empty,
    )
    status, body = _json(daemon, "GET", f"/service/v1/acquisition/{HUGE_UID}/tile/1/2")
    assert status == 404 and "No tile found" in body["errormessage"]
    status, body = _json(daemon, "POST", f"/service/v1/next-tile?acqid={HUGE_UID}")
    assert status == 200 and body["resultType"] == "NO_TILE_READY"
    assert body["requestedAcqId"] == HUGE_UID and body["results"] == []


def _parameter(path: str, method: str, name: str) -> dict[str, Any]:
    operation = build_document()["paths"][path][method]
    return next(p for p in operation["parameters"] if p["name"] == name)


def test_empty_query_values_are_documented_as_absent(daemon: Daemon) -> None:
    """``?acq-to=`` is valid and ignored (§1.0); the document used to forbid it."""
    _start(daemon)
    for path in (
        "/service/v1/acquisitions?acq-to=&acqid=&length=",
        "/service/v1/projects?has-acq-to=&offset=",
        "/service/v1/tiles?tile-to=&include-all=&col=",
    ):
        status, body = _json(daemon, "GET", path)
        assert status == 200, (path, body)
    assert _json(daemon, "GET", "/service/v1/acquisitions?acq-to=")[1]["length"] == 1
    for path, name in (
        ("/service/v1/acquisitions", "acq-to"),
        ("/service/v1/projects", "has-acq-to"),
        ("/service/v1/tiles", "tile-to"),
    ):
        parameter = _parameter(path, "get", name)
        assert parameter["allowEmptyValue"] is True
        assert re.fullmatch(parameter["schema"]["pattern"], "")


def test_ntiles_below_one_is_refused_as_documented(daemon: Daemon) -> None:
    """next-tile refuses ntiles <= 0 (Q23); the document says minimum 1 (was int32)."""
    status, body = _json(daemon, "POST", "/service/v1/next-tile?ntiles=0")
    assert status == 400 and "ntiles" in body["errormessage"]
    assert (
        _parameter("/service/v1/next-tile", "post", "ntiles")["schema"]["minimum"] == 1
    )


def test_raw_capture_may_have_no_body(daemon: Daemon) -> None:
    """A raw capture without a body stores an empty tile (§1.5); the body is optional."""
    _start(daemon)
    name = "col0008_row0080_cam0.tif"
    status, _, raw = request(
        daemon.http,
        "PUT",
        f"/service/v1/capture-image-content/{EXAMPLE_UID}?tile-filename={name}",
    )
    assert status == 200, raw
    assert json.loads(raw)["tile_file_checksum"] == hashlib.sha1(b"").hexdigest()
    operation = build_document()["paths"]["/service/v1/capture-image-content/{acqid}"]
    assert operation["put"]["requestBody"]["required"] is False
