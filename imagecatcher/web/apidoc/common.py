"""What the fragments share: the error shape, parameters, headers, TileInfo.

Facts come from :mod:`imagecatcher.web.common` (integer ranges, booleans,
paging), :mod:`imagecatcher.web.request` (queue-status headers) and
:mod:`imagecatcher.views` (TileInfo and the grouped tile list).  The helpers
return fresh dicts, so a fragment may change its copy.
"""

from __future__ import annotations

from typing import Any

#: Examples: the acquisition and tile of a rig's first tile (production shape).
EXAMPLE_UID = 161105213017
EXAMPLE_TILE_NAME = "col0008_row0080_cam0.tif"

UINT64: dict[str, Any] = {
    "type": "integer",
    "format": "uint64",
    "minimum": 0,
    "maximum": 2**64 - 1,
}
INT64: dict[str, Any] = {
    "type": "integer",
    "format": "int64",
    "minimum": -(2**63),
    "maximum": 2**63 - 1,
}
INT32: dict[str, Any] = {
    "type": "integer",
    "format": "int32",
    "minimum": -(2**31),
    "maximum": 2**31 - 1,
}
#: Booleans as :func:`imagecatcher.web.common.parse_bool` reads them.
BOOLEAN: dict[str, Any] = {
    "type": "string",
    "enum": [
        *("1", "t", "T", "TRUE", "true", "True"),
        *("0", "f", "F", "FALSE", "false", "False"),
    ],
}
#: ``acq-from``/``acq-to``/``has-acq-from``/``has-acq-to`` (§8.2), read as UTC (§14).
ACQ_TIME: dict[str, Any] = {
    "type": "string",
    # Empty is allowed: present but empty counts as absent (§1.0).
    "pattern": r"^([0-9]{8}([0-9]{2}([0-9]{2}([0-9]{2})?)?)?)?$",
    "description": "yyyyMMdd[HH[mm[ss]]], UTC.",
    "example": "20150304",
}
#: ``tile-from``/``tile-to`` (§8.2), read as UTC (§14).
TILE_TIME: dict[str, Any] = {
    "type": "string",
    "pattern": r"^([0-9]{14}(\.[0-9]*)?)?$",
    "description": "yyyyMMddHHmmss[.fraction], UTC.",
    "example": "20160707102250.000000",
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "A JSON error (§1.0); the message is for people, not programs.",
        "required": ["errormessage"],
        "properties": {"errormessage": {"type": "string"}},
    },
    "TileInfo": {
        "type": "object",
        "description": "A tile's metadata (§1.10); tile_temca is filled (Q8).",
        "required": [
            "tile_acq_id",
            "tile_temca",
            "tile_id",
            "tile_col",
            "tile_row",
            "tile_jfs_path",
            "tile_jfs_key",
            "tile_file_checksum",
            "image_url",
            "tile_acquired",
            "state",
            "section",
        ],
        "properties": {
            "tile_acq_id": {"type": "integer", "example": EXAMPLE_UID},
            "tile_temca": {"type": "integer"},
            "tile_id": {"type": "integer"},
            "tile_col": {"type": "integer"},
            "tile_row": {"type": "integer"},
            "tile_camera": {
                "type": "integer",
                "description": "Only when the tile has a camera configuration.",
            },
            "tile_frame": {
                "type": "integer",
                "description": "-1 stable, >= 0 drift; only with tile_camera.",
            },
            "tile_jfs_path": {"type": "string", "description": '"" until stored.'},
            "tile_jfs_key": {"type": "string", "description": '"" until stored.'},
            "tile_file_checksum": {
                "type": "string",
                "description": 'SHA-1 hex of the content (§14), "" when unknown.',
            },
            "image_url": {"type": "string"},
            "tile_acquired": {
                "type": ["string", "null"],
                "description": "When the content was stored: yyyyMMddHHmmss.SSSSSS.",
            },
            "state": {"type": "string", "description": '"" when in no ROI.'},
            "section": {"type": "integer", "description": "0 when in no ROI."},
        },
    },
    "GroupedTiles": {
        "type": "object",
        "description": "Tiles grouped per acquisition (§1.11).",
        "required": [
            "acquisitions",
            "n_returned_acqs",
            "n_returned_tiles_for_all_acqs",
        ],
        "properties": {
            "acquisitions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [
                        "acq_id",
                        "acq_timestamp",
                        "acq_completed",
                        "n_tiles",
                        "tiles",
                    ],
                    "properties": {
                        "acq_id": {"type": "integer"},
                        "acq_timestamp": {"type": "string"},
                        "acq_completed": {"type": ["string", "null"]},
                        "n_tiles": {"type": "integer", "minimum": 0},
                        "tiles": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/TileInfo"},
                        },
                    },
                },
            },
            "n_returned_acqs": {"type": "integer", "minimum": 0},
            "n_returned_tiles_for_all_acqs": {"type": "integer", "minimum": 0},
        },
    },
}

