"""The SQL of the live pages: an acquisition's mosaic and the overview.

The database is the source of truth, also with several daemons on one
database: a tile's state on the page comes from its rows alone.

* no checksum recorded (a placeholder of create-rois): expected;
* checksum recorded, store key still empty: accepted and waiting in a spool
  (§4.2: spooled content is recorded with an empty key);
* key set: stored, and then the state of its first ROI link (READY, or what
  a renderer made of it: IN_PROGRESS, COMPLETE, FAILED, ...).

:func:`mosaic_rows` is the page's one query per refresh: the acquisition
(unique ``uid`` index), its mosaic, and every stable tile of that mosaic (the
mosaic's index on ``tem_camera_images``) with its content identity (primary
keys) and links (``roi_images_tile_idx``).  The overview reads one page of
acquisitions (``ix_ini_files_denorm_when_acquired``) and the tile counts of
just those mosaics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import attrs

from imagecatcher.db.dialect import Cursor
from imagecatcher.db.pool import Database


@attrs.frozen
class MosaicHeader:
    """What the page shows about the acquisition itself."""

    uid: int
    sample: str
    cameras: int
    cols: int
    rows: int
    acquired: datetime | None
    completed: datetime | None


class MosaicTile(NamedTuple):
    """One stable tile of a mosaic, as the page needs it (a tuple: there may be
    tens of thousands)."""

    tile_id: int
    col: int
    row: int
    #: The camera of its configuration, else the one in its name; None if unknown.
    camera: int | None
    #: :data:`EXPECTED`, :data:`SPOOLED` or :data:`STORED`.
    content: int
    #: The state of its first ROI link unless READY or CREATE (then None).
    render_state: str | None
    #: The section of that link's ROI; None when the tile has no link.
    section: int | None
    #: When its content was accepted, if that is recent (else None).
    received_at: datetime | None


#: ``MosaicTile.content``: no content accepted yet, accepted but waiting in a
#: spool (no store key), in the store.
EXPECTED, SPOOLED, STORED = 0, 1, 2


class StoredTile(NamedTuple):
    """A stable tile whose content is in the store, with where it is."""

    tile_id: int
    col: int
    row: int
    camera: int | None
    key: str
    url: str
    sha1: bytes | None


@attrs.frozen
class Mosaic:
    """An acquisition and its stable tiles."""

    header: MosaicHeader
    tiles: tuple[MosaicTile, ...]


@attrs.frozen
class AcquisitionSummary:
    """One line of the overview."""

    uid: int
    sample: str
    cameras: int
    acquired: datetime | None
    completed: datetime | None
    cols: int
    rows: int
    #: Stable tiles known (placeholders included), stored, waiting in a spool.
    tiles: int = 0
    stored: int = 0
    spooled: int = 0
    #: Stable tiles with an ROI link (create-rois), and with a FAILED one.
    expected: int = 0
    failed: int = 0
    #: Tiles accepted since the ``since`` time of the query; the last one's time.
    recent: int = 0
    last_received: datetime | None = None


#: The acquisition page's one query; parameters: the time since which an
#: acceptance counts as recent, and the acquisition UID (twice).  Every stable
#: tile of the mosaic is one row of small values, NULL for most (a tile with
#: a camera configuration needs no name, a READY link no state, an old tile
#: no time), because the driver's cost is per field; a tile with several ROI
#: links has a row per link.  One more row, with ``content`` -1, carries the
#: acquisition itself: grid size, cameras, sample, completion, UID, start.
MOSAIC_SQL = (
    "SELECT t.tem_camera_image_id, t.mosaic_col, t.mosaic_row, c.tem_camera_number,"
    " CASE WHEN c.tem_camera_number IS NULL THEN r.path END,"
    " CASE WHEN r.jfs_key IS NOT NULL AND r.jfs_key <> '' THEN 2"
    " WHEN f.sha1_checksum IS NOT NULL THEN 1 ELSE 0 END,"
    " CASE WHEN l.current_state IN ('READY', 'CREATE') THEN NULL"
    " ELSE l.current_state END,"
    " roi.sample_section_id,"
    # As text: the driver's DATETIME conversion costs more than the query.
    " CASE WHEN f.sha1_checksum IS NOT NULL AND f.checksum_date >= %s"
    " THEN CAST(f.checksum_date AS CHAR) END"
    " FROM ini_files_denorm a"
    " JOIN tem_camera_image_mosaics m ON m.ini_file_denorm_id = a.ini_file_denorm_id"
    " JOIN tem_camera_images t"
    " ON t.tem_camera_image_mosaic_id = m.tem_camera_image_mosaic_id"
    " AND t.frame_number = -1"
    " LEFT JOIN file_objects f ON f.file_object_id = t.file_object_id"
    " LEFT JOIN file_object_fs_replicas r ON r.file_object_id = t.file_object_id"
    " LEFT JOIN tem_camera_configurations c"
    " ON c.tem_camera_configuration_id = t.tem_camera_configuration_id"
    " LEFT JOIN roi_images l ON l.tem_camera_image_id = t.tem_camera_image_id"
    " LEFT JOIN image_mosaic_rois roi ON roi.image_mosaic_roi_id = l.image_mosaic_roi_id"
    " WHERE a.uid = %s"
    " UNION ALL"
    " SELECT NULL, m.target_num_cols, m.target_num_rows, a.number_of_cameras,"
    " a.sample_name, -1, CAST(a.when_completed AS CHAR), a.uid,"
    " CAST(a.when_acquired AS CHAR)"
    " FROM ini_files_denorm a"
    " JOIN tem_camera_image_mosaics m ON m.ini_file_denorm_id = a.ini_file_denorm_id"
    " WHERE a.uid = %s"
)

#: Which link's state a tile with several shows: the one a person must see.
_STATE_RANK = {"FAILED": 0, "IN_PROGRESS": 2, "COMPLETE": 3, None: 4}


def _as_datetime(value: Any) -> datetime | None:
    # SQLite gives an aggregate or CASE of a DATETIME column back as text.
    if value is None or isinstance(value, datetime):
        return value
    text = value.decode() if isinstance(value, bytes) else str(value)
    return datetime.fromisoformat(text)


def _camera_of(name: Any) -> int | None:
    text = str(name or "")
    at = text.rfind("_cam")
    if at < 0:
        return None
    digits = ""
    for ch in text[at + 4 :]:
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else None


def mosaic_rows(cur: Cursor, uid: int, since: datetime) -> Mosaic | None:
    """The acquisition ``uid`` and its stable tiles, or None; acceptance times
    only of tiles accepted since ``since``."""
    cur.execute(MOSAIC_SQL, (since, uid, uid))
    header: MosaicHeader | None = None
    tiles: dict[int, MosaicTile] = {}
    for r in cur.fetchall():
        if r[5] == -1:
            if header is None:  # the first mosaic's (as capture uses)
                header = MosaicHeader(
                    uid=int(r[7]),
                    sample=str(r[4] or ""),
                    cameras=int(r[3] or 1),
                    cols=int(r[1] or 0),
                    rows=int(r[2] or 0),
                    acquired=_as_datetime(r[8]),
                    completed=_as_datetime(r[6]),
                )
            continue
        tile = MosaicTile(
            int(r[0]),
            int(r[1]),
            int(r[2]),
            int(r[3]) if r[3] is not None else _camera_of(r[4]),
            int(r[5]),
            r[6],
            None if r[7] is None else int(r[7]),
            None if r[8] is None else _as_datetime(r[8]),
        )
        seen = tiles.get(tile.tile_id)
        if seen is None or _before(tile, seen):
            tiles[tile.tile_id] = tile
    if header is None:
        return None
    return Mosaic(header, tuple(tiles.values()))


def _before(a: MosaicTile, b: MosaicTile) -> bool:
    """Whether link row ``a`` of a tile should stand for it rather than ``b``."""
    rank_a = _STATE_RANK.get(a.render_state, 1)
    rank_b = _STATE_RANK.get(b.render_state, 1)
    if rank_a != rank_b:
        return rank_a < rank_b
    if a.section is None or b.section is None:
        return b.section is None and a.section is not None
    return a.section < b.section


def stored_tiles(cur: Cursor, uid: int) -> tuple[int, int, list[StoredTile]]:
    """The grid size of ``uid`` (0, 0 when unknown) and its stored stable tiles."""
    cur.execute(
        "SELECT m.target_num_cols, m.target_num_rows FROM ini_files_denorm a"
        " JOIN tem_camera_image_mosaics m ON m.ini_file_denorm_id = a.ini_file_denorm_id"
        " WHERE a.uid = %s ORDER BY m.tem_camera_image_mosaic_id LIMIT 1",
        (uid,),
    )
    grid = cur.fetchone()
    if grid is None:
        return 0, 0, []
    cur.execute(
        "SELECT t.tem_camera_image_id, t.mosaic_col, t.mosaic_row,"
        " c.tem_camera_number, r.path, r.jfs_key, r.location_url, f.sha1_checksum"
        " FROM ini_files_denorm a"
        " JOIN tem_camera_image_mosaics m ON m.ini_file_denorm_id = a.ini_file_denorm_id"
        " JOIN tem_camera_images t"
        " ON t.tem_camera_image_mosaic_id = m.tem_camera_image_mosaic_id"
        " AND t.frame_number = -1"
        " JOIN file_objects f ON f.file_object_id = t.file_object_id"
        " JOIN file_object_fs_replicas r ON r.file_object_id = t.file_object_id"
        " LEFT JOIN tem_camera_configurations c"
        " ON c.tem_camera_configuration_id = t.tem_camera_configuration_id"
        " WHERE a.uid = %s AND r.jfs_key IS NOT NULL AND r.jfs_key <> ''",
        (uid,),
    )
    tiles = [
        StoredTile(
            int(r[0]),
            int(r[1]),
            int(r[2]),
            int(r[3]) if r[3] is not None else _camera_of(r[4]),
            str(r[5]),
            str(r[6] or ""),
            None if r[7] is None else bytes(r[7]),
        )
        for r in cur.fetchall()
    ]
    return int(grid[0] or 0), int(grid[1] or 0), tiles


def _acquisition_page(
    cur: Cursor, limit: int, offset: int
) -> tuple[int, list[tuple[int, AcquisitionSummary]]]:
    cur.execute("SELECT COUNT(*) FROM ini_files_denorm")
    total = int(cur.fetchone()[0])
    cur.execute(
        "SELECT a.uid, a.sample_name, a.number_of_cameras, a.when_acquired,"
        " a.when_completed, m.tem_camera_image_mosaic_id, m.target_num_cols,"
        " m.target_num_rows FROM ini_files_denorm a"
        " JOIN tem_camera_image_mosaics m ON m.ini_file_denorm_id = a.ini_file_denorm_id"
        " ORDER BY a.when_acquired DESC, a.uid DESC LIMIT %s OFFSET %s",
        (limit, offset),
    )
    page: list[tuple[int, AcquisitionSummary]] = []
    seen: set[int] = set()
    for r in cur.fetchall():
        if int(r[0]) in seen:
            continue  # a second mosaic of one acquisition: capture uses the first
        seen.add(int(r[0]))
        page.append(
            (
                int(r[5]),
                AcquisitionSummary(
                    uid=int(r[0]),
                    sample=str(r[1] or ""),
                    cameras=int(r[2] or 1),
                    acquired=r[3],
                    completed=r[4],
                    cols=int(r[6] or 0),
                    rows=int(r[7] or 0),
                ),
            )
        )
    return total, page


_COUNTS = (
    "SELECT t.tem_camera_image_mosaic_id, COUNT(*),"
    " SUM(CASE WHEN r.jfs_key IS NOT NULL AND r.jfs_key <> '' THEN 1 ELSE 0 END),"
    " SUM(CASE WHEN (r.jfs_key IS NULL OR r.jfs_key = '')"
    " AND f.sha1_checksum IS NOT NULL THEN 1 ELSE 0 END),"
    " SUM(CASE WHEN EXISTS (SELECT 1 FROM roi_images l"
    " WHERE l.tem_camera_image_id = t.tem_camera_image_id) THEN 1 ELSE 0 END),"
    " SUM(CASE WHEN EXISTS (SELECT 1 FROM roi_images l"
    " WHERE l.tem_camera_image_id = t.tem_camera_image_id"
    " AND l.current_state = 'FAILED') THEN 1 ELSE 0 END),"
    " SUM(CASE WHEN f.sha1_checksum IS NOT NULL AND f.checksum_date >= %s"
    " THEN 1 ELSE 0 END),"
    " MAX(CASE WHEN f.sha1_checksum IS NOT NULL THEN f.checksum_date END)"
    " FROM tem_camera_images t"
    " JOIN file_objects f ON f.file_object_id = t.file_object_id"
    " LEFT JOIN file_object_fs_replicas r ON r.file_object_id = t.file_object_id"
    " WHERE t.frame_number = -1 AND t.tem_camera_image_mosaic_id IN ({marks})"
    " GROUP BY t.tem_camera_image_mosaic_id"
)


def acquisition_overview(
    cur: Cursor,
    limit: int,
    offset: int,
    since: datetime,
    known: Mapping[int, AcquisitionSummary],
) -> tuple[int, list[AcquisitionSummary]]:
    """How many acquisitions there are, and one page of them, newest first,
    with the tile counts of their mosaics (``recent``: accepted since ``since``).

    ``known`` holds counts the caller already has, by UID (of ended
    acquisitions, recently counted): those mosaics are not counted again.
    """
    total, page = _acquisition_page(cur, limit, offset)
    # An acquisition started again since (no longer ended) is counted afresh.
    fresh = {s.uid for _, s in page if s.uid in known and s.completed is not None}
    mosaics = [m for m, s in page if s.uid not in fresh]
    counts: dict[int, Any] = {}
    if mosaics:
        marks = ", ".join(["%s"] * len(mosaics))
        cur.execute(_COUNTS.format(marks=marks), (since, *mosaics))
        counts = {int(r[0]): r for r in cur.fetchall()}
    out: list[AcquisitionSummary] = []
    for mosaic_id, summary in page:
        if summary.uid in fresh:
            out.append(attrs.evolve(known[summary.uid], completed=summary.completed))
            continue
        r = counts.get(mosaic_id)
        if r is not None:
            summary = attrs.evolve(
                summary,
                tiles=int(r[1] or 0),
                stored=int(r[2] or 0),
                spooled=int(r[3] or 0),
                expected=int(r[4] or 0),
                failed=int(r[5] or 0),
                recent=int(r[6] or 0),
                last_received=_as_datetime(r[7]),
            )
        out.append(summary)
    return total, out


class LiveQueries:
    """The live pages' reads, each one interaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def mosaic(self, uid: int, since: datetime) -> Mosaic | None:
        """The page's one query: the acquisition and its stable tiles."""
        return await self._db.run_idempotent(mosaic_rows, uid, since)

    async def stored(self, uid: int) -> tuple[int, int, list[StoredTile]]:
        """The grid size and the stored stable tiles (for the mosaic image)."""
        return await self._db.run_idempotent(stored_tiles, uid)

    async def overview(
        self,
        limit: int,
        offset: int,
        since: datetime,
        known: Mapping[int, AcquisitionSummary] | None = None,
    ) -> tuple[int, Sequence[AcquisitionSummary]]:
        """A page of acquisitions, newest first, with their tile counts."""
        return await self._db.run_idempotent(
            acquisition_overview, limit, offset, since, dict(known or {})
        )
