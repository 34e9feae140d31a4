"""The targets of issue 9 and the reference figures they derive from.

Throughput cells: the Go service's tiles acknowledged per second (median of
3) and the target of 1.5 x Go.  A single connection has one tile in flight,
whose MD5 one core must compute before the acknowledgement, so one core's
MD5 rate bounds it: a single-connection cell needs the lower of its target
and 0.8 x the MD5 rate measured in the same run (``0.8 * md5 MB/s / tile MB``
tiles/s).  The rig profile has latency targets and the 16 MiB x 4-connection
cells a memory target (peak RSS summed over the daemon's process tree).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.stats import MB, MiB

#: (protocol, tile bytes, connections) -> (Go tiles/s, target tiles/s)
CELLS: dict[tuple[str, int, int], tuple[float, float]] = {
    ("tcp", MiB, 1): (83.4, 125),
    ("http", MiB, 1): (105.0, 158),
    ("tcp", MiB, 4): (109.9, 165),
    ("http", MiB, 4): (128.6, 193),
    ("tcp", 16 * MiB, 1): (14.0, 21),
    ("http", 16 * MiB, 1): (24.5, 37),
    ("tcp", 16 * MiB, 4): (16.3, 24.5),
    ("http", 16 * MiB, 4): (28.7, 43),
}
MD5_SHARE = 0.8  #: of one core's MD5 rate, for single-connection cells
RSS_LIMIT_MIB = 400.0  #: peak summed RSS of the 16 MiB x 4-connection cells
RIG_P99_MS = 100.0  #: one rig: p99 acknowledgement latency below this
RIG_SHARE = 0.99  #: two rigs: at least this share of acks within 150 ms


@dataclass(frozen=True)
class CellGoal:
    """What one throughput cell is compared with, in tiles/s."""

    go: float
    target: float
    md5_bound: float | None  # 0.8 x one core's MD5 rate; single connections only
    rss_limit_mib: float | None

    @property
    def need(self) -> float:
        """The figure the cell must reach: the target, or the MD5 bound if lower."""
        if self.md5_bound is None:
            return self.target
        return min(self.target, self.md5_bound)


def cell_goal(
    protocol: str, tile_bytes: int, connections: int, md5_mb_s: float
) -> CellGoal:
    """The goal of a cell, given one core's MD5 rate measured in the same run."""
    go, target = CELLS[(protocol, tile_bytes, connections)]
    bound = MD5_SHARE * md5_mb_s * MB / tile_bytes if connections == 1 else None
    limit = RSS_LIMIT_MIB if (tile_bytes, connections) == (16 * MiB, 4) else None
    return CellGoal(go, target, bound, limit)


def rig_goal(rigs: int) -> str:
    """The latency target of ``rigs`` rigs, as the table states it."""
    if rigs == 1:
        return f"p99 < {RIG_P99_MS:.0f} ms"
    return f">= {100 * RIG_SHARE:.0f}% <= 150 ms"


def rig_met(rigs: int, p99_ms: float, share_within_150ms: float) -> bool:
    """Whether a rig run meets its latency target."""
    if rigs == 1:
        return p99_ms < RIG_P99_MS
    return share_within_150ms >= RIG_SHARE
