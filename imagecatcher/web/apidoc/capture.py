"""The rig's routes of :mod:`imagecatcher.web.capture` (§1.3-§1.7, §14).

Every request body here is a ``multipart/form-data`` form, except a tile
sent raw to ``capture-image-content``.
"""

from __future__ import annotations

from typing import Any

from imagecatcher.web.apidoc.common import (
    EXAMPLE_TILE_NAME,
    EXAMPLE_UID,
    acqid_path,
    json_content,
    json_error,
    query_param,
    queue_headers,
    ref,
    server_error,
)

_TAG = ["Acquisition and capture"]
_FILE: dict[str, Any] = {"type": "string", "format": "binary"}

SCHEMAS: dict[str, Any] = {
    "CapturedTile": {
        "type": "object",
        "description": "A captured tile (§1.5 plus the storage keys of §14).",
        "required": [
            "tile_acq_id",
            "tile_temca",
            "tile_id",
            "tile_col",
            "tile_row",
            "tile_jfs_key",
            "tile_jfs_path",
            "tile_file_checksum",
        ],
        "properties": {
            "tile_acq_id": {"type": "integer", "example": EXAMPLE_UID},
            "tile_temca": {"type": "integer", "description": "0 when none."},
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
            "tile_jfs_key": {
                "type": "string",
                "description": '"" while the tile waits in the spool.',
            },
            "tile_jfs_path": {"type": "string"},
            "tile_file_checksum": {"type": "string", "description": "SHA-1 hex."},
        },
    },
    "AncillaryResults": {
        "type": "object",
        "description": "One entry per ancillary-file part, in order (§1.6).",
        "required": ["af_results"],
        "properties": {
            "af_results": {
                "type": "array",
                "items": {
                    "oneOf": [
                        {
                            "type": "object",
                            "required": ["id", "jfs_key", "jfs_path", "name", "path"],
                            "properties": {
                                "id": {"type": "integer"},
                                "jfs_key": {"type": "string"},
                                "jfs_path": {"type": "string"},
                                "name": {"type": "string"},
                                "path": {"type": "string"},
                            },
                        },
                        {
                            "type": "object",
                            "required": ["errormessage", "name"],
                            "properties": {
                                "errormessage": {"type": "string"},
                                "name": {"type": "string"},
                            },
                        },
                    ]
                },
            }
        },
    },
}


