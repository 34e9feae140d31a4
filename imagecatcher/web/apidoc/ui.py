"""OpenAPI fragment: the routes behind the live pages (:mod:`imagecatcher.web.mosaicview`).

The HTML pages themselves (``/``, ``/ui/``, ``/ui/acquisition/{acqid}``) and
their files are outside the API root; they are described too (as HTML), so
that every route the daemon serves is in the document.
"""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ERROR}},
    }


_ACQID = {
    "name": "acqid",
    "in": "path",
    "required": True,
    "description": "Acquisition UID.",
    "schema": {"type": "integer", "minimum": 0},
}
_TILEID = {
    "name": "tileid",
    "in": "path",
    "required": True,
    "description": "Tile id.",
    "schema": {"type": "integer"},
}
_PNG = {"content": {"image/png": {"schema": {"type": "string"}}}}
_TIME = {"type": ["string", "null"], "format": "date-time"}

SCHEMAS: dict[str, Any] = {
    "LiveAcquisition": {
        "type": "object",
        "description": "One acquisition of the overview.",
        "required": [
            "acqid",
            "sample",
            "started",
            "completed",
            "ended",
            "cameras",
            "stored",
            "expected",
            "expected_from",
            "spooled",
            "failed",
            "tiles_per_second",
            "last_received",
        ],
        "properties": {
            "acqid": {"type": "integer"},
            "sample": {"type": "string"},
            "started": _TIME,
            "completed": _TIME,
            "ended": {"type": "boolean"},
            "cameras": {"type": "integer"},
            "stored": {"type": "integer", "description": "Stable tiles in the store."},
            "expected": {
                "type": "integer",
                "description": "ROI tiles of create-rois, else the whole grid.",
            },
            "expected_from": {"enum": ["rois", "grid"]},
            "spooled": {
                "type": "integer",
                "description": "Tiles accepted and waiting in a spool for the store.",
            },
            "failed": {
                "type": "integer",
                "description": "Tiles with an ROI link in state FAILED.",
            },
            "tiles_per_second": {
                "type": "number",
                "description": "Tiles accepted over the last 60 seconds, per second.",
            },
            "last_received": _TIME,
        },
    },
    "LiveOverview": {
        "type": "object",
        "required": ["total", "offset", "length", "now", "acquisitions"],
        "properties": {
            "total": {"type": "integer"},
            "offset": {"type": "integer"},
            "length": {"type": "integer"},
            "now": {"type": "string", "format": "date-time"},
            "acquisitions": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/LiveAcquisition"},
            },
        },
    },
    "LiveMosaic": {
        "type": "object",
        "description": (
            "An acquisition's mosaic. ``tiles`` is flat: six integers per stable"
            " tile, named by ``tile_fields`` (id, col, row, camera or -1, index"
            " into ``states``, index into ``sections`` or -1 outside any ROI)."
        ),
        "required": [
            "acqid",
            "sample",
            "cameras",
            "cols",
            "rows",
            "started",
            "completed",
            "now",
            "has_rois",
            "states",
            "sections",
            "counts",
            "tiles_total",
            "outside_roi",
            "rate",
            "last",
            "tile_fields",
            "tiles",
        ],
        "properties": {
            "acqid": {"type": "integer"},
            "sample": {"type": "string"},
            "cameras": {"type": "integer"},
            "cols": {"type": "integer"},
            "rows": {"type": "integer"},
            "started": _TIME,
            "completed": _TIME,
            "now": {"type": "string", "format": "date-time"},
            "has_rois": {"type": "boolean"},
            "states": {
                "type": "array",
                "items": {"type": "string"},
                "description": (
                    "expected, spooled, stored, IN_PROGRESS, COMPLETE, FAILED,"
                    " then any other render state present."
                ),
            },
            "sections": {"type": "array", "items": {"type": "integer"}},
            "counts": {
                "type": "object",
                "additionalProperties": {"type": "integer"},
            },
            "tiles_total": {"type": "integer"},
            "outside_roi": {"type": "integer"},
            "rate": {
                "type": "object",
                "required": ["seconds", "tiles_per_second", "per_minute"],
                "properties": {
                    "seconds": {"type": "integer"},
                    "tiles_per_second": {"type": "number"},
                    "per_minute": {
                        "type": "array",
                        "items": {"type": "integer"},
                        "description": "Tiles accepted per minute, oldest first.",
                    },
                },
            },
            "last": {
                "oneOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "required": ["id", "col", "row", "camera", "received"],
                        "properties": {
                            "id": {"type": "integer"},
                            "col": {"type": "integer"},
                            "row": {"type": "integer"},
                            "camera": {"type": ["integer", "null"]},
                            "received": _TIME,
                        },
                    },
                ]
            },
            "tile_fields": {"type": "array", "items": {"type": "string"}},
            "tiles": {"type": "array", "items": {"type": "integer"}},
        },
    },
}

