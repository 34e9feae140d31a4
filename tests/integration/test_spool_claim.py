"""Two processes resuming one spool: every entry is uploaded by exactly one of them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from imagecatcher.spool import Spool
from tests.conftest import PROJECT
from tests.integration.workerprocs import wait_for
from tests.storefakes import ImmediateReactor, SyncThreadPool, run
from tests.unit.test_spool_claim import _entry


def _fill(directory: Path, n: int) -> Spool:
    spool = Spool(directory, ImmediateReactor(), SyncThreadPool())
    for i in range(n):
        run(spool.put(_entry(1000 + i), os.urandom(100 + i)))
    return spool


def _start(*args: str | Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.spool_claim_main", *map(str, args)],
        cwd=PROJECT,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
    )


def test_two_processes_upload_each_entry_once(tmp_path: Path) -> None:
    """Both drain the same spool at once; each entry is uploaded once, by one of them."""
    spool_dir, log, go = tmp_path / "spool", tmp_path / "uploads.log", tmp_path / "go"
    _fill(spool_dir, 300)
    ready = [tmp_path / "ready-a", tmp_path / "ready-b"]
    procs = [_start(spool_dir, log, r, go) for r in ready]
    try:
        wait_for("both processes", lambda: all(r.exists() for r in ready))
        go.touch()
        for proc in procs:
            assert proc.wait(timeout=120) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    lines = [line.split() for line in log.read_text().splitlines()]
    per_stem = Counter(stem for _, stem, _ in lines)
    assert len(per_stem) == 300 and set(per_stem.values()) == {1}
    per_process = Counter(pid for pid, _, _ in lines)
    assert len(per_process) == 2, per_process  # both took part
    assert not list(spool_dir.glob("*.json")) and not list(spool_dir.glob("*.tile"))


def test_a_killed_holder_frees_its_claim(tmp_path: Path) -> None:
    """The kernel drops the lock of a process killed with SIGKILL."""
    spool_dir = tmp_path / "spool"
    spool = _fill(spool_dir, 1)
    (entry,) = run(spool.entries())
    ready = tmp_path / "ready"
    holder = _start(spool_dir, tmp_path / "log", ready, tmp_path / "go", "hold")
    try:
        wait_for("the holder to claim", ready.exists)
        assert spool.try_claim(entry) is None
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    deadline = time.monotonic() + 5
    claim = spool.try_claim(entry)
    while claim is None and time.monotonic() < deadline:
        time.sleep(0.05)
        claim = spool.try_claim(entry)
    assert claim is not None
    claim.release()
