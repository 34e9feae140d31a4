"""Capture scenarios: the rig profile and the throughput matrix.

Each measurement uses fresh acquisitions, runs its streams for a bounded
window, counts the tiles whose content is in the store at the end of the
window (rows with a non-empty ``jfs_key``; the rest of the acknowledged tiles
are in the spool), waits a bounded time for the spool to drain so that the
next measurement starts idle, then deletes the stored objects to keep the
disk from filling up over a long run.  The peak RSS of the daemon's process
tree is sampled from the start of the window to the end of the drain.
A matrix cell is measured ``repetitions`` times; its figures are the median
of each figure over the repetitions (the peak RSS: the highest).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bench.cpu import CpuMeter
from bench.daemon import DATABASE, Daemon
from bench.load import LoadResult, Stream, Target, run_load
from bench.mariadb import MariaDB
from bench.outage import (
    DRAIN_LIMIT_S,
    GatewayOutage,
    OutagePlan,
    SpoolWatch,
    outage_figures,
)
from bench.proctree import PeakRss
from bench.stats import MB, MiB, median
from bench.stores import ContentStore
from bench.tiles import TileImage

RIG_TILE = 5_557_452
RIG_INTERVAL = 0.150
RIG_CAMERAS = 4
MATRIX_SIZES = (MiB, 16 * MiB)
MATRIX_CONNECTIONS = (1, 4)
PROTOCOLS = ("tcp", "http")

_STORED_SQL = (
    "SELECT COUNT(*) FROM tem_camera_images t"
    " JOIN tem_camera_image_mosaics m"
    " ON m.tem_camera_image_mosaic_id = t.tem_camera_image_mosaic_id"
    " JOIN ini_files_denorm a ON a.ini_file_denorm_id = m.ini_file_denorm_id"
    " JOIN file_object_fs_replicas r ON r.file_object_id = t.file_object_id"
    " WHERE a.uid = %s AND r.jfs_key IS NOT NULL AND r.jfs_key <> ''"
)


@dataclass(frozen=True)
class CaptureEnv:
    """What the capture scenarios need from the run."""

    daemon: Daemon
    db: MariaDB
    store: ContentStore
    inilog: bytes
    uids: Iterator[int]
    processes: Mapping[str, int]
    drain_timeout_s: float

    @property
    def target(self) -> Target:
        """The daemon's endpoints."""
        return Target("127.0.0.1", self.daemon.tcp_port, self.daemon.http_port)

    def meter(self) -> CpuMeter:
        """Start measuring CPU: the daemon split into reactor and threads."""
        return CpuMeter(self.processes, split=("daemon",), trees=("daemon",))

    def new_acquisition(self) -> int:
        """Start a fresh acquisition from the fixture log; return its uid."""
        return self.daemon.start_acquisition(next(self.uids), self.inilog)

    def stored(self, uids: Sequence[int]) -> dict[int, int]:
        """Tiles of each acquisition whose content is in the store."""
        conn = self.db.connect(DATABASE)
        try:
            with conn.cursor() as cur:
                counts = {}
                for uid in uids:
                    cur.execute(_STORED_SQL, (uid,))
                    counts[uid] = int(cur.fetchone()[0])
                return counts
        finally:
            conn.close()

    def drain(self, acked: Mapping[int, int]) -> float:
        """Wait until every acknowledged tile is stored; the seconds it took."""
        start = time.monotonic()
        while time.monotonic() - start < self.drain_timeout_s:
            stored = self.stored(list(acked))
            if all(stored[uid] >= n for uid, n in acked.items()):
                break
            time.sleep(0.25)
        return time.monotonic() - start


