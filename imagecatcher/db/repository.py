"""Every SQL statement of the service, as ``_verb_noun(cursor, ...)`` functions.

Each function runs on a pool thread inside one transaction (see
:class:`imagecatcher.db.pool.Database`); parameters are always bound with
``%s`` placeholders, never formatted into the statement.  The public async
methods of :class:`Repository` are what the rest of the code calls.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from twisted.internet.interfaces import IReactorTime

from imagecatcher import limits
from imagecatcher.acqlog import AcquisitionLog
from imagecatcher.calibrations import Calibration, mask_url
from imagecatcher.db.batch import WriteBatcher
from imagecatcher.db.capture import (
    UNKNOWN,
    Recorded,
    TileContent,
    find_tile,
    record_content,
    record_tile,
)
from imagecatcher.db.dialect import Cursor
from imagecatcher.db.pool import Database
from imagecatcher.domain import (
    Acquisition,
    AcquisitionFilter,
    CalibrationError,
    NextTileRequest,
    TileFilter,
    TileRecord,
    TileRow,
)
from imagecatcher.rois import RoiRegion
from imagecatcher.tilespec import SpecInput, TileSpecId

# -- health -------------------------------------------------------------------


def _probe(cur: Cursor) -> bool:
    # A constant query: ping must not scan tem_camera_images (Q27).
    cur.execute("SELECT 1")
    row = cur.fetchone()
    return row is not None and int(row[0]) == 1


# -- schema and migration bookkeeping (gomigrate, §6.4) ---------------------------


def _list_tables(cur: Cursor, sql: str) -> set[str]:
    cur.execute(sql)
    return {str(row[0]) for row in cur.fetchall()}


def _run_script(cur: Cursor, statements: Sequence[str]) -> None:
    for statement in statements:
        cur.execute(statement)


def _ensure_gomigrate(cur: Cursor) -> None:
    cur.execute(
        "CREATE TABLE IF NOT EXISTS gomigrate ("
        " id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,"
        " migration_id BIGINT NOT NULL UNIQUE"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    )


def _applied_migrations(cur: Cursor) -> list[int]:
    cur.execute("SELECT migration_id FROM gomigrate ORDER BY migration_id")
    return [int(row[0]) for row in cur.fetchall()]


def _apply_migration(cur: Cursor, migration_id: int, statements: Sequence[str]) -> None:
    _run_script(cur, statements)
    cur.execute("INSERT INTO gomigrate (migration_id) VALUES (%s)", (migration_id,))


def _revert_migration(
    cur: Cursor, migration_id: int, statements: Sequence[str]
) -> None:
    _run_script(cur, statements)
    cur.execute("DELETE FROM gomigrate WHERE migration_id = %s", (migration_id,))


# -- calibrations (§7.5) ---------------------------------------------------------


def _camera_configuration(cur: Cursor, temca: int, camera: int) -> int:
    cur.execute(
        "SELECT tem_camera_configuration_id FROM tem_camera_configurations"
        " WHERE temca_id = %s AND tem_camera_number = %s",
        (temca, camera),
    )
    rows = cur.fetchall()
    if len(rows) != 1:
        raise CalibrationError(
            f"expected one camera configuration for temca {temca} camera {camera},"
            f" found {len(rows)}"
        )
    return int(rows[0][0])


def _import_calibrations(cur: Cursor, calibrations: Sequence[Calibration]) -> list[int]:
    ids = []
    for cal in calibrations:
        cur.execute(
            "SELECT calibration_id FROM calibrations WHERE calibration_name = %s",
            (cal.name,),
        )
        existing = cur.fetchall()
        if len(existing) > 1:
            raise CalibrationError(
                f"calibration {cal.name}: {len(existing)} calibrations have that name"
            )
        if existing:
            cal_id = int(existing[0][0])
            cur.execute(
                "UPDATE calibrations SET calibration_name = %s, date_generated = %s,"
                " json_config = %s, notes = %s WHERE calibration_id = %s",
                (cal.name, cal.date, cal.json_config, "", cal_id),
            )
        else:
            cur.execute(
                "INSERT INTO calibrations"
                " (calibration_name, date_generated, json_config, notes)"
                " VALUES (%s, %s, %s, %s)",
                (cal.name, cal.date, cal.json_config, ""),
            )
            cal_id = int(cur.lastrowid or 0)
        if cal.temca < 0 or cal.camera < 0:
            raise CalibrationError(
                f"calibration {cal.name}: temca and camera must not be negative"
            )
        config_id = _camera_configuration(cur, cal.temca, cal.camera)
        cur.execute(
            "UPDATE tem_camera_configurations SET tem_camera_transformation_ref = %s"
            " WHERE tem_camera_configuration_id = %s",
            (cal.name, config_id),
        )
        ids.append(cal_id)
    return ids


def _calibration_rows(cur: Cursor) -> list[tuple[int, str, datetime | None, str]]:
    return [(int(r[0]), str(r[1]), r[2], str(r[3] or "")) for r in cur.fetchall()]


def _calibration_page(
    cur: Cursor, limit: int, offset: int
) -> list[tuple[int, str, datetime | None, str]]:
    cur.execute(
        "SELECT calibration_id, calibration_name, date_generated, json_config"
        " FROM calibrations ORDER BY calibration_id LIMIT %s OFFSET %s",
        (limit, offset),
    )
    return _calibration_rows(cur)


def _calibration_named(
    cur: Cursor, name: str
) -> list[tuple[int, str, datetime | None, str]]:
    cur.execute(
        "SELECT calibration_id, calibration_name, date_generated, json_config"
        " FROM calibrations WHERE calibration_name = %s"
        " ORDER BY date_generated DESC, calibration_id DESC LIMIT 1",
        (name,),
    )
    return _calibration_rows(cur)


def _set_mask_url(cur: Cursor, temca: int, camera: int, url: str) -> None:
    config_id = _camera_configuration(cur, temca, camera)
    cur.execute(
        "UPDATE tem_camera_configurations SET tem_camera_mask_url = %s"
        " WHERE tem_camera_configuration_id = %s",
        (url, config_id),
    )


# -- acquisitions (§1.3, §7.1) ----------------------------------------------------

#: Stored for a log whose Date does not parse (Q15 keeps such logs accepted).
ZERO_TIME = datetime(1, 1, 1)
#: How long a capture reuses a looked-up acquisition or camera configuration:
#: another daemon's change is seen after at most this long.
CACHE_SECONDS = 5.0

_ACQUISITION_COLUMNS = (
    "ini_file, when_acquired, when_inserted, when_completed, uid, number_of_cameras,"
    " x_sm_step_pix, y_sm_step_pix, x_big_step_pix, y_big_step_pix, number_of_x_steps,"
    " number_of_y_steps, center_x_m, center_y_m, tem_y_m, pixels_per_um,"
    " tem_magnification, url, sample_name, project_name, project_owner, stack_name,"
    " mosaic_type, microscopist_name, roi_tiles_file, notes"
)


# Built once from the fixed column list above; values are always bound.
_INSERT_ACQUISITION = (
    f"INSERT INTO ini_files_denorm ({_ACQUISITION_COLUMNS})"  # noqa: S608
    f" VALUES ({', '.join(['%s'] * len(_ACQUISITION_COLUMNS.split(',')))})"
)
_UPDATE_ACQUISITION = (
    "UPDATE ini_files_denorm SET "  # noqa: S608
    + ", ".join(f"{c.strip()} = %s" for c in _ACQUISITION_COLUMNS.split(","))
    + " WHERE ini_file_denorm_id = %s"
)


def _single(value: float) -> float:
    # FLOAT columns are single precision in MySQL (and reach us as shortest
    # decimal text); SQLite keeps doubles.  Round through float32 on the way
    # in and out so both engines give the tile specs the same value (§9.2).
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


def _acquisition_values(
    log: AcquisitionLog, uid: int, now: datetime
) -> tuple[Any, ...]:
    return (
        log.ini_text,
        log.when_acquired or ZERO_TIME,
        now,
        None,
        uid,
        log.number_of_cameras,
        log.x_sm_step_pix,
        log.y_sm_step_pix,
        log.x_big_step_pix,
        log.y_big_step_pix,
        log.number_of_x_steps,
        log.number_of_y_steps,
        _single(log.center_x_m),
        _single(log.center_y_m),
        0.0,
        _single(log.pixels_per_um),
        log.tem_magnification,
        "",
        log.sample_name,
        log.project_name,
        log.project_owner,
        log.stack_name,
        log.mosaic_type,
        log.microscopist_name,
        "",
        log.notes,
    )


def _resolve_temca(cur: Cursor, ip: bytes, when: datetime) -> int | None:
    cur.execute(
        "SELECT tem_id FROM tem_pc_ip_addresses WHERE ip_address = %s"
        " AND start_date <= %s AND (end_date IS NULL OR end_date > %s)"
        " ORDER BY tem_pc_ip_address_id LIMIT 1",
        (ip, when, when),
    )
    row = cur.fetchone()
    if row is None:
        return None
    cur.execute(
        "SELECT temca_id FROM temcas WHERE tem_id = %s"
        " AND start_date <= %s AND (end_date IS NULL OR end_date > %s)"
        " ORDER BY temca_id LIMIT 1",
        (row[0], when, when),
    )
    temca = cur.fetchone()
    return None if temca is None else int(temca[0])


def _start_acquisition(
    cur: Cursor, log: AcquisitionLog, uid: int, now: datetime
) -> int | None:
    values = _acquisition_values(log, uid, now)
    cur.execute(
        "SELECT ini_file_denorm_id FROM ini_files_denorm WHERE uid = %s FOR UPDATE",
        (uid,),
    )
    row = cur.fetchone()
    if row is None:
        cur.execute(_INSERT_ACQUISITION, values)
        acquisition_id = int(cur.lastrowid or 0)
    else:
        # Q18: a re-post rewrites the row, when_inserted included, and
        # clears when_completed.
        acquisition_id = int(row[0])
        cur.execute(_UPDATE_ACQUISITION, (*values, acquisition_id))
    temca_id = _resolve_temca(cur, log.tem_ip, log.when_acquired or ZERO_TIME)
    cur.execute(
        "SELECT tem_camera_image_mosaic_id FROM tem_camera_image_mosaics"
        " WHERE ini_file_denorm_id = %s",
        (acquisition_id,),
    )
    mosaic = cur.fetchone()
    if mosaic is None:
        cur.execute(
            "INSERT INTO tem_camera_image_mosaics"
            " (ini_file_denorm_id, temca_id, target_num_cols, target_num_rows)"
            " VALUES (%s, %s, %s, %s)",
            (acquisition_id, temca_id, log.target_num_cols, log.target_num_rows),
        )
    else:
        cur.execute(
            "UPDATE tem_camera_image_mosaics SET temca_id = %s, target_num_cols = %s,"
            " target_num_rows = %s WHERE tem_camera_image_mosaic_id = %s",
            (temca_id, log.target_num_cols, log.target_num_rows, mosaic[0]),
        )
    return temca_id


def _acquisition(cur: Cursor, uid: int) -> Acquisition | None:
    cur.execute(
        "SELECT a.uid, a.ini_file_denorm_id, m.tem_camera_image_mosaic_id, m.temca_id,"
        " a.sample_name, a.project_name, a.project_owner, a.stack_name"
        " FROM ini_files_denorm a JOIN tem_camera_image_mosaics m"
        " ON m.ini_file_denorm_id = a.ini_file_denorm_id WHERE a.uid = %s"
        " ORDER BY m.tem_camera_image_mosaic_id LIMIT 1",
        (uid,),
    )
    row = cur.fetchone()
    if row is None:
        return None
    return Acquisition(
        uid=int(row[0]),
        acquisition_id=int(row[1]),
        mosaic_id=int(row[2]),
        temca_id=None if row[3] is None else int(row[3]),
        sample_name=row[4] or "",
        project_name=row[5] or "",
        project_owner=row[6] or "",
        stack_name=row[7] or "",
    )


def _complete_acquisition(cur: Cursor, uid: int, now: datetime) -> None:
    cur.execute(
        "UPDATE ini_files_denorm SET when_completed = %s WHERE uid = %s", (now, uid)
    )


def _count_waiting_links(cur: Cursor, mosaic_id: int) -> int:
    # Links still in CREATE whose tile has no accepted content at all; a tile
    # waiting in the spool has its checksum recorded and is not counted.
    cur.execute(
        "SELECT COUNT(*) FROM roi_images l"
        " JOIN tem_camera_images t ON t.tem_camera_image_id = l.tem_camera_image_id"
        " LEFT JOIN file_objects f ON f.file_object_id = t.file_object_id"
        " WHERE t.tem_camera_image_mosaic_id = %s AND l.current_state = 'CREATE'"
        " AND f.sha1_checksum IS NULL",
        (mosaic_id,),
    )
    return int(cur.fetchone()[0])


# -- ROIs (§7.2, §7.3) ------------------------------------------------------------------


def _create_rois(cur: Cursor, mosaic_id: int, regions: Sequence[RoiRegion]) -> None:
    for region in regions:
        cur.execute(
            "SELECT image_mosaic_roi_id FROM image_mosaic_rois"
            " WHERE tem_camera_image_mosaic_id = %s AND sample_section_name = %s"
            " AND sample_section_id = %s ORDER BY image_mosaic_roi_id LIMIT 1",
            (mosaic_id, region.section_name, region.nominal_section),
        )
        row = cur.fetchone()
        if row is None:
            cur.execute(
                "INSERT INTO image_mosaic_rois"
                " (tem_camera_image_mosaic_id, sample_section_id, sample_section_name)"
                " VALUES (%s, %s, %s)",
                (mosaic_id, region.nominal_section, region.section_name),
            )
            roi_id = int(cur.lastrowid or 0)
        else:
            roi_id = int(row[0])
        cur.execute(
            "SELECT acq_time_roi_id FROM acq_time_rois"
            " WHERE tem_camera_image_mosaic_id = %s AND image_mosaic_roi_id = %s",
            (mosaic_id, roi_id),
        )
        if cur.fetchone() is None:
            cur.execute(
                "INSERT INTO acq_time_rois (tem_camera_image_mosaic_id,"
                " image_mosaic_roi_id, acq_region_name, nominal_section_number)"
                " VALUES (%s, %s, %s, %s)",
                (mosaic_id, roi_id, region.region, region.nominal_section),
            )


def _roi_ids(cur: Cursor, mosaic_id: int) -> dict[str, int]:
    cur.execute(
        "SELECT sample_section_name, image_mosaic_roi_id FROM image_mosaic_rois"
        " WHERE tem_camera_image_mosaic_id = %s ORDER BY image_mosaic_roi_id",
        (mosaic_id,),
    )
    ids: dict[str, int] = {}
    for name, roi_id in cur.fetchall():
        ids.setdefault(str(name), int(roi_id))
    return ids


def _insert_file_object(cur: Cursor, name: str, now: datetime) -> int:
    """A file object and its (not yet stored) replica; returns the object id."""
    cur.execute(
        "INSERT INTO file_objects (sha1_checksum, checksum_date, creation_date)"
        " VALUES (NULL, NULL, %s)",
        (now,),
    )
    file_object_id = int(cur.lastrowid or 0)
    cur.execute(
        "INSERT INTO file_object_fs_replicas (path, jfs_path, jfs_key, location_url,"
        " file_object_id, file_exists_yn, replica_created_date)"
        " VALUES (%s, '', '', '', %s, 0, %s)",
        (name, file_object_id, now),
    )
    return file_object_id


def _insert_placeholder_tile(
    cur: Cursor,
    mosaic_id: int,
    col: int,
    row: int,
    frame: int,
    config_id: int | None,
    now: datetime,
) -> tuple[int, int]:
    file_object_id = _insert_file_object(cur, "", now)
    cur.execute(
        "INSERT INTO tem_camera_images (tem_camera_image_mosaic_id,"
        " tem_camera_configuration_id, file_object_id, frame_number, mosaic_col,"
        " mosaic_row) VALUES (%s, %s, %s, %s, %s, %s)",
        (mosaic_id, config_id, file_object_id, frame, col, row),
    )
    return int(cur.lastrowid or 0), file_object_id


def _link_roi_tiles(
    cur: Cursor,
    mosaic_id: int,
    roi_id: int,
    tiles: Sequence[tuple[int, int]],
    now: datetime,
) -> int:
    cur.execute(
        "SELECT t.mosaic_col, t.mosaic_row, t.tem_camera_image_id, r.jfs_key"
        " FROM tem_camera_images t LEFT JOIN file_object_fs_replicas r"
        " ON r.file_object_id = t.file_object_id"
        " WHERE t.tem_camera_image_mosaic_id = %s AND t.frame_number = -1",
        (mosaic_id,),
    )
    existing = {(int(c), int(r)): (int(i), bool(k)) for c, r, i, k in cur.fetchall()}
    cur.execute(
        "SELECT tem_camera_image_id FROM roi_images WHERE image_mosaic_roi_id = %s",
        (roi_id,),
    )
    linked = {int(row[0]) for row in cur.fetchall()}
    created = 0
    for col, row in dict.fromkeys(tiles):
        if (col, row) in existing:
            tile_id, persisted = existing[(col, row)]
        else:
            tile_id, _ = _insert_placeholder_tile(
                cur, mosaic_id, col, row, -1, None, now
            )
            persisted = False
            existing[(col, row)] = (tile_id, False)
        if tile_id in linked:
            continue
        # Q21: a tile captured before its ROIs arrived is READY at once.
        cur.execute(
            "INSERT INTO roi_images (image_mosaic_roi_id, tem_camera_image_id,"
            " current_state) VALUES (%s, %s, %s)",
            (roi_id, tile_id, "READY" if persisted else "CREATE"),
        )
        linked.add(tile_id)
        created += 1
    return created


# -- tiles (§4.2, §4.3) -----------------------------------------------------------------


def _tile_by_id(
    cur: Cursor, tile_id: int
) -> tuple[int, int, int, int, TileRecord] | None:
    cur.execute(
        "SELECT t.tem_camera_image_mosaic_id, t.mosaic_col, t.mosaic_row,"
        " t.frame_number FROM tem_camera_images t WHERE t.tem_camera_image_id = %s",
        (tile_id,),
    )
    row = cur.fetchone()
    if row is None:
        return None
    mosaic_id, col, tile_row, frame = (int(v) for v in row)
    tile = find_tile(cur, mosaic_id, col, tile_row, frame)
    assert tile is not None
    return mosaic_id, col, tile_row, frame, tile


def _acquisition_of_mosaic(cur: Cursor, mosaic_id: int) -> int | None:
    cur.execute(
        "SELECT a.uid FROM tem_camera_image_mosaics m JOIN ini_files_denorm a"
        " ON a.ini_file_denorm_id = m.ini_file_denorm_id"
        " WHERE m.tem_camera_image_mosaic_id = %s",
        (mosaic_id,),
    )
    row = cur.fetchone()
    return None if row is None else int(row[0])


# -- ancillary files (§5.6) -------------------------------------------------------------


def _store_ancillary(
    cur: Cursor,
    mosaic_id: int,
    type_name: str,
    name: str,
    path: str,
    key: str,
    url: str,
    sha1: bytes,
    md5: bytes,
    now: datetime,
) -> int:
    cur.execute(
        "SELECT ancillary_file_type_id FROM ancillary_file_types WHERE name = %s"
        " ORDER BY ancillary_file_type_id LIMIT 1",
        (type_name,),
    )
    row = cur.fetchone()
    if row is None:
        cur.execute("INSERT INTO ancillary_file_types (name) VALUES (%s)", (type_name,))
        type_id = int(cur.lastrowid or 0)
    else:
        type_id = int(row[0])
    # Q12 fixed: a re-sent file updates its (mosaic, path, type) record.
    cur.execute(
        "SELECT a.file_object_id FROM ancillary_files a JOIN file_object_fs_replicas r"
        " ON r.file_object_id = a.file_object_id WHERE a.tem_camera_image_mosaic_id = %s"
        " AND a.ancillary_file_type_id = %s AND r.path = %s"
        " ORDER BY a.ancillary_file_id LIMIT 1",
        (mosaic_id, type_id, name),
    )
    row = cur.fetchone()
    if row is not None:
        file_object_id = int(row[0])
    else:
        file_object_id = _insert_file_object(cur, name, now)
        cur.execute(
            "INSERT INTO ancillary_files (tem_camera_image_mosaic_id, file_object_id,"
            " ancillary_file_type_id) VALUES (%s, %s, %s)",
            (mosaic_id, file_object_id, type_id),
        )
    record_content(cur, file_object_id, name, path, key, url, sha1, md5, now)
    return file_object_id


# -- queries (§1.8-§1.17, §8) ------------------------------------------------------

ACQUISITION_COLUMNS = (
    "a.ini_file_denorm_id, m.tem_camera_image_mosaic_id, a.when_acquired,"
    " a.when_inserted, a.when_completed, a.uid, a.number_of_cameras, a.x_sm_step_pix,"
    " a.y_sm_step_pix, a.x_big_step_pix, a.y_big_step_pix, a.number_of_x_steps,"
    " a.number_of_y_steps, a.center_x_m, a.center_y_m, a.tem_y_m, a.pixels_per_um,"
    " a.tem_magnification, a.url, a.sample_name, a.project_name, a.project_owner,"
    " a.stack_name, a.mosaic_type, a.roi_tiles_file, a.microscopist_name, a.notes,"
    " m.target_num_cols, m.target_num_rows"
)


def _equal(pairs: Sequence[tuple[str, Any]]) -> tuple[list[str], list[Any]]:
    """``column = %s`` for every pair whose value is given (not None)."""
    given = [(column, value) for column, value in pairs if value is not None]
    return [f"{column} = %s" for column, _ in given], [value for _, value in given]


def _frame_condition(frame_type: str) -> str | None:
    """§8.5 ``frame-type``: stable (default), drift, or all (None)."""
    kind = frame_type.lower()
    if kind == "all":
        return None
    return "t.frame_number <> -1" if kind == "drift" else "t.frame_number = -1"


def _acquisition_conditions(
    f: AcquisitionFilter,
) -> tuple[list[str], list[Any]]:
    where, params = _equal(
        [
            ("a.sample_name", f.sample),
            ("a.project_name", f.project),
            ("a.project_owner", f.owner),
            ("a.stack_name", f.stack),
            ("a.mosaic_type", f.mosaic_type),
            ("a.uid", f.acq_uid or None),
        ]
    )
    if f.acq_from is not None:
        where.append("a.when_acquired >= %s")
        params.append(f.acq_from)
    if f.acq_to is not None:
        where.append("a.when_acquired < %s")
        params.append(f.acq_to)
    # Q36: both state filters walk the (state, ROI) index of the mosaic's
    # ROIs instead of aggregating over every link of every acquisition.
    in_state = (
        "EXISTS (SELECT 1 FROM image_mosaic_rois x JOIN roi_images l"
        " ON l.image_mosaic_roi_id = x.image_mosaic_roi_id"
        " WHERE x.tem_camera_image_mosaic_id = m.tem_camera_image_mosaic_id"
        " AND l.current_state = %s)"
    )
    if f.exists_state is not None:
        where.append(in_state)
        params.append(f.exists_state)
    if f.all_state is not None:
        where.append(in_state)
        where.append(
            "NOT EXISTS (SELECT 1 FROM image_mosaic_rois x JOIN roi_images l"
            " ON l.image_mosaic_roi_id = x.image_mosaic_roi_id"
            " WHERE x.tem_camera_image_mosaic_id = m.tem_camera_image_mosaic_id"
            " AND l.current_state <> %s)"
        )
        params += [f.all_state, f.all_state]
    return where, params


def _where(conditions: Sequence[str]) -> str:
    return (" WHERE " + " AND ".join(conditions)) if conditions else ""


def _acquisitions(
    cur: Cursor, f: AcquisitionFilter, limit: int, offset: int
) -> list[tuple[Any, ...]]:
    where, params = _acquisition_conditions(f)
    cur.execute(
        f"SELECT {ACQUISITION_COLUMNS} FROM ini_files_denorm a"  # noqa: S608
        " JOIN tem_camera_image_mosaics m ON m.ini_file_denorm_id = a.ini_file_denorm_id"
        f"{_where(where)} ORDER BY a.uid LIMIT %s OFFSET %s",
        (*params, limit, offset),
    )
    return [tuple(r) for r in cur.fetchall()]


def _projects(
    cur: Cursor, f: AcquisitionFilter, limit: int, offset: int
) -> list[tuple[str, str]]:
    where, params = _acquisition_conditions(f)
    cur.execute(
        "SELECT DISTINCT a.project_name, a.project_owner FROM ini_files_denorm a"  # noqa: S608
        f"{_where(where)} ORDER BY a.project_name, a.project_owner LIMIT %s OFFSET %s",
        (*params, limit, offset),
    )
    return [(r[0] or "", r[1] or "") for r in cur.fetchall()]


_TILE_SELECT = (
    "SELECT a.uid, a.when_acquired, a.when_completed, t.tem_camera_image_id,"
    " t.mosaic_col, t.mosaic_row, t.frame_number, c.tem_camera_number, m.temca_id,"
    " r.jfs_path, r.jfs_key, r.location_url, f.sha1_checksum, f.md5_checksum,"
    " t.acquired_timestamp, l.current_state, roi.sample_section_id"
    " FROM tem_camera_images t"
    " JOIN tem_camera_image_mosaics m"
    " ON m.tem_camera_image_mosaic_id = t.tem_camera_image_mosaic_id"
    " JOIN ini_files_denorm a ON a.ini_file_denorm_id = m.ini_file_denorm_id"
    " JOIN file_objects f ON f.file_object_id = t.file_object_id"
    # The service writes one replica per file object (§6.1).
    " JOIN file_object_fs_replicas r ON r.file_object_id = t.file_object_id"
    " LEFT JOIN tem_camera_configurations c"
    " ON c.tem_camera_configuration_id = t.tem_camera_configuration_id"
)


def _tile_row(r: Sequence[Any]) -> TileRow:
    return TileRow(
        acq_uid=int(r[0]),
        acq_when=r[1],
        acq_completed=r[2],
        tile_id=int(r[3]),
        col=int(r[4]),
        row=int(r[5]),
        frame=int(r[6]),
        camera=None if r[7] is None else int(r[7]),
        temca_id=None if r[8] is None else int(r[8]),
        jfs_path=r[9] or "",
        jfs_key=r[10] or "",
        location_url=r[11] or "",
        sha1=None if r[12] is None else bytes(r[12]),
        md5=None if r[13] is None else bytes(r[13]),
        acquired=r[14],
        state=r[15] or "",
        section=int(r[16] or 0),
    )


_FIRST_LINK_JOIN = (
    " LEFT JOIN roi_images l ON l.roi_image_id = (SELECT MIN(l2.roi_image_id)"
    " FROM roi_images l2 WHERE l2.tem_camera_image_id = t.tem_camera_image_id)"
    " LEFT JOIN image_mosaic_rois roi ON roi.image_mosaic_roi_id = l.image_mosaic_roi_id"
)
_FIRST_LINK_IN_STATE_JOIN = (
    " LEFT JOIN roi_images l ON l.roi_image_id = (SELECT MIN(l2.roi_image_id)"
    " FROM roi_images l2 WHERE l2.tem_camera_image_id = t.tem_camera_image_id"
    " AND l2.current_state = %s)"
    " LEFT JOIN image_mosaic_rois roi ON roi.image_mosaic_roi_id = l.image_mosaic_roi_id"
)


def _link_join(state: str | None) -> tuple[str, list[Any]]:
    # One row per tile (Q9, §14): the tile's first link (in that state, when
    # filtering by state) stands for its state and section.
    if state is None:
        return _FIRST_LINK_JOIN, []
    return _FIRST_LINK_IN_STATE_JOIN, [state]


def _tiles(cur: Cursor, f: TileFilter, limit: int, offset: int) -> list[TileRow]:
    join, params = _link_join(f.state)
    where, values = _equal(
        [
            ("a.sample_name", f.sample),
            ("a.project_name", f.project),
            ("a.project_owner", f.owner),
            ("a.stack_name", f.stack),
            ("a.mosaic_type", f.mosaic_type),
            ("a.uid", f.acq_uid if f.acq_uid > 0 else None),
            ("t.mosaic_col", f.col if f.col >= 0 else None),
            ("t.mosaic_row", f.row if f.row >= 0 else None),
            ("c.tem_camera_number", f.camera if f.camera >= 0 else None),
        ]
    )
    params += values
    if f.state is not None:
        where.append("l.roi_image_id IS NOT NULL")
    if f.tile_from is not None:
        where.append("t.acquired_timestamp >= %s")
        params.append(f.tile_from)
    if f.tile_to is not None:
        where.append("t.acquired_timestamp < %s")
        params.append(f.tile_to)
    if (frame := _frame_condition(f.frame_type)) is not None:
        where.append(frame)
    if not f.include_all:
        where.append("r.jfs_key IS NOT NULL AND r.jfs_key <> ''")
    cur.execute(
        f"{_TILE_SELECT}{join}{_where(where)}"
        " ORDER BY t.acquired_timestamp, t.tem_camera_image_id LIMIT %s OFFSET %s",
        (*params, limit, offset),
    )
    return [_tile_row(r) for r in cur.fetchall()]


def _tile_by_id_row(cur: Cursor, tile_id: int) -> TileRow | None:
    join, params = _link_join(None)
    cur.execute(
        f"{_TILE_SELECT}{join} WHERE t.tem_camera_image_id = %s",
        (*params, tile_id),
    )
    row = cur.fetchone()
    return None if row is None else _tile_row(row)


# -- render work distribution (§9) -----------------------------------------------------

_ELIGIBLE_FROM = (
    " FROM roi_images l"
    " JOIN image_mosaic_rois roi ON roi.image_mosaic_roi_id = l.image_mosaic_roi_id"
    " JOIN tem_camera_images t ON t.tem_camera_image_id = l.tem_camera_image_id"
    " JOIN tem_camera_image_mosaics m"
    " ON m.tem_camera_image_mosaic_id = t.tem_camera_image_mosaic_id"
    " JOIN ini_files_denorm a ON a.ini_file_denorm_id = m.ini_file_denorm_id"
    # The service writes one replica per file object (§6.1).
    " JOIN file_object_fs_replicas r ON r.file_object_id = t.file_object_id"
    " JOIN tem_camera_configurations c"
    " ON c.tem_camera_configuration_id = t.tem_camera_configuration_id"
)
_CLAIM_ROUNDS = 5
_ORDER = " ORDER BY a.when_acquired, roi.sample_section_id, t.mosaic_col, t.mosaic_row,"
_ORDER += " l.roi_image_id"


def _eligible(req: NextTileRequest, state: str) -> tuple[list[str], list[Any]]:
    where = [
        "l.current_state = %s",
        "roi.sample_section_id IS NOT NULL",
        "r.jfs_key IS NOT NULL AND r.jfs_key <> ''",
    ]
    params: list[Any] = [state]
    if req.section >= 0:
        where.append("roi.sample_section_id = %s")
        params.append(req.section)
    if req.acq_uid > 0:
        where.append("a.uid = %s")
        params.append(req.acq_uid)
    else:  # §9.1: acquisition filters apply only without acqid
        more, values = _equal(
            [
                ("a.sample_name", req.sample),
                ("a.project_name", req.project),
                ("a.stack_name", req.stack),
                ("a.mosaic_type", req.mosaic_type),
            ]
        )
        where += more
        params += values
    if req.tile_from is not None:
        where.append("t.acquired_timestamp >= %s")
        params.append(req.tile_from)
    if req.tile_to is not None:
        where.append("t.acquired_timestamp < %s")
        params.append(req.tile_to)
    if (frame := _frame_condition(req.frame_type)) is not None:
        where.append(frame)
    return where, params


_SPEC_COLUMNS = (
    "SELECT a.uid, t.mosaic_col, t.mosaic_row, c.tem_camera_number, c.temca_id,"
    " c.tem_camera_width, c.tem_camera_height, c.tem_camera_mask_url,"
    " c.tem_camera_transformation_ref, r.location_url, r.jfs_path,"
    " roi.sample_section_id, a.number_of_cameras, a.center_x_m, a.center_y_m,"
    " a.tem_y_m, a.pixels_per_um, a.x_sm_step_pix, a.y_sm_step_pix, a.x_big_step_pix,"
    " a.y_big_step_pix, a.number_of_x_steps, a.number_of_y_steps, a.sample_name,"
    " a.when_acquired"
)


def _prev_acq_count(
    cur: Cursor,
    cache: dict[tuple[str, int, Any], int],
    sample: str,
    section: int,
    when: Any,
) -> int:
    key = (sample, section, when)
    if key not in cache:
        cur.execute(
            "SELECT COUNT(*) FROM acq_time_rois x JOIN tem_camera_image_mosaics m"
            " ON m.tem_camera_image_mosaic_id = x.tem_camera_image_mosaic_id"
            " JOIN ini_files_denorm a ON a.ini_file_denorm_id = m.ini_file_denorm_id"
            " WHERE a.sample_name = %s AND x.nominal_section_number = %s"
            " AND a.when_acquired < %s",
            (sample, section, when),
        )
        cache[key] = int(cur.fetchone()[0])
    return cache[key]


def _claim_tiles(
    cur: Cursor, req: NextTileRequest, batch: str, now: datetime, lease: float
) -> list[SpecInput]:
    if lease > 0:
        # Leases that ran out give their links back to the state they had.
        cur.execute(
            "UPDATE roi_images SET current_state = leased_from_state,"
            " leased_from_state = NULL, lease_expires = NULL"
            " WHERE lease_expires IS NOT NULL AND lease_expires < %s",
            (now,),
        )
    where, params = _eligible(req, req.old_state)
    chosen: list[int] = []
    # Another daemon may be claiming the same candidates right now: their
    # rows are skipped, and a fresh look (READ COMMITTED) finds the next ones.
    for _ in range(_CLAIM_ROUNDS):
        cur.execute(
            f"SELECT l.roi_image_id{_ELIGIBLE_FROM}{_where(where)}{_ORDER} LIMIT %s",
            (*params, (req.ntiles - len(chosen)) * 4 + len(chosen)),
        )
        candidates = [int(r[0]) for r in cur.fetchall() if int(r[0]) not in chosen]
        if not candidates:
            break
        # Lock only the link rows, skipping those another daemon holds, and
        # re-check their state under the lock: no link is handed out twice.
        marks = ", ".join(["%s"] * len(candidates))
        cur.execute(
            f"SELECT roi_image_id FROM roi_images WHERE roi_image_id IN ({marks})"  # noqa: S608
            " AND current_state = %s FOR UPDATE SKIP LOCKED",
            (*candidates, req.old_state),
        )
        locked = {int(r[0]) for r in cur.fetchall()}
        chosen += [c for c in candidates if c in locked][: req.ntiles - len(chosen)]
        if len(chosen) >= req.ntiles:
            break
    if not chosen:
        return []
    marks = ", ".join(["%s"] * len(chosen))
    expires = now + timedelta(seconds=lease) if lease > 0 else None
    cur.execute(
        "UPDATE roi_images SET current_state = %s, tx_hash = %s, lease_expires = %s,"  # noqa: S608
        f" leased_from_state = %s WHERE roi_image_id IN ({marks})",
        (req.new_state, batch, expires, req.old_state if lease > 0 else None, *chosen),
    )
    cur.execute(
        f"{_SPEC_COLUMNS}{_ELIGIBLE_FROM} WHERE l.tx_hash = %s{_ORDER}",
        (batch,),
    )
    rows = cur.fetchall()
    cache: dict[tuple[str, int, Any], int] = {}
    specs = []
    for r in rows:
        section = int(r[11])
        specs.append(
            SpecInput(
                acq_uid=int(r[0]),
                col=int(r[1]),
                row=int(r[2]),
                camera=int(r[3]),
                temca_id=int(r[4]),
                width=int(r[5] or 0),
                height=int(r[6] or 0),
                mask_url=r[7],
                transformation_ref=r[8],
                location_url=r[9] or "",
                jfs_path=r[10] or "",
                nominal_section=section,
                prev_acq_count=_prev_acq_count(cur, cache, r[23] or "", section, r[24]),
                number_of_cameras=int(r[12] or 0),
                x_center=_single(float(r[13] or 0)),
                y_center=_single(float(r[14] or 0)),
                y_tem=_single(float(r[15] or 0)),
                pix_per_um=_single(float(r[16] or 0)),
                x_small_step=float(r[17] or 0),
                y_small_step=float(r[18] or 0),
                x_big_step=float(r[19] or 0),
                y_big_step=float(r[20] or 0),
                n_x_steps=int(r[21] or 0),
                n_y_steps=int(r[22] or 0),
            )
        )
    return specs


def _served_state(cur: Cursor, req: NextTileRequest) -> tuple[bool, dict[str, int]]:
    """(completed, link counts by state) of the requested acquisition (§9.1 step 4)."""
    cur.execute(
        "SELECT when_completed FROM ini_files_denorm WHERE uid = %s", (req.acq_uid,)
    )
    row = cur.fetchone()
    if row is None or row[0] is None:
        return False, {}
    where, params = _eligible(req, req.new_state)
    where[0] = "1 = 1"  # any state: counted below
    params = params[1:]
    cur.execute(
        f"SELECT l.current_state, COUNT(*){_ELIGIBLE_FROM}{_where(where)}"
        " GROUP BY l.current_state",
        params,
    )
    return True, {str(state): int(n) for state, n in cur.fetchall()}


def _set_tile_states(cur: Cursor, state: str, ids: Sequence[TileSpecId]) -> int:
    changed = 0
    for start in range(0, len(ids), 100):
        chunk = ids[start : start + 100]
        condition = " OR ".join(
            "(a.uid = %s AND roi.sample_section_id = %s AND t.mosaic_col = %s"
            " AND t.mosaic_row = %s)"
            for _ in chunk
        )
        params: list[Any] = []
        for i in chunk:
            params += [i.acq_uid, i.section, i.col, i.row]
        # §14: a tile-spec id names stable tiles only (Q24).
        cur.execute(
            "SELECT l.roi_image_id FROM roi_images l"  # noqa: S608
            " JOIN image_mosaic_rois roi"
            " ON roi.image_mosaic_roi_id = l.image_mosaic_roi_id"
            " JOIN tem_camera_images t ON t.tem_camera_image_id = l.tem_camera_image_id"
            " JOIN tem_camera_image_mosaics m"
            " ON m.tem_camera_image_mosaic_id = t.tem_camera_image_mosaic_id"
            " JOIN ini_files_denorm a ON a.ini_file_denorm_id = m.ini_file_denorm_id"
            f" WHERE t.frame_number = -1 AND ({condition})",
            params,
        )
        links = [int(r[0]) for r in cur.fetchall()]
        if not links:
            continue
        marks = ", ".join(["%s"] * len(links))
        cur.execute(
            "UPDATE roi_images SET current_state = %s, lease_expires = NULL,"  # noqa: S608
            f" leased_from_state = NULL WHERE roi_image_id IN ({marks})"
            " AND current_state <> %s",
            (state, *links, state),
        )
        changed += cur.rowcount
    return changed


def _no_such_uid(uid: int) -> bool:
    """A UID past the signed BIGINT column's range: no row has it.

    Routes accept any uint64 (§1.0); SQLite cannot even bind such a number
    (it answered 500, found by the schema fuzzing), so no query is run.
    """
    return uid > limits.INT64_MAX


class Repository:
    """The service's database operations, each one transaction."""

    def __init__(self, db: Database, clock: IReactorTime) -> None:
        self._db = db
        self._clock = clock
        self._writes = WriteBatcher(db, clock, db.dialect.write_connections)
        # Short-lived caches of what every capture looks up; invalidated here
        # by start-acquisition, create-rois and calibration imports, and by
        # time for changes other daemons make.
        self._acquisitions: dict[int, tuple[float, Acquisition]] = {}
        self._configs: dict[tuple[int | None, int], tuple[float, int | None]] = {}

    def _now(self) -> datetime:
        # Naive UTC, as MySQL DATETIME columns hold it (§6, Q17).
        return datetime.fromtimestamp(self._clock.seconds(), UTC).replace(tzinfo=None)

    async def start_acquisition(self, log: AcquisitionLog, uid: int) -> int | None:
        """Insert or rewrite an acquisition and its mosaic; return the temca id."""
        self._acquisitions.pop(uid, None)
        try:
            return await self._db.run(_start_acquisition, log, uid, self._now())
        finally:
            self._acquisitions.pop(uid, None)
            self._configs.clear()

    async def cached_acquisition(self, uid: int) -> Acquisition | None:
        """:meth:`acquisition`, reused for up to CACHE_SECONDS (captures)."""
        now = self._clock.seconds()
        hit = self._acquisitions.get(uid)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        acq = await self.acquisition(uid)
        if acq is not None:
            if len(self._acquisitions) > 1000:
                self._acquisitions.clear()
            self._acquisitions[uid] = (now, acq)
        return acq

    async def acquisition(self, uid: int) -> Acquisition | None:
        """The acquisition with that UID, or None."""
        if uid < 0 or _no_such_uid(uid):
            return None
        return await self._db.run_idempotent(_acquisition, uid)

    async def complete_acquisition(self, uid: int) -> None:
        """Set when_completed to now."""
        await self._db.run(_complete_acquisition, uid, self._now())

    async def count_waiting_links(self, mosaic_id: int) -> int:
        """CREATE links whose tile has no content accepted yet."""
        return await self._db.run_idempotent(_count_waiting_links, mosaic_id)

    async def create_rois(self, mosaic_id: int, regions: Sequence[RoiRegion]) -> None:
        """Find or create the ROIs of a spec, in one transaction (§7.2)."""
        self._acquisitions.clear()
        await self._db.run(_create_rois, mosaic_id, regions)

    async def roi_ids(self, mosaic_id: int) -> dict[str, int]:
        """ROI ids of a mosaic by section name."""
        return await self._db.run_idempotent(_roi_ids, mosaic_id)

    async def link_roi_tiles(
        self, mosaic_id: int, roi_id: int, tiles: Sequence[tuple[int, int]]
    ) -> int:
        """Find or create stable tiles and their links to one ROI (§7.3)."""
        created: int = await self._run_unique(
            _link_roi_tiles, mosaic_id, roi_id, tiles, self._now()
        )
        return created

    async def find_tile(
        self, mosaic_id: int, col: int, row: int, frame: int
    ) -> TileRecord | None:
        """The tile (mosaic, col, row, frame) and its content identity, or None."""
        return await self._db.run_idempotent(find_tile, mosaic_id, col, row, frame)

    async def record_tile(
        self,
        content: TileContent,
        config_id: int | None = UNKNOWN,
        known: TileRecord | object | None = UNKNOWN,
    ) -> Recorded:
        """Find or create the tile and record its durable content, in one
        transaction shared with the tiles finishing at the same time.

        ``config_id`` is the tile's camera configuration when the caller knows
        it; by default it is looked up (and cached) for the camera.  ``known``
        is the tile as :meth:`find_tile` just gave it (None: absent), which
        spares the transaction that lookup.
        """
        look_up = not (known is None or isinstance(known, TileRecord))
        given = known if isinstance(known, TileRecord) else None
        cache_key = (content.temca_id, content.camera)
        cached = self._configs.get(cache_key)
        now = self._clock.seconds()
        config = config_id
        if config == UNKNOWN and cached and now - cached[0] < CACHE_SECONDS:
            config = cached[1]
        try:
            recorded = await self._writes.submit(
                record_tile, content, config, self._now(), given, look_up
            )
        except self._db.dialect.integrity_error:
            # Another daemon inserted the same tile between our SELECT and
            # INSERT; the unique key stopped us and the retry finds its row.
            recorded = await self._writes.submit(
                record_tile, content, config, self._now()
            )
        if config_id == UNKNOWN:
            self._configs[cache_key] = (now, recorded.config_id)
        return recorded

    async def tile_by_id(
        self, tile_id: int
    ) -> tuple[int, int, int, int, TileRecord] | None:
        """(mosaic, col, row, frame, tile) of a tile id, or None."""
        return await self._db.run_idempotent(_tile_by_id, tile_id)

    async def uid_of_mosaic(self, mosaic_id: int) -> int | None:
        """The acquisition UID of a mosaic."""
        return await self._db.run_idempotent(_acquisition_of_mosaic, mosaic_id)

    async def store_ancillary(
        self,
        mosaic_id: int,
        type_name: str,
        name: str,
        path: str,
        key: str,
        url: str,
        sha1: bytes,
        md5: bytes,
    ) -> int:
        """Record a stored ancillary file; return its file_object_id."""
        return await self._db.run(
            _store_ancillary,
            mosaic_id,
            type_name,
            name,
            path,
            key,
            url,
            sha1,
            md5,
            self._now(),
        )

    async def _run_unique(self, fn: Any, *args: Any) -> Any:
        # Another daemon may insert the same tile between our SELECT and
        # INSERT; the unique key stops it and the retry then finds its row.
        try:
            return await self._db.run(fn, *args)
        except self._db.dialect.integrity_error:
            return await self._db.run(fn, *args)

    async def probe(self) -> bool:
        """A cheap round trip: True when the database answers."""
        return await self._db.run_idempotent(_probe)

    async def tables(self) -> set[str]:
        """Names of the tables in the database."""
        return await self._db.run_idempotent(
            _list_tables, self._db.dialect.list_tables_sql()
        )

    async def run_script(self, statements: Sequence[str]) -> None:
        """Run SQL statements (a schema or seed file) in one interaction."""
        await self._db.run(_run_script, statements)

    async def applied_migrations(self) -> list[int]:
        """Migration ids recorded in gomigrate (created when missing)."""
        await self._db.run(_ensure_gomigrate)
        return await self._db.run(_applied_migrations)

    async def apply_migration(
        self, migration_id: int, statements: Sequence[str]
    ) -> None:
        """Run an up script and record its id, in one transaction."""
        await self._db.run(_apply_migration, migration_id, statements)

    async def revert_migration(
        self, migration_id: int, statements: Sequence[str]
    ) -> None:
        """Run a down script and forget its id, in one transaction."""
        await self._db.run(_revert_migration, migration_id, statements)

    async def import_calibrations(
        self, calibrations: Sequence[Calibration]
    ) -> list[int]:
        """Insert or update calibrations and link camera configurations (§7.5)."""
        self._configs.clear()
        return await self._db.run(_import_calibrations, calibrations)

    async def acquisitions(
        self, f: AcquisitionFilter, limit: int, offset: int
    ) -> list[tuple[Any, ...]]:
        """Acquisition rows (``ACQUISITION_COLUMNS``) matching §8.3."""
        if _no_such_uid(f.acq_uid):
            return []
        return await self._db.run_idempotent(_acquisitions, f, limit, offset)

    async def projects(
        self, f: AcquisitionFilter, limit: int, offset: int
    ) -> list[tuple[str, str]]:
        """Distinct (project, owner) pairs matching §8.4."""
        if _no_such_uid(f.acq_uid):
            return []
        return await self._db.run_idempotent(_projects, f, limit, offset)

    async def tiles(self, f: TileFilter, limit: int, offset: int) -> list[TileRow]:
        """Tiles matching §8.5, one row per tile."""
        if _no_such_uid(f.acq_uid):
            return []
        return await self._db.run_idempotent(_tiles, f, limit, offset)

    async def tile(self, tile_id: int) -> TileRow | None:
        """One tile by id, whatever its frame or content (§1.17)."""
        return await self._db.run_idempotent(_tile_by_id_row, tile_id)

    async def claim_tiles(
        self, req: NextTileRequest, batch: str, lease_seconds: float
    ) -> list[SpecInput]:
        """Atomically move up to ``ntiles`` eligible links to the new state (§9.1)."""
        if _no_such_uid(req.acq_uid):
            return []
        return await self._db.run(_claim_tiles, req, batch, self._now(), lease_seconds)

    async def served_state(self, req: NextTileRequest) -> tuple[bool, dict[str, int]]:
        """Completion and link counts by state, for the result type (§9.1)."""
        if _no_such_uid(req.acq_uid):
            return False, {}
        return await self._db.run_idempotent(_served_state, req)

    async def set_tile_states(self, state: str, ids: Sequence[TileSpecId]) -> int:
        """Set the state of the stable tiles named; return the rows changed (§9.3)."""
        return await self._db.run(_set_tile_states, state, ids)

    async def calibrations(
        self, limit: int, offset: int
    ) -> list[tuple[int, str, datetime | None, str]]:
        """A page of calibrations in storage order (§1.20)."""
        return await self._db.run_idempotent(_calibration_page, limit, offset)

    async def calibration_by_name(
        self, name: str
    ) -> tuple[int, str, datetime | None, str] | None:
        """The newest calibration with that exact name (§1.21)."""
        rows = await self._db.run_idempotent(_calibration_named, name)
        return rows[0] if rows else None

    async def set_mask_url(self, mask_root: str, cal: Calibration) -> None:
        """Point the calibration's camera configuration at its mask image."""
        await self._db.run(
            _set_mask_url,
            cal.temca,
            cal.camera,
            mask_url(mask_root, cal.temca, cal.camera),
        )
