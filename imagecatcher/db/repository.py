"""Every SQL statement of the service, as ``_verb_noun(cursor, ...)`` functions.

Each function runs on a pool thread inside one transaction (see
:class:`imagecatcher.db.pool.Database`); parameters are always bound with
``%s`` placeholders, never formatted into the statement.  The public async
methods of :class:`Repository` are what the rest of the code calls.
"""

from __future__ import annotations

from collections.abc import Sequence

from imagecatcher.calibrations import Calibration, mask_url
from imagecatcher.db.dialect import Cursor
from imagecatcher.db.pool import Database
from imagecatcher.domain import CalibrationError

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


def _set_mask_url(cur: Cursor, temca: int, camera: int, url: str) -> None:
    config_id = _camera_configuration(cur, temca, camera)
    cur.execute(
        "UPDATE tem_camera_configurations SET tem_camera_mask_url = %s"
        " WHERE tem_camera_configuration_id = %s",
        (url, config_id),
    )


class Repository:
    """The service's database operations, each one transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

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
        return await self._db.run(_import_calibrations, calibrations)

    async def set_mask_url(self, mask_root: str, cal: Calibration) -> None:
        """Point the calibration's camera configuration at its mask image."""
        await self._db.run(
            _set_mask_url,
            cal.temca,
            cal.camera,
            mask_url(mask_root, cal.temca, cal.camera),
        )
