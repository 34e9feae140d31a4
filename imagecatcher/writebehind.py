"""Write-behind to a remote store: its health, the uploads, and the spool's size.

With ``ACK_WHEN = "spooled"`` a tile for a remote store (S3, sproxyd) is
acknowledged once it is durable in the local spool with its database record;
:class:`Uploader` then uploads it behind, verifies it and only then makes it
READY.  The daemon learns that the store is down once (a failed put or
verify, or a failed probe): :class:`StoreHealth` then stops every upload,
probes the store in the background with backoff, and resumes the uploads
when it answers again.  Uploads run at most ``workers`` at a time and, when a
rate is set, no faster than that many bytes per second; while tiles are
being captured an :class:`~imagecatcher.pacing.UploadPace` lowers that rate
whenever capture slows down, so that a draining spool leaves the rig's own
tiles the machine first.

:class:`SpoolWatch` looks at the spool every second (on a thread): how many
tiles wait there, how many bytes, since when, and how much room is left on
the disks the daemon writes to; capture refuses a tile that would pass the
configured limits (HTTP 507) instead of filling the disk.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from imagecatcher.pacing import UploadPace
from imagecatcher.spool import SpoolEntry
from imagecatcher.storage import ContentStore, StoreError

log = Logger()

#: Seconds between probes of a store that is down: doubling up to the cap.
PROBE_FIRST = 1.0
PROBE_MAX = 30.0
#: The deadline of one probe.
PROBE_TIMEOUT = 10.0
#: Failed uploads for a reason other than the store (database, disk) after
#: which the operator is told; they go on being retried, backing off to
#: OTHER_BACKOFF_MAX seconds.
OTHER_ATTEMPTS = 8
OTHER_BACKOFF_MAX = 60.0
#: Damaged spool entries listed by the spool route at most.
MAX_DAMAGED_LISTED = 1000


class StoreHealth:
    """Whether the store takes objects now; probes it while it does not."""

    def __init__(
        self,
        store: ContentStore,
        clock: Any,
        collection: str,
        notify: Callable[[str], None] = lambda text: None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._collection = collection
        self._notify = notify
        self.up = True
        self.down_since: float | None = None
        self.reason = ""
        self._delay = PROBE_FIRST
        self._call: IDelayedCall | None = None
        self._listeners: list[Callable[[], None]] = []
        self._stopped = False

    def when_up(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` each time the store comes back."""
        self._listeners.append(listener)

    def failed(self, error: BaseException) -> None:
        """A put, verify or probe failed: the store is down until a probe passes."""
        self.reason = str(error) or type(error).__name__
        if not self.up:
            return
        self.up = False
        self.down_since = self._clock.seconds()
        self._delay = PROBE_FIRST
        log.warn("content store down: {reason}", reason=self.reason)
        self._notify(
            f"Content store down: {self.reason}; tiles are kept in the spool and"
            " uploaded when it answers again"
        )
        self._schedule()

    def _schedule(self) -> None:
        if not self._stopped and (self._call is None or not self._call.active()):
            self._call = self._clock.callLater(self._delay, self._probe)

    def _probe(self) -> None:
        self._call = None
        d = Deferred.fromCoroutine(self._store.health(self._collection))
        d.addTimeout(PROBE_TIMEOUT, self._clock)
        d.addCallbacks(lambda _: self._came_back(), self._still_down)

    def _still_down(self, failure: Any) -> None:
        self.reason = failure.getErrorMessage()
        self._delay = min(self._delay * 2, PROBE_MAX)
        self._schedule()

    def _came_back(self) -> None:
        down_for = self._clock.seconds() - (self.down_since or self._clock.seconds())
        self.up, self.down_since, self.reason = True, None, ""
        log.info("content store answers again after {s:.0f} s", s=down_for)
        self._notify(f"Content store answers again after {down_for:.0f} s")
        for listener in list(self._listeners):
            listener()

    def stop(self) -> None:
        """No more probes."""
        self._stopped = True
        if self._call is not None and self._call.active():
            self._call.cancel()


