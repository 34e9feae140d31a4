"""A process and all its descendants, from ``/proc``: pids, CPU ticks, RSS.

The daemon may run several worker processes under one ``twistd``, so its
memory and CPU are summed over its whole process tree.  :class:`PeakRss`
samples the tree's summed resident set size every 100 ms in a thread and
keeps the peak; the tree itself is re-read every second, which is soon
enough to see workers that start or restart during a measurement.
Summed RSS counts pages that forked processes share once per process, so it
is an upper bound of the memory the tree holds.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from bench.stats import MiB

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (state first)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def tree(root: int) -> list[int]:
    """``root`` and every live descendant of it (``root`` first)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [root], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_ticks(pids: Iterable[int]) -> int:
    """User + system clock ticks of ``pids`` (0 for those that are gone)."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])
    return total


def rss_bytes(pids: Iterable[int]) -> int:
    """Summed resident set size of ``pids`` (0 for those that are gone)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            pass
    return total


@dataclass(frozen=True)
class RssReading:
    """The peak summed RSS of a tree and the most processes seen in it."""

    peak_mib: float
    processes: int
    samples: int


class PeakRss:
    """Sample the summed RSS of ``root``'s tree every ``interval`` s until stopped."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        self._root = root
        self._interval = interval
        self._stopped = threading.Event()
        self._peak = 0
        self._processes = 0
        self._samples = 0
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        pids: list[int] = []
        while True:
            if self._samples % 10 == 0:
                pids = tree(self._root)
                self._processes = max(self._processes, len(pids))
            self._peak = max(self._peak, rss_bytes(pids))
            self._samples += 1
            if self._stopped.wait(self._interval):
                return

    def start(self) -> PeakRss:
        """Start sampling; ``self``."""
        self._thread.start()
        return self

    def stop(self) -> RssReading:
        """Stop sampling; the reading."""
        self._stopped.set()
        self._thread.join(5)
        return RssReading(self._peak / MiB, self._processes, self._samples)


def tree_rss_now(root: int) -> RssReading:
    """One reading of ``root``'s tree."""
    pids = tree(root)
    return RssReading(rss_bytes(pids) / MiB, len(pids), 1)