def _measure(
    env: CaptureEnv,
    streams: Sequence[Stream],
    window_s: float,
    meanwhile: Callable[[float], None] | None = None,
) -> tuple[dict[str, Any], LoadResult]:
    """Run ``streams`` (and ``meanwhile``, :func:`bench.load.run_load`); figures
    of the window plus stored, drain and RSS."""
    rss = PeakRss(env.daemon.pid).start()
    try:
        result = run_load(streams, window_s, env.target, env.meter, meanwhile)
        stored = sum(env.stored(list(result.acked_by_acq)).values())
        drain_s = env.drain(result.acked_by_acq)
    finally:
        memory = rss.stop()
    for uid in result.acked_by_acq:
        env.store.discard(uid)
    mean_size = result.bytes / result.ok if result.ok else 0
    figures = {
        "connections": len(streams),
        "tile_bytes": streams[0].image.size,
        "window_s": window_s,
        "elapsed_s": result.elapsed_s,
        "acked": result.ok,
        "failed": result.failed,
        "error_samples": result.error_samples,
        "tiles_per_s": result.tiles_per_s,
        "mb_per_s": result.mb_per_s,
        "ack_p50_ms": result.latency_ms(50),
        "ack_p99_ms": result.latency_ms(99),
        "ack_max_ms": result.latency_ms(100),
        "acks_within_150ms": result.share_within(RIG_INTERVAL * 1000),
        "stored_at_end": stored,
        "stored_tiles_per_s": stored / result.elapsed_s,
        "stored_mb_per_s": stored * mean_size / MB / result.elapsed_s,
        "spooled_at_end": max(result.ok - stored, 0),
        "drain_s": drain_s,
        "behind_schedule_s": result.behind_s,
        "rss_peak_mib": memory.peak_mib,
        "daemon_processes": memory.processes,
        **result.cpu,
    }
    return figures, result


def rig_profile(
    env: CaptureEnv,
    window_s: float,
    rigs: int,
    outage: OutagePlan | None = None,
) -> dict[str, Any]:
    """``rigs`` rigs of 4 cameras, a 5.3 MiB tile per camera every 150 ms.

    With ``outage``, its gateway is down for ``outage.seconds`` in the middle
    of the window (made at least three times as long).
    """
    image = TileImage(RIG_TILE)
    streams = []
    for rig in range(rigs):
        uid = env.new_acquisition()
        phase = rig * RIG_INTERVAL / rigs  # independent rigs are not in step
        streams += [
            Stream("tcp", uid, camera, image, RIG_INTERVAL, phase)
            for camera in range(RIG_CAMERAS)
        ]
    if outage is None:
        figures, _ = _measure(env, streams, window_s)
    else:
        window_s = outage.window_s(window_s)
        delay = (window_s - outage.seconds) / 2
        down = GatewayOutage(outage.gateway, delay, outage.seconds)
        patient = replace(env, drain_timeout_s=max(env.drain_timeout_s, DRAIN_LIMIT_S))
        spool = SpoolWatch(env.daemon.workdir / "spool").start()
        try:
            figures, result = _measure(patient, streams, window_s, down)
        finally:
            spool.stop()
        figures["outage"] = outage_figures(result, down, spool)
    figures["rigs"] = rigs
    figures["target_tiles_per_s"] = rigs * RIG_CAMERAS / RIG_INTERVAL
    return figures


def _median_of(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One cell from its repetitions: the median of each number, the peak RSS,
    the errors summed, and the repetitions themselves."""
    cell = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            cell[key] = median([run[key] for run in runs])
    cell["rss_peak_mib"] = max(run["rss_peak_mib"] for run in runs)
    cell["failed"] = sum(run["failed"] for run in runs)
    cell["error_samples"] = [e for run in runs for e in run["error_samples"]][:5]
    cell["runs_tiles_per_s"] = [run["tiles_per_s"] for run in runs]
    cell["repetitions"] = list(runs)
    return cell


def throughput_matrix(
    env: CaptureEnv, window_s: float, repetitions: int
) -> list[dict[str, Any]]:
    """Back-to-back tiles: every protocol x size x connection count."""
    images = {size: TileImage(size) for size in MATRIX_SIZES}
    cells = []
    for protocol in PROTOCOLS:
        for size in MATRIX_SIZES:
            for connections in MATRIX_CONNECTIONS:
                runs = []
                for _ in range(repetitions):
                    uid = env.new_acquisition()
                    streams = [
                        Stream(protocol, uid, camera, images[size])
                        for camera in range(connections)
                    ]
                    runs.append(_measure(env, streams, window_s)[0])
                cell = _median_of(runs)
                cell["protocol"] = protocol
                cells.append(cell)
    return cells
