"""Schema creation and migrations on both engines (CONTRACT §6)."""

from __future__ import annotations

from typing import Any

import pymysql
import pytest
import pytest_twisted

from imagecatcher.config import Config
from imagecatcher.db.dialect import Cursor
from imagecatcher.db.migrations import Migrator
from imagecatcher.db.pool import Database, open_database
from imagecatcher.db.repository import Repository

USED_TABLES = {
    "ini_files_denorm",
    "tem_camera_image_mosaics",
    "tem_camera_images",
    "file_objects",
    "file_object_fs_replicas",
    "image_mosaic_rois",
    "acq_time_rois",
    "roi_images",
    "ancillary_files",
    "ancillary_file_types",
    "calibrations",
    "tem_camera_configurations",
    "tem_pc_ip_addresses",
    "temcas",
    "gomigrate",
}
REFERENCE_TABLES = {
    "tem_manufacturers",
    "tems",
    "temca_types",
    "tem_scintillator_manufacturers",
    "tem_scintillator_types",
    "tem_scintillators",
    "tem_camera_manufacturers",
    "tem_camera_types",
    "tem_cameras",
    "people",
    "data_source_types",
    "path_prefixes",
}
SEED_COUNTS = {
    "people": 10,
    "tem_manufacturers": 1,
    "tem_scintillator_manufacturers": 2,
    "temca_types": 2,
    "tem_camera_manufacturers": 2,
    "tems": 3,
    "tem_scintillator_types": 2,
    "tem_camera_types": 2,
    "tem_cameras": 10,
    "tem_pc_ip_addresses": 4,
    "tem_scintillators": 5,
    "temcas": 14,
    "tem_camera_configurations": 35,
}


async def _count(db: Database, table: str) -> int:
    def count(cur: Cursor) -> int:
        cur.execute(f"SELECT COUNT(*) FROM {table}")
        return int(cur.fetchone()[0])

    return await db.run(count)


async def _columns(db: Database, table: str) -> set[str]:
    def columns(cur: Cursor) -> set[str]:
        cur.execute(f"SELECT * FROM {table} WHERE 1 = 0")
        cur.fetchall()
        return {d[0] for d in cur.description or ()}

    return await db.run(columns)


@pytest_twisted.ensureDeferred
async def test_init_creates_tables_and_seed(
    database: Database, repo: Repository
) -> None:
    """db-init on an empty database creates §6.1 and §6.2a tables with the §6.3 seed rows."""
    migrator = Migrator(repo)
    applied = await migrator.init()
    tables = await repo.tables()
    assert USED_TABLES | REFERENCE_TABLES <= tables
    for table, n in SEED_COUNTS.items():
        assert await _count(database, table) == n, table
    status = await migrator.status()
    assert status.initialised and not status.pending
    assert {1, 2} <= set(status.applied)
    assert 1 not in applied and 2 not in applied  # pre-marked by the seed (Q39)


@pytest_twisted.ensureDeferred
async def test_temca_windows_match_the_seed(
    database: Database, repo: Repository
) -> None:
    """The seeded temca 2 owns camera configurations 26-29 for cameras 0-3."""
    await Migrator(repo).init()

    def configs(cur: Cursor) -> list[tuple[int, int]]:
        cur.execute(
            "SELECT tem_camera_configuration_id, tem_camera_number"
            " FROM tem_camera_configurations WHERE temca_id = %s"
            " ORDER BY tem_camera_configuration_id",
            (2,),
        )
        return [(int(a), int(b)) for a, b in cur.fetchall()]

    assert await database.run(configs) == [(26, 0), (27, 1), (28, 2), (29, 3)]


@pytest_twisted.ensureDeferred
async def test_downgrade_to_zero_and_back(database: Database, repo: Repository) -> None:
    """db-upgrade, db-downgrade --to 0, db-upgrade round-trip the schema."""
    migrator = Migrator(repo)
    await migrator.init()
    before = await _columns(database, "roi_images")
    reverted = await migrator.downgrade(to=0)
    assert reverted == sorted(reverted, reverse=True) and {1, 2} <= set(reverted)
    down = await _columns(database, "roi_images")
    assert "roi_included_images_id" in down and "tx_hash" not in down
    assert "acquired_timestamp" not in await _columns(database, "tem_camera_images")
    assert (await migrator.status()).applied == ()
    again = await migrator.upgrade()
    assert sorted(again) == sorted(reverted)
    assert await _columns(database, "roi_images") == before


@pytest_twisted.ensureDeferred
async def test_downgrade_one_step(repo: Repository) -> None:
    """db-downgrade without --to reverts only the newest applied migration."""
    migrator = Migrator(repo)
    await migrator.init()
    newest = max((await migrator.status()).applied)
    assert await migrator.downgrade() == [newest]
    assert newest not in (await migrator.status()).applied


@pytest_twisted.ensureDeferred
async def test_init_twice_is_harmless(database: Database, repo: Repository) -> None:
    """A second db-init neither re-seeds nor re-applies anything."""
    migrator = Migrator(repo)
    await migrator.init()
    assert await migrator.init() == []
    assert await _count(database, "temcas") == 14


@pytest_twisted.ensureDeferred
async def test_old_gomigrate_rows_are_respected(
    database: Database, repo: Repository
) -> None:
    """A database migrated by the old tools (gomigrate rows 1, 2) gets nothing re-applied."""
    migrator = Migrator(repo)
    await migrator.init()
    applied_before = (await migrator.status()).applied
    assert await migrator.upgrade() == []
    assert (await migrator.status()).applied == applied_before


@pytest_twisted.ensureDeferred
async def test_reset_drops_data(database: Database, repo: Repository) -> None:
    """db-reset drops every table and recreates schema and seed."""
    migrator = Migrator(repo)
    await migrator.init()

    def add_calibration(cur: Cursor) -> None:
        cur.execute(
            "INSERT INTO calibrations (calibration_name, json_config, notes)"
            " VALUES (%s, %s, %s)",
            ("x", "{}", ""),
        )

    await database.run(add_calibration)
    assert await _count(database, "calibrations") == 1
    await migrator.reset()
    assert await _count(database, "calibrations") == 0
    assert await _count(database, "temcas") == 14


def _session_sql_mode(cur: Cursor) -> str:
    cur.execute("SELECT @@SESSION.sql_mode")
    row = cur.fetchone()
    assert row is not None
    return str(row[0])


def _overlong_key(cur: Cursor) -> None:
    cur.execute(
        "INSERT INTO file_objects (sha1_checksum, checksum_date, creation_date)"
        " VALUES (NULL, NULL, NULL)"
    )
    cur.execute(
        "INSERT INTO file_object_fs_replicas (jfs_key, file_object_id, file_exists_yn,"
        " replica_created_date) VALUES (%s, %s, 0, '2016-11-05 21:30:17')",
        ("k" * 65, cur.lastrowid),
    )


@pytest_twisted.ensureDeferred
async def test_mariadb_sessions_are_strict(
    mariadb_config: Config, reactor: Any
) -> None:
    """The test MariaDB, and the daemon's sessions on it, refuse a value longer
    than its column (strict mode), so SQLite's leniency cannot hide such bugs."""
    database = open_database(mariadb_config, reactor)
    try:
        await Migrator(Repository(database, reactor)).init()
        assert "STRICT_TRANS_TABLES" in await database.run(_session_sql_mode)
        with pytest.raises(pymysql.err.DataError, match="Data too long"):
            await database.run(_overlong_key)
    finally:
        database.close()
