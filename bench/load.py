"""Load generation: one thread per connection, paced or back to back.

Each :class:`Stream` is one persistent connection (TCP or HTTP) standing for
one camera: it sends a tile, waits for the acknowledgement, then sends the
next one, either at once or at the next multiple of its interval after the
common start (a camera that falls behind sends at once, never skips).
Tiles advance in column and row, unique per camera and acquisition.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench.cpu import CpuMeter
from bench.stats import MB, percentile
from bench.tiles import HttpSender, Sender, TcpSender, Tile, TileImage

#: Columns per row before the row advances; ``col = seq % 64 * 4 + camera``.
ROW_WIDTH = 64
CAMERAS = 4


@dataclass(frozen=True)
class Stream:
    """One connection: protocol, acquisition, camera and pacing."""

    protocol: str  # "tcp" or "http"
    acq_id: int
    camera: int
    image: TileImage
    interval: float | None = None  # seconds between tiles; None: back to back
    phase: float = 0.0  # offset of the first tile after the common start

    def tile(self, seq: int) -> Tile:
        """The ``seq``-th tile of this camera."""
        tail = self.image.tail(self.acq_id, self.camera, seq)
        return Tile(
            col=seq % ROW_WIDTH * CAMERAS + self.camera,
            row=seq // ROW_WIDTH,
            camera=self.camera,
            tail=tail,
            md5=self.image.md5(tail),
        )


@dataclass(frozen=True)
class Target:
    """Where the daemon listens."""

    host: str
    tcp_port: int
    http_port: int
    timeout: float = 60.0


@dataclass
class _Outcome:
    acq_id: int
    size: int
    ok: int = 0
    sent: list[float] = field(default_factory=list)  # perf_counter at each send
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    finished: float = 0.0
    behind: float = 0.0  # how late the last tile started, paced streams


@dataclass(frozen=True)
class LoadResult:
    """What a set of streams achieved in one timed window."""

    window_s: float
    started: float  # perf_counter when the window opened
    elapsed_s: float
    ok: int
    failed: int
    bytes: int
    latencies_ms: list[float]  # ascending
    timeline: list[tuple[float, float]]  # (s after the start, latency ms), by send
    error_samples: list[str]
    acked_by_acq: dict[int, int]
    behind_s: float
    cpu: dict[str, float]

    @property
    def tiles_per_s(self) -> float:
        """Acknowledged tiles per second."""
        return self.ok / self.elapsed_s

    @property
    def mb_per_s(self) -> float:
        """Acknowledged MB (10**6 bytes) per second."""
        return self.bytes / MB / self.elapsed_s

    def latency_ms(self, p: float) -> float:
        """The ``p``-th percentile acknowledgement latency in ms."""
        return percentile(self.latencies_ms, p)

    def share_within(self, ms: float) -> float:
        """Share of acknowledgements that came within ``ms``."""
        if not self.latencies_ms:
            return 0.0
        return sum(1 for v in self.latencies_ms if v <= ms) / len(self.latencies_ms)


def _sender(stream: Stream, target: Target) -> Sender:
    if stream.protocol == "tcp":
        return TcpSender(
            target.host, target.tcp_port, stream.acq_id, stream.image, target.timeout
        )
    return HttpSender(
        target.host, target.http_port, stream.acq_id, stream.image, target.timeout
    )


def _drive(
    sender: Sender, stream: Stream, start: float, end: float, out: _Outcome
) -> None:
    seq = 0
    try:
        while True:
            now = time.perf_counter()
            if stream.interval is None:
                due = now
            else:
                due = start + stream.phase + seq * stream.interval
                if due > now:
                    time.sleep(due - now)
                    now = time.perf_counter()
            if max(due, now) >= end:
                break
            out.behind = max(0.0, now - due)
            tile = stream.tile(seq)
            sent = time.perf_counter()
            error = sender.send(tile)
            out.latencies.append(time.perf_counter() - sent)
            out.sent.append(sent)
            if error:
                out.errors.append(error)
            else:
                out.ok += 1
            seq += 1
    except (OSError, RuntimeError, ValueError) as e:
        out.errors.append(f"{stream.protocol} camera {stream.camera}: {e!r}")
    finally:
        out.finished = time.perf_counter()


def run_load(
    streams: Sequence[Stream],
    window_s: float,
    target: Target,
    start_meter: Callable[[], CpuMeter],
    meanwhile: Callable[[float], None] | None = None,
) -> LoadResult:
    """Run all streams for ``window_s`` seconds and collect what they saw.

    ``start_meter`` is called as the window opens; its reading is the CPU use.
    ``meanwhile``, if given, runs in the calling thread while the streams do,
    with the ``perf_counter`` time at which the window opened.
    """
    senders: list[Sender] = []
    try:
        for stream in streams:
            sender = _sender(stream, target)
            senders.append(sender)
            sender.self_check(stream.tile(0))
        outcomes = [_Outcome(s.acq_id, s.image.size) for s in streams]
        start = time.perf_counter() + 0.2
        end = start + window_s
        threads = [
            threading.Thread(
                target=_drive, args=(sender, stream, start, end, out), daemon=True
            )
            for sender, stream, out in zip(senders, streams, outcomes, strict=True)
        ]
        meter = start_meter()
        for t in threads:
            t.start()
        if meanwhile is not None:
            meanwhile(start)
        for t in threads:
            t.join(window_s + target.timeout + 30)
        cpu = meter.stop()
        if any(t.is_alive() for t in threads):
            raise RuntimeError("a load thread did not finish in time")
    finally:
        for sender in senders:
            sender.close()
    ok_by_acq: dict[int, int] = {}
    latencies, errors = [], []
    timeline: list[tuple[float, float]] = []
    ok = failed = nbytes = 0
    for out in outcomes:
        good = out.ok
        ok += good
        failed += len(out.errors)
        nbytes += good * out.size
        ok_by_acq[out.acq_id] = ok_by_acq.get(out.acq_id, 0) + good
        latencies += [v * 1000.0 for v in out.latencies]
        timeline += [
            (t - start, v * 1000.0)
            for t, v in zip(out.sent, out.latencies, strict=True)
        ]
        errors += out.errors
    return LoadResult(
        window_s=window_s,
        started=start,
        elapsed_s=max(o.finished for o in outcomes) - start,
        ok=ok,
        failed=failed,
        bytes=nbytes,
        latencies_ms=sorted(latencies),
        timeline=sorted(timeline),
        error_samples=errors[:5],
        acked_by_acq=ok_by_acq,
        behind_s=max(o.behind for o in outcomes),
        cpu=cpu,
    )
