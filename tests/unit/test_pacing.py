"""Capture first: the upload rate yields to slow captures and comes back."""

from __future__ import annotations

import itertools
from typing import cast

from twisted.internet.task import Clock

from imagecatcher.pacing import FLOOR, WINDOW, UploadPace
from imagecatcher.spool import SpoolEntry
from imagecatcher.storage import ContentStore
from imagecatcher.writebehind import StoreHealth, Uploader

MB = 1_000_000


def _window(
    pace: UploadPace, clock: Clock, latencies: list[float], uploaded: int
) -> None:
    for seconds in latencies:
        pace.captured(seconds)
    pace.uploaded(int(uploaded))
    clock.advance(WINDOW)


def test_no_capture_no_limit_but_the_ceiling() -> None:
    """An idle rig lets the spool drain as fast as the ceiling allows."""
    clock = Clock()
    pace = UploadPace(clock, target=0.1, ceiling=50 * MB)
    pace.start()
    _window(pace, clock, [], 80 * MB)
    assert pace.limit is None
    assert pace.rate == 50 * MB


def test_slow_captures_halve_what_was_uploaded() -> None:
    """The first slow window halves the rate the uploads actually reached,
    the next halves again, never below the floor."""
    clock = Clock()
    pace = UploadPace(clock, target=0.1)
    pace.start()
    assert pace.rate == 0.0  # no limit yet
    _window(pace, clock, [0.05] * 8 + [0.2] * 2, 40 * MB)
    assert pace.rate == 20 * MB
    _window(pace, clock, [0.3] * 10, 20 * MB)
    assert pace.rate == 10 * MB
    for _ in range(20):
        _window(pace, clock, [0.3] * 10, 1)
    assert pace.rate == FLOOR


def test_a_few_slow_tiles_are_tolerated() -> None:
    """One slow tile in twenty is under the 90th percentile: no change."""
    clock = Clock()
    pace = UploadPace(clock, target=0.1)
    pace.start()
    _window(pace, clock, [0.05] * 19 + [0.5], 40 * MB)
    assert pace.limit is None


def test_fast_captures_grow_a_used_rate() -> None:
    """Within the target the rate grows by a fifth a window while the
    uploads use it; unused (store down, spool empty) it stays; a window
    without captures lifts it."""
    clock = Clock()
    pace = UploadPace(clock, target=0.1)
    pace.start()
    _window(pace, clock, [0.3] * 4, 40 * MB)
    assert pace.rate == 20 * MB
    _window(pace, clock, [0.05] * 4, 20 * MB)
    assert pace.rate == 24 * MB
    _window(pace, clock, [0.05] * 4, 0)  # the store is down
    assert pace.rate == 24 * MB
    _window(pace, clock, [], 0)  # the rig paused
    assert pace.limit is None


def test_ceiling_still_bounds_a_limit() -> None:
    """The configured ceiling wins over a higher pace."""
    clock = Clock()
    pace = UploadPace(clock, target=0.1, ceiling=5 * MB)
    pace.start()
    _window(pace, clock, [0.3] * 4, 40 * MB)
    assert pace.limit == 20 * MB and pace.rate == 5 * MB


def test_target_zero_is_off() -> None:
    """With no target the pace never starts and only the ceiling applies."""
    clock = Clock()
    pace = UploadPace(clock, target=0.0, ceiling=3 * MB)
    pace.start()
    _window(pace, clock, [9.0] * 10, 40 * MB)
    assert pace.limit is None and pace.rate == 3 * MB


def test_observations_are_kept_only_while_running() -> None:
    """Stopped (or never started, as with a file store), nothing piles up."""
    clock = Clock()
    pace = UploadPace(clock, target=0.1)
    for _ in range(1000):
        pace.captured(1.0)
    pace.start()
    pace.stop()
    pace.captured(1.0)
    pace.adjust()
    assert pace.limit is None


def _entry(i: int) -> SpoolEntry:
    return SpoolEntry(
        tile_id=i,
        uid=123456789012,
        name=f"col{i:04d}_row0001_cam0.tif",
        col=i,
        row=1,
        collection="c",
        path=f"/acquisitions/123456789012/col{i:04d}_row0001_cam0.tif",
        context={},
        sha1=bytes(20),
        md5=bytes(16),
    )


def test_uploads_keep_to_the_pace_and_spread_out() -> None:
    """Once slow captures set a limit, uploads start no faster than it, even
    with several workers free at once; without captures they run freely."""
    clock = Clock()
    started: list[float] = []

    async def upload(entry: SpoolEntry) -> int:
        started.append(clock.seconds())
        return int(MB)

    pace = UploadPace(clock, target=0.1)
    uploader = Uploader(
        clock,
        StoreHealth(cast(ContentStore, object()), clock, ""),
        upload,
        workers=4,
        pace=pace,
    )
    pace.start()
    _window(pace, clock, [0.5] * 10, int(4 * MB))  # slow: limit 2 MB/s
    assert pace.rate == 2 * MB
    for i in range(6):
        uploader.enqueue(_entry(i))
    clock.advance(0.0)
    for _ in range(8):
        pace.captured(0.5)  # capture stays slow: the limit halves each second
        clock.advance(0.25)
    # 1 MB each at 2 MB/s or less: 4 workers, but one at a time.
    assert started[:3] == [1.0, 1.5, 2.0]
    assert all(b - a >= 0.5 for a, b in itertools.pairwise(started))
    assert len(started) < 6
    for _ in range(4):
        clock.advance(WINDOW)  # the rig stopped: no limit
    assert len(started) == 6


def test_a_pressed_spool_drains_first() -> None:
    """Near the spool's limits the uploads are not held back by capture."""
    clock = Clock()
    pressed = [False]
    pace = UploadPace(clock, target=0.1, pressed=lambda: pressed[0])
    pace.start()
    _window(pace, clock, [0.5] * 10, 40 * MB)
    assert pace.rate == 20 * MB
    pressed[0] = True
    _window(pace, clock, [0.5] * 10, 20 * MB)
    assert pace.limit is None and pace.rate == 0.0
