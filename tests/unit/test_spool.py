"""Spool: durable entries, lookups, quarantine and crash-debris cleanup (no reactor)."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from imagecatcher.fsio import BACKGROUND_NICE, BackgroundThreadPool
from imagecatcher.spool import DEBRIS_AGE, Spool, SpoolEntry
from tests.storefakes import ImmediateReactor, SyncThreadPool, run


def _entry(tile_id: int = 7, data: bytes = b"tile bytes") -> SpoolEntry:
    return SpoolEntry(
        tile_id=tile_id,
        uid=123,
        name="col0006_row0017_cam1.tif",
        col=6,
        row=17,
        collection="FAFB",
        path="/acquisitions/123/col0006_row0017_cam1.tif",
        context={"sample": "FAFB_00", "checksum": hashlib.md5(data).hexdigest()},
        sha1=hashlib.sha1(data).digest(),
        md5=hashlib.md5(data).digest(),
    )


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    """Where the spool lives (not created yet)."""
    return tmp_path / "spool"


@pytest.fixture
def spool(spool_dir: Path) -> Spool:
    """A spool whose file I/O runs inline."""
    return Spool(spool_dir, ImmediateReactor(), SyncThreadPool())


def test_put_then_entries_round_trips(spool: Spool) -> None:
    """An entry put into the spool comes back equal, with its bytes."""
    entry = _entry()
    run(spool.put(entry, b"tile bytes"))
    assert run(spool.entries()) == [entry]
    assert run(spool.read(entry)) == b"tile bytes"


def test_put_creates_the_directory_and_two_files(spool: Spool, spool_dir: Path) -> None:
    """put creates the directory and leaves exactly <stem>.tile and <stem>.json."""
    entry = _entry()
    run(spool.put(entry, memoryview(b"tile bytes")))
    assert _names(spool_dir) == [f"{entry.stem}.json", f"{entry.stem}.tile"]
    assert (spool_dir / f"{entry.stem}.tile").read_bytes() == b"tile bytes"


def test_stem_names_tile_and_sha1(spool: Spool) -> None:
    """The stem is <tile id>-<hex SHA-1>."""
    entry = _entry(tile_id=42)
    assert entry.stem == f"42-{entry.sha1.hex()}"


def test_json_round_trip_keeps_every_field() -> None:
    """to_json/from_json are inverse and store checksums as hex."""
    entry = _entry()
    raw = entry.to_json()
    assert json.loads(raw)["sha1"] == entry.sha1.hex()
    assert SpoolEntry.from_json(raw) == entry


def test_has_matches_tile_and_content(spool: Spool) -> None:
    """has() is true only for the exact (tile id, SHA-1) that was spooled."""
    entry = _entry(tile_id=7)
    assert not run(spool.has(7, entry.sha1))
    run(spool.put(entry, b"tile bytes"))
    assert run(spool.has(7, entry.sha1))
    assert not run(spool.has(8, entry.sha1))
    assert not run(spool.has(7, hashlib.sha1(b"other").digest()))


def test_remove_forgets_the_entry(spool: Spool, spool_dir: Path) -> None:
    """remove() deletes both files; removing twice is harmless."""
    entry = _entry()
    run(spool.put(entry, b"tile bytes"))
    run(spool.remove(entry))
    run(spool.remove(entry))
    assert _names(spool_dir) == []
    assert not run(spool.has(entry.tile_id, entry.sha1))
    assert run(spool.entries()) == []


def test_quarantine_renames_to_bad_and_hides_the_entry(
    spool: Spool, spool_dir: Path
) -> None:
    """quarantine() renames both files to *.bad, which entries() then ignores."""
    entry = _entry()
    run(spool.put(entry, b"tile bytes"))
    run(spool.quarantine(entry))
    assert _names(spool_dir) == [f"{entry.stem}.json.bad", f"{entry.stem}.tile.bad"]
    assert run(spool.entries()) == []
    assert _names(spool_dir) == [f"{entry.stem}.json.bad", f"{entry.stem}.tile.bad"]
    assert (spool_dir / f"{entry.stem}.tile.bad").read_bytes() == b"tile bytes"


def _old(path: Path, data: bytes) -> None:
    """Write ``path`` and date it back past DEBRIS_AGE."""
    path.write_bytes(data)
    then = time.time() - DEBRIS_AGE - 10
    os.utime(path, (then, then))


def test_tile_without_json_is_interrupted_write_debris(
    spool: Spool, spool_dir: Path
) -> None:
    """An old .tile whose .json was never written is removed; a recent one may
    be another worker's entry being completed and stays; complete entries stay."""
    kept = _entry(tile_id=1)
    run(spool.put(kept, b"tile bytes"))
    orphan = _entry(tile_id=2, data=b"orphan")
    recent = _entry(tile_id=3, data=b"recent")
    _old(spool_dir / f"{orphan.stem}.tile", b"orphan")
    (spool_dir / f"{recent.stem}.tile").write_bytes(b"recent")
    assert run(spool.entries()) == [kept]
    assert _names(spool_dir) == sorted(
        [f"{kept.stem}.json", f"{kept.stem}.tile", f"{recent.stem}.tile"]
    )


