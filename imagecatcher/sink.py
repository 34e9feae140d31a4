"""A tile's bytes on their way to their durable home, handled once as they arrive.

Both channels hand every received chunk of a tile to a :class:`TileSink`: the
raw TCP receiver the chunks inside the FlatBuffer's ``image`` vector, HTTP the
raw body or the multipart file part.  The sink gathers chunks into batches of
about a MiB and gives each batch to the thread pool, where the MD5 is fed on
one thread while the SHA-1 is fed and the batch written (one ``writev``) on
another; batches run in arrival order.  Nothing is joined, sliced or copied
on the reactor thread.

The file is an anonymous temporary file in a directory on the filesystem of
the tile's durable home (the file store's root or the spool), so that
placing it there is a rename.  :meth:`TileSink.finish` waits for the writes
and returns the size and checksums; :meth:`TileSink.make_durable` fsyncs the
file (the one durable write of a tile); :meth:`TileSink.discard` deletes it.
Memory per tile is bounded: past ``max_pending`` bytes waiting for the
threads, the sink pauses its producer (the connection) until they catch up.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import attrs

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from imagecatcher.fsio import process_alive

log = Logger()

#: Bytes gathered before a batch goes to the threads: big enough that thread
#: hand-offs (and the GIL's hand-overs around each hash and write) stay rare.
BATCH_BYTES = 1024 * 1024
#: Bytes gathered while the threads are idle (a tile's first batch): fewer,
#: so that hashing starts early.  While they are busy (one core's MD5 is
#: slower than a socket) a bigger batch costs no latency.
IDLE_BATCH_BYTES = 256 * 1024
#: Bytes asked of a connection's socket per read (twisted.internet.tcp asks
#: 64 KiB): a tile arrives in a few big chunks, so that the per-chunk work of
#: both channels stays small beside the hashing.
SOCKET_READ_BYTES = BATCH_BYTES
#: Bytes waiting for the threads before the producer is paused.
MAX_PENDING = 4 * BATCH_BYTES
#: Written bytes after which the writing thread starts their write-back
#: (fdatasync), so that the fsync after the last byte has little left to do.
SYNC_EVERY = 4 * 1024 * 1024
#: Chunks shorter than this are copied together rather than kept one by one.
SMALL_CHUNK = 16 * 1024
#: Jobs a lane runs before it reports their outcomes to the reactor.
REPORT_EVERY = 4
#: Temporary files are ``<prefix><pid>-<n>.part``: a restart removes those of
#: processes that are gone (they were never acknowledged).
PART_PREFIX = ".part-"


class Producer(Protocol):
    """What a sink can hold back: a transport, or anything pausable."""

    def pauseProducing(self) -> None: ...  # noqa: N802 - Twisted's name

    def resumeProducing(self) -> None: ...  # noqa: N802 - Twisted's name


class TooLarge(Exception):
    """More bytes arrived than the sink accepts (``MAX_TILE_BYTES``)."""


@attrs.frozen
class Received:
    """A tile's bytes as written: where, how many and their checksums."""

    path: Path
    size: int
    md5: bytes
    sha1: bytes


def read_big_chunks(transport: object) -> None:
    """Make ``transport`` (a TCP connection) read SOCKET_READ_BYTES at a time."""
    if hasattr(transport, "bufferSize"):
        transport.bufferSize = SOCKET_READ_BYTES