class _Rate:
    """At most ``pace.rate`` bytes per second on average (0: no limit).

    An upload reserves its turn before it starts, at the size of the last
    one, so that workers starting together are spread out; its real size is
    charged when it is done.
    """

    def __init__(self, clock: Any, pace: UploadPace) -> None:
        self._clock = clock
        self._pace = pace
        self._next = 0.0
        self._estimate = 0

    def reserve(self) -> tuple[float, int]:
        """Seconds until the next upload may start, and the bytes reserved."""
        rate = self._pace.rate
        if rate <= 0:
            return 0.0, 0
        now = float(self._clock.seconds())
        start = max(now, self._next)
        self._next = start + self._estimate / rate
        return start - now, self._estimate

    def sent(self, size: int, reserved: int) -> None:
        """Charge ``size`` bytes just sent, of which ``reserved`` were."""
        self._pace.uploaded(size)
        if size > 0:
            self._estimate = size
        rate = self._pace.rate
        if rate > 0:
            now = float(self._clock.seconds())
            self._next = max(now, self._next + (size - reserved) / rate)


class Uploader:
    """Uploads spooled entries, ``workers`` at a time, while the store is up."""

    def __init__(
        self,
        clock: Any,
        health: StoreHealth,
        upload: Callable[[SpoolEntry], Awaitable[int]],
        workers: int = 1,
        rate: float = 0.0,
        notify: Callable[[str], None] = lambda text: None,
        pace: UploadPace | None = None,
    ) -> None:
        self._clock = clock
        self._health = health
        self._upload = upload
        self._workers = max(workers, 1)
        #: The rate uploads keep to: ``rate`` alone, or as the ceiling of a
        #: pace that yields to capture.
        self.pace = pace if pace is not None else UploadPace(clock, 0.0, rate)
        self._rate = _Rate(clock, self.pace)
        self._notify = notify
        self._queue: deque[tuple[SpoolEntry, int]] = deque()
        self._queued: set[str] = set()
        self._running = 0
        self._calls: set[IDelayedCall] = set()
        self.in_flight: set[Deferred[None]] = set()
        self._stopped = False
        health.when_up(self._kick)

    @property
    def waiting(self) -> int:
        """Entries queued in this process, not counting those uploading."""
        return len(self._queue)

    def enqueue(self, entry: SpoolEntry, attempt: int = 1, front: bool = False) -> None:
        """Upload ``entry`` when a worker is free and the store is up."""
        if self._stopped or entry.stem in self._queued:
            return
        self._queued.add(entry.stem)
        if front:
            self._queue.appendleft((entry, attempt))
        else:
            self._queue.append((entry, attempt))
        self._kick()

    def _kick(self) -> None:
        while (
            not self._stopped
            and self._health.up
            and self._queue
            and self._running < self._workers
        ):
            entry, attempt = self._queue.popleft()
            self._running += 1
            work = Deferred.fromCoroutine(self._run(entry, attempt))
            self.in_flight.add(work)
            work.addBoth(self._finished, work)

    def _finished(self, result: object, work: Deferred[None]) -> None:
        self.in_flight.discard(work)

    async def _run(self, entry: SpoolEntry, attempt: int) -> None:
        try:
            # The worker waits its turn to keep the average upload rate at
            # the limit.
            wait, reserved = self._rate.reserve()
            if wait > 0:
                await _sleep(self._clock, wait)
            self._queued.discard(entry.stem)
            if self._stopped:
                return
            self._rate.sent(await self._upload(entry), reserved)
        except StoreError as e:
            self._health.failed(e)
            self.enqueue(entry, attempt, front=True)  # waits for the store
        except Exception:
            log.failure("spool upload of {stem}", stem=entry.stem)
            self._retry(entry, attempt)
        finally:
            self._running -= 1
            self._kick()

    def _retry(self, entry: SpoolEntry, attempt: int) -> None:
        # Failures that are not the store's (the database down, most often)
        # are retried for as long as it takes, backing off to once a minute;
        # the operator hears of it once, after OTHER_ATTEMPTS.
        if attempt == OTHER_ATTEMPTS:
            message = (
                f"Tile {entry.uid}:{entry.name} is still in the spool after"
                f" {attempt} failed uploads; retrying every"
                f" {OTHER_BACKOFF_MAX:.0f} s"
            )
            log.error(message)
            self._notify(message)
        delay = min(2.0**attempt, OTHER_BACKOFF_MAX)
        call = self._clock.callLater(delay, self._requeue, entry, attempt + 1)
        self._calls.add(call)

    def _requeue(self, entry: SpoolEntry, attempt: int) -> None:
        self._calls = {c for c in self._calls if c.active()}
        self.enqueue(entry, attempt)

    def stop(self) -> None:
        """Start nothing more; uploads running finish (see :attr:`in_flight`)."""
        self._stopped = True
        for call in self._calls:
            if call.active():
                call.cancel()
        self._calls.clear()
        self._queue.clear()


