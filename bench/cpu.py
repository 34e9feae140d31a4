"""Where the CPU went during a phase, from ``/proc``.

A :class:`CpuMeter` snapshots the host's ``/proc/stat`` and the user+system
ticks of a few named processes (the daemon, MariaDB, the benchmark itself);
for some of them (the daemon) the ticks are summed over the process and all
its descendants, since the daemon may run worker processes, and for some the
root's main thread is also read alone (for the daemon that is the main
process's reactor; the rest is its thread pools and any worker processes).
:meth:`CpuMeter.stop` turns the deltas into percentages of one core (a
multi-threaded process can exceed 100), the host's busy and iowait shares
(100 = every core), ``steal_cpu_pct``: the time the hypervisor gave this
virtual machine's cores to others, and ``other_cpu_pct``: what the rest of
the host used, both in percent of one core, so that interference from
unrelated work shows.  On a shared virtual machine steal is what makes runs
differ: a run with more than a few percent of it was not on a quiet machine.
A descendant that exits during the phase takes its ticks with it.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping

from bench.proctree import cpu_ticks, tree

_TICKS = os.sysconf("SC_CLK_TCK")
_CORES = os.cpu_count() or 1


def _host() -> tuple[int, int, int, int]:
    """(busy, iowait, steal, total) jiffies of all cores; busy excludes steal."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    idle, iowait, steal = values[3], values[4], values[7]
    total = sum(values)
    return total - idle - iowait - steal, iowait, steal, total


def _ticks(stat_path: str) -> int:
    """utime + stime from a ``stat`` file; 0 when the process is gone."""
    try:
        with open(stat_path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _snapshot(
    processes: Mapping[str, int], split: Collection[str], trees: Collection[str]
) -> dict[str, int]:
    ticks = {}
    for name, pid in processes.items():
        if name in trees:
            ticks[name] = cpu_ticks(tree(pid))
        else:
            ticks[name] = _ticks(f"/proc/{pid}/stat")
        if name in split:
            ticks[f"{name}_main"] = _ticks(f"/proc/{pid}/task/{pid}/stat")
    return ticks


class CpuMeter:
    """CPU use of the host and of named processes between start and stop."""

    def __init__(
        self,
        processes: Mapping[str, int],
        split: Collection[str] = (),
        trees: Collection[str] = (),
    ) -> None:
        self._processes = dict(processes)
        self._split = frozenset(split)
        self._trees = frozenset(trees)
        self._host0 = _host()
        self._ticks0 = _snapshot(self._processes, self._split, self._trees)
        self._wall0 = os.times().elapsed

    def stop(self) -> dict[str, float]:
        """``<name>_cpu_pct`` per process (and ``<name>_main_cpu_pct`` for those
        split), ``host_busy_pct``, ``host_iowait_pct``, ``steal_cpu_pct`` and
        ``other_cpu_pct``."""
        wall = max(os.times().elapsed - self._wall0, 1e-9)
        ticks = _snapshot(self._processes, self._split, self._trees)
        shares = {
            f"{name}_cpu_pct": 100.0
            * (ticks[name] - self._ticks0[name])
            / _TICKS
            / wall
            for name in ticks
        }
        busy, iowait, steal, total = (
            b - a for a, b in zip(self._host0, _host(), strict=True)
        )
        shares["host_busy_pct"] = 100.0 * busy / max(total, 1)
        shares["host_iowait_pct"] = 100.0 * iowait / max(total, 1)
        shares["steal_cpu_pct"] = 100.0 * _CORES * steal / max(total, 1)
        ours = sum(shares[f"{name}_cpu_pct"] for name in self._processes)
        shares["other_cpu_pct"] = max(0.0, shares["host_busy_pct"] * _CORES - ours)
        return shares
