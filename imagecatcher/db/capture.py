"""The SQL of capturing a tile: one transaction per tile (CONTRACT §4.2, §4.3).

Once a tile's bytes are durable, :func:`record_tile` finds or creates its row
(mosaic, col, row, frame), records the content (checksums, key, location),
and, when the content is in the store, stamps ``acquired_timestamp`` and makes
every link READY (a drift frame inherits the ROIs of the stable tile at its
position).  Content waiting in the spool is recorded with an empty key, so
the tile stays out of every "persisted" query until it is uploaded.

Functions here run on a pool thread with a cursor, like those of
:mod:`~imagecatcher.db.repository`, which shares its helpers with this module.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from imagecatcher.db.dialect import Cursor
from imagecatcher.domain import TileRecord

#: ``config_id`` argument meaning "not known yet: look it up".
UNKNOWN = -1


@attrs.frozen
class TileContent:
    """What a capture records about a tile and its bytes."""

    mosaic_id: int
    temca_id: int | None
    col: int
    row: int
    frame: int
    camera: int
    name: str
    path: str
    key: str
    url: str
    sha1: bytes
    md5: bytes


@attrs.frozen
class Recorded:
    """A recorded tile, the key its content had before and its configuration."""

    tile: TileRecord
    previous_key: str
    config_id: int | None


def camera_configuration_for(
    cur: Cursor, temca_id: int | None, camera: int
) -> int | None:
    """The first camera configuration of ``camera`` on that temca, or None."""
    if temca_id is None:
        return None
    cur.execute(
        "SELECT tem_camera_configuration_id FROM tem_camera_configurations"
        " WHERE temca_id = %s AND tem_camera_number = %s"
        " ORDER BY tem_camera_configuration_id LIMIT 1",
        (temca_id, camera),
    )
    row = cur.fetchone()
    return None if row is None else int(row[0])


def find_tile(
    cur: Cursor, mosaic_id: int, col: int, row: int, frame: int
) -> TileRecord | None:
    """The tile (mosaic, col, row, frame) with its content identity, or None."""
    cur.execute(
        "SELECT t.tem_camera_image_id, t.file_object_id, t.tem_camera_configuration_id,"
        " c.tem_camera_number, f.sha1_checksum, r.jfs_key"
        " FROM tem_camera_images t"
        " LEFT JOIN tem_camera_configurations c"
        " ON c.tem_camera_configuration_id = t.tem_camera_configuration_id"
        " LEFT JOIN file_objects f ON f.file_object_id = t.file_object_id"
        " LEFT JOIN file_object_fs_replicas r ON r.file_object_id = t.file_object_id"
        " WHERE t.tem_camera_image_mosaic_id = %s AND t.mosaic_col = %s"
        " AND t.mosaic_row = %s AND t.frame_number = %s"
        " ORDER BY t.tem_camera_image_id, r.file_object_fs_replica_id LIMIT 1",
        (mosaic_id, col, row, frame),
    )
    found = cur.fetchone()
    if found is None:
        return None
    return TileRecord(
        tile_id=int(found[0]),
        file_object_id=int(found[1]),
        camera_configuration_id=None if found[2] is None else int(found[2]),
        camera=None if found[3] is None else int(found[3]),
        sha1=None if found[4] is None else bytes(found[4]),
        jfs_key=found[5] or "",
    )


def record_content(
    cur: Cursor,
    file_object_id: int,
    name: str,
    path: str,
    key: str,
    url: str,
    sha1: bytes,
    md5: bytes,
    now: datetime,
) -> str:
    """Record content on an existing file object; return the key it had."""
    cur.execute(
        "SELECT jfs_key FROM file_object_fs_replicas WHERE file_object_id = %s"
        " ORDER BY file_object_fs_replica_id LIMIT 1",
        (file_object_id,),
    )
    previous = cur.fetchone()
    cur.execute(
        "UPDATE file_objects SET sha1_checksum = %s, md5_checksum = %s,"
        " checksum_date = %s WHERE file_object_id = %s",
        (sha1, md5, now, file_object_id),
    )
    cur.execute(
        "UPDATE file_object_fs_replicas SET path = %s, jfs_path = %s, jfs_key = %s,"
        " location_url = %s, file_exists_yn = %s WHERE file_object_id = %s",
        (name, path, key, url, 1 if key else 0, file_object_id),
    )
    return "" if previous is None else str(previous[0] or "")


def _insert_tile(
    cur: Cursor, c: TileContent, config_id: int | None, now: datetime
) -> TileRecord:
    cur.execute(
        "INSERT INTO file_objects (sha1_checksum, md5_checksum, checksum_date,"
        " creation_date) VALUES (%s, %s, %s, %s)",
        (c.sha1, c.md5, now, now),
    )
    file_object_id = int(cur.lastrowid or 0)
    cur.execute(
        "INSERT INTO file_object_fs_replicas (path, jfs_path, jfs_key, location_url,"
        " file_object_id, file_exists_yn, replica_created_date)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (c.name, c.path, c.key, c.url, file_object_id, 1 if c.key else 0, now),
    )
    cur.execute(
        "INSERT INTO tem_camera_images (tem_camera_image_mosaic_id,"
        " tem_camera_configuration_id, file_object_id, frame_number, mosaic_col,"
        " mosaic_row, acquired_timestamp) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            c.mosaic_id,
            config_id,
            file_object_id,
            c.frame,
            c.col,
            c.row,
            now if c.key else None,
        ),
    )
    return TileRecord(
        tile_id=int(cur.lastrowid or 0),
        file_object_id=file_object_id,
        camera_configuration_id=config_id,
        camera=None if config_id is None else c.camera,
        sha1=c.sha1,
        jfs_key=c.key,
    )


def _inherit_links(cur: Cursor, tile_id: int, c: TileContent) -> None:
    # A tile without links (a drift frame) inherits the ROIs of the tiles at
    # its position (the stable tile's).
    cur.execute(
        "INSERT INTO roi_images (image_mosaic_roi_id, tem_camera_image_id,"
        " current_state) SELECT DISTINCT l.image_mosaic_roi_id, %s, 'READY'"
        " FROM roi_images l JOIN tem_camera_images s"
        " ON s.tem_camera_image_id = l.tem_camera_image_id"
        " WHERE s.tem_camera_image_mosaic_id = %s AND s.mosaic_col = %s"
        " AND s.mosaic_row = %s AND s.tem_camera_image_id <> %s",
        (tile_id, c.mosaic_id, c.col, c.row, tile_id),
    )


def record_tile(
    cur: Cursor,
    c: TileContent,
    config_id: int | None,
    now: datetime,
    known: TileRecord | None = None,
    look_up: bool = True,
) -> Recorded:
    """Find or create the tile and record its content, in one transaction.

    ``config_id`` is the camera configuration when the caller knows it
    (cached), else :data:`UNKNOWN`.  With ``look_up`` false, ``known`` is the
    tile as the caller read it just before (None: not there yet), which saves
    the lookup; a tile created meanwhile by another daemon makes the insert
    hit the unique key, and the caller retries with ``look_up``.  A tile
    whose ``key`` is set is in the store: it is stamped and its links made
    READY (Q22: a re-capture resets them all).
    """
    if config_id == UNKNOWN:
        config_id = camera_configuration_for(cur, c.temca_id, c.camera)
    tile = find_tile(cur, c.mosaic_id, c.col, c.row, c.frame) if look_up else known
    if tile is None:
        tile = _insert_tile(cur, c, config_id, now)
        if c.key:
            _inherit_links(cur, tile.tile_id, c)
        return Recorded(tile, "", config_id)
    previous = tile.jfs_key
    cur.execute(
        "UPDATE file_objects SET sha1_checksum = %s, md5_checksum = %s,"
        " checksum_date = %s WHERE file_object_id = %s",
        (c.sha1, c.md5, now, tile.file_object_id),
    )
    cur.execute(
        "UPDATE file_object_fs_replicas SET path = %s, jfs_path = %s, jfs_key = %s,"
        " location_url = %s, file_exists_yn = %s WHERE file_object_id = %s",
        (c.name, c.path, c.key, c.url, 1 if c.key else 0, tile.file_object_id),
    )
    # A re-send names the camera that took it (Q20: the old service kept the
    # first configuration forever).
    new_config = config_id if config_id is not None else tile.camera_configuration_id
    if new_config != tile.camera_configuration_id or c.key:
        cur.execute(
            "UPDATE tem_camera_images SET tem_camera_configuration_id = %s,"
            " acquired_timestamp = COALESCE(%s, acquired_timestamp)"
            " WHERE tem_camera_image_id = %s",
            (new_config, now if c.key else None, tile.tile_id),
        )
    if new_config != tile.camera_configuration_id:
        tile = attrs.evolve(tile, camera_configuration_id=new_config, camera=c.camera)
    tile = attrs.evolve(tile, sha1=c.sha1, jfs_key=c.key)
    if not c.key:
        return Recorded(tile, previous, config_id)
    cur.execute(
        "UPDATE roi_images SET current_state = 'READY' WHERE tem_camera_image_id = %s",
        (tile.tile_id,),
    )
    if cur.rowcount <= 0:  # no link changed: are there any?
        cur.execute(
            "SELECT COUNT(*) FROM roi_images WHERE tem_camera_image_id = %s",
            (tile.tile_id,),
        )
        if int(cur.fetchone()[0]) == 0:
            _inherit_links(cur, tile.tile_id, c)
    return Recorded(tile, previous, config_id)