async def _sleep(clock: Any, seconds: float) -> None:
    d: Deferred[None] = Deferred()
    clock.callLater(seconds, d.callback, None)
    await d


@attrs.frozen
class SpoolStats:
    """The spool as last seen, and the room left where tiles are written."""

    entries: int = 0
    bytes: int = 0
    oldest: float | None = None  # mtime of the oldest entry
    free: tuple[tuple[str, int], ...] = ()  # (directory, free bytes)
    #: Entries set aside as damaged (``*.bad``): (stem, uid, name) each.
    damaged: tuple[tuple[str, int, str], ...] = ()

    def age(self, now: float) -> float:
        """Seconds the oldest entry has waited (0 when none)."""
        return 0.0 if self.oldest is None else max(now - self.oldest, 0.0)


def _look(spool_dir: Path, directories: Sequence[Path]) -> SpoolStats:
    entries, size, oldest = 0, 0, None
    if spool_dir.is_dir():
        for tile in spool_dir.glob("*.tile"):
            try:
                info = tile.stat()
            except FileNotFoundError:
                continue
            entries += 1
            size += info.st_size
            oldest = info.st_mtime if oldest is None else min(oldest, info.st_mtime)
    damaged = []
    if spool_dir.is_dir():
        for bad in sorted(spool_dir.glob("*.json.bad"))[:MAX_DAMAGED_LISTED]:
            stem = bad.name[: -len(".json.bad")]
            try:
                entry = SpoolEntry.from_json(bad.read_bytes())
                damaged.append((stem, entry.uid, entry.name))
            except (OSError, ValueError, KeyError, TypeError):
                damaged.append((stem, 0, ""))
    free = []
    for directory in directories:
        probe = directory
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            vfs = os.statvfs(probe)
        except OSError:
            continue
        free.append((str(directory), vfs.f_bavail * vfs.f_frsize))
    return SpoolStats(entries, size, oldest, tuple(free), tuple(damaged))


class SpoolWatch:
    """Refreshes :attr:`stats` every ``interval`` seconds, off the reactor."""

    def __init__(
        self,
        clock: Any,
        threadpool: ThreadPool,
        spool_dir: Path,
        directories: Sequence[Path],
        interval: float = 1.0,
    ) -> None:
        self._clock = clock
        self._pool = threadpool
        self._spool_dir = spool_dir
        self._dirs = tuple(directories)
        self._interval = interval
        self.stats = SpoolStats()
        self._loop: LoopingCall | None = None
        self._looking = False

    async def refresh(self) -> SpoolStats:
        """Look now."""
        self.stats = await deferToThreadPool(
            self._clock, self._pool, _look, self._spool_dir, self._dirs
        )
        return self.stats

    def start(self) -> None:
        """Look every ``interval`` seconds."""
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self._clock
        self._loop.start(self._interval, now=True)

    def _tick(self) -> None:
        if self._looking:
            return
        self._looking = True
        d = Deferred.fromCoroutine(self.refresh())
        d.addErrback(lambda f: log.failure("looking at the spool", f))
        d.addBoth(lambda _: setattr(self, "_looking", False))

    def added(self, size: int) -> None:
        """Count a tile just spooled until the next look."""
        s = self.stats
        now = self._clock.seconds()
        self.stats = attrs.evolve(
            s,
            entries=s.entries + 1,
            bytes=s.bytes + size,
            oldest=now if s.oldest is None else s.oldest,
            free=tuple((d, f - size) for d, f in s.free),
        )

    def consumed(self, size: int) -> None:
        """Count ``size`` bytes just written outside the spool until the next look."""
        s = self.stats
        self.stats = attrs.evolve(s, free=tuple((d, f - size) for d, f in s.free))

    def stop(self) -> None:
        """Stop looking."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
