"""A stand-in worker that drains a shared spool the way Pipeline is to use claims.

``python -m tests.integration.spool_claim_main SPOOL_DIR LOG READY GO [HOLD]``
writes READY, waits for GO to exist, then for every entry it lists: claims
it, reads it, appends ``<pid> <stem> <bytes>`` to LOG (the "upload"), waits a
little, removes it and releases the claim.  With ``HOLD`` it instead claims
the first entry, writes READY and sleeps until killed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.python.threadpool import ThreadPool

from imagecatcher.spool import Spool


async def drain(reactor: Any, spool: Spool, log: Path, ready: Path, go: Path) -> None:
    """Upload every entry this process manages to claim."""
    ready.touch()
    while not go.exists():
        await task.deferLater(reactor, 0.005)
    for entry in await spool.entries():
        claim = await spool.claim(entry)
        if claim is None:
            continue  # another process has it, or already uploaded it
        try:
            data = await spool.read(entry)
            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            try:
                os.write(fd, f"{os.getpid()} {entry.stem} {len(data)}\n".encode())
            finally:
                os.close(fd)
            await task.deferLater(reactor, 0.005)  # the store's round trip
            await spool.remove(entry)
        finally:
            claim.release()


async def main(reactor: Any, *argv: str) -> None:
    """Drain, or hold one claim until killed."""
    pool = ThreadPool(minthreads=1, maxthreads=2, name="claim-test")
    pool.start()
    reactor.addSystemEventTrigger("during", "shutdown", pool.stop)
    spool = Spool(Path(argv[0]), reactor, pool)
    log, ready, go = Path(argv[1]), Path(argv[2]), Path(argv[3])
    if len(argv) > 4:
        entries = await spool.entries()
        claim = await spool.claim(entries[0])
        assert claim is not None
        ready.touch()
        while True:
            time.sleep(1)  # killed by the test, claim held
    await drain(reactor, spool, log, ready, go)


if __name__ == "__main__":
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, *sys.argv[1:])))
