"""One HTTP exchange with a remote store: deadline, drained body, errors.

Shared by the sproxyd and S3 backends; callers get a :class:`Reply` or a
StoreError naming method and URL.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.client import ResponseFailed
from twisted.web.http_headers import Headers

from imagecatcher.storage import StoreError


@attrs.frozen
class Reply:
    """A drained HTTP response."""

    code: int
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header ``name``, or None."""
        values = self.headers.getRawHeaders(name.encode("ascii"))
        return values[0].decode("latin-1") if values else None

    def excerpt(self) -> str:
        """The start of the body, for error messages."""
        text = self.body[:200].decode("utf-8", "replace").strip()
        return f": {text}" if text else ""


def _cancelled(error: Exception) -> bool:
    """Whether ``error`` is how the Agent reports a cancelled request."""
    return isinstance(error, ResponseFailed) and any(
        reason.check(CancelledError) for reason in error.reasons
    )


def _reason(error: Exception) -> str:
    if isinstance(error, ResponseFailed):
        return "; ".join(f.getErrorMessage() for f in error.reasons)
    return str(error) or type(error).__name__


async def http_exchange(
    client: HTTPClient,
    clock: IReactorTime,
    timeout: float,
    method: str,
    url: str,
    headers: Mapping[str, str] | None = None,
    data: bytes | None = None,
) -> Reply:
    """Send one request, drain the whole response, all within ``timeout`` s.

    Redirects are not followed.  Transport failures and the deadline raise
    StoreError naming method and URL; a cancellation by the caller propagates.
    """

    async def exchange() -> Reply:
        request_headers: dict[bytes | str, bytes | str] = {}
        request_headers.update(headers or {})
        response = await client.request(
            method,
            url,
            headers=request_headers,
            data=data,
            allow_redirects=False,
        )
        body = await response.content()
        return Reply(response.code, response.headers, body)

    def timed_out(result: Reply | Failure, seconds: float) -> Reply:
        # The cancelled request fails with whatever the Agent makes of the
        # cancellation (e.g. ResponseNeverReceived), so name the real cause.
        raise StoreError(f"{method} {url}: no answer within {seconds:g} s")

    d = Deferred.fromCoroutine(exchange())
    d.addTimeout(timeout, clock, onTimeoutCancel=timed_out)
    try:
        return await d
    except (StoreError, CancelledError):
        raise
    except Exception as e:
        if _cancelled(e):  # cancelled by our caller (a timeout is a StoreError)
            raise CancelledError(f"{method} {url} cancelled") from e
        raise StoreError(f"{method} {url} failed: {_reason(e)}") from e
