"""The query routes of :mod:`imagecatcher.web.queries` (§1.8-§1.13, §1.16, §1.17, §8)."""

from __future__ import annotations

from typing import Any

from imagecatcher.web.apidoc.common import (
    ACQ_TIME,
    BOOLEAN,
    INT32,
    INT64,
    TILE_TIME,
    UINT64,
    acqid_path,
    bad_request,
    json_content,
    json_error,
    paging_params,
    path_param,
    query_param,
    ref,
    server_error,
    string_query,
)

_TAG = ["Queries"]

_ACQUISITION_STRINGS = (
    "SampleName",
    "ProjectName",
    "ProjectOwner",
    "StackName",
    "MosaicType",
    "RoiTilesFile",
    "RoiSpecFile",
    "MicroscopistName",
    "Notes",
    "IniContent",
    "TemIPAddress",
    "URL",
)
_ACQUISITION_INTEGERS = (
    "IniFileID",
    "ImageMosaicID",
    "AcqUID",
    "NumberOfCameras",
    "XSmallStepPix",
    "YSmallStepPix",
    "XBigStepPix",
    "YBigStepPix",
    "NXSteps",
    "NYSteps",
    "NTargetCols",
    "NTargetRows",
    "Magnification",
)
_ACQUISITION_NUMBERS = ("XCenter", "YCenter", "YTem", "PixPerUm")

SCHEMAS: dict[str, Any] = {
    "Acquisition": {
        "type": "object",
        "description": "An acquisition (§1.9); NTargetCols/Rows are filled (Q37).",
        "required": [
            *_ACQUISITION_INTEGERS,
            *_ACQUISITION_NUMBERS,
            *_ACQUISITION_STRINGS,
            "Acquired",
            "Inserted",
            "Completed",
        ],
        "properties": {
            **{k: {"type": "integer"} for k in _ACQUISITION_INTEGERS},
            **{k: {"type": "number"} for k in _ACQUISITION_NUMBERS},
            **{k: {"type": "string"} for k in _ACQUISITION_STRINGS},
            "Acquired": {"type": "string", "description": "RFC 3339, UTC."},
            "Inserted": {"type": "string", "description": "RFC 3339, UTC."},
            "Completed": {"type": ["string", "null"]},
        },
    },
}


def _common_filters() -> list[dict[str, Any]]:
    return [
        string_query("sample", "Sample name."),
        string_query("project", "Project name."),
        string_query("owner", "Project owner."),
        string_query("stack", "Stack name."),
        string_query("mosaic-type", "Mosaic type."),
    ]


def _tile_filters() -> list[dict[str, Any]]:
    """The tile filters of §8.5 (beside the acquisition filters)."""
    return [
        query_param("col", INT32, "Mosaic column; negative = any."),
        query_param("row", INT32, "Mosaic row; negative = any."),
        query_param("camera", INT32, "Camera number; negative = any."),
        string_query("tile-state", "ROI link state (tiles in no ROI are left out)."),
        query_param("tile-from", TILE_TIME, "Stored at or after (inclusive)."),
        query_param("tile-to", TILE_TIME, "Stored before (exclusive)."),
        query_param(
            "frame-type",
            {"type": "string"},
            "`stable` (default; also empty or unknown), `drift` or `all`,"
            " in any letter case.",
        ),
        query_param(
            "include-all",
            BOOLEAN,
            "true: tiles whose content is not stored yet too (default false).",
        ),
        *paging_params(),
    ]


def _get(
    summary: str,
    description: str,
    params: list[dict[str, Any]],
    ok: dict[str, Any],
    **more: dict[str, Any],
) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": ok, "400": bad_request()}
    responses.update(more)
    responses["500"] = server_error()
    return {
        "get": {
            "tags": _TAG,
            "summary": summary,
            "description": description,
            "parameters": params,
            "responses": responses,
        }
    }


