"""Pipeline: stages, colours, capture, spooling and the background spool drainer.

Everything runs synchronously: a Clock that also answers ``callFromThread``, a
thread pool that runs jobs inline, :class:`MemoryStore` and a fake repository
that keeps tiles the way :mod:`imagecatcher.db.repository` records them
(``mark_spooled`` clears ``jfs_key``; ``finalise_tile`` returns the old key).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import attrs
import pytest
from zope.interface import implementer

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure

from imagecatcher.db.capture import UNKNOWN, Recorded, TileContent
from imagecatcher.db.repository import Repository
from imagecatcher.domain import (
    Acquisition,
    BadParameter,
    CatcherError,
    NotFound,
    QueueColour,
    TileRecord,
    digests,
)
from imagecatcher.names import TileName, parse_tile_name
from imagecatcher.pipeline import (
    Captured,
    Pipeline,
    QueueTimeout,
    Stage,
    TileUpload,
    colour,
)
from imagecatcher.sink import BATCH_BYTES
from imagecatcher.spool import Spool, SpoolEntry
from imagecatcher.storage import StoredObject, StoreError
from imagecatcher.storage.keys import object_key, path_key
from imagecatcher.storage.memory import MemoryStore
from tests.storefakes import ImmediateReactor, SyncThreadPool, result_of, run

UID = 123
MOSAIC = 11
NAME = "col0006_row0017_cam1.tif"
PATH = f"/acquisitions/{UID}/{NAME}"
OBJECT = f"FAFB{PATH}"
KEY = object_key(OBJECT)
WAIT = 1.0
ACQ = Acquisition(
    uid=UID,
    acquisition_id=1,
    mosaic_id=MOSAIC,
    temca_id=2,
    sample_name="FAFB_00",
    project_name="fly",
    project_owner="flyTEM",
    stack_name="",
)


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data).digest()


def _sha1(data: bytes) -> bytes:
    return hashlib.sha1(data).digest()


@implementer(IReactorFromThreads)
class ThreadlessClock(Clock):
    """A Clock whose callFromThread runs the call at once (for deferToThreadPool)."""

    def callFromThread(  # noqa: N802 - Twisted's name
        self, callable: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> None:
        """Call ``callable`` now, on this thread."""
        callable(*args, **kwargs)


@attrs.define
class Finalised:
    """One finalise_tile call."""

    tile_id: int
    name: str
    path: str
    key: str
    sha1: bytes
    md5: bytes


class FakeRepository:
    """The repository methods the pipeline calls, over dicts."""

    def __init__(self, *acqs: Acquisition) -> None:
        self.acqs = {a.uid: a for a in acqs}
        self.tiles: dict[int, tuple[int, int, int, int, TileRecord]] = {}
        self.upserts = 0
        self.finalised: list[Finalised] = []
        self.spooled: list[tuple[int, str, str, bytes, bytes]] = []
        #: When set, acquisition() waits for it (to hold a capture mid-way).
        self.gate: Deferred[None] | None = None
        #: When set, upsert_tile() waits for it (to fill the tile stage).
        self.upsert_gate: Deferred[None] | None = None

    def add_tile(
        self, col: int, row: int, frame: int = -1, sha1: bytes | None = None
    ) -> TileRecord:
        """Create a tile directly (as a previous run would have)."""
        tile_id = len(self.tiles) + 1
        tile = TileRecord(tile_id, 1000 + tile_id, None, None, sha1, "")
        self.tiles[tile_id] = (MOSAIC, col, row, frame, tile)
        return tile

    def _set(self, tile_id: int, **changes: Any) -> None:
        mosaic, col, row, frame, tile = self.tiles[tile_id]
        self.tiles[tile_id] = (mosaic, col, row, frame, attrs.evolve(tile, **changes))

    def record(self, tile_id: int) -> TileRecord:
        """The tile as the database has it now."""
        return self.tiles[tile_id][4]

    async def acquisition(self, uid: int) -> Acquisition | None:
        if self.gate is not None:
            await self.gate
        return self.acqs.get(uid)

    cached_acquisition = acquisition

    async def find_tile(
        self, mosaic_id: int, col: int, row: int, frame: int
    ) -> TileRecord | None:
        for mosaic, c, r, f, tile in self.tiles.values():
            if (mosaic, c, r, f) == (mosaic_id, col, row, frame):
                return tile
        return None

    async def record_tile(
        self,
        content: TileContent,
        config_id: int | None = UNKNOWN,
        known: object = UNKNOWN,
    ) -> Recorded:
        self.upserts += 1
        if self.upsert_gate is not None:
            await self.upsert_gate
        tile = await self.find_tile(
            content.mosaic_id, content.col, content.row, content.frame
        )
        if tile is None:
            tile = self.add_tile(content.col, content.row, content.frame)
            self._set(tile.tile_id, camera=content.camera)
        previous = self.record(tile.tile_id).jfs_key
        self._set(tile.tile_id, sha1=content.sha1, jfs_key=content.key)
        if content.key:
            self.finalised.append(
                Finalised(
                    tile.tile_id,
                    content.name,
                    content.path,
                    content.key,
                    content.sha1,
                    content.md5,
                )
            )
        else:
            self.spooled.append(
                (tile.tile_id, content.name, content.path, content.sha1, content.md5)
            )
        return Recorded(self.record(tile.tile_id), previous, None)

    async def tile_by_id(
        self, tile_id: int
    ) -> tuple[int, int, int, int, TileRecord] | None:
        return self.tiles.get(tile_id)


class FreshKeyStore(MemoryStore):
    """Like sproxyd: every put gets a new key."""

    replaces_in_place = False

    def __init__(self) -> None:
        super().__init__()
        self._n = 0

    async def put(
        self,
        collection: str,
        path: str,
        data: bytes,
        md5: bytes,
        context: Mapping[str, str] | None = None,
    ) -> StoredObject:
        """Store under a key no earlier put used; the key alone finds it."""
        self._n += 1
        path = f"{path}.{self._n}"
        obj = await super().put(collection, path, data, md5, context)
        return StoredObject(path_key(collection, path), obj.location_url)


class GatedStore(MemoryStore):
    """A MemoryStore whose puts wait for :attr:`gate` while it is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: Deferred[None] | None = None

    async def put(
        self,
        collection: str,
        path: str,
        data: bytes,
        md5: bytes,
        context: Mapping[str, str] | None = None,
    ) -> StoredObject:
        """Wait for the gate, then store."""
        if self.gate is not None:
            await self.gate
        return await super().put(collection, path, data, md5, context)


