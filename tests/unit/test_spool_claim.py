"""Unit tests for claiming spool entries (one uploader per entry across processes)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import pytest

from imagecatcher.spool import Spool, SpoolEntry
from tests.storefakes import ImmediateReactor, SyncThreadPool, run


def _entry(tile_id: int = 7) -> SpoolEntry:
    return SpoolEntry(
        tile_id=tile_id,
        uid=123,
        name="col0001_row0002_cam0.tif",
        col=1,
        row=2,
        collection="FAFB",
        path="/acquisitions/123/col0001_row0002_cam0.tif",
        context={"checksum": "00" * 16},
        sha1=bytes(range(20)),
        md5=bytes(range(16)),
    )


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    """A spool over a temporary directory with synchronous 'threads'."""
    return Spool(tmp_path / "spool", ImmediateReactor(), SyncThreadPool())


def test_one_claim_at_a_time(spool: Spool) -> None:
    """While an entry is claimed a second claim gets None; after release it succeeds."""
    entry = _entry()
    run(spool.put(entry, b"tile bytes"))
    first = run(spool.claim(entry))
    assert first is not None and first.held and first.entry == entry
    assert run(spool.claim(entry)) is None
    first.release()
    assert not first.held
    second = run(spool.claim(entry))
    assert second is not None
    second.release()


def test_release_is_idempotent_and_a_context_manager(spool: Spool) -> None:
    """Leaving a with block releases; releasing twice is harmless."""
    entry = _entry()
    run(spool.put(entry, b"x"))
    claim = spool.try_claim(entry)
    assert claim is not None
    with claim:
        assert spool.try_claim(entry) is None
    claim.release()
    again = spool.try_claim(entry)
    assert again is not None
    again.release()


def test_missing_entry_cannot_be_claimed(spool: Spool) -> None:
    """An entry that is not (or no longer) in the spool gives None."""
    assert run(spool.claim(_entry())) is None


def test_holder_removes_then_releases(spool: Spool) -> None:
    """The uploader removes the entry under its claim; afterwards nobody can claim it."""
    entry = _entry()
    run(spool.put(entry, b"x"))
    claim = run(spool.claim(entry))
    assert claim is not None
    run(spool.remove(entry))
    claim.release()
    assert run(spool.claim(entry)) is None
    assert run(spool.entries()) == []


def test_quarantined_entry_cannot_be_claimed(spool: Spool) -> None:
    """An entry set aside under its claim is not claimable afterwards."""
    entry = _entry()
    run(spool.put(entry, b"x"))
    claim = run(spool.claim(entry))
    assert claim is not None
    run(spool.quarantine(entry))
    claim.release()
    assert run(spool.claim(entry)) is None


def test_entry_removed_while_waiting_for_the_lock(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opened before the holder removed it, locked after: the claim is refused."""
    entry = _entry()
    run(spool.put(entry, b"x"))
    real_flock = fcntl.flock

    def flock_after_removal(fd: Any, operation: int) -> None:
        # The previous holder finishes its upload between our open and our lock.
        run(spool.remove(entry))
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock_after_removal)
    assert spool.try_claim(entry) is None


def test_entry_replaced_while_waiting_for_the_lock(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the path names a new file by the time we hold the lock, we hold nothing."""
    entry = _entry()
    run(spool.put(entry, b"x"))
    real_flock = fcntl.flock

    def flock_after_replacement(fd: Any, operation: int) -> None:
        run(spool.remove(entry))
        run(spool.put(entry, b"x"))
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock_after_replacement)
    assert spool.try_claim(entry) is None
    monkeypatch.undo()
    fresh = spool.try_claim(entry)
    assert fresh is not None
    fresh.release()


def test_claims_are_per_entry(spool: Spool) -> None:
    """Claiming one entry leaves the others free."""
    a, b = _entry(1), _entry(2)
    run(spool.put(a, b"a"))
    run(spool.put(b, b"b"))
    claim_a = spool.try_claim(a)
    claim_b = spool.try_claim(b)
    assert claim_a is not None and claim_b is not None
    claim_a.release()
    claim_b.release()


def test_claim_descriptor_is_not_inherited(spool: Spool) -> None:
    """The lock's descriptor is close-on-exec: a spawned process cannot keep it."""
    entry = _entry()
    run(spool.put(entry, b"x"))
    claim = spool.try_claim(entry)
    assert claim is not None
    fd = claim._fd
    assert fd is not None and not os.get_inheritable(fd)
    claim.release()