def _tile_lookup_params() -> list[dict[str, Any]]:
    return [
        acqid_path("Acquisition UID (> 0)."),
        path_param("col", INT32, "Mosaic column (>= 0).", 8),
        path_param("row", INT32, "Mosaic row (>= 0).", 80),
    ]


def tileid_path() -> dict[str, Any]:
    """``{tileid}``: a signed 64-bit tile id."""
    return path_param("tileid", INT64, "Tile id (tile_id of TileInfo).", 1)


PATHS: dict[str, Any] = {
    "/service/v1/projects": _get(
        "Distinct (project, owner) pairs",
        "Projects of the acquisitions matching the filters, by project name (§1.8, §8.4).",
        [
            *_common_filters(),
            query_param("has-acq-from", ACQ_TIME, "Acquired at or after."),
            query_param("has-acq-to", ACQ_TIME, "Acquired before."),
            *paging_params(),
        ],
        {
            "description": "The pairs; length is the number returned.",
            "content": json_content(
                {
                    "type": "object",
                    "required": ["length", "projects"],
                    "properties": {
                        "length": {"type": "integer", "minimum": 0},
                        "projects": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["ProjectName", "ProjectOwner"],
                                "properties": {
                                    "ProjectName": {"type": "string"},
                                    "ProjectOwner": {"type": "string"},
                                },
                            },
                        },
                    },
                },
                {
                    "length": 1,
                    "projects": [{"ProjectName": "FAFB00", "ProjectOwner": "flyTEM"}],
                },
            ),
        },
    ),
    "/service/v1/acquisitions": _get(
        "Acquisitions",
        "Acquisitions (with a mosaic) matching the filters, by UID (§1.9, §8.3).",
        [
            query_param("acqid", UINT64, "Acquisition UID; 0 = any."),
            *_common_filters(),
            string_query(
                "exists-tile-in-state", "At least one tile link in this state."
            ),
            string_query(
                "all-tiles-in-state",
                "Every tile link in this state (and at least one).",
            ),
            query_param("acq-from", ACQ_TIME, "Acquired at or after."),
            query_param("acq-to", ACQ_TIME, "Acquired before."),
            *paging_params(),
        ],
        {
            "description": "The acquisitions; length is the number returned.",
            "content": json_content(
                {
                    "type": "object",
                    "required": ["acquisitions", "length"],
                    "properties": {
                        "acquisitions": {
                            "type": "array",
                            "items": ref("Acquisition"),
                        },
                        "length": {"type": "integer", "minimum": 0},
                    },
                }
            ),
        },
    ),
    "/service/v1/acquisition/{acqid}/tiles": _get(
        "Tiles of one acquisition",
        "Grouped tile list (§1.11, §1.12); a tile in several ROIs is listed once (§14).",
        [acqid_path(), *_tile_filters()],
        {"description": "Grouped tiles.", "content": json_content(ref("GroupedTiles"))},
    ),
    "/service/v1/tiles": _get(
        "Tiles across acquisitions",
        "Grouped tile list (§1.11, §1.16, §8.5).",
        [
            query_param("acqid", UINT64, "Acquisition UID; 0 = any."),
            *_common_filters(),
            *_tile_filters(),
        ],
        {"description": "Grouped tiles.", "content": json_content(ref("GroupedTiles"))},
    ),
    "/service/v1/acquisition/{acqid}/tile/{col}/{row}": _get(
        "One stable, stored tile by position",
        "The stable (frame -1), stored tile at (col, row), any camera (§1.13).",
        _tile_lookup_params(),
        {"description": "The tile.", "content": json_content(ref("TileInfo"))},
        **{
            "404": json_error("No such tile."),
            "409": json_error("More than one tile matches."),
        },
    ),
    "/service/v1/tile/{tileid}": _get(
        "One tile by id",
        "Any frame, stored or not (§1.17); unknown ids are 404 (Q7, §14).",
        [tileid_path()],
        {"description": "The tile.", "content": json_content(ref("TileInfo"))},
        **{"404": json_error("No tile with that id.")},
    ),
}
