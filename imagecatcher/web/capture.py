"""Tile capture and the acquisition lifecycle (CONTRACT §1.3-§1.7).

``start-acquisition``, ``create-rois``, ``capture-image-content``,
``end-acquisition`` and ``store-ancillary-files``: the routes a rig calls
while it acquires, all reading multipart bodies (:mod:`imagecatcher.web.forms`).
A tile's body is not buffered: it reached a sink while it arrived
(:mod:`imagecatcher.web.tilebody`).
"""

from __future__ import annotations

import base64
import time
from typing import Any

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.web.iweb import IRequest

from imagecatcher.acquisitions import Acquisitions
from imagecatcher.domain import BadParameter, CatcherError
from imagecatcher.metrics import Metrics
from imagecatcher.names import parse_tile_name
from imagecatcher.pipeline import Captured, Pipeline, TileUpload
from imagecatcher.sink import TileSink
from imagecatcher.web.common import (
    BodyTooLarge,
    json_response,
    parse_uint64,
    query,
    status_of,
)
from imagecatcher.web.forms import Part, is_multipart, parse_form, whole
from imagecatcher.web.request import FORM_OVERHEAD, request_body, set_queue_headers
from imagecatcher.web.tilebody import TileBody


class Lifecycle:
    """An acquisition's start, ROIs, ancillary files and end (§1.3, §1.4, §1.6, §1.7)."""

    router = Klein()

    def __init__(self, acquisitions: Acquisitions | None) -> None:
        self._acquisitions = acquisitions

    def _acqs(self) -> Acquisitions:
        if self._acquisitions is None:
            raise CatcherError("acquisitions are not configured")
        return self._acquisitions

    @router.route("/start-acquisition", methods=["POST"])
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
        return json_response(request, 200, {"uid": uid})

    @router.route("/create-rois/<acqid>", methods=["POST"])
    async def create_rois(self, request: IRequest, acqid: str) -> bytes:
        """Import the ROI spec and ROI tiles of an acquisition (§1.4)."""
        request.setHeader(b"content-type", b"application/json")
        uid = parse_uint64("acqId", acqid)
        parts = _parts(request, "Error parsing the request: ")
        if parts is None:
            raise BadParameter("request Content-Type isn't multipart/form-data")
        files: dict[str, tuple[str, bytes]] = {}
        for part in parts:  # if a part occurs twice the last one wins
            if part.name in ("roi-spec", "roi-tiles"):
                files[part.name] = (part.filename or f"{uid}_{part.name}", part.data)
        acq = await self._acqs().lookup(uid, BadParameter)
        await self._acqs().create_rois(
            acq, files.get("roi-spec"), files.get("roi-tiles")
        )
        return json_response(request, 200, {})

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
            return json_response(request, 200, {})
        # Q33: a form without ancillary-file parts answers an empty list.
        body = {"af_results": [r.to_json() for r in results]}
        return json_response(request, 200 if ok else 400, body)

    @router.route("/end-acquisition/<acqid>", methods=["POST"])
    async def end_acquisition(self, request: IRequest, acqid: str) -> bytes:
        """Store ancillary files and mark the acquisition complete (§1.6)."""
        return await self._ancillary(request, acqid, end=True)

    @router.route("/store-ancillary-files/<acqid>", methods=["POST"])
    async def store_ancillary_files(self, request: IRequest, acqid: str) -> bytes:
        """Store ancillary files (§1.7)."""
        return await self._ancillary(request, acqid, end=False)