@attrs.define
class Rig:
    """A pipeline and its fakes."""

    pipeline: Pipeline
    repo: FakeRepository
    store: MemoryStore
    spool: Spool
    spool_dir: Path
    clock: ThreadlessClock
    notes: list[str]

    def capture(
        self, data: bytes, name: str = NAME, md5: bytes | None = None
    ) -> Captured:
        """Capture a tile that must finish at once."""
        return result_of(self.pipeline.capture(upload(data, name, md5)))

    def spool_files(self) -> list[str]:
        """Files under the spool directory (received tiles included)."""
        if not self.spool_dir.exists():
            return []
        return sorted(
            str(p.relative_to(self.spool_dir))
            for p in self.spool_dir.rglob("*")
            if p.is_file()
        )


def upload(data: bytes, name: str = NAME, md5: bytes | None = None) -> TileUpload:
    """A TileUpload for acquisition UID."""
    return TileUpload(UID, parse_tile_name(name), data, md5)


@pytest.fixture
def make_rig(tmp_path: Path) -> Callable[..., Rig]:
    """Build a Rig; keyword arguments choose stage sizes and the store."""

    def make(
        store: MemoryStore | None = None,
        tile_stage: tuple[int, int] = (1, 1),
        content_stage: tuple[int, int] = (1, 1),
        **options: Any,
    ) -> Rig:
        clock = ThreadlessClock()
        pool = SyncThreadPool()
        repo = FakeRepository(ACQ)
        spool_dir = tmp_path / "spool"
        spool = Spool(spool_dir, ImmediateReactor(), pool)
        notes: list[str] = []
        store = MemoryStore() if store is None else store
        pipeline = Pipeline(
            cast(Repository, repo),
            store,
            spool,
            clock,
            pool,
            tile_stage=Stage(*tile_stage, WAIT, clock),
            content_stage=Stage(*content_stage, WAIT, clock),
            jfs_mapping={"FAFB_00": "FAFB"},
            notify=notes.append,
            **options,
        )
        return Rig(pipeline, repo, store, spool, spool_dir, clock, notes)

    return make


