"""The content routes of :mod:`imagecatcher.web.content` (§1.14, §1.15, §1.18).

The ``.../content`` routes answer errors in plain text (§1.0); ``verify-tile``
is a JSON route.
"""

from __future__ import annotations

from typing import Any

from imagecatcher.web.apidoc.common import (
    EXAMPLE_UID,
    INT32,
    acqid_path,
    json_content,
    json_error,
    path_param,
    plain_error,
    query_param,
    ref,
    server_error,
)
from imagecatcher.web.apidoc.queries import tileid_path

_TAG = ["Content"]

_BYTES = {"image/tiff": {"schema": {"type": "string", "format": "binary"}}}


def _content_get(
    summary: str, description: str, params: list[dict[str, Any]], conflict: bool
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {
            "description": "The stored bytes, whatever their real format.",
            "headers": {
                "ETag": {
                    "description": "The SHA-1 of the content, quoted.",
                    "schema": {"type": "string"},
                },
                "Accept-Ranges": {"schema": {"type": "string", "enum": ["bytes"]}},
            },
            "content": _BYTES,
        },
        "206": {
            "description": "The single byte range asked for.",
            "headers": {
                "Content-Range": {
                    "required": True,
                    "schema": {"type": "string"},
                    "example": "bytes 10-19/5557452",
                }
            },
            "content": _BYTES,
        },
        "304": {"description": "If-None-Match named the current ETag."},
        "400": plain_error("A malformed parameter."),
        "404": plain_error("No such tile, or its content is not stored yet."),
    }
    if conflict:
        responses["409"] = plain_error("More than one tile matches.")
    responses["416"] = plain_error("The range starts past the end of the content.")
    responses["500"] = plain_error("The database or the content store failed.")
    return {
        "get": {
            "tags": _TAG,
            "summary": summary,
            "description": description,
            "parameters": [
                *params,
                {
                    "name": "Range",
                    "in": "header",
                    "required": False,
                    "description": "One `bytes=` range; others are ignored.",
                    "schema": {"type": "string"},
                    "example": "bytes=0-1023",
                },
                {
                    "name": "If-None-Match",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                },
            ],
            "responses": responses,
        }
    }


_VERIFIED: dict[str, Any] = {
    "allOf": [
        ref("TileInfo"),
        {
            "type": "object",
            "properties": {
                "calculated_md5": {"type": "string"},
                "calculated_sha1": {"type": "string"},
                "calculatedChecksum": {
                    "type": "string",
                    "description": "Hex digest of the algorithm asked for.",
                },
                "errormessage": {"type": "string"},
            },
        },
    ]
}

PATHS: dict[str, Any] = {
    "/service/v1/acquisition/{acqid}/tile/{col}/{row}/content": _content_get(
        "A stable tile's bytes",
        "The bytes of the tile that the position lookup finds (§1.14).",
        [
            acqid_path("Acquisition UID (> 0)."),
            path_param("col", INT32, "Mosaic column (>= 0).", 8),
            path_param("row", INT32, "Mosaic row (>= 0).", 80),
        ],
        conflict=True,
    ),
    "/service/v1/tile/{tileid}/content": _content_get(
        "A tile's bytes by id",
        "The bytes of a tile by id (§1.18); 404 when unknown or not stored (Q7).",
        [tileid_path()],
        conflict=False,
    ),
    "/service/v1/verify-tile/{acqid}/tile/{tileid}": {
        "get": {
            "tags": _TAG,
            "summary": "Re-read a tile and check its checksums",
            "description": "Reads the stored bytes back and compares their MD5 and"
            " SHA-1 with the stored checksums (§1.15, Q6 fixed).",
            "parameters": [
                path_param(
                    "acqid",
                    {"type": "string"},
                    "Not used (any text, §1.15).",
                    EXAMPLE_UID,
                ),
                tileid_path(),
                query_param(
                    "checksum-algorithm",
                    {"type": "string"},
                    "`SHA1` (exactly) reports the SHA-1 as calculatedChecksum;"
                    " anything else the MD5.",
                ),
            ],
            "responses": {
                "200": {
                    "description": "Both checksums match.",
                    "content": json_content(_VERIFIED),
                },
                "400": json_error("A malformed tile id."),
                "404": json_error("No tile with that id."),
                "417": {
                    "description": "Not stored, unreadable, or a checksum differs:"
                    " TileInfo with an errormessage.",
                    "content": json_content(
                        {"allOf": [_VERIFIED, {"required": ["errormessage"]}]}
                    ),
                },
                "500": server_error(),
            },
        }
    },
}