class Capture:
    """One tile's upload, as a raw body or a multipart form (§1.5).

    The body has already gone to a sink while it arrived (a
    :class:`~imagecatcher.web.tilebody.TileBody`); the route checks the
    request, then hands the sink to the pipeline, or discards it: a refused
    request leaves no file behind.
    """

    router = Klein()

    def __init__(
        self,
        pipeline: Pipeline | None,
        max_tile_bytes: int,
        metrics: Metrics | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._max_tile_bytes = max_tile_bytes
        self._metrics = metrics

    @router.route("/capture-image-content/<acqid>", methods=["PUT", "POST"])
    async def capture(self, request: IRequest, acqid: str) -> bytes:
        """Capture one tile (§1.5)."""
        started = time.monotonic()
        try:
            answer, size = await self._capture(request, acqid)
        except BaseException as e:
            if self._metrics is not None:
                status = status_of(e)
                rejected = status is not None and status < 500
                self._metrics.tile_refused("http", "rejected" if rejected else "failed")
            raise
        if self._metrics is not None:
            self._metrics.tile_acknowledged("http", size, time.monotonic() - started)
        return answer

    async def _capture(self, request: IRequest, acqid: str) -> tuple[bytes, int]:
        """The response body, and the tile's size."""
        request.setHeader(b"content-type", b"application/json")
        body = self._body(request)
        sink = body.take()  # ours from here on: captured or discarded
        try:
            pipeline = self._pipeline
            if pipeline is None:
                raise CatcherError("tile capture is not configured")
            upload = _upload(request, acqid, body, sink)
        except BaseException:
            if sink is not None:
                await _discard(sink)
            raise
        # The pipeline finishes the sink, and discards it on any failure.
        result = await pipeline.capture(upload)
        set_queue_headers(request, result.status)
        size = upload.sink.size if upload.sink is not None else len(upload.data)
        return json_response(request, 200, capture_json(result)), size

    def _body(self, request: IRequest) -> TileBody:
        """The streamed body; a buffered one (another Request class) is fed now."""
        content = request.content
        if isinstance(content, TileBody):
            return content
        if self._pipeline is None:
            raise CatcherError("tile capture is not configured")
        body = TileBody(
            self._pipeline.open_sink,
            _content_type(request),
            length=None,
            max_tile=self._max_tile_bytes,
            max_body=self._max_tile_bytes + FORM_OVERHEAD,
        )
        try:
            data = request_body(request)
        except BodyTooLarge as e:
            body.too_large = str(e)
        else:
            body.write(whole(data))
        return body


async def _discard(sink: TileSink) -> None:
    """Delete a refused tile's file, even if the client hangs up meanwhile."""
    work = Deferred.fromCoroutine(sink.discard())
    view: Deferred[None] = Deferred()
    work.chainDeferred(view)  # cancelling view (a disconnect) spares work
    await view


def _upload(
    request: IRequest, acqid: str, body: TileBody, sink: TileSink | None
) -> TileUpload:
    """What to capture, once the request is checked; raises when it is refused."""
    uid = parse_uint64("acqId", acqid)
    checksums: list[bytes] = []
    header_md5 = request.getHeader(b"content-md5")
    if header_md5:
        try:
            checksums.append(base64.b64decode(header_md5, validate=True))
        except ValueError:
            raise BadParameter("Invalid Content-MD5 header") from None
    if body.too_large is not None:
        raise BodyTooLarge(body.too_large)
    if not body.multipart:
        name_text = query(request, "tile-filename")
        if name_text is None:
            raise BadParameter("Invalid tile file name")
        if (hex_md5 := query(request, "checksum")) is not None:
            checksums.append(_md5_from_hex(hex_md5, "checksum"))
    else:
        if body.error is not None:
            raise BadParameter(f"Error parsing the request: {body.error}")
        name_text = None
        for name, value in body.fields:
            if name == "tile-filename":
                name_text = _text(value)
            elif name == "checksum":
                checksums.append(value)
            elif name == "checksum-str":
                checksums.append(_md5_from_hex(_text(value), "checksum-str"))
        if not body.has_file:
            raise BadParameter("No tile-file part in the request")
        name_text = name_text or body.file_name
        if not name_text:
            raise BadParameter("Invalid tile file name")
    if any(len(c) != 16 for c in checksums):
        raise BadParameter("Invalid checksum: an MD5 is 16 bytes")
    tile = parse_tile_name(name_text)
    assert sink is not None  # a raw body always has one, a form with tile-file too
    return TileUpload(uid, tile, md5=_client_md5(checksums), sink=sink)


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


def _content_type(request: IRequest) -> str:
    raw = request.getHeader(b"content-type")
    return raw.decode("latin-1") if raw else ""


def _parts(request: IRequest, context: str) -> list[Part] | None:
    """The multipart parts of the request, or None when it is not multipart."""
    ctype = _content_type(request)
    if not is_multipart(ctype):
        return None
    try:
        return parse_form(request_body(request), ctype)
    except BodyTooLarge:
        raise
    except BadParameter as e:
        raise BadParameter(f"{context}{e}") from None


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


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
