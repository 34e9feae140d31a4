"""The renderer routes of :mod:`imagecatcher.web.render` (§1.22, §1.23, §9)."""

from __future__ import annotations

from typing import Any

from imagecatcher.limits import TILE_STATE
from imagecatcher.tilespec import (
    NO_TILE_READY,
    NO_TILE_READY_IN_SECTION,
    SERVED_ALL_ACQ,
    SERVED_ALL_SECTION,
    TILE_FOUND,
)
from imagecatcher.web.apidoc.common import (
    EXAMPLE_UID,
    INT32,
    INT64,
    TILE_TIME,
    UINT64,
    bad_request,
    json_content,
    query_param,
    ref,
    server_error,
    string_query,
)

_TAG = ["Rendering"]

SCHEMAS: dict[str, Any] = {
    "TileSpec": {
        "type": "object",
        "description": "A tile spec for render (§9.2).",
        "required": [
            "tileId",
            "width",
            "height",
            "z",
            "mipmapLevels",
            "layout",
            "transforms",
        ],
        "properties": {
            "tileId": {"type": "string", "example": f"{EXAMPLE_UID}.008.080.5801.0"},
            "width": {"type": "integer"},
            "height": {"type": "integer"},
            "z": {"type": "number"},
            "mipmapLevels": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["imageUrl", "maskUrl"],
                    "properties": {
                        "imageUrl": {"type": "string"},
                        "maskUrl": {"type": "string"},
                    },
                },
            },
            "layout": {
                "type": "object",
                "required": [
                    "sectionId",
                    "temca",
                    "camera",
                    "imageCol",
                    "imageRow",
                    "stageX",
                    "stageY",
                    "rotation",
                ],
                "properties": {
                    "sectionId": {"type": "string"},
                    "temca": {"type": "string"},
                    "camera": {"type": "integer"},
                    "imageCol": {"type": "integer"},
                    "imageRow": {"type": "integer"},
                    "stageX": {"type": "number"},
                    "stageY": {"type": "number"},
                    "rotation": {"type": "number"},
                },
            },
            "transforms": {
                "type": "object",
                "required": ["type", "specList"],
                "properties": {
                    "type": {"type": "string"},
                    "specList": {"type": "array", "items": {"type": "object"}},
                },
            },
        },
    },
    "NextTiles": {
        "type": "object",
        "description": "What next-tile handed out (§9.1).",
        "required": ["resultType", "nTilesRequested", "nTilesFound", "results"],
        "properties": {
            "resultType": {
                "type": "string",
                "enum": [
                    NO_TILE_READY,
                    TILE_FOUND,
                    NO_TILE_READY_IN_SECTION,
                    SERVED_ALL_SECTION,
                    SERVED_ALL_ACQ,
                ],
            },
            "requestedAcqId": {"type": "integer", "description": "When acqid > 0."},
            "requestedSection": {
                "type": "integer",
                "description": "When section >= 0.",
            },
            "nTilesRequested": {"type": "integer"},
            "nTilesFound": {"type": "integer", "minimum": 0},
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["acqid", "section", "tilespec"],
                    "properties": {
                        "acqid": {"type": "integer"},
                        "section": {"type": "integer"},
                        "tilespec": ref("TileSpec"),
                    },
                },
            },
        },
    },
}

_STATE = {"type": "string", "minLength": 1, "maxLength": TILE_STATE}

PATHS: dict[str, Any] = {
    "/service/v1/next-tile": {
        "post": {
            "tags": _TAG,
            "summary": "Hand out tile specs",
            "description": "Moves up to ntiles tile links from oldState to"
            " newState and returns their tile specs (§9.1). The body is ignored.",
            "parameters": [
                query_param(
                    "oldState",
                    {"type": "string"},
                    "State the links have now (default READY).",
                    "READY",
                ),
                query_param(
                    "newState",
                    {"type": "string", "maxLength": TILE_STATE},
                    "State they get (default IN_PROGRESS); must differ from oldState.",
                    "IN_PROGRESS",
                ),
                query_param("acqid", UINT64, "Acquisition UID; 0 = any."),
                query_param("section", INT64, "Nominal section; negative = any."),
                query_param(
                    "ntiles",
                    {**INT32, "minimum": 1},
                    "How many tiles (default 1); more than 1000 count as 1000;"
                    " <= 0 is refused (Q23).",
                ),
                string_query("sample", "Sample name (only without acqid)."),
                string_query("project", "Project name (only without acqid)."),
                string_query("stack", "Stack name (only without acqid)."),
                string_query("mosaic-type", "Mosaic type (only without acqid)."),
                query_param("tile-from", TILE_TIME, "Stored at or after."),
                query_param("tile-to", TILE_TIME, "Stored before."),
                string_query("frame-type", "`stable` (default), `drift` or `all`."),
            ],
            "responses": {
                "200": {
                    "description": "Tiles handed out, or why none were.",
                    "content": json_content(ref("NextTiles")),
                },
                "400": bad_request(),
                "500": server_error(),
            },
        }
    },
    "/service/v1/tile-state": {
        "put": {
            "tags": _TAG,
            "summary": "Set the state of tiles",
            "description": "Sets the state of the stable tiles' links that the"
            " tile-spec ids name (§9.3, §14). Key names are matched in any"
            " letter case; other keys are ignored.",
            "requestBody": {
                "required": True,
                "content": json_content(
                    {
                        "type": "object",
                        "required": ["state", "tileSpecIds"],
                        "properties": {
                            "state": _STATE,
                            "tileSpecIds": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "string",
                                    "pattern": r"^\d+\.\d+\.\d+\.\d+\.\d+$",
                                    "description": "<acqUID>.<col>.<row>"
                                    ".<section>.<prevAcqCount>",
                                },
                            },
                        },
                    },
                    {
                        "state": "COMPLETE",
                        "tileSpecIds": [f"{EXAMPLE_UID}.008.080.5801.0"],
                    },
                ),
            },
            "responses": {
                "200": {
                    "description": "Links changed (those already in the state"
                    " are not counted).",
                    "content": json_content(
                        {
                            "type": "object",
                            "required": ["nUpdates"],
                            "properties": {
                                "nUpdates": {"type": "integer", "minimum": 0}
                            },
                        },
                        {"nUpdates": 1},
                    ),
                },
                "400": bad_request("A body that is not as described."),
                "500": server_error(),
            },
        }
    },
}
