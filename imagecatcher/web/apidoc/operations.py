"""The operational routes of :mod:`imagecatcher.web.operations` (§1.2)."""

from __future__ import annotations

from typing import Any

from imagecatcher.web.apidoc.common import json_content, json_error, queue_headers

_TAG = ["Operations"]

PATHS: dict[str, Any] = {
    "/service/v1/ping": {
        "get": {
            "tags": _TAG,
            "summary": "Health check",
            "description": "A database round trip, then what the daemon knows"
            " (a full disk, a store found down), then a store probe with a"
            " 1.5 s deadline (§1.2, Q27).",
            "responses": {
                "200": {
                    "description": "Healthy: an empty body and the queue colours.",
                    "headers": queue_headers(),
                },
                "500": {
                    "description": "Unhealthy: what failed, in plain text; no"
                    " queue headers.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
            },
        }
    },
    "/service/v1/spool": {
        "get": {
            "tags": _TAG,
            "summary": "The spool and the store's health",
            "description": "Tiles waiting in the spool for the content store,"
            " free disk space, the store's health and damaged spool entries.",
            "responses": {
                "200": {
                    "description": "The report.",
                    "content": json_content(
                        {
                            "type": "object",
                            "required": [
                                "spool_dir",
                                "entries",
                                "bytes",
                                "oldest_entry_age_s",
                                "free_bytes",
                                "ack_when",
                                "store",
                                "refusing",
                                "damaged",
                            ],
                            "properties": {
                                "spool_dir": {"type": "string"},
                                "entries": {"type": "integer", "minimum": 0},
                                "bytes": {"type": "integer", "minimum": 0},
                                "oldest_entry_age_s": {"type": "number"},
                                "free_bytes": {
                                    "type": "object",
                                    "description": "Free bytes per directory.",
                                    "additionalProperties": {"type": "integer"},
                                },
                                "ack_when": {
                                    "type": "string",
                                    "enum": ["spooled", "stored"],
                                },
                                "store": {
                                    "type": "object",
                                    "required": ["up", "down_for_s", "reason"],
                                    "properties": {
                                        "up": {"type": "boolean"},
                                        "down_for_s": {"type": ["number", "null"]},
                                        "reason": {"type": "string"},
                                    },
                                },
                                "refusing": {
                                    "type": "string",
                                    "description": 'Why tiles are refused now, or "".',
                                },
                                "damaged": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["tile_id", "uid", "name"],
                                        "properties": {
                                            "tile_id": {"type": "integer"},
                                            "uid": {"type": "integer"},
                                            "name": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        }
                    ),
                },
                "404": json_error("The daemon runs without a capture pipeline."),
            },
        }
    },
}
