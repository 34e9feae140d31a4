"""Capture first: how fast spool uploads may go while tiles are being captured.

On a capture host the store's own work (and the upload's) competes with
capture for the same cores; a draining spool must not push the rig's
acknowledgements past its interval.  :class:`UploadPace` watches how long
captured tiles take, from their first byte to their acknowledgement, one
window (a second) at a time, and steers the upload rate the way TCP steers
its window (additive-increase, multiplicative-decrease on a rate):

- no tile captured in the window: no limit but the configured ceiling, so an
  idle rig lets the spool drain as fast as the store takes it;
- the window's 90th percentile over the target: the rate halves (from what
  was uploaded in the window when there was no limit yet), never below
  :data:`FLOOR` bytes per second so that the spool always moves;
- within the target: the rate grows by a fifth if the uploads used what it
  allowed (not while the store is down or the spool is empty, so that a
  store coming back is not flooded).

- the spool close to its limits (half of ``SPOOL_MAX_BYTES``, or less than
  twice ``SPOOL_MIN_FREE_BYTES`` left): no limit either, since slower
  acknowledgements are better than refused tiles.

With a target of 0 the pace is off and only the ceiling applies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.task import LoopingCall

#: Seconds in one window of observations.
WINDOW = 1.0
#: The lowest rate the pace sets, bytes per second: the spool always drains.
FLOOR = 1024.0 * 1024.0
#: The share of a window's captures that may exceed the target.
QUANTILE = 0.9
DECREASE = 0.5
INCREASE = 1.2
#: The share of the limit the uploads must have used for it to grow.
USED = 0.8


class UploadPace:
    """The upload rate that leaves capture within ``target`` seconds."""

    def __init__(
        self,
        clock: Any,
        target: float,
        ceiling: float = 0.0,
        pressed: Callable[[], bool] = lambda: False,
    ) -> None:
        self._clock = clock
        self.target = target
        self.ceiling = ceiling
        #: Whether the spool is close to its limits: then it drains first.
        self._pressed = pressed
        #: The pace's own limit in bytes per second; None: none.
        self.limit: float | None = None
        self._latencies: list[float] = []
        self._uploaded = 0
        self._loop: LoopingCall | None = None

    @property
    def rate(self) -> float:
        """Bytes per second uploads may average now; 0: no limit."""
        if self.limit is None:
            return self.ceiling
        if self.ceiling > 0:
            return min(self.limit, self.ceiling)
        return self.limit

    def captured(self, seconds: float) -> None:
        """A tile was acknowledged ``seconds`` after its first byte."""
        if self._loop is not None:
            self._latencies.append(seconds)

    def uploaded(self, size: int) -> None:
        """``size`` bytes of the spool were uploaded."""
        self._uploaded += size

    def adjust(self) -> None:
        """Close the window: set the limit from what it saw."""
        latencies, self._latencies = self._latencies, []
        uploaded, self._uploaded = self._uploaded, 0
        if self.target <= 0 or not latencies or self._pressed():
            self.limit = None
            return
        latencies.sort()
        slow = latencies[min(int(len(latencies) * QUANTILE), len(latencies) - 1)]
        if slow > self.target:
            base = self.limit if self.limit is not None else uploaded / WINDOW
            self.limit = max(base * DECREASE, FLOOR)
        elif self.limit is not None and uploaded / WINDOW >= USED * self.limit:
            self.limit *= INCREASE

    def start(self) -> None:
        """Adjust once per window from now on."""
        if self.target > 0 and self._loop is None:
            self._loop = LoopingCall(self.adjust)
            self._loop.clock = self._clock
            self._loop.start(WINDOW, now=False)

    def stop(self) -> None:
        """No more adjustments."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