def _open_part(directory: Path, serial: int) -> tuple[int, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{PART_PREFIX}{os.getpid()}-{serial}.part"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    return fd, path


def _write_all(fd: int, chunks: list[bytes | bytearray | memoryview]) -> None:
    """``writev`` the chunks, coping with short writes."""
    views = [memoryview(c).cast("B") for c in chunks]
    while views:
        done = os.writev(fd, views[:1024])
        while done and views:
            first = views[0]
            if done >= len(first):
                done -= len(first)
                views.pop(0)
            else:
                views[0] = first[done:]
                done = 0


def _update(digest: Any, chunks: list[bytes | bytearray | memoryview]) -> None:
    for chunk in chunks:
        digest.update(chunk)


def remove_stale_parts(directory: Path) -> int:
    """Delete temporary files of processes that no longer run; how many.

    Runs at start (on a thread): such a file never became a tile.
    """
    if not directory.is_dir():
        return 0
    removed = 0
    for part in [
        *directory.glob(f"{PART_PREFIX}*.part"),
        *directory.glob(f"{PART_PREFIX}*.part.prev"),
        *directory.glob(f"{PART_PREFIX}*.part.prev.json"),
    ]:
        pid_text = part.name[len(PART_PREFIX) :].split("-", 1)[0]
        if pid_text.isdigit() and process_alive(int(pid_text)):
            continue
        part.unlink(missing_ok=True)
        removed += part.suffix == ".part"
    return removed


class _Lane:
    """Jobs run one after another on a pool thread, in submission order.

    A thread that finishes a job takes the next one at once: consecutive
    batches of a tile do not wait for a round trip through the reactor.  Each
    job's outcome is reported to the reactor with ``callFromThread``.  After a
    job fails the lane skips the rest (reported with the same error).
    """

    def __init__(self, reactor: Any, threadpool: ThreadPool) -> None:
        self._reactor = reactor
        self._pool = threadpool
        self._lock = threading.Lock()
        self._jobs: deque[tuple[Callable[[], object], Callable[..., None]]] = deque()
        self._running = False
        self._error: BaseException | None = None

    def submit(
        self, job: Callable[[], object], done: Callable[[bool, object], None]
    ) -> None:
        """Run ``job`` after those submitted before; ``done(ok, value)`` after."""
        with self._lock:
            self._jobs.append((job, done))
            if self._running:
                return
            self._running = True
        self._pool.callInThread(self._drain)

    def barrier(self) -> Deferred[None]:
        """Fires (or fails with the lane's error) once every job so far ran."""
        d: Deferred[None] = Deferred()

        def fire(ok: bool, value: object) -> None:
            if ok:
                d.callback(None)
            else:
                d.errback(Failure(value))

        self.submit(lambda: None, fire)
        return d

    def _drain(self) -> None:  # on a pool thread
        # Outcomes go to the reactor in bunches (each report wakes it up):
        # when the lane runs dry, and every few jobs meanwhile.
        outcomes: list[tuple[Callable[..., None], bool, object]] = []
        while True:
            with self._lock:
                if not self._jobs:
                    self._running = False
                    job = None
                else:
                    job, done = self._jobs.popleft()
            if job is None or len(outcomes) >= REPORT_EVERY:
                if outcomes:
                    self._reactor.callFromThread(_report, outcomes)
                    outcomes = []
                if job is None:
                    return
            if self._error is not None:
                outcomes.append((done, False, self._error))
                continue
            try:
                outcomes.append((done, True, job()))
            except BaseException as e:  # reported to the reactor side
                self._error = e
                outcomes.append((done, False, e))


def _report(outcomes: list[tuple[Callable[..., None], bool, object]]) -> None:
    for done, ok, value in outcomes:
        done(ok, value)


class SinkFactory:
    """Opens sinks in one directory; numbers their files."""

    def __init__(
        self,
        directory: Path,
        reactor: Any,
        threadpool: ThreadPool,
        limit: int | None = None,
    ) -> None:
        self.directory = directory
        self._reactor = reactor
        self._pool = threadpool
        self._limit = limit
        self._serial = 0

    def open(self) -> TileSink:
        """A new, empty sink."""
        self._serial += 1
        return TileSink(
            self.directory, self._serial, self._reactor, self._pool, self._limit
        )


class TileSink:
    """Hashes and writes one tile's chunks off the reactor, in arrival order."""

    def __init__(
        self,
        directory: Path,
        serial: int,
        reactor: Any,
        threadpool: ThreadPool,
        limit: int | None = None,
    ) -> None:
        self._dir = directory
        self._serial = serial
        self._reactor = reactor
        self._pool = threadpool
        self._limit = limit
        self._md5 = hashlib.md5()
        self._sha1 = hashlib.sha1()
        self._fd: int | None = None
        self._path: Path | None = None
        self._unsynced = 0
        self._batch: list[bytes | bytearray | memoryview] = []
        self._small = bytearray()
        self._batch_bytes = 0
        self.size = 0
        self._pending = 0
        # Two lanes, each in arrival order: the MD5 on one thread, the SHA-1
        # and the writes on another, so neither waits for the other.
        self._md5_lane = _Lane(reactor, threadpool)
        self._io_lane = _Lane(reactor, threadpool)
        self._producer: Producer | None = None
        self._paused = False
        self._finished = False
        self._discarded = False
        #: Seconds finish() waited for the last bytes (metrics).
        self.finish_seconds = 0.0
        #: When the sink was opened (``time.monotonic``): the tile's first byte.
        self.opened = time.monotonic()

    # -- reactor side: receiving -----------------------------------------------

    def attach(self, producer: Producer | None) -> None:
        """Pause ``producer`` while too many bytes wait for the threads."""
        self._producer = producer

    @property
    def too_large(self) -> bool:
        """More bytes arrived than the limit allows."""
        return self._limit is not None and self.size > self._limit

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Take the next chunk: kept by reference until its batch is written,
        or, when small, copied into a buffer (a peer sending tiny segments
        must not pin an object per byte)."""
        if self._finished or self._discarded:
            raise RuntimeError("write to a finished tile sink")
        self.size += len(data)
        if self.too_large:
            return  # counted, not kept: the tile is refused at finish
        if not len(data):
            return
        if len(data) < SMALL_CHUNK:
            self._small += data
            if len(self._small) >= SMALL_CHUNK:
                self._take_small()
        else:
            self._take_small()
            self._batch.append(data)
        self._batch_bytes += len(data)
        if self._batch_bytes >= (BATCH_BYTES if self._pending else IDLE_BATCH_BYTES):
            self._flush()

    def _take_small(self) -> None:
        if self._small:
            self._batch.append(bytes(self._small))
            self._small = bytearray()

    def _flush(self) -> None:
        self._take_small()
        chunks, n = self._batch, self._batch_bytes
        self._batch, self._batch_bytes = [], 0
        self._pending += n
        self._throttle()
        remaining = [2]

        def done(ok: bool, value: object) -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                self._pending -= n
                self._throttle()

        self._md5_lane.submit(lambda: _update(self._md5, chunks), done)
        self._io_lane.submit(lambda: self._write_batch(chunks), done)

    def _write_batch(self, chunks: list[bytes | bytearray | memoryview]) -> None:
        if self._fd is None:
            self._fd, self._path = _open_part(self._dir, self._serial)
        _update(self._sha1, chunks)
        _write_all(self._fd, chunks)
        self._unsynced += sum(len(c) for c in chunks)
        if self._unsynced >= SYNC_EVERY:
            # The disk writes while the MD5 thread still hashes: the tile's
            # one durable write is spread over its arrival, off the
            # critical path after its last byte.
            os.fdatasync(self._fd)
            self._unsynced = 0

    def _throttle(self) -> None:
        if self._producer is None:
            return
        if not self._paused and self._pending > MAX_PENDING:
            self._paused = True
            self._producer.pauseProducing()
        elif self._paused and self._pending <= MAX_PENDING // 2:
            self._paused = False
            self._producer.resumeProducing()

    def _thread(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return deferToThreadPool(self._reactor, self._pool, fn, *args)

    # -- completion -------------------------------------------------------------

    async def finish(self) -> Received:
        """Wait for every byte to be hashed and written; the result.

        The file stays open, unsynced: :meth:`make_durable` fsyncs it.
        Raises TooLarge past the limit, or the I/O error that stopped a write.
        """
        if self._finished:
            raise RuntimeError("tile sink finished twice")
        self._finished = True
        started = time.monotonic()
        if self._batch or self._small:
            self._flush()
        self._io_lane.submit(self._last_write, lambda ok, value: None)
        failures: list[Failure] = []
        for lane in (self._md5_lane, self._io_lane):
            try:
                await lane.barrier()
            except Exception:
                failures.append(Failure())
        if self._producer is not None and self._paused:
            self._paused = False
            self._producer.resumeProducing()
        if self.too_large:
            raise TooLarge(f"{self.size} bytes exceed the limit of {self._limit}")
        if failures:
            failures[0].raiseException()
        assert self._path is not None
        self.finish_seconds = time.monotonic() - started
        return Received(self._path, self.size, self._md5.digest(), self._sha1.digest())

    def _last_write(self) -> None:
        if self._fd is None:  # an empty tile: still a file
            self._fd, self._path = _open_part(self._dir, self._serial)

    def _fsync_and_close(self) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None
        elif self._path is not None:  # closed unsynced (see close())
            fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    async def make_durable(self) -> None:
        """fsync the file (closing it if open); it survives a crash from now
        on."""
        await self._thread(self._fsync_and_close)

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    async def close(self) -> None:
        """Close the file without syncing it (its bytes go elsewhere)."""
        await self._thread(self._close)

    def _remove(self) -> None:
        self._close()
        if self._path is not None:
            self._path.unlink(missing_ok=True)

    async def discard(self) -> None:
        """Delete the file once pending writes are done; never raises."""
        if self._discarded:
            return
        self._discarded = True
        self._batch, self._batch_bytes, self._small = [], 0, bytearray()
        if self._producer is not None and self._paused:
            self._paused = False
            self._producer.resumeProducing()
        for lane in (self._md5_lane, self._io_lane):
            try:
                await lane.barrier()
            except Exception:
                pass  # the file goes anyway
        try:
            await self._thread(self._remove)
        except OSError as e:
            log.warn("could not remove {path}: {reason}", path=self._path, reason=e)

    @property
    def path(self) -> Path | None:
        """The temporary file, once the first bytes were written."""
        return self._path
