"""Render work distribution: ``next-tile`` and ``tile-state`` (CONTRACT §1.22, §1.23, §9)."""

from __future__ import annotations

import uuid
from typing import Any

from klein import Klein
from twisted.web.iweb import IRequest

from imagecatcher.db.repository import Repository
from imagecatcher.domain import BadParameter, NextTileRequest
from imagecatcher.limits import TILE_STATE
from imagecatcher.metrics import Metrics
from imagecatcher.tilespec import (
    NO_TILE_READY,
    NO_TILE_READY_IN_SECTION,
    SERVED_ALL_ACQ,
    SERVED_ALL_SECTION,
    TILE_FOUND,
    parse_tile_state_body,
    tile_spec,
)
from imagecatcher.timefmt import parse_tile_time
from imagecatcher.web.common import (
    MAX_ROWS,
    json_response,
    parse_int32,
    parse_int64,
    parse_uint64,
    query,
)
from imagecatcher.web.request import request_body


class Render:
    """Hands tile specs to renderers and records what became of them."""

    router = Klein()

    def __init__(
        self,
        repo: Repository,
        lease_seconds: float,
        tiles_url_base: str,
        metrics: Metrics | None = None,
    ) -> None:
        self._repo = repo
        self._lease = lease_seconds
        self._tiles_url_base = tiles_url_base
        self._metrics = metrics

    @router.route("/next-tile", methods=["POST"])
    async def next_tile(self, request: IRequest) -> bytes:
        """Hand out tile specs and move their links to newState (§9.1)."""
        request.setHeader(b"content-type", b"application/json")
        req = _next_tile_request(request)
        batch = str(uuid.uuid1())
        specs = await self._repo.claim_tiles(req, batch, self._lease)
        body: dict[str, Any] = {"nTilesRequested": req.ntiles}
        if req.acq_uid > 0:
            body["requestedAcqId"] = req.acq_uid
        if req.section >= 0:
            body["requestedSection"] = req.section
        if specs:
            body["resultType"] = TILE_FOUND
        else:
            body["resultType"] = await self._nothing_found(req)
        body["nTilesFound"] = len(specs)
        body["results"] = [
            {
                "acqid": s.acq_uid,
                "section": s.nominal_section,
                "tilespec": tile_spec(s, self._tiles_url_base),
            }
            for s in specs
        ]
        if self._metrics is not None:
            self._metrics.next_tile(body["resultType"], len(specs))
        return json_response(request, 200, body)

    async def _nothing_found(self, req: NextTileRequest) -> str:
        in_section = req.section >= 0
        waiting = NO_TILE_READY_IN_SECTION if in_section else NO_TILE_READY
        if req.acq_uid <= 0:
            return waiting
        completed, counts = await self._repo.served_state(req)
        if completed and counts and set(counts) == {req.new_state}:
            return SERVED_ALL_SECTION if in_section else SERVED_ALL_ACQ
        return waiting

    @router.route("/tile-state", methods=["PUT"])
    async def tile_state(self, request: IRequest) -> bytes:
        """Set the state of the tiles named by tile-spec ids (§9.3)."""
        request.setHeader(b"content-type", b"application/json")
        state, ids = parse_tile_state_body(bytes(request_body(request)))
        for i in ids:
            if min(i.acq_uid, i.col, i.row, i.section) < 0:
                # Q24: a negative field used to widen the update; now refused.
                raise BadParameter(
                    f"Invalid tile spec ID {i}: fields must not be negative"
                )
        changed = await self._repo.set_tile_states(state, ids)
        return json_response(request, 200, {"nUpdates": changed})


def _next_tile_request(request: IRequest) -> NextTileRequest:
    acqid, section = query(request, "acqid"), query(request, "section")
    ntiles = parse_int32("ntiles", query(request, "ntiles") or "1")
    if ntiles <= 0:
        # Q23: the old service removed the LIMIT and moved every tile.
        raise BadParameter("Error while parsing the ntiles parameter - it must be > 0")
    tile_from, tile_to = query(request, "tile-from"), query(request, "tile-to")
    req = NextTileRequest(
        old_state=query(request, "oldState") or "READY",
        new_state=query(request, "newState") or "IN_PROGRESS",
        acq_uid=parse_uint64("acqid", acqid) if acqid else 0,
        section=parse_int64("section", section) if section else -1,
        ntiles=min(ntiles, MAX_ROWS),
        sample=query(request, "sample"),
        project=query(request, "project"),
        stack=query(request, "stack"),
        mosaic_type=query(request, "mosaic-type"),
        tile_from=parse_tile_time("tile-from", tile_from) if tile_from else None,
        tile_to=parse_tile_time("tile-to", tile_to) if tile_to else None,
        frame_type=query(request, "frame-type") or "stable",
    )
    if req.old_state == req.new_state:
        raise BadParameter("oldState and newState must differ")
    if len(req.new_state) > TILE_STATE:
        raise BadParameter(f"newState is longer than {TILE_STATE} characters")
    return req