@pytest.fixture
def rig(make_rig: Callable[..., Rig]) -> Rig:
    """A pipeline with synchronous stages over a MemoryStore."""
    return make_rig()


def _failure_of(d: Deferred[Any]) -> Failure:
    failures: list[Failure] = []
    d.addErrback(failures.append)
    assert failures, "the Deferred has not failed"
    return failures[0]


# -- colours and stages ----------------------------------------------------------


@pytest.mark.parametrize(
    ("waiting", "capacity", "expected"),
    [
        (0, 0, QueueColour.GREEN),
        (5, 0, QueueColour.GREEN),
        (0, 1, QueueColour.GREEN),
        (1, 1, QueueColour.RED),
        *[(n, 9, QueueColour.GREEN) for n in range(7)],
        (7, 9, QueueColour.YELLOW),
        (8, 9, QueueColour.YELLOW),
        (9, 9, QueueColour.RED),
        (6, 10, QueueColour.GREEN),
        (7, 10, QueueColour.YELLOW),
        (9, 10, QueueColour.RED),
        (12, 9, QueueColour.RED),
    ],
)
def test_colour_table(waiting: int, capacity: int, expected: QueueColour) -> None:
    """§4.5: GREEN under 70 %, YELLOW under 90 %, else RED; capacity 0 is GREEN."""
    assert colour(waiting, capacity) is expected


def test_digests_are_md5_and_sha1() -> None:
    """digests() returns (MD5, SHA-1) of bytes and of a memoryview alike."""
    data = b"some tile"
    assert digests(data) == (_md5(data), _sha1(data))
    assert digests(memoryview(data)) == (_md5(data), _sha1(data))


def _held(release: Deferred[None], ran: list[str], label: str) -> Callable[[], Any]:
    async def job() -> str:
        ran.append(label)
        await release
        return label

    return job


def test_stage_times_out_when_the_queue_stays_full() -> None:
    """With workers busy and the queue full, a new job fails with QueueTimeout."""
    clock = Clock()
    stage = Stage(2, 1, WAIT, clock)
    release: Deferred[None] = Deferred()
    ran: list[str] = []
    busy = [Deferred.fromCoroutine(stage.run(_held(release, ran, w))) for w in "abc"]
    assert (stage.waiting, stage.colour) == (1, QueueColour.RED)
    waiting = Deferred.fromCoroutine(stage.run(_held(release, ran, "d")))
    clock.advance(WAIT - 0.001)
    assert not waiting.called
    clock.advance(0.001)
    assert _failure_of(waiting).check(QueueTimeout)
    assert ran == ["a", "b"]
    release.callback(None)
    assert [result_of(d) for d in busy] == ["a", "b", "c"]
    assert (stage.waiting, stage.colour) == (0, QueueColour.GREEN)


def test_stage_runs_a_waiting_job_when_a_worker_frees() -> None:
    """A job queued behind busy workers runs once one finishes; no timer is left."""
    clock = Clock()
    stage = Stage(2, 1, WAIT, clock)
    first: Deferred[None] = Deferred()
    second: Deferred[None] = Deferred()
    ran: list[str] = []
    a = Deferred.fromCoroutine(stage.run(_held(first, ran, "a")))
    b = Deferred.fromCoroutine(stage.run(_held(second, ran, "b")))
    c = Deferred.fromCoroutine(stage.run(_held(Deferred(), ran, "c")))
    clock.advance(WAIT / 2)
    first.callback(None)
    assert result_of(a) == "a" and ran == ["a", "b", "c"]
    assert clock.getDelayedCalls() == []
    clock.advance(10 * WAIT)
    assert not c.called
    second.callback(None)
    assert result_of(b) == "b"


def test_stage_releases_its_slot_when_a_job_fails() -> None:
    """A failing job frees its worker slot."""
    clock = Clock()
    stage = Stage(2, 1, WAIT, clock)

    async def boom() -> None:
        raise ValueError("boom")

    for _ in range(5):
        assert _failure_of(Deferred.fromCoroutine(stage.run(boom))).check(ValueError)
    assert stage.waiting == 0

    async def fine() -> str:
        return "ok"

    assert result_of(Deferred.fromCoroutine(stage.run(fine))) == "ok"


def test_stage_job_that_found_room_in_the_queue_does_not_time_out() -> None:
    """A job admitted to a queue with room waits for a worker without a deadline."""
    clock = Clock()
    stage = Stage(2, 9, WAIT, clock)
    release: Deferred[None] = Deferred()
    ran: list[str] = []
    for label in "ab":
        Deferred.fromCoroutine(stage.run(_held(release, ran, label)))
    queued = Deferred.fromCoroutine(stage.run(_held(Deferred(), ran, "c")))
    assert stage.colour is QueueColour.GREEN
    clock.advance(2 * WAIT)
    try:
        assert not queued.called
    finally:
        queued.addErrback(lambda f: None)
        release.callback(None)


def test_synchronous_stage_runs_inline() -> None:
    """workers <= 1: the job runs at once, nothing queues and the colour is GREEN."""
    clock = Clock()
    stage = Stage(1, 9, WAIT, clock)
    assert stage.synchronous and stage.capacity == 0
    ran: list[str] = []
    held = Deferred.fromCoroutine(stage.run(_held(Deferred(), ran, "a")))
    second = Deferred.fromCoroutine(stage.run(_held(Deferred(), ran, "b")))
    assert ran == ["a", "b"] and stage.waiting == 0
    assert stage.colour is QueueColour.GREEN and clock.getDelayedCalls() == []

    async def quick() -> int:
        return 42

    assert result_of(Deferred.fromCoroutine(stage.run(quick))) == 42
    assert not held.called and not second.called


def test_zero_workers_is_synchronous_and_queue_size_is_at_least_one() -> None:
    """workers 0 behaves as 1; an asynchronous stage's capacity is at least 1."""
    clock = Clock()
    assert Stage(0, 5, WAIT, clock).synchronous
    assert Stage(3, -1, WAIT, clock).capacity == 1
    assert Stage(3, 9, WAIT, clock).capacity == 9


# -- capture ---------------------------------------------------------------------


def test_capture_new_tile_stores_and_finalises(rig: Rig) -> None:
    """A new tile is put once, finalised with its SHA-1/MD5 and its key returned."""
    data = b"\x00tile\r\nbytes" * 100
    result = rig.capture(data)
    assert rig.store.puts == 1 and rig.store.objects == {OBJECT: data}
    assert rig.repo.finalised == [
        Finalised(1, NAME, PATH, KEY, _sha1(data), _md5(data))
    ]
    assert (result.jfs_key, result.jfs_path, result.sha1) == (KEY, PATH, _sha1(data))
    assert result.acq == ACQ and result.tile.tile_id == 1 and result.camera == 1
    assert result.tile_name == parse_tile_name(NAME)
    assert result.status.system is QueueColour.GREEN
    assert rig.spool_files() == [] and rig.repo.spooled == []


def test_capture_of_a_memoryview_and_a_drift_frame(rig: Rig) -> None:
    """A memoryview body and a drift-frame name are captured like bytes."""
    name = "Dump_cam0_frame02948_col0012_row0156.tif"
    data = bytearray(b"drift frame")
    result = result_of(
        rig.pipeline.capture(TileUpload(UID, parse_tile_name(name), memoryview(data)))
    )
    assert rig.store.objects == {f"FAFB/acquisitions/{UID}/{name}": b"drift frame"}
    assert result.sha1 == _sha1(b"drift frame")


def test_correct_client_md5_is_accepted(rig: Rig) -> None:
    """A client MD5 that matches the bytes lets the capture proceed."""
    data = b"tile"
    assert rig.capture(data, md5=_md5(data)).jfs_key == KEY


def test_wrong_client_md5_is_bad_parameter_and_stores_nothing(rig: Rig) -> None:
    """A client MD5 that does not match is BadParameter; nothing is put or recorded."""
    data = b"tile"
    d = rig.pipeline.capture(upload(data, md5=_md5(b"other")))
    failure = _failure_of(d)
    assert failure.check(BadParameter)
    assert _md5(data).hex() in str(failure.value)
    assert rig.store.puts == 0 and rig.repo.upserts == 0
    assert (
        rig.repo.finalised == [] and rig.repo.spooled == [] and rig.spool_files() == []
    )


def test_unknown_acquisition_is_not_found(rig: Rig) -> None:
    """A capture for an unknown UID fails with NotFound and the §1.5 message."""
    d = rig.pipeline.capture(TileUpload(999, parse_tile_name(NAME), b"x"))
    failure = _failure_of(d)
    assert failure.check(NotFound)
    assert str(failure.value) == "No mosaic image found for acquisition id 999"
    assert rig.store.puts == 0 and rig.repo.upserts == 0


def test_resending_identical_bytes_of_a_persisted_tile_puts_nothing(rig: Rig) -> None:
    """Re-sending the same bytes of a stored tile answers its key without a put."""
    first = rig.capture(b"same")
    again = rig.capture(b"same")
    assert rig.store.puts == 1 and len(rig.repo.finalised) == 1
    assert again.jfs_key == first.jfs_key == KEY
    assert again.tile.tile_id == first.tile.tile_id


def test_resending_new_bytes_replaces_the_content(rig: Rig) -> None:
    """Different bytes for a known tile are put and finalised again."""
    rig.capture(b"old")
    result = rig.capture(b"new")
    assert rig.store.puts == 2 and rig.store.objects == {OBJECT: b"new"}
    assert [f.sha1 for f in rig.repo.finalised] == [_sha1(b"old"), _sha1(b"new")]
    assert result.sha1 == _sha1(b"new")


def test_superseded_object_is_deleted_with_fresh_keys(
    make_rig: Callable[..., Rig],
) -> None:
    """With per-put keys (sproxyd), the replaced object is deleted after finalise."""
    rig = make_rig(store=FreshKeyStore())
    old = rig.capture(b"old").jfs_key
    new = rig.capture(b"new").jfs_key
    assert old != new and dict(rig.store.objects) == {new: b"new"}


# -- spooling --------------------------------------------------------------------


def _gave_up(rig: Rig) -> list[str]:
    """Notifications saying a spooled tile's uploads were given up."""
    return [n for n in rig.notes if "still in the spool" in n]


def _spooled_entry(rig: Rig, data: bytes) -> SpoolEntry:
    (entry,) = run(rig.spool.entries())
    assert entry.sha1 == _sha1(data)
    return entry


def test_store_failure_spools_then_uploads(rig: Rig) -> None:
    """A store failure spools the tile and marks the store down; once a probe
    a second later finds it up again, the spooled tile is uploaded."""
    data = b"spooled tile"
    rig.store.fail_next(1)
    result = rig.capture(data)
    assert result.jfs_key == "" and result.jfs_path == PATH
    assert result.sha1 == _sha1(data)
    entry = _spooled_entry(rig, data)
    assert rig.spool_files() == [f"{entry.stem}.json", f"{entry.stem}.tile"]
    assert (entry.tile_id, entry.uid, entry.name, entry.collection, entry.path) == (
        1,
        UID,
        NAME,
        "FAFB",
        PATH,
    )
    assert entry.context == {
        "sample": "FAFB_00",
        "project": "fly",
        "owner": "flyTEM",
        "checksum": _md5(data).hex(),
    }
    assert rig.repo.spooled == [(1, NAME, PATH, _sha1(data), _md5(data))]
    assert rig.repo.finalised == [] and rig.store.objects == {}
    assert not rig.pipeline.health.up
    (call,) = rig.clock.getDelayedCalls()  # the probe
    assert call.getTime() == 1.0

    rig.clock.advance(1.0)
    assert rig.pipeline.health.up
    assert rig.store.objects[OBJECT] == data
    assert rig.repo.finalised == [
        Finalised(1, NAME, PATH, KEY, _sha1(data), _md5(data))
    ]
    assert rig.spool_files() == [] and rig.clock.getDelayedCalls() == []
    assert _gave_up(rig) == []


def test_resending_identical_bytes_of_a_spooled_tile_puts_nothing(rig: Rig) -> None:
    """While the same bytes wait in the spool a re-send is answered from it."""
    rig.store.fail_next(1)
    rig.capture(b"waiting")
    again = rig.capture(b"waiting")
    assert again.jfs_key == "" and rig.store.puts == 1
    assert len(rig.repo.spooled) == 1 and len(rig.clock.getDelayedCalls()) == 1


