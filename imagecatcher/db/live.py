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
from typing import Any

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


@attrs.frozen
class MosaicTile:
    """One stable tile of a mosaic, as the page needs it."""

    tile_id: int
    col: int
    row: int
    #: The camera of its configuration, else the one in its name; None if unknown.
    camera: int | None
    #: A checksum is recorded: content was accepted (stored or spooled).
    accepted: bool
    #: The content is in the store.
    stored: bool
    #: When the content was accepted (``checksum_date``) and stored.
    received_at: datetime | None
    stored_at: datetime | None
    #: The state of its first ROI link, None when it has none.
    link_state: str | None
    section: int | None


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


_MOSAIC = (
    "SELECT a.uid, a.sample_name, a.number_of_cameras, m.target_num_cols,"
    " m.target_num_rows, a.when_acquired, a.when_completed,"
    " t.tem_camera_image_id, t.mosaic_col, t.mosaic_row, c.tem_camera_number, r.path,"
    " f.sha1_checksum IS NOT NULL,"
    " CASE WHEN r.jfs_key IS NOT NULL AND r.jfs_key <> '' THEN 1 ELSE 0 END,"
    " f.checksum_date, t.acquired_timestamp, l.roi_image_id, l.current_state,"
    " roi.sample_section_id"
    " FROM ini_files_denorm a"
    " JOIN tem_camera_image_mosaics m ON m.ini_file_denorm_id = a.ini_file_denorm_id"
    " LEFT JOIN tem_camera_images t"
    " ON t.tem_camera_image_mosaic_id = m.tem_camera_image_mosaic_id"
    " AND t.frame_number = -1"
    " LEFT JOIN file_objects f ON f.file_object_id = t.file_object_id"
    " LEFT JOIN file_object_fs_replicas r ON r.file_object_id = t.file_object_id"
    " LEFT JOIN tem_camera_configurations c"
    " ON c.tem_camera_configuration_id = t.tem_camera_configuration_id"
    " LEFT JOIN roi_images l ON l.tem_camera_image_id = t.tem_camera_image_id"
    " LEFT JOIN image_mosaic_rois roi ON roi.image_mosaic_roi_id = l.image_mosaic_roi_id"
    " WHERE a.uid = %s"
)


def _as_datetime(value: Any) -> datetime | None:
    # SQLite gives an aggregate of a DATETIME column back as text.
    if value is None or isinstance(value, datetime):
        return value
    text = value.decode() if isinstance(value, bytes) else str(value)
    return datetime.fromisoformat(text)


def _camera_of(configured: Any, name: Any) -> int | None:
    if configured is not None:
        return int(configured)
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


def mosaic_rows(cur: Cursor, uid: int) -> Mosaic | None:
    """The acquisition ``uid`` and its stable tiles (first link of each), or None."""
    cur.execute(_MOSAIC, (uid,))
    rows = cur.fetchall()
    if not rows:
        return None
    first = rows[0]
    header = MosaicHeader(
        uid=int(first[0]),
        sample=str(first[1] or ""),
        cameras=int(first[2] or 1),
        cols=int(first[3] or 0),
        rows=int(first[4] or 0),
        acquired=first[5],
        completed=first[6],
    )
    # The first mosaic of the acquisition only (as capture uses, §6.1).
    tiles: dict[int, tuple[int, MosaicTile]] = {}
    for r in rows:
        if r[7] is None:
            continue
        tile_id = int(r[7])
        link = -1 if r[16] is None else int(r[16])
        seen = tiles.get(tile_id)
        if seen is not None and (link < 0 or 0 <= seen[0] <= link):
            continue
        tiles[tile_id] = (
            link,
            MosaicTile(
                tile_id=tile_id,
                col=int(r[8]),
                row=int(r[9]),
                camera=_camera_of(r[10], r[11]),
                accepted=bool(r[12]),
                stored=bool(r[13]),
                received_at=r[14] if r[12] else None,
                stored_at=r[15],
                link_state=None if r[17] is None else str(r[17]),
                section=None if r[18] is None else int(r[18]),
            ),
        )
    return Mosaic(header, tuple(tile for _, tile in tiles.values()))


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

    async def mosaic(self, uid: int) -> Mosaic | None:
        """The page's one query: the acquisition and its stable tiles."""
        return await self._db.run_idempotent(mosaic_rows, uid)

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
