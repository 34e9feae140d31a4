"""A re-capture into the file store killed before its transaction settled:
the next start keeps the new file if its record committed, else puts the
replaced (acknowledged) file back."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from twisted.internet.defer import Deferred

from imagecatcher.db.repository import Repository
from imagecatcher.pipeline import Captured, Pipeline, Stage
from imagecatcher.sink import remove_stale_parts
from imagecatcher.spool import Spool
from imagecatcher.storage.fs import FileStore
from tests.storefakes import (
    ImmediateReactor,
    SyncThreadPool,
    result_of,
    run,
)
from tests.unit.test_pipeline import (
    ACQ,
    WAIT,
    FakeRepository,
    ThreadlessClock,
    upload,
)

NAME = "col0007_row0003_cam2.tif"


def _dead_pid() -> int:
    """The pid of a process that has exited."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    return gone.pid


class Host:
    """What survives a kill -9: the database and the directories."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.repo = FakeRepository(ACQ)
        self._dead: list[tuple[Deferred[None], Deferred[Captured]]] = []

    def bury(self) -> None:
        """Let the "killed" capture end (failing), once the test is done."""
        for gate, capture in self._dead:
            capture.addErrback(lambda failure: None)
            gate.errback(RuntimeError("killed"))

    def start(self) -> tuple[Pipeline, FileStore]:
        """A pipeline over the file store, as a (re)started daemon builds it."""
        pool = SyncThreadPool()
        clock = ThreadlessClock()
        store = FileStore(self.tmp / "objects", ImmediateReactor(), pool)
        pipeline = Pipeline(
            cast(Repository, self.repo),
            store,
            Spool(self.tmp / "spool", ImmediateReactor(), pool),
            clock,
            pool,
            tile_stage=Stage(1, 1, WAIT, clock),
            content_stage=Stage(1, 1, WAIT, clock),
            jfs_mapping={"FAFB_00": "FAFB"},
            local=store,
        )
        return pipeline, store

    def kill_mid_recapture(self, old: bytes, new: bytes) -> Path:
        """Capture ``old`` (acknowledged), then start re-capturing ``new`` and
        "die" while its transaction waits; the tile's file."""
        pipeline, store = self.start()
        result_of(pipeline.capture(upload(old, NAME)))
        target = next((self.tmp / "objects").rglob(NAME))
        assert target.read_bytes() == old
        gate: Deferred[None] = Deferred()
        self.repo.upsert_gate = gate  # the transaction never returns
        self._dead.append((gate, pipeline.capture(upload(new, NAME))))
        assert target.read_bytes() == new  # placed, not yet recorded
        self.repo.upsert_gate = None
        # The killed process's pid is gone: a restart treats its files as debris.
        (sidecar,) = store.staging_dir.glob("*.prev.json")
        data = json.loads(sidecar.read_text())
        data["pid"] = _dead_pid()
        sidecar.write_text(json.dumps(data))
        return target


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    """The surviving host; the killed capture is buried after the test."""
    survivor = Host(tmp_path)
    yield survivor
    survivor.bury()


def _staging_debris(tmp_path: Path) -> list[str]:
    staging = FileStore(tmp_path / "objects", ImmediateReactor(), SyncThreadPool())
    return sorted(p.name for p in staging.staging_dir.glob("*prev*"))


def test_unrecorded_recapture_is_undone_at_restart(host: Host, tmp_path: Path) -> None:
    """The transaction did not commit: the acknowledged bytes come back."""
    target = host.kill_mid_recapture(b"acknowledged", b"never acknowledged")
    pipeline, _store = host.start()
    assert run(pipeline.recover_placements()) == 1
    assert target.read_bytes() == b"acknowledged"
    assert host.repo.record(1).sha1 == hashlib.sha1(b"acknowledged").digest()
    assert _staging_debris(tmp_path) == []
    assert run(pipeline.recover_placements()) == 0


def test_recorded_recapture_is_kept_at_restart(host: Host, tmp_path: Path) -> None:
    """The transaction committed before the kill: the new bytes stay."""
    target = host.kill_mid_recapture(b"first", b"second, recorded")
    host.repo._set(1, sha1=hashlib.sha1(b"second, recorded").digest())
    pipeline, _store = host.start()
    assert run(pipeline.recover_placements()) == 1
    assert target.read_bytes() == b"second, recorded"
    assert _staging_debris(tmp_path) == []


def test_placements_of_a_live_process_are_left_alone(
    host: Host, tmp_path: Path
) -> None:
    """Another worker's placement in progress is neither undone nor removed."""
    target = host.kill_mid_recapture(b"old", b"new, in flight")
    staging = FileStore(tmp_path / "objects", ImmediateReactor(), SyncThreadPool())
    (sidecar,) = staging.staging_dir.glob("*.prev.json")
    data = json.loads(sidecar.read_text())
    live = subprocess.Popen(["sleep", "30"])
    try:
        data["pid"] = live.pid
        sidecar.write_text(json.dumps(data))
        pipeline, _store = host.start()
        assert run(pipeline.recover_placements()) == 0
        assert target.read_bytes() == b"new, in flight"
    finally:
        live.kill()
        live.wait()


def test_stale_parts_removal_spares_nothing_of_the_dead(
    host: Host, tmp_path: Path
) -> None:
    """Once recovery ran, what a dead process left in staging goes."""
    host.kill_mid_recapture(b"a", b"b")
    staging = FileStore(tmp_path / "objects", ImmediateReactor(), SyncThreadPool())
    for name in [p.name for p in staging.staging_dir.iterdir()]:
        if name.startswith(".part-"):
            pid = _dead_pid()
            rest = name.split("-", 2)[2]
            (staging.staging_dir / name).rename(
                staging.staging_dir / f".part-{pid}-{rest}"
            )
    remove_stale_parts(staging.staging_dir)
    assert list(staging.staging_dir.iterdir()) == []