def test_temporary_files_are_removed(spool: Spool, spool_dir: Path) -> None:
    """Old .tmp-* files left by an interrupted atomic write are removed."""
    entry = _entry()
    run(spool.put(entry, b"tile bytes"))
    _old(spool_dir / ".tmp-abc123", b"half a tile")
    _old(spool_dir / ".tmp-", b"")
    assert run(spool.entries()) == [entry]
    assert _names(spool_dir) == [f"{entry.stem}.json", f"{entry.stem}.tile"]


def test_temporary_files_of_dead_writers_go_at_once(
    spool: Spool, spool_dir: Path
) -> None:
    """A recent .tmp-<pid>-* of a process that is gone is removed; this
    process's own and a live process's stay until they are old."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    entry = _entry()
    run(spool.put(entry, b"tile bytes"))
    assert _names(spool_dir) == [f"{entry.stem}.json", f"{entry.stem}.tile"]
    (spool_dir / f".tmp-{gone.pid}-abc").write_bytes(b"half a tile")
    (spool_dir / f".tmp-{os.getpid()}-def").write_bytes(b"being written")
    (spool_dir / ".tmp-1-ghi").write_bytes(b"pid 1 is alive")
    assert run(spool.entries()) == [entry]
    assert _names(spool_dir) == sorted(
        [
            f"{entry.stem}.json",
            f"{entry.stem}.tile",
            f".tmp-{os.getpid()}-def",
            ".tmp-1-ghi",
        ]
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b"null",
        b'{"tile_id": 1}',
        b"",
    ],
)
def test_corrupt_json_is_set_aside(spool: Spool, spool_dir: Path, raw: bytes) -> None:
    """A metadata file that does not parse is renamed *.json.bad and skipped."""
    good = _entry(tile_id=1)
    run(spool.put(good, b"tile bytes"))
    (spool_dir / "9-deadbeef.json").write_bytes(raw)
    assert run(spool.entries()) == [good]
    assert (spool_dir / "9-deadbeef.json.bad").read_bytes() == raw
    assert not (spool_dir / "9-deadbeef.json").exists()


def test_setting_damaged_metadata_aside_is_notified(spool_dir: Path) -> None:
    """Each entry set aside for damaged metadata is notified, naming its file."""
    told: list[str] = []
    spool = Spool(spool_dir, ImmediateReactor(), SyncThreadPool(), told.append)
    entry = _entry()
    run(spool.put(entry, b"tile bytes"))
    (spool_dir / f"{entry.stem}.json").write_bytes(b"{truncated")
    assert run(spool.entries()) == []
    assert len(told) == 1 and f"{spool_dir / entry.stem}.json is damaged" in told[0]
    assert run(spool.entries()) == [] and len(told) == 1  # set aside once


def test_json_with_bad_checksum_hex_or_extra_key_is_set_aside(
    spool: Spool, spool_dir: Path
) -> None:
    """Non-hex checksums and unknown keys make the metadata corrupt too."""
    data = json.loads(_entry().to_json())
    bad_hex = data | {"sha1": "zz"}
    extra = data | {"surprise": 1}
    (spool_dir).mkdir()
    (spool_dir / "1-a.json").write_text(json.dumps(bad_hex))
    (spool_dir / "2-b.json").write_text(json.dumps(extra))
    assert run(spool.entries()) == []
    assert _names(spool_dir) == ["1-a.json.bad", "2-b.json.bad"]


def test_corrupt_json_keeps_the_tile_bytes(spool: Spool, spool_dir: Path) -> None:
    """Setting a corrupt entry aside keeps its acknowledged bytes on disk."""
    entry = _entry()
    run(spool.put(entry, b"tile bytes"))
    (spool_dir / f"{entry.stem}.json").write_bytes(b"{truncated")
    assert run(spool.entries()) == []
    kept = [p for p in spool_dir.iterdir() if p.name.startswith(f"{entry.stem}.tile")]
    assert [p.read_bytes() for p in kept] == [b"tile bytes"]


def test_entries_come_oldest_tile_id_first(spool: Spool) -> None:
    """entries() lists tile ids in numeric order."""
    for tile_id in (10, 9, 100):
        run(spool.put(_entry(tile_id=tile_id), b"tile bytes"))
    assert [e.tile_id for e in run(spool.entries())] == [9, 10, 100]


def test_missing_directory_has_no_entries(spool: Spool, spool_dir: Path) -> None:
    """A spool directory that does not exist yet holds nothing (and is not created)."""
    assert run(spool.entries()) == []
    assert not spool_dir.exists()
    assert not run(spool.has(1, b"\0" * 20))


def test_unrelated_files_are_left_alone(spool: Spool, spool_dir: Path) -> None:
    """Files that are neither entries, debris nor .tile are not touched."""
    spool_dir.mkdir()
    (spool_dir / "README").write_text("hands off")
    (spool_dir / "old.json.bad").write_text("{}")
    assert run(spool.entries()) == []
    assert _names(spool_dir) == ["README", "old.json.bad"]


def test_read_checked_tells_damage(spool_dir: Path) -> None:
    """Uploads read an entry on the background pool and learn whether its
    bytes still have the entry's SHA-1."""
    background = _RecordingPool()
    spool = Spool(
        spool_dir, ImmediateReactor(), SyncThreadPool(), background=background
    )
    entry = _entry()
    run(spool.put(entry, b"tile bytes"))
    assert run(spool.read_checked(entry)) == (b"tile bytes", True)
    (spool_dir / f"{entry.stem}.tile").write_bytes(b"tile bytez")
    assert run(spool.read_checked(entry)) == (b"tile bytez", False)
    assert background.jobs == 2


class _RecordingPool(SyncThreadPool):
    def __init__(self) -> None:
        super().__init__()
        self.jobs = 0

    def callInThreadWithCallback(self, *args: Any, **kw: Any) -> None:  # noqa: N802
        self.jobs += 1
        super().callInThreadWithCallback(*args, **kw)


def test_background_pool_threads_run_at_a_lower_priority() -> None:
    """Threads of the background pool run at BACKGROUND_NICE or nicer; the
    thread that started the pool keeps its own priority."""
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    pool = BackgroundThreadPool(0, 1, name="test-background")
    pool.start()
    seen: queue.Queue[int] = queue.Queue()
    try:
        pool.callInThread(
            lambda: seen.put(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        )
        assert seen.get(timeout=30) >= max(BACKGROUND_NICE, mine)
    finally:
        pool.stop()
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine
