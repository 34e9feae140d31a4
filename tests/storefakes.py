"""Fakes for the content-store tests: a protocol-faithful sproxyd and sync helpers.

:class:`FakeSproxyd` is a ``twisted.web`` resource serving
``/proxy/<driver>/<40-hex key>`` like Scality's sproxyd connector: PUT stores
the body and its ``X-Scal-Usermd`` (checking ``Content-MD5`` when sent: 400 on
a mismatch), GET answers 200 or, for one ``Range``, 206 with Content-Range (416
past the end), HEAD answers the headers of a GET, DELETE answers 200 or 404.
Unknown drivers and other paths are 404, malformed keys 400.  Failures
(:meth:`FakeSproxyd.fail_next`) and latency can be injected.  It works under
``StubTreq`` (pass a ``Clock`` for latency) and on a real listening port.

The other helpers run Deferreds and thread-pool work synchronously so unit
tests need no reactor.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar, cast

import attrs
from zope.interface import implementer

from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorFromThreads, IReactorTime
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

_T = TypeVar("_T")
_KEY = re.compile(rb"[0-9A-Fa-f]{40}")
_RANGE = re.compile(rb"bytes=(\d*)-(\d*)")


@attrs.define
class StoredBlob:
    """One object held by the fake: its bytes and raw user metadata."""

    data: bytes
    usermd: bytes | None


@attrs.frozen
class _Answer:
    code: int
    headers: dict[bytes, bytes]
    body: bytes


class FakeSproxyd(Resource):
    """A fake Scality sproxyd connector for the given drivers."""

    isLeaf = True  # noqa: N815 - Twisted's name

    def __init__(
        self,
        drivers: Iterable[str] = ("bparc",),
        clock: IReactorTime | None = None,
        etags: bool = False,
    ) -> None:
        super().__init__()
        self._drivers = {d.encode("ascii") for d in drivers}
        self._clock = clock
        self._etags = etags
        self._failures: list[tuple[int, bytes | None]] = []
        #: Seconds every answer is held back (needs a clock).
        self.latency = 0.0
        #: Stored objects by (driver, upper-case key).
        self.objects: dict[tuple[str, str], StoredBlob] = {}
        #: (method, path, request headers) of every request, in order.
        self.requests: list[tuple[str, str, dict[bytes, list[bytes]]]] = []

    def fail_next(self, n: int, status: int = 500, method: str | None = None) -> None:
        """Answer the next ``n`` requests (of ``method`` only, if given) with
        ``status`` and change nothing."""
        wanted = method.encode("ascii") if method is not None else None
        self._failures.extend([(status, wanted)] * n)

    def render(self, request: Request) -> int:
        """Answer one request (after the injected latency, if any)."""
        method: bytes = request.method
        path: bytes = request.path
        self.requests.append(
            (
                method.decode("ascii"),
                path.decode("latin-1"),
                {
                    k.lower(): list(v)
                    for k, v in request.requestHeaders.getAllRawHeaders()
                },
            )
        )
        answer = self._answer(request, method, path)
        if self.latency > 0:
            if self._clock is None:
                raise RuntimeError("FakeSproxyd latency needs a clock")
            call = self._clock.callLater(self.latency, self._send, request, answer)
            request.notifyFinish().addErrback(_cancel, call)
        else:
            self._send(request, answer)
        return NOT_DONE_YET

    def _send(self, request: Request, answer: _Answer) -> None:
        request.setResponseCode(answer.code)
        for name, value in answer.headers.items():
            request.setHeader(name, value)
        if b"content-length" not in answer.headers:
            request.setHeader(b"content-length", b"%d" % len(answer.body))
        request.write(answer.body)  # dropped by twisted.web for HEAD
        request.finish()

    def _answer(self, request: Request, method: bytes, path: bytes) -> _Answer:
        for index, (status, wanted) in enumerate(self._failures):
            if wanted is None or wanted == method:
                del self._failures[index]
                return _Answer(status, {}, b"injected failure\n")
        segments = path.split(b"/")
        if len(segments) != 4 or segments[:2] != [b"", b"proxy"]:
            return _Answer(404, {}, b"no such resource\n")
        driver, key = segments[2], segments[3]
        if driver not in self._drivers:
            return _Answer(404, {}, b"unknown driver\n")
        if not _KEY.fullmatch(key):
            return _Answer(400, {}, b"malformed key\n")
        slot = (driver.decode("ascii"), key.decode("ascii").upper())
        if method == b"PUT":
            return self._put(request, slot)
        blob = self.objects.get(slot)
        if method == b"DELETE":
            if blob is None:
                return _Answer(404, {}, b"")
            del self.objects[slot]
            return _Answer(200, {}, b"")
        if method not in (b"GET", b"HEAD"):
            return _Answer(405, {b"allow": b"GET, HEAD, PUT, DELETE"}, b"")
        if blob is None:
            return _Answer(404, {}, b"no such key\n")
        return self._read(request, method, blob)

    def _put(self, request: Request, slot: tuple[str, str]) -> _Answer:
        data = request.content.read() if request.content is not None else b""
        content_md5 = request.getHeader(b"content-md5")
        if content_md5 is not None:
            try:
                claimed = base64.b64decode(content_md5, validate=True)
            except binascii.Error:
                return _Answer(400, {}, b"malformed Content-MD5\n")
            if claimed != hashlib.md5(data).digest():
                return _Answer(400, {}, b"Content-MD5 does not match the body\n")
        self.objects[slot] = StoredBlob(data, request.getHeader(b"x-scal-usermd"))
        return _Answer(200, {}, b"")

    def _read(self, request: Request, method: bytes, blob: StoredBlob) -> _Answer:
        size = len(blob.data)
        headers = {b"content-type": b"application/octet-stream"}
        if blob.usermd is not None:
            headers[b"x-scal-usermd"] = blob.usermd
        if self._etags:
            headers[b"etag"] = b'"%s"' % hashlib.md5(blob.data).hexdigest().encode()
        wanted = request.getHeader(b"range")
        match = _RANGE.fullmatch(wanted) if wanted is not None else None
        if method == b"HEAD" or match is None or match.group(1, 2) == (b"", b""):
            headers[b"content-length"] = b"%d" % size
            return _Answer(200, headers, blob.data)
        first, last = match.group(1, 2)
        if first:
            start, end = int(first), min(int(last) if last else size - 1, size - 1)
        else:  # a suffix range: the last N bytes
            start, end = max(size - int(last), 0), size - 1
        if start >= size or end < start:
            headers[b"content-range"] = b"bytes */%d" % size
            return _Answer(416, headers, b"")
        headers[b"content-range"] = b"bytes %d-%d/%d" % (start, end, size)
        return _Answer(206, headers, blob.data[start : end + 1])


def _cancel(failure: Failure, call: IDelayedCall) -> None:
    if call.active():
        call.cancel()


def stub_client(resource: IResource) -> HTTPClient:
    """An HTTPClient answering from ``resource`` in memory (twisted/treq#243)."""
    return cast(HTTPClient, StubTreq(resource))


def result_of(d: Deferred[_T]) -> _T:
    """The result of a Deferred that has already fired; fail the test otherwise."""
    results: list[_T | Failure] = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    outcome = results[0]
    if isinstance(outcome, Failure):
        outcome.raiseException()
    return outcome


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine that must finish without waiting on a reactor."""
    return result_of(Deferred.fromCoroutine(coro))


@implementer(IReactorFromThreads)
class ImmediateReactor:
    """``callFromThread`` runs the call at once: for :class:`SyncThreadPool`."""

    def callFromThread(  # noqa: N802 - Twisted's name
        self, callable: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> None:
        """Call ``callable`` now, on this thread."""
        callable(*args, **kwargs)


class SyncThreadPool(ThreadPool):
    """A thread pool that runs each job at once on the calling thread."""

    def callInThreadWithCallback(  # noqa: N802 - Twisted's name
        self,
        onResult: Callable[[bool, Any], object] | None,  # noqa: N803
        func: Callable[..., Any],
        *args: Any,
        **kw: Any,
    ) -> None:
        """Run ``func`` and report to ``onResult`` like a pool thread would."""
        try:
            result = func(*args, **kw)
        except BaseException:
            if onResult is not None:
                onResult(False, Failure())
        else:
            if onResult is not None:
                onResult(True, result)


class HeldPool(ThreadPool):
    """A thread pool whose jobs wait until :meth:`release`: a disk or a CPU
    that falls behind, so the code under test sees its threads busy."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[tuple[Any, Callable[..., Any], tuple[Any, ...]]] = []

    def callInThreadWithCallback(  # noqa: N802 - Twisted's name
        self,
        onResult: Callable[[bool, Any], object] | None,  # noqa: N803
        func: Callable[..., Any],
        *args: Any,
        **kw: Any,
    ) -> None:
        """Keep the job for later."""
        self.held.append((onResult, func, args))

    def release(self) -> None:
        """Run every job, including those the jobs queue, in order."""
        while self.held:
            on_result, func, args = self.held.pop(0)
            try:
                result = func(*args)
            except BaseException:
                if on_result is not None:
                    on_result(False, Failure())
            else:
                if on_result is not None:
                    on_result(True, result)
