"""File-store capture: the tile's file and its rename are fsync'd (while its
transaction runs) before the tile is acknowledged; a failed fsync is no ack."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tests.storefakes import result_of
from tests.unit.test_pipeline import _failure_of, upload
from tests.unit.test_recovery import NAME, Host


def test_acknowledged_only_once_file_and_directory_are_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The capture answers after an fsync of the tile's own file and one of
    the directory it was renamed into."""
    synced: list[tuple[int, int]] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        info = os.fstat(fd)
        synced.append((info.st_dev, info.st_ino))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    pipeline, _store = Host(tmp_path).start()
    result_of(pipeline.capture(upload(b"durable bytes", NAME)))
    target = next((tmp_path / "objects").rglob(NAME))
    for path in (target, target.parent):
        info = os.stat(path)
        assert (info.st_dev, info.st_ino) in synced, path


def test_a_failed_fsync_is_not_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An I/O error making the tile durable fails the capture."""

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", broken)
    pipeline, _store = Host(tmp_path).start()
    failure = _failure_of(pipeline.capture(upload(b"not durable", NAME)))
    assert failure.check(OSError)
    assert "Input/output error" in failure.getErrorMessage()
