"""A large stored acquisition, inserted directly in SQL.

The acquisition itself comes from start-acquisition (so its mosaic and temca
are the daemon's own); this module adds three ROIs (sections 5800-5802 as
vertical bands of the grid) and ``count`` stable tiles on a grid, each with a
file object (SHA-1 and MD5), a replica with a non-empty ``jfs_key`` (so it
counts as stored), the camera configuration of its position in the 2x2 array,
an acquisition time, and one ``READY`` link.  Ids are assigned explicitly
above the current maxima, every table is filled with ``executemany`` batches
in one transaction, and the tables are analysed afterwards.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pymysql

SECTIONS = (5800, 5801, 5802)
BATCH = 5000
_TABLES = ("file_objects", "file_object_fs_replicas", "tem_camera_images", "roi_images")


@dataclass(frozen=True)
class Seeded:
    """The seeded grid and how long inserting it took."""

    uid: int
    tiles: int
    width: int
    seconds: float


def _one(cur: Any, sql: str, args: Sequence[Any] = ()) -> Any:
    cur.execute(sql, args)
    row = cur.fetchone()
    if row is None:
        raise RuntimeError(f"no row for {sql!r} {args!r}")
    return row[0] if len(row) == 1 else row


def _insert(cur: Any, sql: str, rows: list[tuple[Any, ...]]) -> None:
    for i in range(0, len(rows), BATCH):
        cur.executemany(sql, rows[i : i + BATCH])


def _rois(cur: Any, mosaic_id: int) -> list[int]:
    ids = []
    for region, section in enumerate(SECTIONS):
        cur.execute(
            "INSERT INTO image_mosaic_rois"
            " (tem_camera_image_mosaic_id, sample_section_id, sample_section_name)"
            " VALUES (%s, %s, %s)",
            (mosaic_id, section, str(section)),
        )
        roi_id = int(cur.lastrowid)
        cur.execute(
            "INSERT INTO acq_time_rois (tem_camera_image_mosaic_id,"
            " image_mosaic_roi_id, acq_region_name, nominal_section_number)"
            " VALUES (%s, %s, %s, %s)",
            (mosaic_id, roi_id, str(region), section),
        )
        ids.append(roi_id)
    return ids


def seed_tiles(conn: pymysql.Connection, uid: int, count: int, width: int) -> Seeded:
    """Insert ``count`` stored, READY tiles ``width`` columns wide into ``uid``."""
    start = time.perf_counter()
    conn.autocommit(False)
    try:
        with conn.cursor() as cur:
            mosaic_id, temca_id = _one(
                cur,
                "SELECT m.tem_camera_image_mosaic_id, m.temca_id"
                " FROM ini_files_denorm a JOIN tem_camera_image_mosaics m"
                " ON m.ini_file_denorm_id = a.ini_file_denorm_id WHERE a.uid = %s",
                (uid,),
            )
            cur.execute(
                "SELECT tem_camera_number, tem_camera_configuration_id"
                " FROM tem_camera_configurations WHERE temca_id = %s",
                (temca_id,),
            )
            configs = {int(n): int(i) for n, i in cur.fetchall()}
            rois = _rois(cur, mosaic_id)
            first_fo, first_rep, first_tile, first_link = (
                int(_one(cur, f"SELECT COALESCE(MAX({key}), 0) FROM {table}"))  # noqa: S608
                + 1
                for table, key in (
                    ("file_objects", "file_object_id"),
                    ("file_object_fs_replicas", "file_object_fs_replica_id"),
                    ("tem_camera_images", "tem_camera_image_id"),
                    ("roi_images", "roi_image_id"),
                )
            )
            now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
            began = now - timedelta(seconds=count * 0.04)
            objects, replicas, tiles, links = [], [], [], []
            for i in range(count):
                col, row = i % width, i // width
                camera = col % 2 + 2 * (row % 2)  # position in the 2x2 array
                name = f"col{col:04d}_row{row:04d}_cam{camera}.tif"
                path = f"/acquisitions/{uid}/{name}"
                acquired = began + timedelta(seconds=i * 0.04)
                objects.append(
                    (
                        first_fo + i,
                        hashlib.sha1(path.encode()).digest(),
                        hashlib.md5(path.encode()).digest(),
                        acquired,
                        acquired,
                    )
                )
                replicas.append(
                    (
                        first_rep + i,
                        name,
                        path,
                        path[1:],
                        f"file:///bench{path}",
                        first_fo + i,
                        acquired,
                    )
                )
                tiles.append(
                    (
                        first_tile + i,
                        mosaic_id,
                        configs.get(camera),
                        first_fo + i,
                        col,
                        row,
                        acquired,
                    )
                )
                roi = rois[col * len(rois) // width]
                links.append((first_link + i, roi, first_tile + i))
            _insert(
                cur,
                "INSERT INTO file_objects (file_object_id, sha1_checksum,"
                " md5_checksum, checksum_date, creation_date)"
                " VALUES (%s, %s, %s, %s, %s)",
                objects,
            )
            _insert(
                cur,
                "INSERT INTO file_object_fs_replicas (file_object_fs_replica_id,"
                " path, jfs_path, jfs_key, location_url, file_object_id,"
                " file_exists_yn, replica_created_date)"
                " VALUES (%s, %s, %s, %s, %s, %s, 1, %s)",
                replicas,
            )
            _insert(
                cur,
                "INSERT INTO tem_camera_images (tem_camera_image_id,"
                " tem_camera_image_mosaic_id, tem_camera_configuration_id,"
                " file_object_id, frame_number, mosaic_col, mosaic_row,"
                " acquired_timestamp) VALUES (%s, %s, %s, %s, -1, %s, %s, %s)",
                tiles,
            )
            _insert(
                cur,
                "INSERT INTO roi_images (roi_image_id, image_mosaic_roi_id,"
                " tem_camera_image_id, current_state) VALUES (%s, %s, %s, 'READY')",
                links,
            )
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.autocommit(True)
    seconds = time.perf_counter() - start
    with conn.cursor() as cur:  # current statistics, as on a long-running server
        cur.execute(f"ANALYZE TABLE {', '.join(_TABLES)}")
        cur.fetchall()
    return Seeded(uid, count, width, seconds)