#: The hyphenated queue-status headers, always sent (§1.0; the spaced names
#: ``System Status``... go out too, but are not HTTP tokens, Q2).
_COLOUR = {"type": "string", "enum": ["GREEN", "YELLOW", "RED"]}


def queue_headers() -> dict[str, Any]:
    """The queue-status headers of ping and capture (§1.0, §4.5; Q1 fixed)."""
    return {
        "System-Status": {
            "description": "The worse of the two queue colours. Also sent as"
            " `System Status` (a name with a space, for old clients).",
            "required": True,
            "schema": dict(_COLOUR),
        },
        "Tile-Queue-Status": {
            "description": "The tile queue's colour (also `Tile Queue Status`).",
            "required": True,
            "schema": dict(_COLOUR),
        },
        "Content-Queue-Status": {
            "description": "The content-store queue's colour (also"
            " `Content Queue Status`).",
            "required": True,
            "schema": dict(_COLOUR),
        },
    }


def ref(name: str) -> dict[str, Any]:
    """A reference to a schema of ``components.schemas``."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    """An ``application/json`` content map."""
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"application/json": media}


def json_error(description: str) -> dict[str, Any]:
    """A response with the JSON error body."""
    return {"description": description, "content": json_content(ref("Error"))}


def plain_error(description: str) -> dict[str, Any]:
    """A response with a plain-text error (the message and a newline)."""
    return {
        "description": description,
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }


def path_param(
    name: str, schema: dict[str, Any], description: str, example: Any = None
) -> dict[str, Any]:
    """A path parameter.  Numbers are parsed by the route, so a malformed
    one is a 400 with the parameter's name, not a 404 (§1.0)."""
    param: dict[str, Any] = {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": dict(schema),
    }
    if example is not None:
        param["example"] = example
    return param


def query_param(
    name: str, schema: dict[str, Any], description: str, example: Any = None
) -> dict[str, Any]:
    """An optional query parameter; present but empty counts as absent (§1.0)."""
    param: dict[str, Any] = {
        "name": name,
        "in": "query",
        "required": False,
        "allowEmptyValue": True,
        "description": description,
        "schema": dict(schema),
    }
    if example is not None:
        param["example"] = example
    return param


def string_query(name: str, description: str) -> dict[str, Any]:
    """An optional string filter."""
    return query_param(name, {"type": "string"}, description)


def acqid_path(description: str = "Acquisition UID.") -> dict[str, Any]:
    """``{acqid}``: an unsigned 64-bit acquisition UID."""
    return path_param("acqid", UINT64, description, EXAMPLE_UID)


def paging_params() -> list[dict[str, Any]]:
    """``offset`` and ``length`` (§8.1): at most 1000 rows per response."""
    return [
        query_param("offset", INT64, "Rows to skip (default 0)."),
        query_param(
            "length",
            INT32,
            "Rows to return; <= 0 or absent means the cap, 1000 (§8.1).",
        ),
    ]


def bad_request(description: str = "A malformed parameter.") -> dict[str, Any]:
    """The 400 of a JSON route."""
    return json_error(description)


def server_error() -> dict[str, Any]:
    """The 500 every JSON route may answer (the database or store failing)."""
    return json_error("The database or the content store failed.")


#: No routes of its own: the shared schemas only.
PATHS: dict[str, Any] = {}

_DESCRIPTION = """\
Captures electron-microscope image tiles, and answers queries about them.

JSON routes answer errors as `{"errormessage": "..."}` (schema Error); the
`.../content` routes and `ping` answer errors in plain text. Integers in
paths and queries are parsed by the routes: a malformed one is a 400 naming
the parameter. A query parameter present but empty counts as absent. Times
in queries are UTC.
"""


def amend(document: dict[str, Any]) -> None:
    """The document's description and the order of its tags."""
    document["info"]["description"] = _DESCRIPTION
    document["tags"] = [
        {"name": name}
        for name in (
            "Operations",
            "Acquisition and capture",
            "Queries",
            "Content",
            "Rendering",
            "Calibrations",
            "API description",
        )
    ]