PATHS: dict[str, Any] = {
    "/service/v1/live/acquisitions": {
        "get": {
            "summary": "Recent acquisitions first, with tile counts (overview page)",
            "operationId": "liveAcquisitions",
            "tags": ["live"],
            "parameters": [
                {
                    "name": "offset",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 0, "default": 0},
                },
                {
                    "name": "length",
                    "in": "query",
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 200,
                        "default": 25,
                    },
                },
            ],
            "responses": {
                "200": {
                    "description": "A page of acquisitions.",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/LiveOverview"}
                        }
                    },
                },
                "400": _error("Bad offset or length."),
            },
        }
    },
    "/service/v1/acquisition/{acqid}/live": {
        "get": {
            "summary": "An acquisition's mosaic and tile states (acquisition page)",
            "operationId": "liveMosaic",
            "tags": ["live"],
            "parameters": [_ACQID],
            "responses": {
                "200": {
                    "description": "The mosaic, from one query.",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/LiveMosaic"}
                        }
                    },
                },
                "400": _error("Bad acquisition id."),
                "404": _error("No such acquisition."),
            },
        }
    },
    "/service/v1/tile/{tileid}/preview": {
        "get": {
            "summary": "A tile downsampled to a PNG",
            "operationId": "tilePreview",
            "tags": ["live"],
            "parameters": [
                _TILEID,
                {
                    "name": "size",
                    "in": "query",
                    "description": "Pixels of the preview's longer side.",
                    "schema": {
                        "type": "integer",
                        "minimum": 8,
                        "maximum": 1024,
                        "default": 256,
                    },
                },
            ],
            "responses": {
                "200": {"description": "The preview.", **_PNG},
                "400": _error("Bad tile id or size."),
                "404": _error("No such tile, or no content stored yet."),
                "415": _error("The content is not an image."),
                "500": _error("The store failed."),
            },
        }
    },
    "/service/v1/acquisition/{acqid}/mosaic.png": {
        "get": {
            "summary": "The mosaic at low resolution, tile previews placed by col/row",
            "operationId": "mosaicImage",
            "tags": ["live"],
            "parameters": [
                _ACQID,
                {
                    "name": "camera",
                    "in": "query",
                    "description": "Only this camera's tiles (default: all).",
                    "schema": {"type": "integer"},
                },
                {
                    "name": "scale",
                    "in": "query",
                    "description": "Pixels per tile.",
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 64,
                        "default": 8,
                    },
                },
            ],
            "responses": {
                "200": {
                    "description": (
                        "The image; tiles not rendered yet are grey and counted"
                        " in the X-Mosaic-Pending header."
                    ),
                    "headers": {
                        "X-Mosaic-Pending": {"schema": {"type": "integer"}},
                    },
                    **_PNG,
                },
                "400": _error("Bad parameter, or the image would be too large."),
                "404": _error("No such acquisition."),
            },
        }
    },
    **{
        path: {
            "get": {
                "tags": ["live pages"],
                "summary": summary,
                "operationId": operation,
                "parameters": parameters,
                "responses": {
                    "200": {
                        "description": "The page (HTML); its script fetches the rest.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        }
        for path, summary, operation, parameters in (
            ("/", "The overview page", "pageRoot", []),
            ("/ui/", "The overview page", "pageOverview", []),
            ("/ui", "The overview page", "pageOverviewBare", []),
            (
                "/ui/acquisition/{acqid}",
                "An acquisition's live mosaic page",
                "pageAcquisition",
                [{**_ACQID, "schema": {"type": "string"}}],
            ),
        )
    },
    "/ui/static/{name}": {
        "get": {
            "tags": ["live pages"],
            "summary": "A stylesheet, script or image of the pages",
            "operationId": "pageStatic",
            "parameters": [
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                }
            ],
            "responses": {
                "200": {
                    "description": "The file.",
                    "content": {"*/*": {"schema": {"type": "string"}}},
                },
                "404": {
                    "description": "No such file.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
            },
        }
    },
}
