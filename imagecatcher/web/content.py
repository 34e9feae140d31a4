"""Tile content: the ``.../content`` routes and ``verify-tile`` (CONTRACT §1.14, §1.15, §1.18).

The content routes answer errors in plain text (§1.0), stream the bytes one
chunk at a time and honour single byte ranges and ``If-None-Match``.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from zope.interface import implementer

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web.iweb import IRequest

from imagecatcher.db.repository import Repository
from imagecatcher.domain import CatcherError, TileRow
from imagecatcher.domain import NotFound as CatcherNotFound
from imagecatcher.storage import ContentStore, StoredObject, StoreError
from imagecatcher.views import tile_info
from imagecatcher.web.common import json_response, plain_response, query, status_of
from imagecatcher.web.queries import find_stable_tile, find_tile

log = Logger()

#: Bytes read from the store per step when streaming or hashing content.
CHUNK = 1024 * 1024


class Content:
    """A tile's stored bytes: served, or re-read and checked."""

    router = Klein()

    def __init__(
        self,
        repo: Repository,
        store: ContentStore,
        reactor: Any,
        threads: ThreadPool | None,
    ) -> None:
        self._repo = repo
        self._store = store
        self._reactor = reactor
        self._threads = threads

    @router.route("/acquisition/<acqid>/tile/<col>/<row>/content", methods=["GET"])
    async def stable_tile_content(
        self, request: IRequest, acqid: str, col: str, row: str
    ) -> bytes:
        """The bytes of a stable tile (§1.14)."""
        try:
            tile = await find_stable_tile(self._repo, acqid, col, row)
            return await self._content(request, tile)
        except Exception as e:
            return _plain_error(request, e)

    @router.route("/tile/<tileid>/content", methods=["GET"])
    async def tile_content(self, request: IRequest, tileid: str) -> bytes:
        """The bytes of a tile by id (§1.18); 404 when unknown or not stored (Q7)."""
        try:
            return await self._content(request, await find_tile(self._repo, tileid))
        except Exception as e:
            return _plain_error(request, e)

    async def _content(self, request: IRequest, tile: TileRow) -> bytes:
        if not tile.persisted:
            raise CatcherNotFound(
                f"Tile metadata found but no content found for tile {tile.tile_id}"
            )
        obj = StoredObject(tile.jfs_key, tile.location_url)
        size = await self._store.size(obj)
        etag = f'"{tile.sha1.hex()}"'.encode("ascii") if tile.sha1 else None
        request.setHeader(b"content-type", b"image/tiff")
        request.setHeader(b"accept-ranges", b"bytes")
        if etag:
            request.setHeader(b"etag", etag)
            if request.getHeader(b"if-none-match") == etag:
                request.setResponseCode(304)
                return b""
        span = byte_range(request.getHeader(b"range"), size)
        if span is None:
            start, end = 0, size - 1
            request.setResponseCode(200)
        else:
            start, end = span
            request.setResponseCode(206)
            request.setHeader(b"content-range", f"bytes {start}-{end}/{size}".encode())
        request.setHeader(b"content-length", str(max(end - start + 1, 0)).encode())
        await stream_object(request, self._store, obj, start, end)
        return b""

    @router.route("/verify-tile/<acqid>/tile/<tileid>", methods=["GET"])
    async def verify_tile(self, request: IRequest, acqid: str, tileid: str) -> bytes:
        """Re-read a tile's bytes and compare both checksums (§1.15, Q6 fixed)."""
        request.setHeader(b"content-type", b"application/json")
        tile = await find_tile(self._repo, tileid)
        info = tile_info(tile)
        if not tile.persisted:
            info["errormessage"] = f"JFSPath not set for {tile.tile_id}"
            return json_response(request, 417, info)
        obj = StoredObject(tile.jfs_key, tile.location_url)
        try:
            md5, sha1 = await self._digest_object(obj)
        except StoreError as e:
            info["errormessage"] = (
                f"Error while retrieving content for {tile.jfs_path}: {e}"
            )
            return json_response(request, 417, info)
        stored_md5 = tile.md5
        if stored_md5 is None and tile.sha1 and tile.sha1.endswith(b"\0" * 4):
            stored_md5 = tile.sha1[:16]  # written by the old service: MD5, zero padded
        info["calculated_md5"], info["calculated_sha1"] = md5.hex(), sha1.hex()
        wanted = "SHA1" if query(request, "checksum-algorithm") == "SHA1" else "MD5"
        info["calculatedChecksum"] = sha1.hex() if wanted == "SHA1" else md5.hex()
        problems = [
            f"{name} checksum stored does not match the calculated checksum -"
            f" stored {stored.hex()} but calculated {actual.hex()}"
            for name, stored, actual in (
                ("MD5", stored_md5, md5),
                ("SHA1", tile.sha1, sha1),
            )
            if stored is not None
            and stored != actual
            and not (name == "SHA1" and tile.md5 is None and stored_md5 is not None)
        ]
        if problems:
            info["errormessage"] = "; ".join(problems)
            return json_response(request, 417, info)
        return json_response(request, 200, info)

    async def _digest_object(self, obj: StoredObject) -> tuple[bytes, bytes]:
        md5, sha1 = hashlib.md5(), hashlib.sha1()
        size = await self._store.size(obj)
        pos = 0
        while pos < size:
            chunk = await self._store.get_range(obj, pos, min(pos + CHUNK, size) - 1)
            if not chunk:
                break
            if self._threads is None:
                _update(md5, sha1, chunk)
            else:
                await deferToThreadPool(
                    self._reactor, self._threads, _update, md5, sha1, chunk
                )
            pos += len(chunk)
        return md5.digest(), sha1.digest()


