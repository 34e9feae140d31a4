"""Group commit and the one-transaction capture record, on MariaDB and SQLite."""

from __future__ import annotations

import hashlib

import pytest_twisted

from twisted.internet import defer

from imagecatcher.db.batch import WriteBatcher
from imagecatcher.db.capture import TileContent
from imagecatcher.db.dialect import Cursor
from imagecatcher.db.migrations import Migrator
from imagecatcher.db.pool import Database
from imagecatcher.db.repository import Repository
from tests.conftest import FIXTURES


def _insert_calibration(cur: Cursor, name: str) -> int:
    cur.execute(
        "INSERT INTO calibrations (calibration_name, json_config) VALUES (%s, '{}')",
        (name,),
    )
    return int(cur.lastrowid or 0)


def _fail_after_insert(cur: Cursor, name: str) -> None:
    _insert_calibration(cur, name)
    raise ValueError("this item fails after writing")


def _names(cur: Cursor) -> list[str]:
    cur.execute("SELECT calibration_name FROM calibrations ORDER BY calibration_id")
    return [str(r[0]) for r in cur.fetchall()]


@pytest_twisted.ensureDeferred
async def test_items_of_one_turn_share_a_transaction(
    database: Database, repo: Repository, reactor: object
) -> None:
    """Items submitted together commit in one transaction; an item that fails
    is rolled back to its savepoint alone and the others commit."""
    await Migrator(repo).init()
    batcher = WriteBatcher(database, reactor, in_flight=1)  # type: ignore[arg-type]
    good = [batcher.submit(_insert_calibration, f"cal-{i}") for i in range(5)]
    bad = batcher.submit(_fail_after_insert, "never")
    more = batcher.submit(_insert_calibration, "cal-5")
    ids = await defer.gatherResults([*good, more])
    assert len(set(ids)) == 6
    try:
        await bad
    except ValueError as e:
        assert "fails after writing" in str(e)
    else:
        raise AssertionError("the failing item succeeded")
    assert batcher.transactions == 1 and batcher.items == 6
    assert await database.run(_names) == [f"cal-{i}" for i in range(6)]


@pytest_twisted.ensureDeferred
async def test_a_lone_item_runs_at_once(
    database: Database, repo: Repository, reactor: object
) -> None:
    """One item alone is not held back waiting for company."""
    await Migrator(repo).init()
    batcher = WriteBatcher(database, reactor)  # type: ignore[arg-type]
    first = await batcher.submit(_insert_calibration, "alone")
    second = await batcher.submit(_insert_calibration, "alone too")
    assert second > first and batcher.transactions == 2


async def _acquisition(repo: Repository) -> int:
    from imagecatcher.acqlog import parse_acquisition_log

    log = parse_acquisition_log((FIXTURES / "123_logfile.ini").read_text())
    await repo.start_acquisition(log, 161105213017)
    acq = await repo.cached_acquisition(161105213017)
    assert acq is not None
    return acq.mosaic_id


def _content(mosaic: int, frame: int, key: str, data: bytes) -> TileContent:
    name = (
        f"Dump_cam1_frame{frame:06d}_col0012_row0005.tif"
        if frame != -1
        else "col0012_row0005_cam1.tif"
    )
    return TileContent(
        mosaic_id=mosaic,
        temca_id=None,
        col=12,
        row=5,
        frame=frame,
        camera=1,
        name=name,
        path=f"/acquisitions/161105213017/{name}",
        key=key,
        url=f"file:///objects/{key}" if key else "",
        sha1=hashlib.sha1(data).digest(),
        md5=hashlib.md5(data).digest(),
    )


@pytest_twisted.ensureDeferred
async def test_record_tile_creates_then_replaces(repo: Repository) -> None:
    """The one capture transaction creates a tile, records a re-capture on the
    same row, and keeps spooled content out of the persisted tiles."""
    await Migrator(repo).init()
    mosaic = await _acquisition(repo)
    first = await repo.record_tile(_content(mosaic, -1, "a" * 40, b"one"))
    assert first.previous_key == "" and first.tile.jfs_key == "a" * 40
    again = await repo.record_tile(_content(mosaic, -1, "b" * 40, b"two"))
    assert again.tile.tile_id == first.tile.tile_id
    assert again.previous_key == "a" * 40
    spooled = await repo.record_tile(_content(mosaic, 12345, "", b"drift"))
    found = await repo.find_tile(mosaic, 12, 5, 12345)
    assert found is not None and found.tile_id == spooled.tile.tile_id
    assert not found.persisted and found.sha1 == hashlib.sha1(b"drift").digest()


@pytest_twisted.ensureDeferred
async def test_concurrent_records_of_one_tile_make_one_row(repo: Repository) -> None:
    """Two captures of the same new tile in one batch, each having read it as
    absent, meet on the unique key: the second retries, one row results."""
    await Migrator(repo).init()
    mosaic = await _acquisition(repo)
    one, two = await defer.gatherResults(
        [
            defer.Deferred.fromCoroutine(
                repo.record_tile(_content(mosaic, 7, "c" * 40, b"x"), known=None)
            ),
            defer.Deferred.fromCoroutine(
                repo.record_tile(_content(mosaic, 7, "d" * 40, b"y"), known=None)
            ),
        ]
    )
    assert one.tile.tile_id == two.tile.tile_id
    found = await repo.find_tile(mosaic, 12, 5, 7)
    assert found is not None and found.jfs_key in ("c" * 40, "d" * 40)
