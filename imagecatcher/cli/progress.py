"""Progress bars, summaries and machine-readable results of client runs.

A :class:`Tracker` counts what a run did (thread-safe: sender threads report
into it); :class:`ProgressBar` draws a ``tqdm`` bar from its counts on stderr
while the run lasts (tiles, tiles/s, ETA, then :func:`format_postfix`: MB/s,
errors, retries, skipped tiles), only when stderr is a terminal.  At the
end :func:`format_table` prints the summary and :func:`write_json` the
``--json`` file.  MB are 10^6 bytes.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, TextIO

import attrs
from tqdm import tqdm

MB = 1_000_000


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (0 < p <= 100); 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(math.ceil(p / 100 * len(ordered)), 1)
    return ordered[min(rank, len(ordered)) - 1]


@attrs.frozen
class Latency:
    """Acknowledgement latency figures, in seconds."""

    count: int = 0
    p50: float = 0.0
    p99: float = 0.0
    max: float = 0.0
    mean: float = 0.0

    @classmethod
    def of(cls, values: Sequence[float]) -> Latency:
        """The figures of a list of latencies."""
        if not values:
            return cls()
        return cls(
            len(values),
            percentile(values, 50),
            percentile(values, 99),
            max(values),
            sum(values) / len(values),
        )

    def to_json(self) -> dict[str, float]:
        """Milliseconds, rounded to microseconds."""
        return {
            "count": self.count,
            "p50_ms": round(self.p50 * 1000, 3),
            "p99_ms": round(self.p99 * 1000, 3),
            "max_ms": round(self.max * 1000, 3),
            "mean_ms": round(self.mean * 1000, 3),
        }


@attrs.frozen
class Snapshot:
    """The counts of a run at one moment."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0
    retried: int = 0
    bytes_sent: int = 0
    elapsed: float = 0.0
    total: int | None = None
    duration: float | None = None

    @property
    def done(self) -> int:
        """Tiles finished one way or another."""
        return self.sent + self.failed + self.skipped

    @property
    def tiles_per_second(self) -> float:
        """Tiles acknowledged per second."""
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def mb_per_second(self) -> float:
        """Tile bytes acknowledged per second, in MB (10^6 bytes)."""
        return self.bytes_sent / MB / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left: by the clock for timed runs, else by the rate so far."""
        if self.duration is not None:
            return max(self.duration - self.elapsed, 0.0)
        if self.total is None or self.done == 0 or self.elapsed <= 0:
            return None
        return max(self.total - self.done, 0) * self.elapsed / self.done

    def to_json(self) -> dict[str, Any]:
        """The counts for ``--json``."""
        return {
            "sent": self.sent,
            "failed": self.failed,
            "skipped": self.skipped,
            "retried": self.retried,
            "bytes_sent": self.bytes_sent,
            "seconds": round(self.elapsed, 3),
            "tiles_per_second": round(self.tiles_per_second, 3),
            "mb_per_second": round(self.mb_per_second, 3),
        }


def format_duration(seconds: float | None) -> str:
    """``m:ss`` or ``h:mm:ss``; ``--:--`` when unknown."""
    if seconds is None or math.isnan(seconds) or math.isinf(seconds):
        return "--:--"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_bytes(n: float) -> str:
    """A byte count in B, kB, MB or GB (powers of 10)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def format_postfix(s: Snapshot) -> str:
    """What the bar shows after its rate: MB/s, errors, retries, skips, time left.

    Retries and skipped tiles appear only when there are any; the time left
    only for timed runs (a run with a total gets tqdm's own ETA).
    """
    parts = [f"{s.mb_per_second:.1f} MB/s", f"errors {s.failed}"]
    if s.retried:
        parts.append(f"retries {s.retried}")
    if s.skipped:
        parts.append(f"skipped {s.skipped}")
    if s.duration is not None:
        parts.append(f"left {format_duration(s.eta)}")
    return ", ".join(parts)


