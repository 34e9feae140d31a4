"""The HTTP API under ``/service/v1`` (CONTRACT §1), as a Klein router.

Routes translate requests into calls on the repository and the store, and
domain exceptions into statuses: JSON error bodies ``{"errormessage": ...}``
for JSON routes, plain text for ``ping`` and the content routes (§1.0).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from werkzeug.exceptions import MethodNotAllowed, NotFound
from zope.interface import implementer

from klein import Klein
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest
from twisted.web.server import Request

from imagecatcher.acquisitions import Acquisitions
from imagecatcher.calibrations import parse_calibrations
from imagecatcher.db.repository import Repository
from imagecatcher.domain import (
    AcquisitionFilter,
    BadParameter,
    CalibrationError,
    CatcherError,
    NextTileRequest,
    QueueStatus,
    TileFilter,
    TileRow,
)
from imagecatcher.domain import NotFound as CatcherNotFound
from imagecatcher.multipart import Part, is_multipart, parse_multipart
from imagecatcher.names import parse_tile_name
from imagecatcher.pipeline import Captured, Pipeline, TileUpload
from imagecatcher.storage import ContentStore, StoredObject, StoreError
from imagecatcher.tilespec import (
    NO_TILE_READY,
    NO_TILE_READY_IN_SECTION,
    SERVED_ALL_ACQ,
    SERVED_ALL_SECTION,
    TILE_FOUND,
    parse_tile_state_body,
    tile_spec,
)
from imagecatcher.timefmt import parse_acq_time, parse_tile_time
from imagecatcher.views import acquisition_json, grouped_tiles, tile_info

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


class BodyBuffer:
    """An in-memory request body capped at ``limit`` bytes.

    With a Content-Length the body lands in one preallocated buffer (no copy
    per chunk, no temporary file); without one, chunks are joined once.  Past
    the limit data is dropped and :attr:`too_large` is set, so the route can
    answer 413 instead of twisted.web spooling the body to disk.
    """

    def __init__(self, length: int | None, limit: int) -> None:
        self.too_large = length is not None and length > limit
        self._limit = limit
        self._fixed = (
            bytearray(length) if length is not None and not self.too_large else None
        )
        self._chunks: list[bytes] = []
        self._size = 0
        self._pos = 0

    def write(self, data: bytes) -> None:
        """Append received body bytes."""
        if self.too_large:
            return
        end = self._size + len(data)
        if self._fixed is not None:
            if end > len(self._fixed):
                self.too_large = True
                return
            self._fixed[self._size : end] = data
        else:
            if end > self._limit:
                self.too_large, self._chunks = True, []
                return
            self._chunks.append(data)
        self._size = self._pos = end

    def getbuffer(self) -> memoryview:
        """The body received so far, without copying it."""
        if self._fixed is not None:
            return memoryview(self._fixed)[: self._size]
        if len(self._chunks) != 1:
            self._chunks = [b"".join(self._chunks)]
        return memoryview(self._chunks[0])

    def seek(self, offset: int, whence: int = 0) -> int:
        """File API used by twisted.web."""
        base = (0, self._pos, self._size)[whence]
        self._pos = max(base + offset, 0)
        return self._pos

    def tell(self) -> int:
        """File API used by twisted.web."""
        return self._pos

    def read(self, n: int = -1) -> bytes:
        """File API used by twisted.web."""
        view = self.getbuffer()
        end = self._size if n < 0 else min(self._size, self._pos + n)
        data = bytes(view[self._pos : end])
        self._pos = end
        return data

    def close(self) -> None:
        """Release the buffer."""
        self._fixed, self._chunks = None, []


class CatcherRequest(Request):
    """A Request for this API: queue-status headers, bodies kept in memory.

    twisted.web's own form parsing is off: routes parse multipart bodies
    themselves, keeping part file names and reporting malformed bodies.
    """

    _parsePOSTFormSubmission = False  # noqa: N815 - twisted.web's name
    #: Largest body accepted (MAX_TILE_BYTES + room for multipart framing).
    max_body = 64 * 1024 * 1024 + 64 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.responseHeaders = QueueHeaders()
        # twisted.web sets this per instance from the Site; routes parse forms.
        self._parsePOSTFormSubmission = False

    def gotLength(self, length: int | None) -> None:
        self.content = BodyBuffer(length, self.max_body)


def request_body(request: IRequest) -> memoryview:
    """The request body; BodyTooLarge when it went past the limit."""
    content = request.content
    if isinstance(content, BodyBuffer):
        if content.too_large:
            raise BodyTooLarge("Request body too large")
        return content.getbuffer()
    content.seek(0)
    return memoryview(content.read())


class BodyTooLarge(BadParameter):
    """The body exceeds MAX_TILE_BYTES (HTTP 413)."""


class NoKeepAliveChannel(HTTPChannel):
    """An HTTP channel that closes after each response (DISABLE_SO_KEEP_ALIVE)."""

    def checkPersistence(self, request: Any, version: bytes) -> bool:
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


MAX_ROWS = 1000


def page(offset: int, length: int) -> tuple[int, int]:
    """§8.1: (LIMIT, OFFSET) for ``offset``/``length`` query parameters."""
    if offset <= 0 and length <= 0:
        return MAX_ROWS, 0
    return (min(length, MAX_ROWS) if length > 0 else MAX_ROWS), max(offset, 0)


def _parse_int(param: str, value: str, lo: int, hi: int) -> int:
    try:
        if not re.fullmatch(r"[+-]?\d{1,20}", value):
            raise ValueError("invalid syntax")
        number = int(value, 10)
        if not lo <= number <= hi:
            raise ValueError("value out of range")
    except ValueError as e:
        raise BadParameter(
            f"Error while parsing the {param} parameter - {value}: {e}"
        ) from None
    return number


def parse_uint64(param: str, value: str) -> int:
    """A path or query integer of type uint64 (§1.0)."""
    return _parse_int(param, value, 0, 2**64 - 1)


def parse_int64(param: str, value: str) -> int:
    """A path or query integer of type int64 (§1.0)."""
    return _parse_int(param, value, -(2**63), 2**63 - 1)


def query(request: IRequest, name: str) -> str | None:
    """A query parameter; present but empty counts as absent (§1.0)."""
    values = request.args.get(name.encode("ascii"))
    if not values or not values[0]:
        return None
    return str(values[0].decode("utf-8", errors="replace"))


def _content_type(request: IRequest) -> str:
    raw = request.getHeader(b"content-type")
    return raw.decode("latin-1") if raw else ""


def _parts(request: IRequest, context: str) -> list[Part] | None:
    """The multipart parts of the request, or None when it is not multipart."""
    ctype = _content_type(request)
    if not is_multipart(ctype):
        return None
    try:
        return parse_multipart(request_body(request), ctype)
    except BodyTooLarge:
        raise
    except BadParameter as e:
        raise BadParameter(f"{context}{e}") from None


def _md5_from_hex(text: str, what: str) -> bytes:
    try:
        digest = bytes.fromhex(text.strip())
    except ValueError:
        raise BadParameter(f"Invalid {what}: not hexadecimal") from None
    if len(digest) != 16:
        raise BadParameter(f"Invalid {what}: an MD5 is 16 bytes")
    return digest


def _client_md5(candidates: list[bytes]) -> bytes | None:
    """The MD5 the client sent in any form (§14); every form must agree."""
    if not candidates:
        return None
    if any(c != candidates[0] for c in candidates):
        raise BadParameter("The checksums given in the request disagree")
    return candidates[0]


def calibration_json(row: tuple[int, str, datetime | None, str]) -> dict[str, Any]:
    """A calibration object of §1.19."""
    cal_id, name, date, stored = row
    entry: dict[str, Any] = {
        "id": cal_id,
        "name": name,
        "calibration_date": date.strftime("%Y%m%d") if date else "",
    }
    try:
        entry["content"] = json.loads(stored)
    except ValueError as e:
        entry["content_errormessage"] = str(e)
    return entry


class MoreThanOne(CatcherError):
    """Two tiles match where one was expected (HTTP 409)."""


_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (BodyTooLarge, 413),
    (MoreThanOne, 409),
    (BadParameter, 400),
    (CalibrationError, 400),
    (CatcherNotFound, 404),
    (CatcherError, 500),
    (StoreError, 500),
)


class CatcherAPI:
    """The Klein application; collaborators are injected."""

    router = Klein()

    def __init__(
        self,
        repo: Repository,
        store: ContentStore,
        clock: IReactorTime,
        queue_status: Callable[[], QueueStatus] = QueueStatus,
        *,
        pipeline: Pipeline | None = None,
        acquisitions: Acquisitions | None = None,
        ping_collection: str = "",
        max_tile_bytes: int = 64 * 1024 * 1024,
        threads: ThreadPool | None = None,
        lease_seconds: float = 0.0,
        tiles_url_base: str = "",
    ) -> None:
        self._repo = repo
        self._store = store
        self._clock = clock
        self._queue_status = queue_status
        self._pipeline = pipeline
        self._acquisitions = acquisitions
        self._ping_collection = ping_collection
        self._max_tile_bytes = max_tile_bytes
        self._threads = threads
        self._lease = lease_seconds
        self._tiles_url_base = tiles_url_base
        self._reactor: Any = clock

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
        probe: Deferred[None] = Deferred.fromCoroutine(
            self._store.health(self._ping_collection)
        )
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

    # -- acquisition lifecycle -----------------------------------------------------

    def _acqs(self) -> Acquisitions:
        if self._acquisitions is None:
            raise CatcherError("acquisitions are not configured")
        return self._acquisitions

    @router.route("/service/v1/start-acquisition", methods=["POST"])
    async def start_acquisition(self, request: IRequest) -> bytes:
        """Register an acquisition from its INI log (§1.3)."""
        request.setHeader(b"content-type", b"application/json")
        context = "Error extracting the acquisition log content: "
        parts = _parts(request, context)
        if parts is None:
            raise BadParameter(
                f"{context}request Content-Type isn't multipart/form-data"
            )
        log_part = next((p for p in parts if p.name == "acq-inilog"), None)
        if log_part is None or len(log_part.data) == 0:
            raise BadParameter("No acquisition log found in start-acquisition request")
        uid = await self._acqs().start(log_part.filename or "", log_part.text())
        return _json(request, 200, {"uid": uid})

    @router.route("/service/v1/create-rois/<acqid>", methods=["POST"])
    async def create_rois(self, request: IRequest, acqid: str) -> bytes:
        """Import the ROI spec and ROI tiles of an acquisition (§1.4)."""
        request.setHeader(b"content-type", b"application/json")
        uid = parse_uint64("acqId", acqid)
        parts = _parts(request, "Error parsing the request: ")
        if parts is None:
            raise BadParameter("request Content-Type isn't multipart/form-data")
        files: dict[str, tuple[str, memoryview]] = {}
        for part in parts:  # if a part occurs twice the last one wins
            if part.name in ("roi-spec", "roi-tiles"):
                files[part.name] = (part.filename or f"{uid}_{part.name}", part.data)
        acq = await self._acqs().lookup(uid, BadParameter)
        await self._acqs().create_rois(
            acq, files.get("roi-spec"), files.get("roi-tiles")
        )
        return _json(request, 200, {})

    async def _ancillary(self, request: IRequest, acqid: str, end: bool) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        uid = parse_uint64("acqid", acqid)
        acq = await self._acqs().lookup(uid, BadParameter)
        parts = _parts(request, "Error parsing the request: ")
        files = [
            (p.filename or "", p.data)
            for p in parts or ()
            if p.name == "ancillary-file"
        ]
        results = await self._acqs().store_ancillary_files(acq, files)
        ok = all(not r.error for r in results)
        if end:
            await self._acqs().end(acq, ok)
        if parts is None:
            return _json(request, 200, {})
        # Q33: a form without ancillary-file parts answers an empty list.
        body = {"af_results": [r.to_json() for r in results]}
        return _json(request, 200 if ok else 400, body)

    @router.route("/service/v1/end-acquisition/<acqid>", methods=["POST"])
    async def end_acquisition(self, request: IRequest, acqid: str) -> bytes:
        """Store ancillary files and mark the acquisition complete (§1.6)."""
        return await self._ancillary(request, acqid, end=True)

    @router.route("/service/v1/store-ancillary-files/<acqid>", methods=["POST"])
    async def store_ancillary_files(self, request: IRequest, acqid: str) -> bytes:
        """Store ancillary files (§1.7)."""
        return await self._ancillary(request, acqid, end=False)

    # -- tile capture ----------------------------------------------------------------

    @router.route("/service/v1/capture-image-content/<acqid>", methods=["PUT", "POST"])
    async def capture(self, request: IRequest, acqid: str) -> bytes:
        """Capture one tile (§1.5)."""
        request.setHeader(b"content-type", b"application/json")
        if self._pipeline is None:
            raise CatcherError("tile capture is not configured")
        uid = parse_uint64("acqId", acqid)
        checksums: list[bytes] = []
        header_md5 = request.getHeader(b"content-md5")
        if header_md5:
            try:
                checksums.append(base64.b64decode(header_md5, validate=True))
            except ValueError:
                raise BadParameter("Invalid Content-MD5 header") from None
        parts = _parts(request, "Error parsing the request: ")
        if parts is None:
            name_text = query(request, "tile-filename")
            if name_text is None:
                raise BadParameter("Invalid tile file name")
            if (hex_md5 := query(request, "checksum")) is not None:
                checksums.append(_md5_from_hex(hex_md5, "checksum"))
            data = request_body(request)
        else:
            name_text, data_part = None, None
            for part in parts:
                if part.name == "tile-filename":
                    name_text = part.text()
                elif part.name == "checksum":
                    checksums.append(bytes(part.data))
                elif part.name == "checksum-str":
                    checksums.append(_md5_from_hex(part.text(), "checksum-str"))
                elif part.name == "tile-file":
                    data_part = part
            if data_part is None:
                raise BadParameter("No tile-file part in the request")
            name_text = name_text or data_part.filename
            if not name_text:
                raise BadParameter("Invalid tile file name")
            data = data_part.data
        if any(len(c) != 16 for c in checksums):
            raise BadParameter("Invalid checksum: an MD5 is 16 bytes")
        if len(data) > self._max_tile_bytes:
            raise BodyTooLarge(f"Tile larger than {self._max_tile_bytes} bytes")
        tile = parse_tile_name(name_text)
        upload = TileUpload(uid, tile, data, _client_md5(checksums))
        result = await self._pipeline.capture(upload)
        set_queue_headers(request, result.status)
        return _json(request, 200, capture_json(result))

    # -- calibrations ----------------------------------------------------------------

    @router.route("/service/v1/calibrations", methods=["POST"])
    async def post_calibrations(self, request: IRequest) -> bytes:
        """Import calibrations (§1.19, §7.5); errors are reported (Q25)."""
        request.setHeader(b"content-type", b"application/json")
        calibrations = parse_calibrations(bytes(request_body(request)))
        ids = await self._repo.import_calibrations(calibrations)
        rows = [
            (cal_id, cal.name, cal.date, cal.json_config)
            for cal_id, cal in zip(ids, calibrations, strict=True)
        ]
        items = [calibration_json(r) for r in rows]
        return _json(request, 200, {"calibrations": items, "length": len(items)})

    @router.route("/service/v1/calibrations", methods=["GET"])
    async def get_calibrations(self, request: IRequest) -> bytes:
        """List calibrations (§1.20)."""
        request.setHeader(b"content-type", b"application/json")
        offset = parse_int64("offset", query(request, "offset") or "0")
        length = _parse_int(
            "length", query(request, "length") or "-1", -(2**31), 2**31 - 1
        )
        limit, skip = page(offset, length)
        items = [
            calibration_json(r) for r in await self._repo.calibrations(limit, skip)
        ]
        return _json(request, 200, {"calibrations": items, "length": len(items)})

    @router.route("/service/v1/calibration/name/<name>", methods=["GET"])
    async def calibration_by_name(self, request: IRequest, name: str) -> bytes:
        """The newest calibration with that name, or 404 ``{}`` (§1.21)."""
        request.setHeader(b"content-type", b"application/json")
        row = await self._repo.calibration_by_name(name)
        if row is None:
            return _json(request, 404, {})
        return _json(request, 200, calibration_json(row))

    # -- queries (§1.8-§1.17) ------------------------------------------------------

    @router.route("/service/v1/projects", methods=["GET"])
    async def projects(self, request: IRequest) -> bytes:
        """Distinct (project, owner) pairs (§1.8, §8.4)."""
        request.setHeader(b"content-type", b"application/json")
        f = _acquisition_filter(
            request, "has-acq-from", "has-acq-to", with_states=False
        )
        limit, skip = _page(request)
        pairs = await self._repo.projects(f, limit, skip)
        items = [{"ProjectName": p, "ProjectOwner": o} for p, o in pairs]
        return _json(request, 200, {"length": len(items), "projects": items})

    @router.route("/service/v1/acquisitions", methods=["GET"])
    async def acquisitions(self, request: IRequest) -> bytes:
        """Acquisitions matching §8.3."""
        request.setHeader(b"content-type", b"application/json")
        f = _acquisition_filter(request, "acq-from", "acq-to", with_states=True)
        limit, skip = _page(request)
        rows = await self._repo.acquisitions(f, limit, skip)
        items = [acquisition_json(r) for r in rows]
        return _json(request, 200, {"acquisitions": items, "length": len(items)})

    @router.route("/service/v1/acquisition/<acqid>/tiles", methods=["GET"])
    async def acquisition_tiles(self, request: IRequest, acqid: str) -> bytes:
        """Tiles of one acquisition, grouped (§1.12)."""
        request.setHeader(b"content-type", b"application/json")
        f = _tile_filter(request, parse_uint64("acqid", acqid), cross=False)
        limit, skip = _page(request)
        return _json(
            request, 200, grouped_tiles(await self._repo.tiles(f, limit, skip))
        )

    @router.route("/service/v1/tiles", methods=["GET"])
    async def tiles(self, request: IRequest) -> bytes:
        """Tiles across acquisitions, grouped (§1.16)."""
        request.setHeader(b"content-type", b"application/json")
        acq = query(request, "acqid")
        f = _tile_filter(request, parse_uint64("acqid", acq) if acq else 0, cross=True)
        limit, skip = _page(request)
        return _json(
            request, 200, grouped_tiles(await self._repo.tiles(f, limit, skip))
        )

    async def _stable_tile(self, acqid: str, col: str, row: str) -> TileRow:
        f = TileFilter(
            acq_uid=parse_uint64("acqid", acqid),
            col=parse_int32("col", col),
            row=parse_int32("row", row),
        )
        if f.acq_uid == 0 or f.col < 0 or f.row < 0:
            raise BadParameter(
                "acqid must be positive; col and row must not be negative"
            )
        found = await self._repo.tiles(f, 2, 0)
        where = f"acquisition {f.acq_uid}, col {f.col}, row {f.row}"
        if not found:
            raise CatcherNotFound(f"No tile found for {where}")
        if len(found) > 1:
            raise MoreThanOne(f"More than one frame found for {where}")
        return found[0]

    @router.route("/service/v1/acquisition/<acqid>/tile/<col>/<row>", methods=["GET"])
    async def stable_tile(
        self, request: IRequest, acqid: str, col: str, row: str
    ) -> bytes:
        """One stable, stored tile by position (§1.13)."""
        request.setHeader(b"content-type", b"application/json")
        return _json(request, 200, tile_info(await self._stable_tile(acqid, col, row)))

    @router.route("/service/v1/tile/<tileid>", methods=["GET"])
    async def tile_by_id(self, request: IRequest, tileid: str) -> bytes:
        """One tile by id, any frame, stored or not (§1.17); 404 when unknown (Q7)."""
        request.setHeader(b"content-type", b"application/json")
        return _json(request, 200, tile_info(await self._tile(tileid)))

    async def _tile(self, tileid: str) -> TileRow:
        tile_id = parse_int64("tileid", tileid)
        tile = await self._repo.tile(tile_id)
        if tile is None:
            raise CatcherNotFound(f"No tile found for tile id {tile_id}")
        return tile

    # -- content (§1.14, §1.15, §1.18) -----------------------------------------------

    @router.route(
        "/service/v1/acquisition/<acqid>/tile/<col>/<row>/content", methods=["GET"]
    )
    async def stable_tile_content(
        self, request: IRequest, acqid: str, col: str, row: str
    ) -> bytes:
        """The bytes of a stable tile (§1.14)."""
        try:
            tile = await self._stable_tile(acqid, col, row)
            return await self._content(request, tile)
        except Exception as e:
            return _plain_error(request, e)

    @router.route("/service/v1/tile/<tileid>/content", methods=["GET"])
    async def tile_content(self, request: IRequest, tileid: str) -> bytes:
        """The bytes of a tile by id (§1.18); 404 when unknown or not stored (Q7)."""
        try:
            return await self._content(request, await self._tile(tileid))
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

    @router.route("/service/v1/verify-tile/<acqid>/tile/<tileid>", methods=["GET"])
    async def verify_tile(self, request: IRequest, acqid: str, tileid: str) -> bytes:
        """Re-read a tile's bytes and compare both checksums (§1.15, Q6 fixed)."""
        request.setHeader(b"content-type", b"application/json")
        tile = await self._tile(tileid)
        info = tile_info(tile)
        if not tile.persisted:
            info["errormessage"] = f"JFSPath not set for {tile.tile_id}"
            return _json(request, 417, info)
        obj = StoredObject(tile.jfs_key, tile.location_url)
        try:
            md5, sha1 = await self._digest_object(obj)
        except StoreError as e:
            info["errormessage"] = (
                f"Error while retrieving content for {tile.jfs_path}: {e}"
            )
            return _json(request, 417, info)
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
            return _json(request, 417, info)
        return _json(request, 200, info)

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

    # -- render work distribution (§9) -----------------------------------------------

    @router.route("/service/v1/next-tile", methods=["POST"])
    async def next_tile(self, request: IRequest) -> bytes:
        """Hand out tile specs and move their links to newState (§9.1)."""
        request.setHeader(b"content-type", b"application/json")
        req = _next_tile_request(request)
        batch = str(uuid.uuid1())
        specs = await self._repo.claim_tiles(req, batch, self._lease)
        body: dict[str, Any] = {"nTilesRequested": req.ntiles}
        if req.acq_uid > 0:
            body["requestedAcqId"] = req.acq_uid
        if req.section >= 0:
            body["requestedSection"] = req.section
        if specs:
            body["resultType"] = TILE_FOUND
        else:
            body["resultType"] = await self._nothing_found(req)
        body["nTilesFound"] = len(specs)
        body["results"] = [
            {
                "acqid": s.acq_uid,
                "section": s.nominal_section,
                "tilespec": tile_spec(s, self._tiles_url_base),
            }
            for s in specs
        ]
        return _json(request, 200, body)

    async def _nothing_found(self, req: NextTileRequest) -> str:
        in_section = req.section >= 0
        waiting = NO_TILE_READY_IN_SECTION if in_section else NO_TILE_READY
        if req.acq_uid <= 0:
            return waiting
        completed, counts = await self._repo.served_state(req)
        if completed and counts and set(counts) == {req.new_state}:
            return SERVED_ALL_SECTION if in_section else SERVED_ALL_ACQ
        return waiting

    @router.route("/service/v1/tile-state", methods=["PUT"])
    async def tile_state(self, request: IRequest) -> bytes:
        """Set the state of the tiles named by tile-spec ids (§9.3)."""
        request.setHeader(b"content-type", b"application/json")
        state, ids = parse_tile_state_body(bytes(request_body(request)))
        for i in ids:
            if min(i.acq_uid, i.col, i.row, i.section) < 0:
                # Q24: a negative field used to widen the update; now refused.
                raise BadParameter(
                    f"Invalid tile spec ID {i}: fields must not be negative"
                )
        changed = await self._repo.set_tile_states(state, ids)
        return _json(request, 200, {"nUpdates": changed})

    # -- errors ------------------------------------------------------------------------

    @router.handle_errors(NotFound)
    def _not_found(self, request: IRequest, failure: Failure) -> bytes:
        if isinstance(failure.value, CatcherNotFound):
            return _json(request, 404, {"errormessage": failure.getErrorMessage()})
        return _plain(request, 404, "404 page not found")

    @router.handle_errors(MethodNotAllowed)
    def _not_allowed(self, request: IRequest, failure: Failure) -> bytes:
        return _plain(request, 405, "405 method not allowed")

    @router.handle_errors(Exception)
    def _failed(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        for kind, status in _STATUS:
            if isinstance(error, kind):
                if status >= 500:
                    log.warn("{path}: {reason}", path=request.path, reason=error)
                if isinstance(error, BodyTooLarge):
                    request.setHeader(b"connection", b"close")
                return _json(request, status, {"errormessage": str(error)})
        log.failure("unexpected error serving {path}", failure, path=request.path)
        return _json(request, 500, {"errormessage": f"Internal error: {error}"})


def capture_json(result: Captured) -> dict[str, Any]:
    """The capture success body of §1.5 plus the documented storage keys (§14)."""
    body: dict[str, Any] = {
        "tile_acq_id": result.acq.uid,
        "tile_temca": result.acq.temca_id or 0,
        "tile_id": result.tile.tile_id,
        "tile_col": result.tile_name.col,
        "tile_row": result.tile_name.row,
        "tile_jfs_key": result.jfs_key,
        "tile_jfs_path": result.jfs_path,
        "tile_file_checksum": result.sha1.hex(),
    }
    if result.camera is not None:
        body["tile_camera"] = result.camera
        body["tile_frame"] = result.tile_name.frame
    return body


#: Bytes read from the store per step when streaming or hashing content.
CHUNK = 1024 * 1024


def _update(md5: Any, sha1: Any, chunk: bytes) -> None:
    md5.update(chunk)
    sha1.update(chunk)


def parse_int32(param: str, value: str) -> int:
    """A path or query integer of type int32 (§1.0)."""
    return _parse_int(param, value, -(2**31), 2**31 - 1)


_BOOLEANS = {
    "1": True,
    "t": True,
    "T": True,
    "TRUE": True,
    "true": True,
    "True": True,
    "0": False,
    "f": False,
    "F": False,
    "FALSE": False,
    "false": False,
    "False": False,
}


def parse_bool(param: str, value: str) -> bool:
    """A boolean query parameter (§1.0)."""
    if value not in _BOOLEANS:
        raise BadParameter(
            f"Error while parsing the {param} parameter - {value}: invalid syntax"
        )
    return _BOOLEANS[value]


def _page(request: IRequest) -> tuple[int, int]:
    offset = parse_int64("offset", query(request, "offset") or "0")
    length = parse_int32("length", query(request, "length") or "-1")
    return page(offset, length)


def _acquisition_filter(
    request: IRequest, from_param: str, to_param: str, with_states: bool
) -> AcquisitionFilter:
    acq_from, acq_to = query(request, from_param), query(request, to_param)
    acqid = query(request, "acqid") if with_states else None
    return AcquisitionFilter(
        acq_uid=parse_uint64("acqid", acqid) if acqid else 0,
        sample=query(request, "sample"),
        project=query(request, "project"),
        owner=query(request, "owner"),
        stack=query(request, "stack"),
        mosaic_type=query(request, "mosaic-type"),
        exists_state=query(request, "exists-tile-in-state") if with_states else None,
        all_state=query(request, "all-tiles-in-state") if with_states else None,
        acq_from=parse_acq_time(from_param, acq_from) if acq_from else None,
        acq_to=parse_acq_time(to_param, acq_to) if acq_to else None,
    )


def _tile_filter(request: IRequest, acq_uid: int, cross: bool) -> TileFilter:
    def number(name: str) -> int:
        value = query(request, name)
        return parse_int32(name, value) if value else -1

    tile_from, tile_to = query(request, "tile-from"), query(request, "tile-to")
    include = query(request, "include-all")
    return TileFilter(
        acq_uid=acq_uid,
        sample=query(request, "sample") if cross else None,
        project=query(request, "project") if cross else None,
        owner=query(request, "owner") if cross else None,
        stack=query(request, "stack") if cross else None,
        mosaic_type=query(request, "mosaic-type") if cross else None,
        col=number("col"),
        row=number("row"),
        camera=number("camera"),
        state=query(request, "tile-state"),
        tile_from=parse_tile_time("tile-from", tile_from) if tile_from else None,
        tile_to=parse_tile_time("tile-to", tile_to) if tile_to else None,
        frame_type=query(request, "frame-type") or "stable",
        include_all=parse_bool("include-all", include) if include else False,
    )


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
        return _plain(request, 416, str(error))
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return _plain(request, status, str(error))
    log.failure("serving content", Failure(error))
    return _plain(request, 500, f"Internal error: {error}")


def _next_tile_request(request: IRequest) -> NextTileRequest:
    acqid, section = query(request, "acqid"), query(request, "section")
    ntiles = parse_int32("ntiles", query(request, "ntiles") or "1")
    if ntiles <= 0:
        # Q23: the old service removed the LIMIT and moved every tile.
        raise BadParameter("Error while parsing the ntiles parameter - it must be > 0")
    tile_from, tile_to = query(request, "tile-from"), query(request, "tile-to")
    req = NextTileRequest(
        old_state=query(request, "oldState") or "READY",
        new_state=query(request, "newState") or "IN_PROGRESS",
        acq_uid=parse_uint64("acqid", acqid) if acqid else 0,
        section=parse_int64("section", section) if section else -1,
        ntiles=min(ntiles, MAX_ROWS),
        sample=query(request, "sample"),
        project=query(request, "project"),
        stack=query(request, "stack"),
        mosaic_type=query(request, "mosaic-type"),
        tile_from=parse_tile_time("tile-from", tile_from) if tile_from else None,
        tile_to=parse_tile_time("tile-to", tile_to) if tile_to else None,
        frame_type=query(request, "frame-type") or "stable",
    )
    if req.old_state == req.new_state:
        raise BadParameter("oldState and newState must differ")
    if len(req.new_state) > 64:
        raise BadParameter("newState is longer than 64 characters")
    return req
