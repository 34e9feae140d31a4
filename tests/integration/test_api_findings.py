"""Regression tests for what the schema fuzzing (test_openapi_fuzz) found."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.httpclient import request
from tests.integration.test_capture import Daemon, _start, daemon

__all__ = ["daemon"]

#: A valid uint64 acqid (§1.0) that no signed BIGINT column can hold.
HUGE_UID = 2**64 - 2


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
