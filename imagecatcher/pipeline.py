"""Tile capture (CONTRACT §4): metadata, content, durability, queue colours.

A tile is acknowledged only when its bytes are durably somewhere: in the store
(put, verified, recorded, READY) or, when the store cannot take it in time, in
the local spool with the database recording its checksums.  Spooled tiles are
uploaded in the background with bounded retries and backoff, and again after
every start.  Nothing becomes READY before its content is verified (Q29).

The two stages of §4.1 keep their knobs: the tile stage (the database work) and
the content stage (uploads) each run at most ``*_WORKERS`` jobs with at most
``*_QUEUE_SIZE`` waiting for ``WAIT_TIMEOUT``; their fill gives the colours of
§4.5.  A full tile queue fails the request; a full content queue sends the tile
to the spool instead.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs

from twisted.internet import defer
from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.interfaces import IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from imagecatcher.db.capture import Recorded, TileContent
from imagecatcher.db.repository import Repository
from imagecatcher.domain import (
    Acquisition,
    BadParameter,
    CatcherError,
    NotFound,
    QueueColour,
    QueueStatus,
    StorageFull,
    TileRecord,
    jfs_path,
)
from imagecatcher.metrics import Metrics
from imagecatcher.names import TileName
from imagecatcher.pacing import UploadPace
from imagecatcher.sink import Received, SinkFactory, TileSink
from imagecatcher.spool import Spool, SpoolEntry
from imagecatcher.storage import ContentStore, LocalStore, StoredObject, StoreError
from imagecatcher.writebehind import SpoolWatch, StoreHealth, Uploader

log = Logger()
T = TypeVar("T")


class QueueTimeout(CatcherError):
    """A stage's queue stayed full for longer than WAIT_TIMEOUT."""


async def _settled(d: Deferred[Any]) -> None:
    """Wait for ``d`` whatever its outcome."""
    try:
        await d
    except Exception:
        pass


def colour(waiting: int, capacity: int) -> QueueColour:
    """§4.5: GREEN below 70 % of capacity, YELLOW below 90 %, else RED."""
    if capacity <= 0:
        return QueueColour.GREEN
    fill = waiting / capacity
    if fill < 0.7:
        return QueueColour.GREEN
    return QueueColour.YELLOW if fill < 0.9 else QueueColour.RED


class Stage:
    """At most ``workers`` jobs at once, at most ``queue_size`` waiting."""

    def __init__(
        self, workers: int, queue_size: int, wait: float, clock: IReactorTime
    ) -> None:
        self.synchronous = workers <= 1
        self.workers = max(workers, 1)
        self.capacity = 0 if self.synchronous else max(queue_size, 1)
        # Admission counts running + queued jobs; only a full queue makes a
        # job wait for admission, and only that wait has the deadline (§4.2).
        self._admit = DeferredSemaphore(max(workers, 1) + self.capacity)
        self._run = DeferredSemaphore(max(workers, 1))
        self._wait = wait
        self._clock = clock

    @property
    def waiting(self) -> int:
        """Jobs queued for a worker (§4.5's n)."""
        return len(self._run.waiting)

    @property
    def colour(self) -> QueueColour:
        """This stage's queue colour."""
        return colour(self.waiting, self.capacity)

    async def run(self, job: Callable[[], Awaitable[T]]) -> T:
        """Run ``job`` in a worker slot; QueueTimeout if none frees in time."""
        if self.synchronous:
            return await job()
        admitted = self._admit.acquire()
        if not admitted.called:
            admitted.addTimeout(self._wait, self._clock)
        try:
            await admitted
        except defer.TimeoutError:
            raise QueueTimeout("queue full") from None
        try:
            await self._run.acquire()
            try:
                return await job()
            finally:
                self._run.release()
        finally:
            self._admit.release()


