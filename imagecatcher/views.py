"""JSON shapes of the query routes (CONTRACT §1.8-§1.17, App. B).

Key names are contractual and mixed-case (Go-style ``AcqUID`` in
acquisitions, snake_case in tiles); every response dict is built here.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from imagecatcher.domain import TileRow
from imagecatcher.timefmt import rfc3339, rfc3339_required, tile_acquired


def _single(value: Any) -> float:
    """A FLOAT column as its single-precision value (as the old service read it)."""
    return float(struct.unpack("<f", struct.pack("<f", float(value or 0)))[0])


def tile_info(tile: TileRow) -> dict[str, Any]:
    """A TileInfo object (§1.10); ``tile_temca`` filled (Q8)."""
    info: dict[str, Any] = {
        "tile_acq_id": tile.acq_uid,
        "tile_temca": tile.temca_id or 0,
        "tile_id": tile.tile_id,
        "tile_col": tile.col,
        "tile_row": tile.row,
        "tile_jfs_path": tile.jfs_path,
        "tile_jfs_key": tile.jfs_key,
        "tile_file_checksum": tile.sha1.hex() if tile.sha1 else "",
        "image_url": tile.location_url,
        "tile_acquired": tile_acquired(tile.acquired),
        "state": tile.state,
        "section": tile.section,
    }
    if tile.camera is not None:
        info["tile_camera"] = tile.camera
        info["tile_frame"] = tile.frame
    return info


def grouped_tiles(tiles: Sequence[TileRow]) -> dict[str, Any]:
    """The grouped tile list of §1.11."""
    ordered = sorted(
        tiles,
        key=lambda t: (t.acq_uid, t.acquired is None, t.acquired or datetime.min),
    )
    groups: list[dict[str, Any]] = []
    for tile in ordered:
        if not groups or groups[-1]["acq_id"] != tile.acq_uid:
            groups.append(
                {
                    "acq_id": tile.acq_uid,
                    "acq_timestamp": rfc3339_required(tile.acq_when),
                    "acq_completed": rfc3339(tile.acq_completed),
                    "n_tiles": 0,
                    "tiles": [],
                }
            )
        groups[-1]["tiles"].append(tile_info(tile))
        groups[-1]["n_tiles"] += 1
    return {
        "acquisitions": groups,
        "n_returned_acqs": len(groups),
        "n_returned_tiles_for_all_acqs": len(tiles),
    }


def acquisition_json(row: Sequence[Any]) -> dict[str, Any]:
    """An Acquisition object (§1.9) from a row of ``ACQUISITION_COLUMNS``."""
    (
        ini_id,
        mosaic_id,
        acquired,
        inserted,
        completed,
        uid,
        cameras,
        xs,
        ys,
        xb,
        yb,
        nx,
        ny,
        xc,
        yc,
        yt,
        ppu,
        mag,
        url,
        sample,
        project,
        owner,
        stack,
        mosaic_type,
        roi_tiles_file,
        microscopist,
        notes,
        target_cols,
        target_rows,
    ) = row
    return {
        "IniFileID": int(ini_id),
        "ImageMosaicID": int(mosaic_id),
        "Acquired": rfc3339_required(acquired),
        "Inserted": rfc3339_required(inserted),
        "Completed": rfc3339(completed),
        "AcqUID": int(uid),
        "NumberOfCameras": int(cameras or 0),
        "XSmallStepPix": int(xs or 0),
        "YSmallStepPix": int(ys or 0),
        "XBigStepPix": int(xb or 0),
        "YBigStepPix": int(yb or 0),
        "NXSteps": int(nx or 0),
        "NYSteps": int(ny or 0),
        # Q37: filled from the mosaic (the old service left them 0).
        "NTargetCols": int(target_cols or 0),
        "NTargetRows": int(target_rows or 0),
        "XCenter": _single(xc),
        "YCenter": _single(yc),
        "YTem": _single(yt),
        "PixPerUm": _single(ppu),
        "Magnification": int(mag or 0),
        "TemIPAddress": "",
        "URL": url or "",
        "SampleName": sample or "",
        "ProjectName": project or "",
        "ProjectOwner": owner or "",
        "StackName": stack or "",
        "MosaicType": mosaic_type or "",
        "RoiTilesFile": roi_tiles_file or "",
        "RoiSpecFile": "",
        "MicroscopistName": microscopist or "",
        "Notes": notes or "",
        "IniContent": "",
    }