@attrs.define
class Tracker:
    """Thread-safe counts of a run, read as :class:`Snapshot` values."""

    total: int | None = None
    duration: float | None = None
    clock: Callable[[], float] = time.monotonic
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _started: float | None = attrs.field(default=None, init=False)
    _stopped: float | None = attrs.field(default=None, init=False)
    _sent: int = attrs.field(default=0, init=False)
    _failed: int = attrs.field(default=0, init=False)
    _skipped: int = attrs.field(default=0, init=False)
    _retried: int = attrs.field(default=0, init=False)
    _bytes: int = attrs.field(default=0, init=False)
    _latencies: list[float] = attrs.field(factory=list, init=False)

    def start(self) -> None:
        """Start the clock (the first count starts it too)."""
        with self._lock:
            if self._started is None:
                self._started = self.clock()

    def stop(self) -> None:
        """Stop the clock: later snapshots keep the elapsed time of now."""
        with self._lock:
            if self._stopped is None:
                self._stopped = self.clock()

    def _begin(self) -> None:
        if self._started is None:
            self._started = self.clock()

    def sent_one(self, nbytes: int, latency: float) -> None:
        """Count an acknowledged tile."""
        with self._lock:
            self._begin()
            self._sent += 1
            self._bytes += nbytes
            self._latencies.append(latency)

    def failed_one(self) -> None:
        """Count a tile that finally failed."""
        with self._lock:
            self._begin()
            self._failed += 1

    def skipped_one(self) -> None:
        """Count a tile the service already held."""
        with self._lock:
            self._begin()
            self._skipped += 1

    def retried_one(self) -> None:
        """Count a retry."""
        with self._lock:
            self._retried += 1

    def latencies(self) -> list[float]:
        """A copy of the acknowledgement latencies so far."""
        with self._lock:
            return list(self._latencies)

    def snapshot(self) -> Snapshot:
        """The counts now."""
        with self._lock:
            if self._started is None:
                elapsed = 0.0
            else:
                end = self._stopped if self._stopped is not None else self.clock()
                elapsed = end - self._started
            return Snapshot(
                self._sent,
                self._failed,
                self._skipped,
                self._retried,
                self._bytes,
                elapsed,
                self.total,
                self.duration,
            )


class ProgressBar:
    """A ``tqdm`` bar on ``stream`` that follows a :class:`Tracker` while a run lasts.

    A thread reads the tracker every ``interval`` seconds and moves the bar to
    its counts (tiles done of the total when known, tiles/s, ETA and
    :func:`format_postfix`).  By default the bar is drawn only when ``stream``
    is a terminal; :meth:`message` prints a whole line above it either way.
    """

    def __init__(
        self,
        tracker: Tracker,
        stream: TextIO,
        *,
        interval: float = 0.5,
        disable: bool | None = None,
    ) -> None:
        self._tracker = tracker
        self._stream = stream
        self._interval = interval
        self._disable = disable
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar: tqdm[NoReturn] | None = None

    @property
    def enabled(self) -> bool:
        """Whether the bar is drawn (known once the block is entered)."""
        return self._bar is not None and not self._bar.disable

    def __enter__(self) -> ProgressBar:
        s = self._tracker.snapshot()
        self._bar = tqdm(
            total=s.total,
            unit=" tiles",
            file=self._stream,
            disable=self._disable,
            leave=False,
            dynamic_ncols=True,
            mininterval=0,
            miniters=1,
            postfix=format_postfix(s),
        )
        if self.enabled:
            self._thread = threading.Thread(
                target=self._loop, name="progress", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._bar is not None:
            self._bar.close()

    def draw(self) -> None:
        """Move the bar to the tracker's counts now (when enabled)."""
        bar = self._bar
        if bar is None or bar.disable:
            return
        s = self._tracker.snapshot()
        if s.total != bar.total:
            bar.total = s.total
        bar.set_postfix_str(format_postfix(s), refresh=False)
        if s.done > bar.n:
            bar.update(s.done - bar.n)
        else:
            bar.refresh()

    def message(self, text: str) -> None:
        """Print ``text`` on its own line, keeping the bar below it."""
        tqdm.write(text, file=self._stream)
        self._stream.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.draw()


def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    align: str | None = None,
) -> str:
    """A plain-text table.

    ``align`` has one letter per column, ``l`` or ``r``; by default columns of
    numbers are right-aligned and the others left-aligned.
    """

    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.1f}"
        return str(v)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    if align is None:
        numeric = [
            bool(rows) and all(isinstance(row[i], int | float) for row in rows)
            for i in range(len(headers))
        ]
    else:
        numeric = [a == "r" for a in align]

    def line(values: Sequence[str]) -> str:
        out = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(list(headers)), rule, *(line(r) for r in cells)])


def summary_rows(s: Snapshot, latency: Latency) -> list[tuple[str, object]]:
    """The rows of a run's summary table."""
    rows: list[tuple[str, object]] = [
        ("tiles sent", s.sent),
        ("tiles skipped (already stored)", s.skipped),
        ("tiles failed", s.failed),
        ("retries", s.retried),
        ("bytes sent", format_bytes(s.bytes_sent)),
        ("elapsed", f"{s.elapsed:.2f} s"),
        ("tiles/s", f"{s.tiles_per_second:.1f}"),
        ("MB/s", f"{s.mb_per_second:.1f}"),
    ]
    if latency.count:
        rows += [
            ("ack p50", f"{latency.p50 * 1000:.1f} ms"),
            ("ack p99", f"{latency.p99 * 1000:.1f} ms"),
            ("ack max", f"{latency.max * 1000:.1f} ms"),
        ]
    return rows


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON (parent directories created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
