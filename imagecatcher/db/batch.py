"""Group commit: write transactions submitted together share one commit.

Tiles that finish together each need one short write transaction; a commit
costs a log flush on MySQL (and a journal sync on SQLite), so
:class:`WriteBatcher` runs the work submitted during one reactor turn, and
whatever queues while a batch is running, in one transaction.  Each item runs
inside its own savepoint: an item that fails rolls back to it and fails
alone, the others commit.  A lone item is not held back: its batch starts on
the next reactor turn.  At most ``in_flight`` batches run at once (each on
its own pooled connection); items queue behind them, which is when batches
grow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from imagecatcher.db.dialect import Cursor
from imagecatcher.db.pool import Database, as_database_error

log = Logger()
T = TypeVar("T")

#: Items in one transaction at most.
MAX_BATCH = 64


class _Item:
    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.done: Deferred[Any] = Deferred()


def _run_batch(cur: Cursor, items: list[_Item]) -> list[tuple[bool, Any]]:
    """Each item in its own savepoint; (ok, result or exception) per item."""
    if len(items) == 1:
        item = items[0]
        return [(True, item.fn(cur, *item.args))]
    results: list[tuple[bool, Any]] = []
    for i, item in enumerate(items):
        cur.execute(f"SAVEPOINT ic_item_{i}")
        try:
            value = item.fn(cur, *item.args)
        except Exception as e:  # reported to that item's caller alone
            cur.execute(f"ROLLBACK TO SAVEPOINT ic_item_{i}")
            results.append((False, e))
        else:
            cur.execute(f"RELEASE SAVEPOINT ic_item_{i}")
            results.append((True, value))
    return results


class WriteBatcher:
    """Runs submitted ``fn(cursor, *args)`` calls in shared transactions."""

    def __init__(self, db: Database, clock: IReactorTime, in_flight: int = 2) -> None:
        self._db = db
        self._clock = clock
        self._in_flight = max(in_flight, 1)
        self._running = 0
        self._queue: list[_Item] = []
        self._call: IDelayedCall | None = None
        #: Transactions run and items committed (for tests and logs).
        self.transactions = 0
        self.items = 0

    def submit(self, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        """Fires with ``fn``'s result once its transaction committed."""
        item = _Item(fn, args)
        self._queue.append(item)
        if self._call is None and self._running < self._in_flight:
            self._call = self._clock.callLater(0, self._start)
        return item.done

    def _start(self) -> None:
        self._call = None
        while self._queue and self._running < self._in_flight:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            self._running += 1
            self.transactions += 1
            d = Deferred.fromCoroutine(self._db.run(_run_batch, batch))
            d.addBoth(self._finished, batch)

    def _finished(self, result: Any, batch: list[_Item]) -> None:
        self._running -= 1
        if isinstance(result, Failure):
            # The transaction itself failed (connection, deadlock): every
            # item failed with it and nothing of the batch was committed.
            for item in batch:
                item.done.errback(result)
        else:
            for item, (ok, value) in zip(batch, result, strict=True):
                if ok:
                    self.items += 1
                    item.done.callback(value)
                else:
                    item.done.errback(Failure(as_database_error(value)))
        if self._queue and self._call is None:
            self._start()
