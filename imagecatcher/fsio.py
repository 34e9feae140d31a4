"""Durable file operations shared by the file store and the spool.

A rename is durable once its directory is fsync'd.  Tiles finishing together
in one directory share that fsync: :class:`DirSyncer` runs at most one fsync
per directory at a time, and every rename that completed before a sync
started is covered by it, so callers waiting while a sync runs are served by
the next one, together.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from threading import Thread
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

#: The nice value of threads doing background work (spool uploads): capture
#: gets the cores first when both want them.
BACKGROUND_NICE = 10


def lower_thread_priority(nice: int = BACKGROUND_NICE) -> None:
    """Give the calling thread (only it: Linux nice values are per thread)
    at least ``nice``; a no-op where that is not possible."""
    try:
        tid = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, tid) < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except (OSError, AttributeError):
        pass


class _BackgroundThread(Thread):
    """A thread that lowers its own priority before its work."""

    def run(self) -> None:
        lower_thread_priority()
        super().run()


class BackgroundThreadPool(ThreadPool):
    """A thread pool whose threads run at :data:`BACKGROUND_NICE`."""

    threadFactory = _BackgroundThread  # noqa: N815 - Twisted's name


def process_alive(pid: int) -> bool:
    """Whether ``pid`` names another running process (our own pid does not:
    a file of ours from before a restart under the same pid is debris)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fsync_dir(directory: Path) -> None:
    """fsync a directory (blocking: run it on a thread)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Directory:
    def __init__(self) -> None:
        self.running = False
        self.waiting: list[Deferred[None]] = []


class DirSyncer:
    """Group-commits directory fsyncs: one at a time per directory."""

    def __init__(self, reactor: Any, threadpool: ThreadPool) -> None:
        self._reactor = reactor
        self._pool = threadpool
        self._dirs: dict[Path, _Directory] = {}
        #: fsyncs run so far (how well grouping works shows in tests and logs).
        self.syncs = 0

    def sync(self, directory: Path) -> Deferred[None]:
        """Fires once an fsync of ``directory`` started after this call has
        finished; errbacks with its OSError."""
        state = self._dirs.setdefault(directory, _Directory())
        waiter: Deferred[None] = Deferred()
        state.waiting.append(waiter)
        if not state.running:
            self._start(directory, state)
        return waiter

    def _start(self, directory: Path, state: _Directory) -> None:
        batch, state.waiting = state.waiting, []
        state.running = True
        self.syncs += 1
        d = deferToThreadPool(self._reactor, self._pool, fsync_dir, directory)

        def done(result: object) -> None:
            state.running = False
            for waiter in batch:
                if isinstance(result, Failure):
                    waiter.errback(result)
                else:
                    waiter.callback(None)
            if state.waiting:
                self._start(directory, state)
            else:
                del self._dirs[directory]

        d.addBoth(done)
