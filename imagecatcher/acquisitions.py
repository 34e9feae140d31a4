"""The acquisition lifecycle (CONTRACT §1.3, §1.4, §1.6, §1.7, §5.6, §7).

Starting an acquisition from its INI log, declaring its ROIs, storing its
ancillary files and ending it.  Parsing lives in the layer-0 modules
(:mod:`~imagecatcher.acqlog`, :mod:`~imagecatcher.rois`); this module orders
the storage and database work and decides what a failure means.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from imagecatcher import limits
from imagecatcher.acqlog import acquisition_uid, parse_acquisition_log
from imagecatcher.db.repository import Repository
from imagecatcher.domain import Acquisition, BadParameter, NotFound, digests, jfs_path
from imagecatcher.limits import check_bytes, excerpt
from imagecatcher.rois import RoiTileList, parse_roi_spec, parse_roi_tiles
from imagecatcher.storage import ContentStore

log = Logger()

#: §5.6: ancillary file types by name suffix, in order.
ANCILLARY_TYPES = (
    "Add pulse.csv",
    "Controller elapsed.csv",
    "Controller timing.csv",
    "DAQ timing.csv",
    "ROI_spec.ini",
    "ROI_tiles.csv",
    "logfile.ini",
    "mosaic.png",
    "statistics.csv",
    "stored_image_list.csv",
)
_CAMERA_CSV = re.compile(r"_cam[0-3]\.csv$")
_UNSAFE_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def ancillary_type(name: str) -> str:
    """The §5.6 type of an ancillary file name (``unknown`` when none fits)."""
    normalised = _CAMERA_CSV.sub(".csv", name)
    for suffix in ANCILLARY_TYPES:
        if normalised.endswith(suffix):
            return suffix
    return "unknown"


def stored_file_name(sent: str) -> str:
    """The name a sent file is stored under: its base name (§14, Q13).

    Directory parts are dropped, so no name can reach outside the
    acquisition's path; names with control characters, ``..`` or nothing
    left are refused, and so are names over 255 UTF-8 bytes: the name must
    fit ``file_object_fs_replicas.path`` (255 characters) and be a file name
    in a file store (255 bytes on common file systems).
    """
    base = sent.replace("\\", "/").rsplit("/", 1)[-1]
    if _UNSAFE_CHARACTER.search(base) or base.strip() in ("", ".", ".."):
        raise BadParameter(f"Invalid file name {excerpt(sent)!r}")
    name = base.strip(" ")
    return check_bytes(f"File name {excerpt(name)!r}", name, limits.FILE_NAME)


@attrs.frozen
class AncillaryResult:
    """One entry of ``af_results``."""

    name: str
    file_object_id: int = 0
    jfs_key: str = ""
    jfs_path: str = ""
    path: str = ""
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        """The JSON object of §1.6."""
        if self.error:
            return {"errormessage": self.error, "name": self.name}
        return {
            "id": self.file_object_id,
            "jfs_key": self.jfs_key,
            "jfs_path": self.jfs_path,
            "name": self.name,
            "path": self.path,
        }


class Acquisitions:
    """Acquisition-level operations over the repository and the store."""

    def __init__(
        self,
        repo: Repository,
        store: ContentStore,
        reactor: Any,
        threadpool: ThreadPool,
        jfs_mapping: Mapping[str, str],
        notify_now: Callable[[str], object] = lambda text: None,
    ) -> None:
        self._repo = repo
        self._store = store
        self._reactor = reactor
        self._pool = threadpool
        self._mapping = jfs_mapping
        self._notify_now = notify_now

    async def lookup(
        self, uid: int, missing: type[Exception] = NotFound
    ) -> Acquisition:
        """The acquisition, or ``missing`` with the contract's message."""
        acq = await self._repo.acquisition(uid)
        if acq is None:
            raise missing(f"No mosaic image found for acquisition id {uid}")
        return acq

    async def start(self, file_name: str, text: str) -> int:
        """Register or refresh an acquisition from its INI log (§1.3)."""
        prefix = "Error encountered while processing the acquisition log in"
        try:
            uid = acquisition_uid(file_name)
            parsed = parse_acquisition_log(text)
        except BadParameter as e:
            raise BadParameter(f"{prefix} start-acquisition request: {e}") from None
        temca = await self._repo.start_acquisition(parsed, uid)
        log.info("acquisition {uid} started (temca {temca})", uid=uid, temca=temca)
        return uid

    async def create_rois(
        self,
        acq: Acquisition,
        spec: tuple[str, bytes | memoryview] | None,
        tiles: tuple[str, bytes | memoryview] | None,
    ) -> None:
        """Import an ROI spec and/or ROI tiles CSV (§1.4, §7.2, §7.3).

        Both files are parsed first; only then are they stored (Q32: a store
        failure is an error, and nothing is stored for a file that does not
        parse) and the ROIs and tile links created.
        """
        regions = parse_roi_spec(_text(spec[1])) if spec else []
        roi_tiles = parse_roi_tiles(_text(tiles[1])) if tiles else None
        for item in (spec, tiles):  # both names are checked before either is stored
            if item is not None:
                stored_file_name(item[0])
        for item in (spec, tiles):
            if item is not None:
                await self._store_ancillary(acq, item[0], item[1])
        if regions:
            await self._repo.create_rois(acq.mosaic_id, regions)
        if roi_tiles is not None:
            await self._link_tiles(acq, roi_tiles)

    async def _link_tiles(self, acq: Acquisition, roi_tiles: RoiTileList) -> None:
        for warning in roi_tiles.warnings:
            log.warn("ROI tiles of {uid}: {warning}", uid=acq.uid, warning=warning)
        by_section: dict[str, list[tuple[int, int]]] = {}
        for tile in roi_tiles.tiles:
            by_section.setdefault(tile.section_name, []).append((tile.col, tile.row))
        roi_ids = await self._repo.roi_ids(acq.mosaic_id)
        for section, cells in by_section.items():
            roi_id = roi_ids.get(section)
            if roi_id is None:
                log.warn(
                    "ROI tiles of {uid}: no ROI for section {section}; skipped",
                    uid=acq.uid,
                    section=section,
                )
                continue
            await self._repo.link_roi_tiles(acq.mosaic_id, roi_id, cells)

    async def _store_ancillary(
        self, acq: Acquisition, sent_name: str, data: bytes | memoryview
    ) -> AncillaryResult:
        name = stored_file_name(sent_name)
        md5, sha1 = await deferToThreadPool(self._reactor, self._pool, digests, data)
        path = jfs_path(acq.uid, name)
        obj = await self._store.put(
            acq.collection(self._mapping), path, bytes(data), md5, acq.storage_context()
        )
        file_object_id = await self._repo.store_ancillary(
            acq.mosaic_id,
            ancillary_type(name),
            name,
            path,
            obj.key,
            obj.location_url,
            sha1,
            md5,
        )
        return AncillaryResult(
            name=sent_name,
            file_object_id=file_object_id,
            jfs_key=obj.key,
            jfs_path=path,
            path=name,
        )

    async def store_ancillary_files(
        self, acq: Acquisition, files: Sequence[tuple[str, bytes | memoryview]]
    ) -> list[AncillaryResult]:
        """Store each file (§1.6), importing ROI files as create-rois does."""
        results = []
        for sent_name, data in files:
            try:
                if len(data) == 0:
                    raise BadParameter(f"Empty content encountered for {sent_name}")
                kind = ancillary_type(stored_file_name(sent_name))
                if kind == "ROI_spec.ini":
                    regions = parse_roi_spec(_text(data))
                    result = await self._store_ancillary(acq, sent_name, data)
                    await self._repo.create_rois(acq.mosaic_id, regions)
                elif kind == "ROI_tiles.csv":
                    roi_tiles = parse_roi_tiles(_text(data))
                    result = await self._store_ancillary(acq, sent_name, data)
                    await self._link_tiles(acq, roi_tiles)
                else:
                    result = await self._store_ancillary(acq, sent_name, data)
            except Exception as e:
                if not isinstance(e, BadParameter):
                    log.failure(
                        "storing ancillary file {name} of {uid}",
                        name=sent_name,
                        uid=acq.uid,
                    )
                result = AncillaryResult(name=sent_name, error=str(e))
            results.append(result)
        return results

    async def end(self, acq: Acquisition, all_stored: bool) -> None:
        """Mark the acquisition complete when its files were all stored (Q11)."""
        if not all_stored:
            log.warn(
                "end-acquisition {uid}: not marked complete (ancillary errors)",
                uid=acq.uid,
            )
            return
        await self._repo.complete_acquisition(acq.uid)
        waiting = await self._repo.count_waiting_links(acq.mosaic_id)
        if waiting:
            self._notify_now(
                f"Acq {acq.uid} marked as complete but it may still have tiles in"
                " CREATE state"
            )


def _text(data: bytes | memoryview) -> str:
    return bytes(data).decode("utf-8", errors="replace")