@attrs.frozen
class TileUpload:
    """One tile as received over HTTP or TCP: its bytes are in ``sink``
    (written as they arrived), or in ``data`` (small tiles, tests)."""

    acq_id: int
    tile: TileName
    data: bytes | memoryview = attrs.field(
        default=b"", repr=lambda v: f"<{len(v)} bytes>"
    )
    md5: bytes | None = None  # the client's, verified when given
    sink: TileSink | None = None


@attrs.frozen
class Captured:
    """What a capture response reports."""

    acq: Acquisition
    tile: TileRecord
    tile_name: TileName
    camera: int | None
    jfs_key: str
    jfs_path: str
    sha1: bytes
    status: QueueStatus


class Pipeline:
    """Captures tiles; owns the stages, the spool drainer and in-flight work."""

    def __init__(
        self,
        repo: Repository,
        store: ContentStore,
        spool: Spool,
        clock: Any,
        threadpool: ThreadPool,
        *,
        tile_stage: Stage,
        content_stage: Stage,
        jfs_mapping: Mapping[str, str],
        notify: Callable[[str], None] = lambda text: None,
        local: LocalStore | None = None,
        max_tile_bytes: int | None = None,
        ack_when: str = "stored",
        upload_rate: float = 0.0,
        capture_target: float = 0.0,
        spool_max_bytes: int = 0,
        min_free_bytes: int = 0,
        probe_collection: str = "",
        metrics: Metrics | None = None,
    ) -> None:
        self._repo = repo
        self._stage = metrics.stage if metrics is not None else _untimed
        self._store = store
        self._local = local
        self._spool = spool
        # Tiles are received where they will be kept: beside the local
        # store's files, or in the spool for a remote store.
        staging = local.staging_dir if local is not None else spool.staging_dir
        self._sinks = SinkFactory(staging, clock, threadpool, max_tile_bytes)
        self._clock = clock
        self._pool = threadpool
        self.tile_stage = tile_stage
        self.content_stage = content_stage
        self._mapping = jfs_mapping
        self._notify = notify
        self._in_flight: set[Deferred[Any]] = set()
        self._stopping = False
        #: "spooled": a remote store's tiles are acknowledged from the spool
        #: and uploaded behind; "stored": once the store has them.
        self._ack_when = ack_when
        self._spool_max_bytes = spool_max_bytes
        self._min_free_bytes = min_free_bytes
        self.health = StoreHealth(store, clock, probe_collection, notify)
        self._uploader = Uploader(
            clock,
            self.health,
            self._upload_entry,
            workers=max(content_stage.workers, 1),
            notify=notify,
            pace=UploadPace(clock, capture_target, upload_rate, self._spool_pressed),
        )
        self.watch = SpoolWatch(
            clock, threadpool, spool.directory, [spool.directory, staging]
        )
        self._full_reported = False
        #: The size of the last tile admitted or refused (see storage_problem).
        self._last_size = 0

    # -- status ----------------------------------------------------------------

    def status(self) -> QueueStatus:
        """The queue colours now (§4.5).

        The content queue also shows the spool: YELLOW while the store is
        down (tiles wait in the spool), and by its fill when it is bounded.
        """
        content = self.content_stage.colour
        if not self.health.up:
            content = max(content, QueueColour.YELLOW)
        if self._spool_max_bytes > 0:
            content = max(
                content, colour(self.watch.stats.bytes, self._spool_max_bytes)
            )
        if self.storage_problem():
            content = QueueColour.RED
        return QueueStatus(tile=self.tile_stage.colour, content=content)

    def _spool_pressed(self) -> bool:
        """Whether the spool nears its limits (uploads then drain it first)."""
        stats = self.watch.stats
        if self._spool_max_bytes > 0 and stats.bytes * 2 >= self._spool_max_bytes:
            return True
        return self._min_free_bytes > 0 and any(
            free < 2 * self._min_free_bytes for _directory, free in stats.free
        )

    def storage_problem(self) -> str:
        """Why tiles are refused for want of room now, or ``""``: a tile the
        size of the last one would be refused."""
        return self._room_problem(self._last_size)

    def _room_problem(self, size: int) -> str:
        """What ``size`` more bytes would pass, or ``""``."""
        stats = self.watch.stats
        if self._spool_max_bytes > 0 and stats.bytes + size > self._spool_max_bytes:
            return (
                f"the spool {self._spool.directory} is full: {stats.bytes} bytes"
                f" of SPOOL_MAX_BYTES {self._spool_max_bytes}"
            )
        for directory, free in stats.free:
            if free - size < self._min_free_bytes:
                return (
                    f"{directory} is full: {max(free, 0)} bytes free,"
                    f" SPOOL_MIN_FREE_BYTES is {self._min_free_bytes}"
                )
        return ""

    def spool_report(self) -> dict[str, Any]:
        """The spool and the store as the spool route shows them (JSON)."""
        stats = self.watch.stats
        now = self._clock.seconds()
        return {
            "spool_dir": str(self._spool.directory),
            "entries": stats.entries,
            "bytes": stats.bytes,
            "oldest_entry_age_s": round(stats.age(now), 3),
            "free_bytes": {directory: free for directory, free in stats.free},
            "ack_when": self._ack_when,
            "store": {
                "up": self.health.up,
                "down_for_s": (
                    None
                    if self.health.down_since is None
                    else round(now - self.health.down_since, 3)
                ),
                "reason": self.health.reason,
            },
            "refusing": self.storage_problem(),
            "damaged": [
                {"tile_id": int(stem.split("-", 1)[0]), "uid": uid, "name": name}
                for stem, uid, name in stats.damaged
                if stem.split("-", 1)[0].isdigit()
            ],
        }

    def ping_problem(self) -> str:
        """Why ping should fail now (a full disk, a store down), or ``""``."""
        problem = self.storage_problem()
        if problem:
            return f"Capture is refusing tiles: {problem}"
        return self.store_report()

    def store_report(self) -> str:
        """What is known of the store and the spool, for ping (or ``""``)."""
        stats = self.watch.stats
        waiting = (
            f"{stats.entries} tile(s), {stats.bytes} bytes wait in the spool"
            f", the oldest for {stats.age(self._clock.seconds()):.0f} s"
        )
        if not self.health.up:
            since = self._clock.seconds() - (self.health.down_since or 0.0)
            return (
                f"Store check failed: the content store is down since"
                f" {since:.0f} s ago ({self.health.reason}); {waiting}"
            )
        return ""

    def _refuse_if_full(self, size: int) -> None:
        """StorageFull when ``size`` more bytes would pass the limits."""
        self._last_size = size
        problem = self._room_problem(size)
        if problem:
            self._report_full(problem)
            raise StorageFull(f"Cannot store the tile: {problem}")
        self._full_reported = False

    def _report_full(self, problem: str) -> None:
        if not self._full_reported:
            self._full_reported = True
            log.error("refusing tiles: {problem}", problem=problem)
            self._notify(f"Capture is refusing tiles: {problem}")

    def _full_error(self, error: OSError, directory: Path) -> Exception:
        """StorageFull for a disk-full error, else the error itself."""
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            return error
        try:
            vfs = os.statvfs(directory)
            free = vfs.f_bavail * vfs.f_frsize
        except OSError:
            free = 0
        problem = f"{directory} is full: {free} bytes free ({error.strerror})"
        self._report_full(problem)
        return StorageFull(f"Cannot store the tile: {problem}")

    # -- capture ---------------------------------------------------------------

    @property
    def staging_dir(self) -> Path:
        """Where sinks put the tiles they receive."""
        return self._sinks.directory

    def open_sink(self) -> TileSink:
        """A sink for the next tile's bytes, in the tile's durable home."""
        return self._sinks.open()

    def capture(self, upload: TileUpload) -> Deferred[Captured]:
        """Capture one tile; the Deferred fires once it is durable.

        The work is tracked so that a stop waits for it, and shielded from the
        caller's cancellation (a client that hangs up does not abandon a tile
        half-way).
        """
        if self._stopping:
            if upload.sink is not None:
                Deferred.fromCoroutine(upload.sink.discard())
            return defer.fail(CatcherError("the service is shutting down"))
        started = upload.sink.opened if upload.sink is not None else time.monotonic()
        work = Deferred.fromCoroutine(self._capture(upload))
        self._in_flight.add(work)
        work.addCallback(self._timed, started)
        work.addBoth(self._done, work)
        return _shield(work)

    def _timed(self, result: Captured, started: float) -> Captured:
        self._uploader.pace.captured(time.monotonic() - started)
        return result

    def _done(self, result: Any, work: Deferred[Any]) -> Any:
        self._in_flight.discard(work)
        return result

    async def _acquisition(self, uid: int) -> Acquisition:
        acq = await self._repo.cached_acquisition(uid)
        if acq is None:
            raise NotFound(f"No mosaic image found for acquisition id {uid}")
        return acq

    async def _capture(self, upload: TileUpload) -> Captured:
        sink = upload.sink
        if sink is None:
            sink = self.open_sink()
            sink.write(upload.data)
        kept = [False]  # whether the sink's file became the tile's content
        try:
            return await self._capture_into(upload, sink, kept)
        finally:
            if not kept[0]:
                await sink.discard()

    async def _capture_into(
        self, upload: TileUpload, sink: TileSink, kept: list[bool]
    ) -> Captured:
        name = upload.tile
        try:
            acq = await self._acquisition(upload.acq_id)
        except BaseException:
            await sink.discard()
            raise
        # The re-send check reads the tile while the last bytes are hashed.
        finding = Deferred.fromCoroutine(
            self._repo.find_tile(acq.mosaic_id, name.col, name.row, name.frame)
        )
        # A tile's one durable write, the fsync of its file, runs while its
        # transaction does (see _make_durable and _capture_remote).
        try:
            received = await sink.finish()
        except OSError as e:
            finding.addErrback(lambda _: None)
            raise self._full_error(e, self.staging_dir) from e
        except BaseException:
            finding.addErrback(lambda _: None)
            raise
        self._stage("hash", sink.finish_seconds)
        existing = await finding
        if upload.md5 is not None and upload.md5 != received.md5:
            raise BadParameter(
                f"The received checksum {upload.md5.hex()} and the calculated"
                f" checksum {received.md5.hex()} do not match"
            )
        path = jfs_path(acq.uid, name.name)
        if (
            existing is not None
            and existing.sha1 == received.sha1
            and (
                existing.persisted
                or await self._spool.has(existing.tile_id, received.sha1)
            )
        ):
            log.debug(
                "tile {acqid}:{name} re-sent unchanged", acqid=acq.uid, name=name.name
            )
            return self._captured(
                acq, existing, name, existing.jfs_key, path, received.sha1
            )
        if existing is not None and existing.sha1 is not None:
            log.info(
                "re-capture of {acqid}:{name} (tile {tile_id}): content replaced",
                acqid=acq.uid,
                name=name.name,
                tile_id=existing.tile_id,
            )
        content = TileContent(
            mosaic_id=acq.mosaic_id,
            temca_id=acq.temca_id,
            col=name.col,
            row=name.row,
            frame=name.frame,
            camera=name.camera,
            name=name.name,
            path=path,
            key="",
            url="",
            sha1=received.sha1,
            md5=received.md5,
        )
        collection = acq.collection(self._mapping)
        if self._local is not None:
            self._refuse_if_full(received.size)
            note = {
                "mosaic_id": acq.mosaic_id,
                "col": name.col,
                "row": name.row,
                "frame": name.frame,
                "sha1": received.sha1.hex(),
            }
            started = time.monotonic()
            obj = await self._local.place(
                received.path, received.md5, collection, path, note, durable=False
            )
            placed = time.monotonic() - started
            kept[0] = True
            self.watch.consumed(received.size)
            # The file and its rename are fsync'd while the transaction runs;
            # the tile is acknowledged once both are done.  The rename came
            # first: a kill -9 at any point leaves a file the record (or the
            # restart's recover_placements) agrees with.
            durable = Deferred.fromCoroutine(self._make_durable(sink, obj, placed))
            try:
                recorded = await self._record(acq, name, content, obj, existing)
            except BaseException:
                # Not acknowledged: the store goes back to what the database
                # says (the previous content, or nothing).
                await _settled(durable)
                await self._local.undo(obj)
                raise
            try:
                await durable
            finally:
                Deferred.fromCoroutine(self._local.settle(obj)).addErrback(
                    lambda f: log.failure("settling {key}", f, key=obj.key)
                )
            return self._captured(
                acq, recorded.tile, name, obj.key, path, received.sha1
            )
        return await self._capture_remote(
            acq, name, sink, received, content, existing, kept
        )

    async def _capture_remote(
        self,
        acq: Acquisition,
        name: TileName,
        sink: TileSink,
        received: Received,
        content: TileContent,
        existing: TileRecord | None,
        kept: list[bool],
    ) -> Captured:
        collection = acq.collection(self._mapping)
        context = acq.storage_context() | {"checksum": received.md5.hex()}
        superseded = existing.jfs_key if existing is not None else ""
        if self._ack_when == "stored" and self.health.up:
            try:
                await sink.close()
                data = await self._read(received.path)
                obj = await self.content_stage.run(
                    lambda: self._put_and_verify(
                        collection, content.path, data, received.md5, context
                    )
                )
            except (StoreError, QueueTimeout, defer.TimeoutError) as e:
                log.warn(
                    "store unavailable for {acqid}:{name} ({reason}); spooling",
                    acqid=acq.uid,
                    name=name.name,
                    reason=e,
                )
                if isinstance(e, StoreError):
                    self.health.failed(e)  # no more per-tile attempts
            else:
                recorded = await self._record(acq, name, content, obj, existing)
                self._discard_superseded(obj, recorded.previous_key, superseded)
                return self._captured(
                    acq, recorded.tile, name, obj.key, content.path, received.sha1
                )
        self._refuse_if_full(received.size)
        # The file is fsync'd while the tile is recorded (not READY yet: no
        # key); the spool entry exists, and the tile is acknowledged, after.
        started = time.monotonic()
        durable = Deferred.fromCoroutine(sink.make_durable())
        try:
            recorded = await self._record(acq, name, content, None, existing)
        except BaseException:
            await _settled(durable)
            raise
        entry = SpoolEntry(
            tile_id=recorded.tile.tile_id,
            uid=acq.uid,
            name=name.name,
            col=name.col,
            row=name.row,
            collection=collection,
            path=content.path,
            context=context,
            sha1=received.sha1,
            md5=received.md5,
            superseded_key=superseded,
        )
        try:
            await durable
            await self._spool.adopt(entry, received.path)
            # Its fsync, then the spool entry's rename, metadata, directory fsync.
            self._stage("durable_write", time.monotonic() - started)
        except OSError as e:
            raise self._full_error(e, self._spool.directory) from e
        kept[0] = True
        self.watch.added(received.size)
        self._uploader.enqueue(entry)
        return self._captured(acq, recorded.tile, name, "", content.path, received.sha1)

    async def _make_durable(
        self, sink: TileSink, obj: StoredObject, placed: float
    ) -> None:
        """fsync a placed tile's file, then its directory; StoreError if not.
        ``placed``: the seconds its rename took (for the durable_write stage)."""
        assert self._local is not None
        started = time.monotonic()
        try:
            await sink.make_durable()
        except OSError as e:
            raise self._full_error(e, self.staging_dir) from e
        await self._local.sync_placed(obj)
        self._stage("durable_write", placed + time.monotonic() - started)

    async def _read(self, path: Path) -> bytes:
        data: bytes = await deferToThreadPool(self._clock, self._pool, path.read_bytes)
        return data

    async def _record(
        self,
        acq: Acquisition,
        name: TileName,
        content: TileContent,
        obj: StoredObject | None,
        known: TileRecord | None,
    ) -> Recorded:
        """The tile's one write transaction, in the tile stage; ``known`` is
        the tile as read before its bytes were in (None: a new tile)."""
        if obj is not None:
            content = attrs.evolve(content, key=obj.key, url=obj.location_url)
        try:
            started = time.monotonic()
            recorded = await self.tile_stage.run(
                lambda: self._repo.record_tile(content, known=known)
            )
            self._stage("database", time.monotonic() - started)
        except QueueTimeout:
            raise CatcherError(
                f"Timeout waiting to enqueue the tile job for: {acq.uid}:{name.name}"
            ) from None
        if recorded.tile.camera is None:
            # Q19: stored without a camera configuration rather than refused.
            log.warn(
                "no camera configuration for camera {camera} of temca {temca};"
                " {acqid}:{name} stored without one",
                camera=name.camera,
                temca=acq.temca_id,
                acqid=acq.uid,
                name=name.name,
            )
        return recorded

    def _captured(
        self,
        acq: Acquisition,
        tile: TileRecord,
        name: TileName,
        key: str,
        path: str,
        sha1: bytes,
    ) -> Captured:
        return Captured(
            acq=acq,
            tile=tile,
            tile_name=name,
            camera=tile.camera,
            jfs_key=key,
            jfs_path=path,
            sha1=sha1,
            status=self.status(),
        )

    async def _put_and_verify(
        self,
        collection: str,
        path: str,
        data: bytes,
        md5: bytes,
        context: Mapping[str, str],
    ) -> StoredObject:
        started = time.monotonic()
        obj = await self._store.put(collection, path, data, md5, context)
        await self._store.verify(obj, len(data), md5)
        self._stage("upload", time.monotonic() - started)
        return obj

    def _discard_superseded(self, obj: StoredObject, *old_keys: str) -> None:
        # A spooled re-capture cleared the key in the database; the entry
        # remembers which object it supersedes.  A store that overwrites a
        # path in place has nothing left to delete (and an old key naming
        # the same path would delete what was just written).
        if self._store.replaces_in_place:
            return
        for old in set(old_keys):
            if old and old != obj.key:
                self._discard_object(old)

    def _discard_object(self, key: str) -> None:
        d = Deferred.fromCoroutine(self._store.delete(StoredObject(key, "")))
        d.addErrback(
            lambda f: log.warn(
                "could not delete superseded object {key}: {reason}",
                key=key,
                reason=f.value,
            )
        )

    # -- spool drainer -----------------------------------------------------------

    async def _upload_entry(self, entry: SpoolEntry) -> int:
        """Upload one spooled tile (the Uploader calls this); bytes sent.

        Every worker process resumes the whole spool; the claim makes one of
        them upload each entry, and held until the entry is removed or set
        aside, an entry is never uploaded twice.  A StoreError tells the
        Uploader that the store is down.
        """
        claim = await self._spool.claim(entry)
        if claim is None:
            return 0  # another worker has it, or it is already gone
        try:
            return await self._upload_claimed(entry)
        finally:
            claim.release()

    async def _upload_claimed(self, entry: SpoolEntry) -> int:
        found = await self._repo.tile_by_id(entry.tile_id)
        if found is None or found[4].sha1 != entry.sha1:
            log.info("spooled {stem} was superseded; dropping it", stem=entry.stem)
            await self._spool.remove(entry)
            return 0
        mosaic_id, _col, _row, frame, tile = found
        acq = await self._repo.acquisition(entry.uid)
        if acq is None or acq.mosaic_id != mosaic_id:
            log.warn(
                "spooled {stem}: acquisition {uid} is gone",
                stem=entry.stem,
                uid=entry.uid,
            )
            await self._spool.quarantine(entry)
            return 0
        data, intact = await self._spool.read_checked(entry)
        if not intact:
            log.error("spooled {stem} is damaged; set aside", stem=entry.stem)
            self._notify(f"Spooled tile {entry.uid}:{entry.name} is damaged on disk")
            await self._spool.quarantine(entry)
            return 0
        obj = await self._put_and_verify(
            entry.collection, entry.path, data, entry.md5, entry.context
        )
        content = TileContent(
            mosaic_id=mosaic_id,
            temca_id=acq.temca_id,
            col=entry.col,
            row=entry.row,
            frame=frame,
            camera=tile.camera if tile.camera is not None else 0,
            name=entry.name,
            path=entry.path,
            key=obj.key,
            url=obj.location_url,
            sha1=entry.sha1,
            md5=entry.md5,
        )
        recorded = await self._repo.record_tile(content, tile.camera_configuration_id)
        self._discard_superseded(obj, recorded.previous_key, entry.superseded_key)
        await self._spool.remove(entry)
        log.info("uploaded spooled {uid}:{name}", uid=entry.uid, name=entry.name)
        return len(data)

    async def recover_placements(self) -> int:
        """Settle or undo the file store's placements that a killed process
        left unsettled: the tile's record says whether its transaction
        committed (keep the new file) or not (put the replaced one back, as
        the refusal would have).  Runs at start, before stale files go."""
        if self._local is None:
            return 0
        found = await self._local.interrupted()
        for placement in found:
            note = placement.note
            try:
                tile = await self._repo.find_tile(
                    int(note["mosaic_id"]),
                    int(note["col"]),
                    int(note["row"]),
                    int(note["frame"]),
                )
                recorded = tile is not None and tile.sha1 == bytes.fromhex(note["sha1"])
            except (KeyError, TypeError, ValueError):
                log.warn("unreadable placement note {note}", note=note)
                continue
            try:
                await self._local.resolve(placement, recorded)
            except StoreError as e:
                log.error("{target}: {reason}", target=placement.target, reason=e)
                continue
            log.info(
                "{target}: placement interrupted by a crash {action}",
                target=placement.target,
                action="kept (it was recorded)" if recorded else "undone",
            )
        return len(found)

    async def resume(self) -> int:
        """Queue the upload of every spooled tile; return how many."""
        await self.watch.refresh()
        entries = await self._spool.entries()
        for entry in entries:
            self._uploader.enqueue(entry)
        if entries:
            log.info("resuming {n} spooled tile(s)", n=len(entries))
        return len(entries)

    # -- lifecycle -------------------------------------------------------------

    def start_watching(self) -> None:
        """Look at the spool and the free space every second from now on."""
        self.watch.start()
        if self._local is None:  # uploads happen only for a remote store
            self._uploader.pace.start()

    async def stop(self, deadline: float = 30.0) -> None:
        """Refuse new tiles, stop uploads and probes, wait for work in flight."""
        self._stopping = True
        self._uploader.stop()
        self._uploader.pace.stop()
        self.health.stop()
        self.watch.stop()
        pending = self._in_flight | self._uploader.in_flight
        if pending:
            waiting = defer.DeferredList(list(pending), consumeErrors=True)
            timer: Deferred[None] = Deferred()
            call = self._clock.callLater(deadline, timer.callback, None)
            either: list[Deferred[Any]] = [waiting, timer]
            await defer.DeferredList(either, fireOnOneCallback=True)
            if call.active():
                call.cancel()
            if self._in_flight:
                log.warn(
                    "stopped with {n} capture(s) unfinished", n=len(self._in_flight)
                )


def _untimed(stage: str, seconds: float) -> None:
    """Where timings go without metrics."""


def _shield(work: Deferred[T]) -> Deferred[T]:
    """A Deferred with ``work``'s result whose cancellation spares ``work``."""
    view: Deferred[T] = Deferred()

    def forward(result: Any) -> None:
        if view.called:  # the caller cancelled (its client hung up)
            if isinstance(result, Failure):
                log.failure("capture failed after its client left", result)
            return
        if isinstance(result, Failure):
            view.errback(result)
        else:
            view.callback(result)

    work.addBoth(forward)
    return view
