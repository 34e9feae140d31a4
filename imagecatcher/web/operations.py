"""Operational routes: ``ping`` (CONTRACT §1.2)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from klein import Klein
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from imagecatcher.db.repository import Repository
from imagecatcher.domain import QueueStatus
from imagecatcher.storage import ContentStore
from imagecatcher.web.common import json_response, plain_response, sized
from imagecatcher.web.request import set_queue_headers

log = Logger()

#: §1.2: the store probe of ping must finish within this many seconds.
PING_STORE_DEADLINE = 1.5


class Operations:
    """The health of the service: database, store and queue colours."""

    router = Klein()

    def __init__(
        self,
        repo: Repository,
        store: ContentStore,
        clock: IReactorTime,
        queue_status: Callable[[], QueueStatus],
        ping_collection: str,
        problems: Callable[[], str] = lambda: "",
        store_failed: Callable[[BaseException], None] = lambda error: None,
        spool_report: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._spool_report = spool_report
        self._problems = problems
        self._store_failed = store_failed
        self._repo = repo
        self._store = store
        self._clock = clock
        self._queue_status = queue_status
        self._ping_collection = ping_collection

    @router.route("/spool", methods=["GET"])
    def spool(self, request: IRequest) -> bytes:
        """What waits in the spool, the store's health, damaged entries."""
        request.setHeader(b"content-type", b"application/json")
        if self._spool_report is None:
            return json_response(request, 404, {"errormessage": "no capture pipeline"})
        return json_response(request, 200, self._spool_report())

    @router.route("/ping", methods=["GET"])
    async def ping(self, request: IRequest) -> bytes:
        """Health check: a database round trip and a store probe (§1.2)."""
        try:
            await self._repo.probe()
        except Exception as e:
            log.warn("ping: database check failed: {reason}", reason=e)
            return plain_response(request, 500, f"Database check failed: {e}")
        # What the daemon already knows: a full disk, or a store found down
        # (then tiles wait in the spool; no need to wait for another probe).
        problem = self._problems()
        if problem:
            return plain_response(request, 500, problem)
        probe: Deferred[None] = Deferred.fromCoroutine(
            self._store.health(self._ping_collection)
        )
        probe.addTimeout(PING_STORE_DEADLINE, self._clock)
        try:
            await probe
        except Exception as e:
            log.warn("ping: store check failed: {reason}", reason=e)
            self._store_failed(e)  # the uploads wait for the store too
            message = (
                "JFS/Scality write timeout"
                if isinstance(e, defer.TimeoutError)
                else f"Store check failed: {e}"
            )
            return plain_response(request, 500, message)
        set_queue_headers(request, self._queue_status())
        request.setResponseCode(200)
        return sized(request, b"")