def _update(md5: Any, sha1: Any, chunk: bytes) -> None:
    md5.update(chunk)
    sha1.update(chunk)


_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class RangeNotSatisfiable(CatcherError):
    """A Range header outside the object (HTTP 416)."""


def byte_range(header: bytes | None, size: int) -> tuple[int, int] | None:
    """The inclusive span a single ``Range: bytes=`` header asks for, or None.

    Multiple ranges and unparsable headers are ignored (the whole object is
    sent, as RFC 9110 allows); a range starting past the end is 416.
    """
    if not header:
        return None
    m = _RANGE.fullmatch(header.decode("latin-1").strip())
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):  # suffix: the last n bytes
        n = int(m.group(2))
        return (max(size - n, 0), size - 1) if n > 0 and size > 0 else None
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    if start >= size:
        raise RangeNotSatisfiable(f"Range not satisfiable: {size} bytes")
    if end < start:
        return None
    return start, min(end, size - 1)


@implementer(IPushProducer)
class _Throttle:
    """Pauses the copy loop while the client's socket buffer is full."""

    def __init__(self) -> None:
        self.waiting: Deferred[None] | None = None
        self.stopped = False

    def pauseProducing(self) -> None:  # noqa: N802
        if self.waiting is None:
            self.waiting = Deferred()

    def resumeProducing(self) -> None:  # noqa: N802
        waiting, self.waiting = self.waiting, None
        if waiting is not None:
            waiting.callback(None)

    def stopProducing(self) -> None:  # noqa: N802
        self.stopped = True
        self.resumeProducing()


async def stream_object(
    request: IRequest, store: ContentStore, obj: StoredObject, start: int, end: int
) -> None:
    """Copy bytes ``start``..``end`` to the response, one CHUNK in memory at a time."""
    throttle = _Throttle()
    request.registerProducer(throttle, True)  # type: ignore[attr-defined]
    try:
        pos = start
        while pos <= end and not throttle.stopped:
            chunk = await store.get_range(obj, pos, min(pos + CHUNK - 1, end))
            if not chunk:
                break
            request.write(chunk)
            pos += len(chunk)
            if throttle.waiting is not None:
                await throttle.waiting
    finally:
        request.unregisterProducer()  # type: ignore[attr-defined]


def _plain_error(request: IRequest, error: Exception) -> bytes:
    """Plain-text errors of the content routes (§1.0)."""
    if isinstance(error, RangeNotSatisfiable):
        return plain_response(request, 416, str(error))
    status = status_of(error)
    if status is not None:
        return plain_response(request, status, str(error))
    log.failure("serving content", Failure(error))
    return plain_response(request, 500, f"Internal error: {error}")
