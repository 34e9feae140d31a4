"""The JSON and PNG routes behind the live pages (see :mod:`imagecatcher.web.pages`).

* ``GET /live/acquisitions``: the overview, a page of acquisitions, newest first;
* ``GET /acquisition/<acqid>/live``: one acquisition's mosaic, every stable
  tile with its state, in one compact document built from one query;
* ``GET /tile/<tileid>/preview?size=N``: a tile downsampled to a PNG;
* ``GET /acquisition/<acqid>/mosaic.png?camera=K&scale=S``: the mosaic at
  low resolution, tile previews placed by col/row.

Building the documents (tens of thousands of tiles) and the images happens
on the thread pool, never on the reactor; each document is reused for
:data:`SNAPSHOT_SECONDS`, so any number of open pages cost one query per
acquisition and refresh.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from klein import Klein
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest

from imagecatcher.db.live import (
    EXPECTED,
    SPOOLED,
    AcquisitionSummary,
    LiveQueries,
    Mosaic,
    MosaicTile,
    StoredTile,
)
from imagecatcher.db.repository import Repository
from imagecatcher.domain import BadParameter
from imagecatcher.domain import NotFound as CatcherNotFound
from imagecatcher.previews import (
    DEFAULT_SCALE,
    DEFAULT_SIZE,
    Cell,
    NotAnImage,
    Previewer,
    cell_pixels,
    check_scale,
    check_size,
    compose_mosaic,
    render_preview,
)
from imagecatcher.storage import ContentStore, StoredObject, StoreError
from imagecatcher.timefmt import rfc3339
from imagecatcher.web.common import (
    json_response,
    parse_int32,
    parse_uint64,
    query,
    sized,
)
from imagecatcher.web.queries import find_tile

#: Seconds a built document is served again instead of querying anew.
SNAPSHOT_SECONDS = 1.0
#: Seconds of the "current rate" and minutes of the rate history.
RATE_SECONDS = 60
RATE_MINUTES = 10
#: Tiles of a mosaic image rendered per request at most; the others are
#: drawn grey until a later request (the ``X-Mosaic-Pending`` header says how many).
MOSAIC_RENDERS_PER_REQUEST = 16
#: Seconds the overview reuses the tile counts of an ended acquisition (its
#: spool may still drain and renders change states, but slowly).
ENDED_COUNTS_SECONDS = 300.0
#: Acquisitions per overview page: default and most.
OVERVIEW_LENGTH, OVERVIEW_MAX = 25, 200

#: Tile states as the page colours them, in legend order; a render state not
#: listed here is added after them.
STATES: tuple[str, ...] = (
    "expected",
    "spooled",
    "stored",
    "IN_PROGRESS",
    "COMPLETE",
    "FAILED",
)
#: Link states that mean nothing more than "stored".
_STORED_STATES = frozenset({"READY", "CREATE"})
#: The fields of each tile in the ``tiles`` array, in order.
TILE_FIELDS = ("id", "col", "row", "camera", "state", "section")


def tile_state(tile: MosaicTile) -> str:
    """The page's state of a tile (see :mod:`imagecatcher.db.live`)."""
    if tile.content == EXPECTED:
        return "expected"
    if tile.content == SPOOLED:
        return "spooled"
    if tile.render_state is None or tile.render_state in _STORED_STATES:
        return "stored"
    return tile.render_state


def _naive_utc(clock: IReactorTime) -> datetime:
    return datetime.fromtimestamp(clock.seconds(), UTC).replace(tzinfo=None)


def since(now: datetime) -> datetime:
    """The oldest acceptance the page's document gives a time (and a rate) for;
    the last tile is only named when it came after that."""
    return now - timedelta(minutes=RATE_MINUTES)