def _form(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return {"multipart/form-data": {"schema": schema}}


def _post(
    summary: str,
    description: str,
    params: list[dict[str, Any]],
    body: dict[str, Any],
    responses: dict[str, Any],
) -> dict[str, Any]:
    return {
        "tags": _TAG,
        "summary": summary,
        "description": description,
        "parameters": params,
        "requestBody": body,
        "responses": {**responses, "500": server_error()},
    }


_EMPTY = {"type": "object", "maxProperties": 0}
_ANCILLARY_BODY = {
    "required": False,
    "description": "Zero or more `ancillary-file` parts; a body that is not a"
    " form answers `{}`.",
    "content": _form({"ancillary-file": {"type": "array", "items": dict(_FILE)}}, []),
}
_ANCILLARY_RESPONSES = {
    "200": {
        "description": "Every file stored (`{}` when the body is not a form).",
        "content": json_content(
            {"anyOf": [ref("AncillaryResults"), _EMPTY]},
        ),
    },
    "400": {
        "description": "A malformed acqid, an unknown acquisition, a malformed"
        " form, or a file that failed (then af_results tells which).",
        "content": json_content({"anyOf": [ref("AncillaryResults"), ref("Error")]}),
    },
}


def _tile_body() -> dict[str, Any]:
    return {
        # A raw tile may be empty (§1.5): no body is a tile of 0 bytes.
        "required": False,
        "description": "The tile: a raw body (any content type but a form;"
        " name in `tile-filename`; it may be empty), or a form.",
        "content": {
            "application/octet-stream": {"schema": dict(_FILE)},
            **_form(
                {
                    "tile-file": {
                        **_FILE,
                        "description": "The tile's bytes; its file name names"
                        " the tile unless tile-filename does.",
                    },
                    "tile-filename": {
                        "type": "string",
                        "description": "Tile file name (§2).",
                        "example": EXAMPLE_TILE_NAME,
                    },
                    "checksum": {
                        **_FILE,
                        "description": "The 16 raw bytes of the tile's MD5 (§14).",
                    },
                    "checksum-str": {
                        "type": "string",
                        "description": "The tile's MD5 in hex (§14).",
                    },
                },
                ["tile-file"],
            ),
        },
    }


def _capture(method: str) -> dict[str, Any]:
    return _post(
        "Capture one tile",
        "Stores the tile's metadata and content (or queues the content, §4)."
        " Any checksum given is verified: a mismatch is 400 and nothing is"
        " stored (§14).",
        [
            acqid_path(),
            query_param(
                "tile-filename",
                {"type": "string"},
                "Raw body only (required there): the tile file name (§2);"
                " the stored name is its base name (§14).",
                EXAMPLE_TILE_NAME,
            ),
            query_param(
                "checksum",
                {"type": "string"},
                "Raw body only: the tile's MD5 in hex (§14).",
            ),
            {
                "name": "Content-MD5",
                "in": "header",
                "required": False,
                "description": "Base64 of the tile's MD5 (RFC 1864).",
                "schema": {"type": "string"},
            },
        ],
        _tile_body(),
        {
            "200": {
                "description": "Stored, or queued for the content store.",
                "headers": queue_headers(),
                "content": json_content(ref("CapturedTile")),
            },
            "400": json_error(
                "A malformed acqid, tile name, checksum or form; or a checksum"
                " that does not match."
            ),
            "404": json_error("No such acquisition (§14)."),
            "413": json_error("The tile is larger than MAX_TILE_BYTES."),
            "507": json_error("The spool or file-store disk is full."),
        },
    ) | {"operationId": f"capture_{method}"}


PATHS: dict[str, Any] = {
    "/service/v1/start-acquisition": {
        "post": _post(
            "Register an acquisition",
            "Creates or rewrites the acquisition and its mosaic from its INI"
            " log (§1.3, §7.1); the UID comes from the part's file name.",
            [],
            {
                "required": True,
                "content": _form(
                    {
                        "acq-inilog": {
                            **_FILE,
                            "description": "The acquisition log, named"
                            " `<uid>_logfile.ini`.",
                        }
                    },
                    ["acq-inilog"],
                ),
            },
            {
                "200": {
                    "description": "Created or updated.",
                    "content": json_content(
                        {
                            "type": "object",
                            "required": ["uid"],
                            "properties": {"uid": {"type": "integer"}},
                        },
                        {"uid": EXAMPLE_UID},
                    ),
                },
                "400": json_error("Not a form, no log, or a log that is refused."),
            },
        )
    },
    "/service/v1/create-rois/{acqid}": {
        "post": _post(
            "Import ROIs",
            "Stores the ROI spec and ROI tiles, creates the ROIs, tiles and"
            " tile links (state CREATE, or READY for stored tiles; §1.4, Q21).",
            [acqid_path()],
            {
                "required": True,
                "content": _form(
                    {
                        "roi-spec": {**_FILE, "description": "ROI spec INI (§7.2)."},
                        "roi-tiles": {**_FILE, "description": "ROI tiles CSV (§7.3)."},
                    },
                    [],
                ),
            },
            {
                "200": {
                    "description": "Imported.",
                    "content": json_content(_EMPTY, {}),
                },
                "400": json_error(
                    "A malformed acqid or form, an unknown acquisition, or"
                    " ROI files that are refused."
                ),
            },
        )
    },
    "/service/v1/capture-image-content/{acqid}": {
        "put": _capture("put"),
        "post": _capture("post"),
    },
    "/service/v1/end-acquisition/{acqid}": {
        "post": _post(
            "End an acquisition",
            "Stores the ancillary files, then marks the acquisition complete (§1.6).",
            [acqid_path()],
            _ANCILLARY_BODY,
            _ANCILLARY_RESPONSES,
        )
    },
    "/service/v1/store-ancillary-files/{acqid}": {
        "post": _post(
            "Store ancillary files",
            "Stores the ancillary files; ROI files among them are imported as"
            " by create-rois (§1.7).",
            [acqid_path()],
            _ANCILLARY_BODY,
            _ANCILLARY_RESPONSES,
        )
    },
}
