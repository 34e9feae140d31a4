"""Calibrations: import, list, and look up by name (CONTRACT §1.19-§1.21, §7.5)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from klein import Klein
from twisted.web.iweb import IRequest

from imagecatcher.calibrations import parse_calibrations
from imagecatcher.db.repository import Repository
from imagecatcher.web.common import json_response, paging
from imagecatcher.web.request import request_body


class Calibrations:
    """The calibrations stored in the database."""

    router = Klein()

    def __init__(self, repo: Repository) -> None:
        self._repo = repo

    @router.route("/calibrations", methods=["POST"])
    async def post_calibrations(self, request: IRequest) -> bytes:
        """Import calibrations (§1.19, §7.5); errors are reported (Q25)."""
        request.setHeader(b"content-type", b"application/json")
        calibrations = parse_calibrations(bytes(request_body(request)))
        ids = await self._repo.import_calibrations(calibrations)
        rows = [
            (cal_id, cal.name, cal.date, cal.json_config)
            for cal_id, cal in zip(ids, calibrations, strict=True)
        ]
        return _calibrations_json(request, rows)

    @router.route("/calibrations", methods=["GET"])
    async def get_calibrations(self, request: IRequest) -> bytes:
        """List calibrations (§1.20)."""
        request.setHeader(b"content-type", b"application/json")
        limit, skip = paging(request)
        return _calibrations_json(request, await self._repo.calibrations(limit, skip))

    @router.route("/calibration/name/<name>", methods=["GET"])
    async def calibration_by_name(self, request: IRequest, name: str) -> bytes:
        """The newest calibration with that name, or 404 ``{}`` (§1.21)."""
        request.setHeader(b"content-type", b"application/json")
        row = await self._repo.calibration_by_name(name)
        if row is None:
            return json_response(request, 404, {})
        return json_response(request, 200, calibration_json(row))


def _calibrations_json(
    request: IRequest, rows: Sequence[tuple[int, str, datetime | None, str]]
) -> bytes:
    items = [calibration_json(r) for r in rows]
    return json_response(request, 200, {"calibrations": items, "length": len(items)})


def calibration_json(row: tuple[int, str, datetime | None, str]) -> dict[str, Any]:
    """A calibration object of §1.19."""
    cal_id, name, date, stored = row
    entry: dict[str, Any] = {
        "id": cal_id,
        "name": name,
        "calibration_date": date.strftime("%Y%m%d") if date else "",
    }
    try:
        entry["content"] = json.loads(stored)
    except ValueError as e:
        entry["content_errormessage"] = str(e)
    return entry
