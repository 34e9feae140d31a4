"""Capture scenarios: the rig profile and the throughput matrix.

Each measurement uses fresh acquisitions, runs its streams for a bounded
window, counts the tiles whose content is in the store at the end of the
window (rows with a non-empty ``jfs_key``; the rest of the acknowledged tiles
are in the spool), waits a bounded time for the spool to drain so that the
next measurement starts idle, then deletes the stored files to keep the disk
from filling up over a long run.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.cpu import CpuMeter
from bench.daemon import DATABASE, Daemon
from bench.load import LoadResult, Stream, Target, run_load
from bench.mariadb import MariaDB
from bench.stats import MB, MiB
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
        return CpuMeter(self.processes, split=("daemon",))

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

    def discard(self, uid: int) -> None:
        """Delete the stored files of an acquisition (its rows stay)."""
        for directory in (
            self.daemon.objects / "acquisitions" / str(uid),
            *self.daemon.objects.glob(f"*/acquisitions/{uid}"),
        ):
            shutil.rmtree(directory, ignore_errors=True)


def _measure(
    env: CaptureEnv, streams: Sequence[Stream], window_s: float
) -> dict[str, Any]:
    """Run ``streams``; figures of the window plus stored and drain counts."""
    result: LoadResult = run_load(streams, window_s, env.target, env.meter)
    stored = sum(env.stored(list(result.acked_by_acq)).values())
    drain_s = env.drain(result.acked_by_acq)
    for uid in result.acked_by_acq:
        env.discard(uid)
    mean_size = result.bytes / result.ok if result.ok else 0
    return {
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
        **result.cpu,
    }


def rig_profile(env: CaptureEnv, window_s: float, rigs: int) -> dict[str, Any]:
    """``rigs`` rigs of 4 cameras, a 5.3 MiB tile per camera every 150 ms."""
    image = TileImage(RIG_TILE)
    streams = []
    for rig in range(rigs):
        uid = env.new_acquisition()
        phase = rig * RIG_INTERVAL / rigs  # independent rigs are not in step
        streams += [
            Stream("tcp", uid, camera, image, RIG_INTERVAL, phase)
            for camera in range(RIG_CAMERAS)
        ]
    figures = _measure(env, streams, window_s)
    figures["rigs"] = rigs
    figures["target_tiles_per_s"] = rigs * RIG_CAMERAS / RIG_INTERVAL
    return figures


def throughput_matrix(env: CaptureEnv, window_s: float) -> list[dict[str, Any]]:
    """Back-to-back tiles: every protocol x size x connection count."""
    images = {size: TileImage(size) for size in MATRIX_SIZES}
    cells = []
    for protocol in PROTOCOLS:
        for size in MATRIX_SIZES:
            for connections in MATRIX_CONNECTIONS:
                uid = env.new_acquisition()
                streams = [
                    Stream(protocol, uid, camera, images[size])
                    for camera in range(connections)
                ]
                cell = _measure(env, streams, window_s)
                cell["protocol"] = protocol
                cells.append(cell)
    return cells
