"""The HTTP API under ``/service/v1`` (CONTRACT §1), as a Klein router.

Routes translate requests into calls on the repository and the store, and
domain exceptions into statuses: JSON error bodies ``{"errormessage": ...}``
for JSON routes, plain text for ``ping`` and the content routes (§1.0).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from werkzeug.exceptions import MethodNotAllowed, NotFound

from klein import Klein
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest
from twisted.web.server import Request

from imagecatcher.db.repository import Repository
from imagecatcher.domain import QueueStatus
from imagecatcher.storage import ContentStore

log = Logger()

#: §1.2: the store probe of ping must finish within this many seconds.
PING_STORE_DEADLINE = 1.5


class QueueHeaders(Headers):
    """Response headers that may also carry names with spaces (Q2).

    Clients read ``System Status`` and its siblings, whose names are not
    HTTP tokens; twisted.web refuses to set such names, so they are kept
    aside and written after the regular headers.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spaced: list[tuple[bytes, bytes]] = []

    def getAllRawHeaders(self) -> Iterator[tuple[bytes, Sequence[bytes]]]:
        yield from super().getAllRawHeaders()
        for name, value in self.spaced:
            yield name, [value]


class CatcherRequest(Request):
    """A Request whose response headers can carry the queue-status names."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.responseHeaders = QueueHeaders()


class NoKeepAliveChannel(HTTPChannel):
    """An HTTP channel that closes after each response (DISABLE_SO_KEEP_ALIVE)."""

    def checkPersistence(self, request: Any, version: bytes) -> bool:  # noqa: N802
        request.responseHeaders.setRawHeaders(b"connection", [b"close"])
        return False


def set_queue_headers(request: IRequest, status: QueueStatus) -> None:
    """Send the three queue colours (§1.0), tile and content unswapped (Q1).

    The historical names with spaces go out when the request supports them;
    hyphenated aliases (``System-Status``...) always do.
    """
    values = (
        ("System", status.system),
        ("Tile Queue", status.tile),
        ("Content Queue", status.content),
    )
    headers = request.responseHeaders
    for prefix, colour in values:
        value = colour.name.encode("ascii")
        request.setHeader(f"{prefix}-Status".replace(" ", "-").encode("ascii"), value)
        if isinstance(headers, QueueHeaders):
            headers.spaced.append((f"{prefix} Status".encode("ascii"), value))


def _plain(request: IRequest, status: int, message: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return _sized(request, (message + "\n").encode("utf-8"))


def _json(request: IRequest, status: int, body: object) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return _sized(request, json.dumps(body).encode("utf-8"))


def _sized(request: IRequest, body: bytes) -> bytes:
    # An explicit length spares small bodies the chunked encoding.
    request.setHeader(b"content-length", str(len(body)).encode("ascii"))
    return body


class CatcherAPI:
    """The Klein application; collaborators are injected."""

    router = Klein()

    def __init__(
        self,
        repo: Repository,
        store: ContentStore,
        clock: IReactorTime,
        queue_status: Callable[[], QueueStatus] = QueueStatus,
    ) -> None:
        self._repo = repo
        self._store = store
        self._clock = clock
        self._queue_status = queue_status

    def resource(self) -> Any:
        """The twisted.web resource serving this API."""
        return self.router.resource()

    @router.route("/service/v1/ping", methods=["GET"])
    async def ping(self, request: IRequest) -> bytes:
        """Health check: a database round trip and a store probe (§1.2)."""
        try:
            await self._repo.probe()
        except Exception as e:
            log.warn("ping: database check failed: {reason}", reason=e)
            return _plain(request, 500, f"Database check failed: {e}")
        probe: Deferred[None] = Deferred.fromCoroutine(self._store.health())
        probe.addTimeout(PING_STORE_DEADLINE, self._clock)
        try:
            await probe
        except Exception as e:
            log.warn("ping: store check failed: {reason}", reason=e)
            message = (
                "JFS/Scality write timeout"
                if isinstance(e, defer.TimeoutError)
                else f"Store check failed: {e}"
            )
            return _plain(request, 500, message)
        set_queue_headers(request, self._queue_status())
        request.setResponseCode(200)
        return _sized(request, b"")

    @router.handle_errors(NotFound)
    def _not_found(self, request: IRequest, failure: Failure) -> bytes:
        return _plain(request, 404, "404 page not found")

    @router.handle_errors(MethodNotAllowed)
    def _not_allowed(self, request: IRequest, failure: Failure) -> bytes:
        return _plain(request, 405, "405 method not allowed")