def mosaic_document(mosaic: Mosaic, now: datetime) -> dict[str, Any]:
    """The acquisition page's document (blocking for big mosaics: run it in a thread)."""
    # A plain loop over tuples: this runs for every tile of every refresh.
    states = list(STATES)
    index = {name: i for i, name in enumerate(states)}
    by_content: dict[tuple[int, str | None], int] = {}
    sections: dict[int, int] = {}
    tally = [0] * len(states)
    flat: list[int] = []
    add = flat.extend
    per_minute = [0] * RATE_MINUTES
    recent = 0
    last: MosaicTile | None = None
    last_at: datetime | None = None
    cols, rows = mosaic.header.cols, mosaic.header.rows
    outside_roi = 0
    for tile in mosaic.tiles:
        tile_id, col, row, camera, content, render, section, at = tile
        i = by_content.get((content, render))
        if i is None:
            state = tile_state(tile)
            i = index.get(state, -1)
            if i < 0:
                i = index[state] = len(states)
                states.append(state)
                tally.append(0)
            by_content[(content, render)] = i
        tally[i] += 1
        if section is None:
            s = -1
            outside_roi += 1
        else:
            s = sections.get(section, -1)
            if s < 0:
                s = sections[section] = len(sections)
        add((tile_id, col, row, -1 if camera is None else camera, i, s))
        if col >= cols:
            cols = col + 1
        if row >= rows:
            rows = row + 1
        if at is not None:  # only recent ones: see since()
            age = (now - at).total_seconds()
            if age < RATE_SECONDS:
                recent += 1
            minute = int(age // 60)
            if 0 <= minute < RATE_MINUTES:
                per_minute[RATE_MINUTES - 1 - minute] += 1
            if last_at is None or at > last_at:
                last, last_at = tile, at
    counts = dict(zip(states, tally, strict=True))
    h = mosaic.header
    return {
        "acqid": h.uid,
        "sample": h.sample,
        "cameras": h.cameras,
        "cols": cols,
        "rows": rows,
        "started": rfc3339(h.acquired),
        "completed": rfc3339(h.completed),
        "now": rfc3339(now),
        "has_rois": bool(sections),
        "states": states,
        "sections": list(sections),
        "counts": counts,
        "tiles_total": len(mosaic.tiles),
        "outside_roi": outside_roi,
        "rate": {
            "seconds": RATE_SECONDS,
            "tiles_per_second": recent / RATE_SECONDS,
            "per_minute": per_minute,
        },
        "last": None
        if last is None
        else {
            "id": last.tile_id,
            "col": last.col,
            "row": last.row,
            "camera": last.camera,
            "received": rfc3339(last.received_at),
        },
        "tile_fields": list(TILE_FIELDS),
        "tiles": flat,
    }


def summary_json(s: AcquisitionSummary) -> dict[str, Any]:
    """One acquisition of the overview."""
    grid = s.cols * s.rows
    return {
        "acqid": s.uid,
        "sample": s.sample,
        "started": rfc3339(s.acquired),
        "completed": rfc3339(s.completed),
        "ended": s.completed is not None,
        "cameras": s.cameras,
        "stored": s.stored,
        "expected": s.expected if s.expected else grid,
        "expected_from": "rois" if s.expected else "grid",
        "spooled": s.spooled,
        "failed": s.failed,
        "tiles_per_second": s.recent / RATE_SECONDS,
        "last_received": rfc3339(s.last_received),
    }


def _encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def _build_page(mosaic: Mosaic, now: datetime) -> bytes:
    return _encode(mosaic_document(mosaic, now))


@attrs.define
class _Snapshots:
    """Built documents by key, each reused for ``ttl`` seconds."""

    clock: IReactorTime
    ttl: float
    entries: dict[Any, tuple[float, bytes]] = attrs.Factory(dict)

    def get(self, key: Any) -> bytes | None:
        hit = self.entries.get(key)
        if hit is None or self.clock.seconds() - hit[0] >= self.ttl:
            return None
        return hit[1]

    def put(self, key: Any, body: bytes) -> None:
        if len(self.entries) > 256:
            self.entries.clear()
        self.entries[key] = (self.clock.seconds(), body)


class Live:
    """The live pages' JSON and images."""

    router = Klein()

    def __init__(
        self,
        live: LiveQueries,
        repo: Repository,
        store: ContentStore,
        clock: IReactorTime,
        previewer: Previewer,
    ) -> None:
        self._live = live
        self._repo = repo
        self._store = store
        self._clock = clock
        self._previews = previewer
        self._snapshots = _Snapshots(clock, SNAPSHOT_SECONDS)
        #: Counts of ended acquisitions, by UID, with when they were made.
        self._ended: dict[int, tuple[float, AcquisitionSummary]] = {}

    @router.route("/live/acquisitions", methods=["GET"])
    async def overview(self, request: IRequest) -> bytes:
        """Recent acquisitions first, with their tile counts and rates."""
        request.setHeader(b"content-type", b"application/json")
        offset = parse_int32("offset", query(request, "offset") or "0")
        length = parse_int32("length", query(request, "length") or str(OVERVIEW_LENGTH))
        if offset < 0 or not 1 <= length <= OVERVIEW_MAX:
            raise BadParameter(
                f"offset must be >= 0 and length between 1 and {OVERVIEW_MAX}"
            )
        key = ("overview", offset, length)
        body = self._snapshots.get(key)
        if body is None:
            now = _naive_utc(self._clock)
            since = now - timedelta(seconds=RATE_SECONDS)
            now_s = self._clock.seconds()
            known = {
                uid: summary
                for uid, (at, summary) in self._ended.items()
                if now_s - at < ENDED_COUNTS_SECONDS
            }
            total, page = await self._live.overview(length, offset, since, known)
            if len(self._ended) > 4 * OVERVIEW_MAX:
                self._ended.clear()
            for s in page:
                if s.completed is not None and s.uid not in known:
                    self._ended[s.uid] = (now_s, s)
            document = {
                "total": total,
                "offset": offset,
                "length": length,
                "now": rfc3339(now),
                "acquisitions": [summary_json(s) for s in page],
            }
            body = _encode(document)
            self._snapshots.put(key, body)
        return _json_bytes(request, body)

    async def _mosaic(self, acqid: str, now: datetime) -> Mosaic:
        uid = parse_uint64("acqid", acqid)
        mosaic = await self._live.mosaic(uid, since(now)) if uid < 2**63 else None
        if mosaic is None:
            raise CatcherNotFound(f"No acquisition found for {uid}")
        return mosaic

    @router.route("/acquisition/<acqid>/live", methods=["GET"])
    async def acquisition(self, request: IRequest, acqid: str) -> bytes:
        """The mosaic of one acquisition: every stable tile and its state."""
        request.setHeader(b"content-type", b"application/json")
        key = ("mosaic", acqid)
        body = self._snapshots.get(key)
        if body is None:
            now = _naive_utc(self._clock)
            mosaic = await self._mosaic(acqid, now)
            body = await self._previews.run(_build_page, mosaic, now)
            self._snapshots.put(key, body)
        return _json_bytes(request, body)

    @router.route("/tile/<tileid>/preview", methods=["GET"])
    async def preview(self, request: IRequest, tileid: str) -> bytes:
        """A tile downsampled to a PNG of at most ``size`` pixels a side."""
        request.setHeader(b"content-type", b"application/json")
        size = check_size(
            parse_int32("size", query(request, "size") or str(DEFAULT_SIZE))
        )
        tile = await find_tile(self._repo, tileid)
        if not tile.persisted:
            raise CatcherNotFound(
                f"Tile metadata found but no content found for tile {tile.tile_id}"
            )
        obj = StoredObject(tile.jfs_key, tile.location_url)
        key = ("preview", tile.tile_id, tile.jfs_key, tile.sha1, size)
        try:
            image = await self._previews.cached(
                key,
                lambda: self._store.get(obj),
                lambda data: render_preview(data, size),
            )
        except NotAnImage as e:
            return json_response(request, 415, {"errormessage": str(e)})
        return _png(request, image)

    @router.route("/acquisition/<acqid>/mosaic.png", methods=["GET"])
    async def mosaic_png(self, request: IRequest, acqid: str) -> bytes:
        """The mosaic at ``scale`` pixels per tile, of one camera or all."""
        request.setHeader(b"content-type", b"application/json")
        camera_arg = query(request, "camera")
        camera = None if camera_arg is None else parse_int32("camera", camera_arg)
        scale = parse_int32("scale", query(request, "scale") or str(DEFAULT_SCALE))
        uid = parse_uint64("acqid", acqid)
        cols, rows, stored = await self._live.stored(uid) if uid < 2**63 else (0, 0, [])
        if not (cols or rows or stored):
            raise CatcherNotFound(f"No acquisition found for {uid}")
        cols = max([cols, *(t.col + 1 for t in stored)])
        rows = max([rows, *(t.row + 1 for t in stored)])
        check_scale(scale, cols, rows)
        tiles = [t for t in stored if camera is None or t.camera == camera]
        cells, pending = await self._cells(tiles, scale)
        image = await self._previews.compose(
            lambda: compose_mosaic(cols, rows, scale, cells)
        )
        request.setHeader(b"x-mosaic-pending", str(pending).encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        return _png(request, image)

    async def _cells(
        self, tiles: Sequence[StoredTile], scale: int
    ) -> tuple[list[Cell], int]:
        cells: list[Cell] = []
        budget, pending = MOSAIC_RENDERS_PER_REQUEST, 0
        for t in tiles:
            key = ("cell", t.tile_id, t.key, t.sha1, scale)
            pixels = self._previews.cache.get(key)
            if pixels is None and budget > 0:
                budget -= 1
                pixels = await self._cell(t, key, scale)
            elif pixels is None:
                pending += 1
            cells.append(Cell(t.col, t.row, pixels))
        return cells, pending

    async def _cell(self, t: StoredTile, key: Any, scale: int) -> bytes | None:
        obj = StoredObject(t.key, t.url)
        work: Callable[[bytes], bytes] = lambda data: cell_pixels(data, scale)  # noqa: E731
        try:
            return await self._previews.cached(key, lambda: self._store.get(obj), work)
        except (NotAnImage, StoreError):
            return None  # drawn grey


def _json_bytes(request: IRequest, body: bytes) -> bytes:
    request.setResponseCode(200)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return sized(request, body)


def _png(request: IRequest, image: bytes) -> bytes:
    request.setResponseCode(200)
    request.setHeader(b"content-type", b"image/png")
    return sized(request, image)