def test_a_store_that_stays_down_is_probed_with_backoff(rig: Rig) -> None:
    """While the store is down no tile tries it: every capture goes straight to
    the spool, and the store is probed after 1, 2, 4 … s, capped at 30 s."""
    rig.store.fail_next(100)
    rig.capture(b"first")
    assert rig.store.puts == 1
    rig.capture(b"second", name="col0001_row0001_cam0.tif")
    assert rig.store.puts == 1  # not tried: the store is known to be down
    delays: list[float] = []
    for _ in range(7):
        (call,) = rig.clock.getDelayedCalls()
        delays.append(call.getTime() - rig.clock.seconds())
        rig.clock.advance(delays[-1])
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert rig.store.puts == 1 + 7 and rig.repo.finalised == []
    assert len(rig.spool_files()) == 4
    downs = [n for n in rig.notes if n.startswith("Content store down")]
    assert len(downs) == 1


def test_uploads_resume_when_the_store_answers_again(rig: Rig) -> None:
    """After failed probes, the first that passes uploads what waits."""
    rig.store.fail_next(3)  # the capture and two probes
    rig.capture(b"eventually")
    for step in (1.0, 2.0, 4.0):
        assert rig.spool_files() != []
        rig.clock.advance(step)
    assert rig.store.objects[OBJECT] == b"eventually" and rig.spool_files() == []
    assert rig.clock.getDelayedCalls() == [] and _gave_up(rig) == []
    assert any(n.startswith("Content store answers again") for n in rig.notes)


