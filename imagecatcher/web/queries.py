"""Queries: projects, acquisitions and tiles (CONTRACT §1.8-§1.13, §1.16, §1.17).

Also the two tile lookups (by position, by id) that the content routes
share.
"""

from __future__ import annotations

from klein import Klein
from twisted.web.iweb import IRequest

from imagecatcher.db.repository import Repository
from imagecatcher.domain import AcquisitionFilter, BadParameter, TileFilter, TileRow
from imagecatcher.domain import NotFound as CatcherNotFound
from imagecatcher.timefmt import parse_acq_time, parse_tile_time
from imagecatcher.views import acquisition_json, grouped_tiles, tile_info
from imagecatcher.web.common import (
    MoreThanOne,
    json_response,
    paging,
    parse_bool,
    parse_int32,
    parse_int64,
    parse_uint64,
    query,
)


class Queries:
    """Read-only views of acquisitions and their tiles."""

    router = Klein()

    def __init__(self, repo: Repository) -> None:
        self._repo = repo

    @router.route("/projects", methods=["GET"])
    async def projects(self, request: IRequest) -> bytes:
        """Distinct (project, owner) pairs (§1.8, §8.4)."""
        request.setHeader(b"content-type", b"application/json")
        f = _acquisition_filter(
            request, "has-acq-from", "has-acq-to", with_states=False
        )
        limit, skip = paging(request)
        pairs = await self._repo.projects(f, limit, skip)
        items = [{"ProjectName": p, "ProjectOwner": o} for p, o in pairs]
        return json_response(request, 200, {"length": len(items), "projects": items})

    @router.route("/acquisitions", methods=["GET"])
    async def acquisitions(self, request: IRequest) -> bytes:
        """Acquisitions matching §8.3."""
        request.setHeader(b"content-type", b"application/json")
        f = _acquisition_filter(request, "acq-from", "acq-to", with_states=True)
        limit, skip = paging(request)
        rows = await self._repo.acquisitions(f, limit, skip)
        items = [acquisition_json(r) for r in rows]
        return json_response(
            request, 200, {"acquisitions": items, "length": len(items)}
        )

    @router.route("/acquisition/<acqid>/tiles", methods=["GET"])
    async def acquisition_tiles(self, request: IRequest, acqid: str) -> bytes:
        """Tiles of one acquisition, grouped (§1.12)."""
        request.setHeader(b"content-type", b"application/json")
        f = _tile_filter(request, parse_uint64("acqid", acqid), cross=False)
        limit, skip = paging(request)
        return json_response(
            request, 200, grouped_tiles(await self._repo.tiles(f, limit, skip))
        )

    @router.route("/tiles", methods=["GET"])
    async def tiles(self, request: IRequest) -> bytes:
        """Tiles across acquisitions, grouped (§1.16)."""
        request.setHeader(b"content-type", b"application/json")
        acq = query(request, "acqid")
        f = _tile_filter(request, parse_uint64("acqid", acq) if acq else 0, cross=True)
        limit, skip = paging(request)
        return json_response(
            request, 200, grouped_tiles(await self._repo.tiles(f, limit, skip))
        )

    @router.route("/acquisition/<acqid>/tile/<col>/<row>", methods=["GET"])
    async def stable_tile(
        self, request: IRequest, acqid: str, col: str, row: str
    ) -> bytes:
        """One stable, stored tile by position (§1.13)."""
        request.setHeader(b"content-type", b"application/json")
        tile = await find_stable_tile(self._repo, acqid, col, row)
        return json_response(request, 200, tile_info(tile))

    @router.route("/tile/<tileid>", methods=["GET"])
    async def tile_by_id(self, request: IRequest, tileid: str) -> bytes:
        """One tile by id, any frame, stored or not (§1.17); 404 when unknown (Q7)."""
        request.setHeader(b"content-type", b"application/json")
        return json_response(
            request, 200, tile_info(await find_tile(self._repo, tileid))
        )


async def find_stable_tile(repo: Repository, acqid: str, col: str, row: str) -> TileRow:
    """The one stable tile at (col, row) of an acquisition, from path parameters."""
    f = TileFilter(
        acq_uid=parse_uint64("acqid", acqid),
        col=parse_int32("col", col),
        row=parse_int32("row", row),
    )
    if f.acq_uid == 0 or f.col < 0 or f.row < 0:
        raise BadParameter("acqid must be positive; col and row must not be negative")
    found = await repo.tiles(f, 2, 0)
    where = f"acquisition {f.acq_uid}, col {f.col}, row {f.row}"
    if not found:
        raise CatcherNotFound(f"No tile found for {where}")
    if len(found) > 1:
        raise MoreThanOne(f"More than one frame found for {where}")
    return found[0]


async def find_tile(repo: Repository, tileid: str) -> TileRow:
    """The tile with that id, from a path parameter; NotFound when unknown."""
    tile_id = parse_int64("tileid", tileid)
    tile = await repo.tile(tile_id)
    if tile is None:
        raise CatcherNotFound(f"No tile found for tile id {tile_id}")
    return tile


def _acquisition_filter(
    request: IRequest, from_param: str, to_param: str, with_states: bool
) -> AcquisitionFilter:
    acq_from, acq_to = query(request, from_param), query(request, to_param)
    acqid = query(request, "acqid") if with_states else None
    return AcquisitionFilter(
        acq_uid=parse_uint64("acqid", acqid) if acqid else 0,
        sample=query(request, "sample"),
        project=query(request, "project"),
        owner=query(request, "owner"),
        stack=query(request, "stack"),
        mosaic_type=query(request, "mosaic-type"),
        exists_state=query(request, "exists-tile-in-state") if with_states else None,
        all_state=query(request, "all-tiles-in-state") if with_states else None,
        acq_from=parse_acq_time(from_param, acq_from) if acq_from else None,
        acq_to=parse_acq_time(to_param, acq_to) if acq_to else None,
    )


def _tile_filter(request: IRequest, acq_uid: int, cross: bool) -> TileFilter:
    def number(name: str) -> int:
        value = query(request, name)
        return parse_int32(name, value) if value else -1

    tile_from, tile_to = query(request, "tile-from"), query(request, "tile-to")
    include = query(request, "include-all")
    return TileFilter(
        acq_uid=acq_uid,
        sample=query(request, "sample") if cross else None,
        project=query(request, "project") if cross else None,
        owner=query(request, "owner") if cross else None,
        stack=query(request, "stack") if cross else None,
        mosaic_type=query(request, "mosaic-type") if cross else None,
        col=number("col"),
        row=number("row"),
        camera=number("camera"),
        state=query(request, "tile-state"),
        tile_from=parse_tile_time("tile-from", tile_from) if tile_from else None,
        tile_to=parse_tile_time("tile-to", tile_to) if tile_to else None,
        frame_type=query(request, "frame-type") or "stable",
        include_all=parse_bool("include-all", include) if include else False,
    )
