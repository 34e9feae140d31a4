"""The OpenAPI 3.1 description of the HTTP API, assembled from fragments.

Each fragment is a module of this package named in :data:`FRAGMENTS`. It
defines ``PATHS`` (OpenAPI path items keyed by their path template, relative
to the server root, e.g. ``"/service/v1/acquisition/{acqid}"``) and may define
``SCHEMAS`` (added to ``components.schemas``), ``SECURITY_SCHEMES`` (added to
``components.securitySchemes``) and ``amend(document)``, called once every
fragment is in, for changes that cut across resources.
"""

from __future__ import annotations

import copy
from importlib import import_module
from typing import Any

#: Fragment modules, in the order their paths appear in the document.
FRAGMENTS: tuple[str, ...] = (
    "common",
    "operations",
    "capture",
    "queries",
    "content",
    "render",
    "calibrations",
    "apidocs",
    "metrics",
    "ui",
    "access",
)


def build_document(version: str = "0") -> dict[str, Any]:
    """The whole OpenAPI document, a fresh copy on every call."""
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "imagecatcher", "version": version},
        "paths": {},
        "components": {"schemas": {}, "securitySchemes": {}},
    }
    modules = [import_module(f"{__name__}.{name}") for name in FRAGMENTS]
    for module in modules:
        document["paths"].update(copy.deepcopy(module.PATHS))
        document["components"]["schemas"].update(
            copy.deepcopy(getattr(module, "SCHEMAS", {}))
        )
        document["components"]["securitySchemes"].update(
            copy.deepcopy(getattr(module, "SECURITY_SCHEMES", {}))
        )
    for module in modules:
        amend = getattr(module, "amend", None)
        if amend is not None:
            amend(document)
    return document
