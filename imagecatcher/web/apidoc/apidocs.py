"""The description's own routes, :mod:`imagecatcher.web.apidocs`."""

from __future__ import annotations

from typing import Any

from imagecatcher.web.apidoc.common import path_param, plain_error

_TAG = ["API description"]
_ASSETS = ["swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "docs.js"]

PATHS: dict[str, Any] = {
    "/service/v1/openapi.json": {
        "get": {
            "tags": _TAG,
            "summary": "This document",
            "description": "The OpenAPI 3.1 description of every route.",
            "responses": {
                "200": {
                    "description": "The document.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["openapi", "info", "paths"],
                            }
                        }
                    },
                }
            },
        }
    },
    "/service/v1/docs": {
        "get": {
            "tags": _TAG,
            "summary": "The API reference page",
            "description": "Swagger UI over openapi.json, served by the daemon"
            " itself (nothing is fetched from elsewhere).",
            "responses": {
                "200": {
                    "description": "The page.",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                }
            },
        }
    },
    "/service/v1/docs/{name}": {
        "get": {
            "tags": _TAG,
            "summary": "A file of the reference page",
            "parameters": [
                path_param(
                    "name",
                    {"type": "string"},
                    "One of: " + ", ".join(_ASSETS) + ".",
                    "docs.js",
                )
            ],
            "responses": {
                "200": {
                    "description": "The file.",
                    "content": {
                        "text/css": {"schema": {"type": "string"}},
                        "text/javascript": {"schema": {"type": "string"}},
                        "image/png": {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                "404": plain_error("No such file."),
            },
        }
    },
}