def test_uploads_outlast_a_long_database_outage(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uploads failing on the database are retried for as long as it is down
    (backing off to once a minute), told once, and done when it answers."""
    rig.store.fail_next(1)
    rig.capture(b"patient")
    failures = 12  # well past OTHER_ATTEMPTS: the old code gave up at 8
    real = rig.repo.tile_by_id

    async def down(tile_id: int) -> tuple[int, int, int, int, TileRecord] | None:
        nonlocal failures
        if failures > 0:
            failures -= 1
            raise ConnectionError('(2003, "Can\'t connect to MySQL server")')
        return await real(tile_id)

    monkeypatch.setattr(rig.repo, "tile_by_id", down)
    for _ in range(40):
        rig.clock.advance(60.0)
    assert failures == 0
    assert rig.store.objects[OBJECT] == b"patient" and rig.spool_files() == []
    assert len(_gave_up(rig)) == 1 and "retrying" in _gave_up(rig)[0]
    assert rig.clock.getDelayedCalls() == []


def test_superseded_spooled_entry_is_dropped(rig: Rig) -> None:
    """A spooled tile whose database content changed since is dropped, not uploaded."""
    rig.store.fail_next(1)
    rig.capture(b"older")
    rig.capture(b"newer")  # the store is down: spooled too, replacing the first
    rig.clock.advance(1.0)
    assert rig.store.objects[OBJECT] == b"newer"
    assert rig.spool_files() == []
    assert rig.repo.record(1).sha1 == _sha1(b"newer")
    assert [f.sha1 for f in rig.repo.finalised] == [_sha1(b"newer")]


def test_spooled_entry_of_a_vanished_tile_is_dropped(rig: Rig) -> None:
    """A spooled entry whose tile no longer exists is dropped."""
    rig.store.fail_next(1)
    rig.capture(b"orphan")
    del rig.repo.tiles[1]
    rig.clock.advance(1.0)
    assert rig.spool_files() == [] and OBJECT not in rig.store.objects


def test_spooled_entry_of_a_vanished_acquisition_is_quarantined(rig: Rig) -> None:
    """A spooled tile whose acquisition is gone is set aside as *.bad."""
    rig.store.fail_next(1)
    rig.capture(b"lost acq")
    entry = _spooled_entry(rig, b"lost acq")
    del rig.repo.acqs[UID]
    rig.clock.advance(1.0)
    assert rig.spool_files() == [f"{entry.stem}.json.bad", f"{entry.stem}.tile.bad"]
    assert OBJECT not in rig.store.objects


def test_damaged_spool_bytes_are_quarantined_and_notified(rig: Rig) -> None:
    """Spooled bytes that no longer match their SHA-1 are set aside with a notification."""
    rig.store.fail_next(1)
    rig.capture(b"pristine")
    entry = _spooled_entry(rig, b"pristine")
    (rig.spool_dir / f"{entry.stem}.tile").write_bytes(b"bit rot")
    rig.clock.advance(1.0)
    assert rig.spool_files() == [f"{entry.stem}.json.bad", f"{entry.stem}.tile.bad"]
    assert OBJECT not in rig.store.objects
    assert [n for n in rig.notes if "damaged" in n] == [
        f"Spooled tile {UID}:{NAME} is damaged on disk"
    ]


def test_full_content_queue_spools_the_tile(make_rig: Callable[..., Rig]) -> None:
    """When no content worker frees within WAIT the tile goes to the spool."""
    store = GatedStore()
    rig = make_rig(store=store, content_stage=(2, 1))
    store.gate = Deferred()
    busy = [
        rig.pipeline.capture(upload(b"a", "col0001_row0001_cam0.tif")),
        rig.pipeline.capture(upload(b"b", "col0002_row0001_cam0.tif")),
        rig.pipeline.capture(upload(b"c", "col0003_row0001_cam0.tif")),
    ]
    assert rig.pipeline.status().content is QueueColour.RED
    fourth = rig.pipeline.capture(upload(b"d", "col0004_row0001_cam0.tif"))
    rig.clock.advance(WAIT)
    assert result_of(fourth).jfs_key == ""
    assert [e.name for e in run(rig.spool.entries())] == ["col0004_row0001_cam0.tif"]
    store.gate.callback(None)
    store.gate = None
    assert [result_of(d).jfs_key != "" for d in busy] == [True, True, True]
    rig.clock.advance(1.0)
    assert rig.spool_files() == [] and len(rig.store.objects) == 4


def test_full_tile_queue_fails_the_capture(make_rig: Callable[..., Rig]) -> None:
    """When no tile worker frees within WAIT the capture fails with the §1.5 text."""
    rig = make_rig(tile_stage=(2, 1))
    rig.repo.upsert_gate = Deferred()
    held = [
        rig.pipeline.capture(upload(b"x", f"col000{i}_row0001_cam0.tif"))
        for i in (1, 2, 3)
    ]
    late = rig.pipeline.capture(upload(b"y"))
    assert rig.pipeline.status().tile is QueueColour.RED
    rig.clock.advance(WAIT)
    failure = _failure_of(late)
    assert failure.check(CatcherError) and not failure.check(QueueTimeout)
    assert (
        str(failure.value)
        == f"Timeout waiting to enqueue the tile job for: {UID}:{NAME}"
    )
    rig.repo.upsert_gate.callback(None)
    rig.repo.upsert_gate = None
    assert all(result_of(d).jfs_key for d in held)


def test_spooled_recapture_deletes_the_superseded_object(
    make_rig: Callable[..., Rig],
) -> None:
    """Content replaced through the spool still deletes the object it replaced."""
    rig = make_rig(store=FreshKeyStore())
    old = rig.capture(b"old").jfs_key
    rig.store.fail_next(1)
    rig.capture(b"new")
    rig.clock.advance(1.0)
    assert old not in rig.store.objects
    tiles = [v for k, v in rig.store.objects.items() if "jfs ping" not in k]
    assert tiles == [b"new"]


# -- resume and stop -------------------------------------------------------------


def _entry_for(tile: TileRecord, name: str, data: bytes) -> SpoolEntry:
    tile_name: TileName = parse_tile_name(name)
    path = f"/acquisitions/{UID}/{name}"
    return SpoolEntry(
        tile_id=tile.tile_id,
        uid=UID,
        name=name,
        col=tile_name.col,
        row=tile_name.row,
        collection="FAFB",
        path=path,
        context=ACQ.storage_context() | {"checksum": _md5(data).hex()},
        sha1=_sha1(data),
        md5=_md5(data),
    )


def test_resume_schedules_every_spooled_entry(rig: Rig) -> None:
    """resume() queues an upload per entry on disk; each is stored."""
    written = {}
    for i, data in enumerate((b"first", b"second", b"third"), start=1):
        name = f"col000{i}_row0002_cam0.tif"
        tile = rig.repo.add_tile(i, 2, sha1=_sha1(data))
        run(rig.spool.put(_entry_for(tile, name, data), data))
        written[f"FAFB/acquisitions/{UID}/{name}"] = data
    assert run(rig.pipeline.resume()) == 3
    assert dict(rig.store.objects) == written
    assert rig.spool_files() == [] and len(rig.repo.finalised) == 3


def test_resume_with_an_empty_spool(rig: Rig) -> None:
    """resume() with nothing spooled schedules nothing."""
    assert run(rig.pipeline.resume()) == 0 and rig.clock.getDelayedCalls() == []


def test_stop_refuses_captures_and_cancels_uploads(rig: Rig) -> None:
    """After stop() captures fail with CatcherError and no upload is left scheduled."""
    rig.store.fail_next(1)
    rig.capture(b"spooled")
    assert len(rig.clock.getDelayedCalls()) == 1
    run(rig.pipeline.stop())
    assert rig.clock.getDelayedCalls() == []
    failure = _failure_of(rig.pipeline.capture(upload(b"late")))
    assert failure.check(CatcherError)
    rig.clock.advance(100.0)
    assert rig.store.puts == 1 and len(rig.spool_files()) == 2


def test_stop_waits_for_a_capture_in_flight(rig: Rig) -> None:
    """stop() fires only once the capture in flight has finished."""
    rig.repo.gate = Deferred()
    capture = rig.pipeline.capture(upload(b"in flight"))
    stopped = Deferred.fromCoroutine(rig.pipeline.stop())
    assert not stopped.called
    rig.repo.gate.callback(None)
    assert stopped.called and result_of(capture).jfs_key == KEY


def test_stop_gives_up_after_its_deadline(rig: Rig) -> None:
    """stop() returns after its deadline even if a capture never finishes."""
    rig.repo.gate = Deferred()
    capture = rig.pipeline.capture(upload(b"stuck"))
    capture.addErrback(lambda f: None)
    stopped = Deferred.fromCoroutine(rig.pipeline.stop(deadline=5.0))
    rig.clock.advance(4.9)
    assert not stopped.called
    rig.clock.advance(0.1)
    assert result_of(stopped) is None


def test_stop_deadline_warning_counts_unfinished_captures(rig: Rig) -> None:
    """The warning at stop's deadline names how many captures were unfinished."""
    rig.repo.gate = Deferred()
    rig.pipeline.capture(upload(b"stuck")).addErrback(lambda f: None)
    with capturedLogs() as events:
        stopped = Deferred.fromCoroutine(rig.pipeline.stop(deadline=5.0))
        rig.clock.advance(5.0)
    assert result_of(stopped) is None
    assert [e["n"] for e in events if "unfinished" in e.get("log_format", "")] == [1]


def test_cancelling_the_caller_spares_the_capture(rig: Rig) -> None:
    """Cancelling the Deferred a route awaits does not cancel the capture work."""
    rig.repo.gate = Deferred()
    view = rig.pipeline.capture(upload(b"keep going"))
    view.cancel()
    assert _failure_of(view).check(CancelledError)
    rig.repo.gate.callback(None)
    assert rig.store.objects == {OBJECT: b"keep going"}
    assert [f.key for f in rig.repo.finalised] == [KEY]


def test_failure_after_the_caller_left_is_swallowed(rig: Rig) -> None:
    """A capture that fails after its caller cancelled does not error the caller twice."""
    rig.repo.gate = Deferred()
    view = rig.pipeline.capture(TileUpload(999, parse_tile_name(NAME), b"x"))
    view.cancel()
    assert _failure_of(view).check(CancelledError)
    rig.repo.gate.callback(None)  # NotFound now, logged only
    assert rig.store.puts == 0


def test_store_error_during_verify_also_spools(make_rig: Callable[..., Rig]) -> None:
    """A verify failure (StoreError after the put) spools the tile too."""

    class BadVerify(MemoryStore):
        failures = 1

        async def verify(self, obj: StoredObject, size: int, md5: bytes) -> None:
            if self.failures:
                self.failures -= 1
                raise StoreError("verify: size differs")
            await super().verify(obj, size, md5)

    rig = make_rig(store=BadVerify())
    assert rig.capture(b"verify me").jfs_key == ""
    assert rig.repo.finalised == [] and len(rig.spool_files()) == 2
    rig.clock.advance(1.0)
    assert rig.spool_files() == [] and [f.key for f in rig.repo.finalised] == [KEY]


def test_a_sink_refused_while_stopping_is_discarded(rig: Rig) -> None:
    """A tile that arrives while the daemon stops leaves no received file behind."""
    run(rig.pipeline.stop())
    sink = rig.pipeline.open_sink()
    sink.write(b"x" * BATCH_BYTES)  # a whole batch: its file exists now
    assert len(rig.spool_files()) == 1
    view = rig.pipeline.capture(TileUpload(UID, parse_tile_name(NAME), sink=sink))
    assert _failure_of(view).check(CatcherError)
    assert rig.spool_files() == []
