"""TileSink: chunks hashed and written once, in order, off the reactor; fsio grouping."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from twisted.internet.defer import Deferred

import imagecatcher.sink
from imagecatcher.fsio import DirSyncer
from imagecatcher.sink import (
    BATCH_BYTES,
    IDLE_BATCH_BYTES,
    MAX_PENDING,
    SinkFactory,
    TooLarge,
    remove_stale_parts,
)
from tests.storefakes import HeldPool, ImmediateReactor, SyncThreadPool, result_of, run


class Pausable:
    """Counts pause and resume calls."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's name
        """Record a pause."""
        self.events.append("pause")

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted's name
        """Record a resume."""
        self.events.append("resume")


def factory(tmp_path: Path, limit: int | None = None) -> SinkFactory:
    """Sinks in ``tmp_path/in`` whose thread work runs at once."""
    return SinkFactory(tmp_path / "in", ImmediateReactor(), SyncThreadPool(), limit)


def test_chunks_are_written_and_hashed_in_order(tmp_path: Path) -> None:
    """The file holds the chunks in order; MD5 and SHA-1 are of those bytes."""
    data = os.urandom(3 * BATCH_BYTES + 777)
    sink = factory(tmp_path).open()
    view = memoryview(data)
    for i in range(0, len(data), 65536):
        sink.write(view[i : i + 65536])
    received = run(sink.finish())
    assert received.path.read_bytes() == data and received.size == len(data)
    assert received.md5 == hashlib.md5(data).digest()
    assert received.sha1 == hashlib.sha1(data).digest()
    assert received.path.parent == tmp_path / "in"
    run(sink.make_durable())
    run(sink.discard())
    assert not received.path.exists()


def test_an_empty_tile_is_a_file_too(tmp_path: Path) -> None:
    """A sink that got no bytes still yields an (empty) file."""
    received = run(factory(tmp_path).open().finish())
    assert received.path.read_bytes() == b"" and received.size == 0
    assert received.md5 == hashlib.md5(b"").digest()


def test_too_many_bytes_are_refused_and_not_kept(tmp_path: Path) -> None:
    """Past the limit finish raises TooLarge; discard leaves nothing behind."""
    sink = factory(tmp_path, limit=10).open()
    sink.write(b"0123456789")
    sink.write(b"x")
    assert sink.too_large
    with pytest.raises(TooLarge):
        run(sink.finish())
    run(sink.discard())
    assert list((tmp_path / "in").iterdir()) == []


def test_write_errors_surface_at_finish(tmp_path: Path) -> None:
    """A directory that cannot be created fails the tile at finish, not silently."""
    (tmp_path / "in").write_text("a file where the directory should be")
    sink = factory(tmp_path).open()
    sink.write(os.urandom(BATCH_BYTES + 1))
    with pytest.raises(OSError):
        run(sink.finish())
    run(sink.discard())


def test_a_producer_is_paused_while_threads_fall_behind(tmp_path: Path) -> None:
    """More than MAX_PENDING bytes waiting pauses the producer; draining resumes it."""
    pool = HeldPool()
    sink = SinkFactory(tmp_path / "in", ImmediateReactor(), pool).open()
    producer = Pausable()
    sink.attach(producer)
    chunk = os.urandom(BATCH_BYTES)
    for _ in range(MAX_PENDING // BATCH_BYTES + 1):
        sink.write(chunk)
    assert producer.events == ["pause"]
    finished: Deferred[object] = Deferred.fromCoroutine(sink.finish())
    pool.release()
    received = result_of(finished)
    assert producer.events == ["pause", "resume"]
    assert received.size == len(chunk) * (MAX_PENDING // BATCH_BYTES + 1)  # type: ignore[attr-defined]


def _batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes of each batch the MD5 thread is given, from now on."""
    sizes: list[int] = []
    update = imagecatcher.sink._update

    def recording(digest: object, chunks: list[bytes | bytearray | memoryview]) -> None:
        if getattr(digest, "name", "") == "md5":
            sizes.append(sum(len(c) for c in chunks))
        update(digest, chunks)

    monkeypatch.setattr(imagecatcher.sink, "_update", recording)
    return sizes


def test_batches_are_small_while_the_threads_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Threads with nothing to do get a batch as soon as IDLE_BATCH_BYTES came."""
    sizes = _batch_sizes(monkeypatch)
    sink = factory(tmp_path).open()  # its threads finish each job at once
    for _ in range(4 * IDLE_BATCH_BYTES // 65536):
        sink.write(os.urandom(65536))
    run(sink.finish())
    assert sizes == [IDLE_BATCH_BYTES] * 4


def test_batches_grow_while_the_threads_are_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first batch goes early; while it waits, chunks gather up to BATCH_BYTES;
    the rest goes at finish.  The file holds every byte in order."""
    sizes = _batch_sizes(monkeypatch)
    pool = HeldPool()
    sink = SinkFactory(tmp_path / "in", ImmediateReactor(), pool).open()
    data = os.urandom(IDLE_BATCH_BYTES + 2 * BATCH_BYTES + 65536)
    for i in range(0, len(data), 65536):
        sink.write(data[i : i + 65536])
    finished: Deferred[object] = Deferred.fromCoroutine(sink.finish())
    pool.release()
    received = result_of(finished)
    assert sizes == [IDLE_BATCH_BYTES, BATCH_BYTES, BATCH_BYTES, 65536]
    assert received.path.read_bytes() == data  # type: ignore[attr-defined]


def test_stale_parts_of_dead_processes_are_removed(tmp_path: Path) -> None:
    """Parts of processes that are gone (or of this pid, from before a restart)
    are removed; other files and live processes' parts stay."""
    directory = tmp_path / "in"
    directory.mkdir()
    dead = directory / ".part-999999999-1.part"
    mine = directory / f".part-{os.getpid()}-3.part"
    live = directory / f".part-{os.getppid()}-2.part"
    other = directory / "keep.tif"
    for path in (dead, mine, live, other):
        path.write_bytes(b"x")
    assert remove_stale_parts(directory) == 2
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [live.name, other.name]
    )
    assert remove_stale_parts(tmp_path / "absent") == 0


def test_directory_syncs_are_shared_while_one_runs(tmp_path: Path) -> None:
    """Callers arriving during a directory fsync share the next one."""
    pool = HeldPool()
    syncer = DirSyncer(ImmediateReactor(), pool)
    first = syncer.sync(tmp_path)
    later = [syncer.sync(tmp_path) for _ in range(5)]
    assert syncer.syncs == 1 and len(pool.held) == 1
    on_result, func, args = pool.held.pop(0)
    on_result(True, func(*args))
    assert result_of(first) is None and not any(d.called for d in later)
    assert syncer.syncs == 2 and len(pool.held) == 1
    on_result, func, args = pool.held.pop(0)
    on_result(True, func(*args))
    assert all(result_of(d) is None for d in later) and syncer.syncs == 2


def test_tiny_chunks_are_gathered_not_kept_one_by_one(tmp_path: Path) -> None:
    """A peer sending one byte at a time does not pin an object per byte: the
    bytes are gathered, and the file still holds them in order."""
    data = os.urandom(40_000)
    sink = factory(tmp_path).open()
    for i in range(len(data)):
        sink.write(data[i : i + 1])
    assert len(sink._batch) <= len(data) // (16 * 1024) + 1
    received = run(sink.finish())
    assert received.path.read_bytes() == data
    assert received.md5 == hashlib.md5(data).digest()
