"""Write-behind: acknowledged from the spool, uploaded behind, limits refuse cleanly."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

import pytest

from imagecatcher.domain import QueueColour, StorageFull
from imagecatcher.names import parse_tile_name
from imagecatcher.pipeline import TileUpload
from imagecatcher.sink import BATCH_BYTES
from imagecatcher.writebehind import SpoolStats
from tests.unit.test_pipeline import (
    KEY,
    NAME,
    OBJECT,
    UID,
    Rig,
    _failure_of,
    make_rig,
)

__all__ = ["make_rig"]  # the fixture, used by name


def test_spooled_ack_then_upload_behind(make_rig: Callable[..., Rig]) -> None:
    """With ACK_WHEN spooled the tile is acknowledged from the spool (no key
    yet) and uploaded at once behind the acknowledgement, then READY."""
    rig = make_rig(ack_when="spooled")
    result = rig.capture(b"behind")
    assert result.jfs_key == ""
    assert rig.repo.spooled[0][1] == NAME
    assert rig.store.objects[OBJECT] == b"behind"
    assert [f.key for f in rig.repo.finalised] == [KEY]
    assert rig.spool_files() == []


def test_spool_limit_refuses_cleanly(make_rig: Callable[..., Rig]) -> None:
    """Past SPOOL_MAX_BYTES a tile is refused (507) naming the spool; the
    refused tile leaves nothing behind and the content queue turns RED."""
    rig = make_rig(ack_when="spooled", spool_max_bytes=1000)
    rig.store.fail_next(10)  # the store is down: tiles stay in the spool
    rig.pipeline.health.failed(RuntimeError("down"))
    rig.capture(b"x" * 600)
    rig.pipeline.watch.stats = SpoolStats(entries=1, bytes=600)
    failure = _failure_of(
        rig.pipeline.capture(
            TileUpload(UID, parse_tile_name("col0001_row0001_cam0.tif"), b"y" * 600)
        )
    )
    assert failure.check(StorageFull)
    assert "spool" in failure.getErrorMessage() and "1000" in failure.getErrorMessage()
    assert len(rig.spool_files()) == 2  # only the first tile's entry
    assert any("refusing tiles" in n for n in rig.notes)
    rig.pipeline.watch.stats = SpoolStats(entries=1, bytes=1000)
    assert rig.pipeline.status().content == QueueColour.RED
    assert "SPOOL_MAX_BYTES" in rig.pipeline.storage_problem()


def test_low_free_space_refuses_before_the_disk_is_full(
    make_rig: Callable[..., Rig],
) -> None:
    """Below SPOOL_MIN_FREE_BYTES a tile is refused, naming the directory and
    the free bytes; capture resumes by itself once room returns."""
    rig = make_rig(ack_when="spooled", min_free_bytes=10_000)
    directory = str(rig.spool_dir)
    rig.pipeline.watch.stats = SpoolStats(free=((directory, 5_000),))
    failure = _failure_of(
        rig.pipeline.capture(TileUpload(UID, parse_tile_name(NAME), b"z"))
    )
    assert failure.check(StorageFull)
    assert (
        directory in failure.getErrorMessage() and "5000" in failure.getErrorMessage()
    )
    assert rig.spool_files() == []
    rig.pipeline.watch.stats = SpoolStats(free=((directory, 10**9),))
    assert rig.capture(b"z").jfs_key == ""
    assert rig.pipeline.storage_problem() == ""


def test_a_disk_full_error_is_storage_full(
    make_rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while a tile is written is a StorageFull naming the directory."""
    rig = make_rig(ack_when="spooled")

    def full(fd: int, buffers: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "writev", full)
    sink = rig.pipeline.open_sink()
    sink.write(b"q" * BATCH_BYTES)
    failure = _failure_of(
        rig.pipeline.capture(TileUpload(UID, parse_tile_name(NAME), sink=sink))
    )
    assert failure.check(StorageFull)
    assert "is full" in failure.getErrorMessage()
    assert rig.spool_files() == []


def test_store_down_shows_in_colours_and_report(make_rig: Callable[..., Rig]) -> None:
    """While the store is down the content queue is YELLOW and the report says
    how long and how much waits."""
    rig = make_rig(ack_when="spooled")
    rig.store.fail_next(100)
    rig.pipeline.health.failed(RuntimeError("connection refused"))
    rig.capture(b"waiting")
    rig.pipeline.watch.stats = SpoolStats(entries=1, bytes=7, oldest=0.0)
    rig.clock.advance(0.5)
    assert rig.pipeline.status().content == QueueColour.YELLOW
    report = rig.pipeline.store_report()
    assert "down" in report and "1 tile(s), 7 bytes" in report


def test_upload_rate_is_bounded(make_rig: Callable[..., Rig]) -> None:
    """With an upload rate set, a draining spool does not upload faster."""
    rig = make_rig(ack_when="spooled", upload_rate=1000.0)
    rig.pipeline.health.failed(RuntimeError("down"))
    for i in range(3):
        rig.capture(b"r" * 1000, name=f"col000{i}_row0001_cam0.tif")
    rig.clock.advance(1.0)  # the probe passes: uploads start
    stored = lambda: sum(1 for k in rig.store.objects if "jfs ping" not in k)  # noqa: E731
    assert stored() == 1
    rig.clock.advance(1.0)
    assert stored() == 2
    rig.clock.advance(1.0)
    assert stored() == 3


def test_damaged_entries_are_reported(make_rig: Callable[..., Rig]) -> None:
    """A spooled tile whose bytes rotted is set aside, never uploaded, and
    listed by the spool report with its tile; the store's state is shown."""
    rig = make_rig(ack_when="spooled")
    rig.pipeline.health.failed(RuntimeError("down for now"))
    rig.capture(b"pristine")
    (tile,) = [p for p in rig.spool_dir.glob("*.tile")]
    tile.write_bytes(b"bit rot")
    rig.clock.advance(1.0)  # the probe passes; the upload finds the damage
    assert OBJECT not in rig.store.objects
    assert not rig.repo.record(1).jfs_key
    from tests.storefakes import run

    run(rig.pipeline.watch.refresh())
    report = rig.pipeline.spool_report()
    assert report["damaged"] == [{"tile_id": 1, "uid": UID, "name": NAME}]
    assert report["entries"] == 0 and report["store"]["up"] is True
    assert report["ack_when"] == "spooled" and report["refusing"] == ""


def test_ping_says_refusing_while_tiles_like_the_last_are_refused(
    make_rig: Callable[..., Rig],
) -> None:
    """Near the low-space limit, a tile refused for its size makes the
    storage problem (and so ping and the colours) say so, not just a disk
    already below the limit; a small tile that fits clears it."""
    rig = make_rig(ack_when="spooled", min_free_bytes=10_000)
    directory = str(rig.spool_dir)
    rig.pipeline.watch.stats = SpoolStats(free=((directory, 12_000),))
    assert rig.pipeline.storage_problem() == ""
    failure = _failure_of(
        rig.pipeline.capture(TileUpload(UID, parse_tile_name(NAME), b"b" * 5_000))
    )
    assert failure.check(StorageFull)
    assert directory in rig.pipeline.storage_problem()
    assert rig.pipeline.status().content == QueueColour.RED
    rig.pipeline.watch.stats = SpoolStats(free=((directory, 12_000),))
    assert rig.capture(b"s" * 100).jfs_key == ""
    assert rig.pipeline.storage_problem() == ""


def test_spooled_tile_is_fsynced_before_its_acknowledgement(
    make_rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acknowledged from the spool: its file was fsync'd (while the tile was
    recorded), and an I/O error doing so is no acknowledgement."""
    synced: list[tuple[int, int]] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        info = os.fstat(fd)
        synced.append((info.st_dev, info.st_ino))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    rig = make_rig(ack_when="spooled")
    rig.pipeline.health.failed(RuntimeError("down"))  # it stays in the spool
    assert rig.capture(b"spooled and durable").jfs_key == ""
    (tile,) = rig.spool_dir.glob("*.tile")
    assert (os.stat(tile).st_dev, os.stat(tile).st_ino) in synced

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", broken)
    failure = _failure_of(
        rig.pipeline.capture(
            TileUpload(UID, parse_tile_name("col0002_row0001_cam0.tif"), b"lost")
        )
    )
    assert failure.check(OSError)
    assert len(list(rig.spool_dir.glob("*.tile"))) == 1


def test_spool_pressure_near_its_limits(make_rig: Callable[..., Rig]) -> None:
    """Half of SPOOL_MAX_BYTES, or less than twice SPOOL_MIN_FREE_BYTES
    free, is pressure: uploads then go before capture's pace."""
    rig = make_rig(ack_when="spooled", spool_max_bytes=1000, min_free_bytes=100)
    directory = str(rig.spool_dir)
    rig.pipeline.watch.stats = SpoolStats(bytes=499, free=((directory, 201),))
    assert not rig.pipeline._spool_pressed()
    rig.pipeline.watch.stats = SpoolStats(bytes=500, free=((directory, 201),))
    assert rig.pipeline._spool_pressed()
    rig.pipeline.watch.stats = SpoolStats(bytes=0, free=((directory, 199),))
    assert rig.pipeline._spool_pressed()
