"""The HTTP API under ``/service/v1`` (CONTRACT §1), as a Klein router.

Routes translate requests into calls on the repository and the store, and
domain exceptions into statuses: JSON error bodies ``{"errormessage": ...}``
for JSON routes, plain text for ``ping`` and the content routes (§1.0).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
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

from imagecatcher.acquisitions import Acquisitions
from imagecatcher.calibrations import parse_calibrations
from imagecatcher.db.repository import Repository
from imagecatcher.domain import (
    BadParameter,
    CalibrationError,
    CatcherError,
    QueueStatus,
)
from imagecatcher.domain import NotFound as CatcherNotFound
from imagecatcher.multipart import Part, is_multipart, parse_multipart
from imagecatcher.names import parse_tile_name
from imagecatcher.pipeline import Captured, Pipeline, TileUpload
from imagecatcher.storage import ContentStore, StoreError

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


_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (BodyTooLarge, 413),
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
    ) -> None:
        self._repo = repo
        self._store = store
        self._clock = clock
        self._queue_status = queue_status
        self._pipeline = pipeline
        self._acquisitions = acquisitions
        self._ping_collection = ping_collection
        self._max_tile_bytes = max_tile_bytes

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
