"""``--outage SECONDS``: the S3 gateway goes away in the middle of a rig run.

A :class:`GatewayOutage`, run in the main thread while the load threads send
(processes must be started from the main thread, :mod:`bench.procs`), kills
SeaweedFS's S3 gateway (SIGKILL) in the middle of the window, waits
``SECONDS`` and starts it again on the same port, noting when it went down
and when it answered again.  Meanwhile a :class:`SpoolWatch` thread counts
the tiles in the daemon's spool every 100 ms.  :func:`outage_figures` splits
the run's acknowledgements by the moment their tile was sent (before the
kill, while the gateway was down, after it answered again) and gives the
share within 150 ms of each, the spool's peak, and how long after the
gateway's return the spool took to drain.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bench.load import LoadResult
from bench.stats import percentile

#: How long to wait for the spool to drain after the gateway is back; the
#: daemon's uploader retries with a backoff of 2, 4, 8 ... 60 s.
DRAIN_LIMIT_S = 150.0


class Gateway(Protocol):
    """What an outage does to the store's gateway."""

    def kill_gateway(self) -> None:
        """Kill it."""
        ...

    def start_gateway(self) -> float:
        """Start it; the seconds until it answered."""
        ...


@dataclass(frozen=True)
class OutagePlan:
    """Which gateway goes away, and for how long."""

    gateway: Gateway
    seconds: float

    def window_s(self, window_s: float) -> float:
        """The run's window: at least three times the outage, which sits in
        its middle, so that there is a before and an after."""
        return max(window_s, 3 * self.seconds)


class GatewayOutage:
    """Kill the gateway ``delay`` s into the window, restart it ``seconds`` later."""

    def __init__(self, gateway: Gateway, delay: float, seconds: float) -> None:
        self._gateway = gateway
        self._delay = delay
        self.seconds = seconds
        self.down_at = self.up_at = float("nan")  # perf_counter
        self.restart_s = float("nan")
        self.error = ""

    def __call__(self, window_start: float) -> None:
        """Run the outage; ``window_start`` is the window's ``perf_counter``."""
        try:
            time.sleep(max(0.0, window_start + self._delay - time.perf_counter()))
            self.down_at = time.perf_counter()
            self._gateway.kill_gateway()
            time.sleep(self.seconds)
            self.restart_s = self._gateway.start_gateway()
            self.up_at = time.perf_counter()
        except RuntimeError as e:  # the gateway did not come back
            self.error = repr(e)


class SpoolWatch:
    """Count ``*.tile`` files in the spool every ``interval`` s until stopped."""

    def __init__(self, spool: Path, interval: float = 0.1) -> None:
        self._spool = spool
        self._interval = interval
        self._stopped = threading.Event()
        self.samples: list[tuple[float, int]] = []  # (perf_counter, tiles)
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            count = sum(1 for _ in self._spool.glob("*.tile"))
            self.samples.append((time.perf_counter(), count))
            if self._stopped.wait(self._interval):
                return

    def start(self) -> SpoolWatch:
        """Start sampling; ``self``."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling."""
        self._stopped.set()
        self._thread.join(5)

    def drained_after(self, since: float, limit_s: float) -> float | None:
        """Seconds from ``since`` to the first empty spool within ``limit_s``."""
        for at, count in self.samples:
            if since <= at <= since + limit_s and count == 0:
                return at - since
        return None


def _phase(
    timeline: Sequence[tuple[float, float]], start: float, end: float
) -> dict[str, Any]:
    latencies = sorted(ms for sent, ms in timeline if start <= sent < end)
    within = sum(1 for ms in latencies if ms <= 150.0)
    return {
        "tiles": len(latencies),
        "acks_within_150ms": within / len(latencies) if latencies else float("nan"),
        "ack_p99_ms": percentile(latencies, 99),
        "ack_max_ms": percentile(latencies, 100),
    }


def outage_figures(
    result: LoadResult, outage: GatewayOutage, spool: SpoolWatch
) -> dict[str, Any]:
    """Before / during / after figures of a run with ``outage``, and the drain."""
    down = outage.down_at - result.started
    up = outage.up_at - result.started
    end = float("inf")
    return {
        "outage_s": outage.seconds,
        "down_at_s": down,
        "up_at_s": up,
        "restart_s": outage.restart_s,
        "error": outage.error,
        "before": _phase(result.timeline, float("-inf"), down),
        "during": _phase(result.timeline, down, up),
        "after": _phase(result.timeline, up, end),
        "spool_peak_tiles": max((n for _, n in spool.samples), default=0),
        "spool_drain_s": spool.drained_after(outage.up_at, DRAIN_LIMIT_S),
        "drain_limit_s": DRAIN_LIMIT_S,
    }
