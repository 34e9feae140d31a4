"""The calibration routes of :mod:`imagecatcher.web.calibrations` (§1.19-§1.21, §7.4)."""

from __future__ import annotations

from typing import Any

from imagecatcher.web.apidoc.common import (
    bad_request,
    json_content,
    paging_params,
    path_param,
    ref,
    server_error,
)

_TAG = ["Calibrations"]
_NAME = "141028offset_temca2_camera0"

SCHEMAS: dict[str, Any] = {
    "Calibration": {
        "type": "object",
        "description": "A stored calibration (§1.19); content_errormessage"
        " replaces content when the stored JSON does not parse.",
        "required": ["id", "name", "calibration_date"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string", "example": _NAME},
            "calibration_date": {
                "type": "string",
                "description": 'yyyyMMdd, "" when unknown.',
                "example": "20141028",
            },
            "content": {"description": "The calibration JSON as imported."},
            "content_errormessage": {"type": "string"},
        },
    },
    "Calibrations": {
        "type": "object",
        "required": ["calibrations", "length"],
        "properties": {
            "calibrations": {"type": "array", "items": ref("Calibration")},
            "length": {"type": "integer", "minimum": 0},
        },
    },
}

_LIST = {
    "description": "The calibrations; length is the number returned.",
    "content": json_content(ref("Calibrations")),
}

PATHS: dict[str, Any] = {
    "/service/v1/calibrations": {
        "post": {
            "tags": _TAG,
            "summary": "Import calibrations",
            "description": "Imports an array of calibration objects (§7.4, §7.5);"
            " errors are reported (Q25).",
            "requestBody": {
                "required": True,
                "content": json_content(
                    {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["id", "metadata"],
                            "properties": {
                                "id": {"type": "string", "minLength": 1},
                                "type": {"type": "string"},
                                "metadata": {
                                    "type": "object",
                                    "description": "calibration_data (yyMMdd),"
                                    " group, temca, camera.",
                                    "properties": {
                                        "calibration_data": {
                                            "type": "string",
                                            "example": "141028",
                                        },
                                        "group": {"type": "string"},
                                        "temca": {"type": "string"},
                                        "camera": {"type": "string"},
                                    },
                                },
                                "specList": {"type": "array"},
                            },
                        },
                    },
                    [
                        {
                            "id": _NAME,
                            "type": "list",
                            "metadata": {
                                "calibration_data": "141028",
                                "group": "lens correction",
                                "temca": "2",
                                "camera": "0",
                            },
                            "specList": [],
                        }
                    ],
                ),
            },
            "responses": {
                "200": _LIST,
                "400": bad_request("A body that does not parse as calibrations."),
                "500": server_error(),
            },
        },
        "get": {
            "tags": _TAG,
            "summary": "List calibrations",
            "description": "Stored calibrations, in storage order (§1.20).",
            "parameters": paging_params(),
            "responses": {
                "200": _LIST,
                "400": bad_request(),
                "500": server_error(),
            },
        },
    },
    "/service/v1/calibration/name/{name}": {
        "get": {
            "tags": _TAG,
            "summary": "One calibration by name",
            "description": "The newest calibration with exactly that name (§1.21).",
            "parameters": [
                path_param("name", {"type": "string"}, "Calibration name.", _NAME)
            ],
            "responses": {
                "200": {
                    "description": "The calibration.",
                    "content": json_content(ref("Calibration")),
                },
                "404": {
                    "description": "No calibration by that name: `{}` (§1.21).",
                    "content": json_content({"type": "object", "maxProperties": 0}),
                },
                "500": server_error(),
            },
        }
    },
}
