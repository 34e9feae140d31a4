"""The API's own description: ``openapi.json`` and the ``docs`` reference page.

The document is assembled once, from the fragments of
:mod:`imagecatcher.web.apidoc`.  The page is Swagger UI, whose files come
from the ``swagger-ui-py`` package installed beside ours, with our own page
and start-up script (package data of :mod:`imagecatcher.web.apidoc`): the
capture host is often offline, so nothing is fetched from elsewhere.  Files
are read in a worker thread the first time they are asked for, then kept.
"""

from __future__ import annotations

import importlib.util
import json
from importlib import metadata
from pathlib import Path
from typing import Any

from klein import Klein
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from twisted.web.iweb import IRequest

from imagecatcher.web.apidoc import build_document
from imagecatcher.web.common import plain_response, sized

_OURS = Path(__file__).resolve().parent / "apidoc"


def _swagger_ui_static() -> Path:
    """Where swagger-ui-py keeps Swagger UI (found without importing it)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


#: The files of the page: name under ``docs/`` -> (directory, content type).
_ASSETS: dict[str, tuple[str, bytes]] = {
    "swagger-ui.css": ("swagger", b"text/css; charset=utf-8"),
    "swagger-ui-bundle.js": ("swagger", b"text/javascript; charset=utf-8"),
    "favicon-32x32.png": ("swagger", b"image/png"),
    "docs.js": ("ours", b"text/javascript; charset=utf-8"),
}


def api_version() -> str:
    """The installed package's version (the document's ``info.version``)."""
    try:
        return metadata.version("imagecatcher")
    except metadata.PackageNotFoundError:
        return "0"


def asset_names() -> tuple[str, ...]:
    """The file names served under ``docs/``."""
    return tuple(_ASSETS)


class ApiDocs:
    """Serves the OpenAPI document and the reference page built on it."""

    router = Klein()

    def __init__(self, reactor: Any, threads: ThreadPool | None) -> None:
        document = build_document(api_version())
        self._document = json.dumps(document).encode("utf-8")
        self._reactor = reactor
        self._threads = threads
        self._files: dict[str, bytes] = {}

    @router.route("/openapi.json", methods=["GET"])
    def openapi(self, request: IRequest) -> bytes:
        """The OpenAPI 3.1 document of every route."""
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"application/json")
        return sized(request, self._document)

    @router.route("/docs", methods=["GET"])
    async def docs(self, request: IRequest) -> bytes:
        """The API reference page (Swagger UI over ``openapi.json``)."""
        body = await self._read("docs.html", _OURS / "docs.html")
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return sized(request, body)

    @router.route("/docs/<name>", methods=["GET"])
    async def asset(self, request: IRequest, name: str) -> bytes:
        """A file the reference page loads."""
        if name not in _ASSETS:
            return plain_response(request, 404, "404 page not found")
        where, ctype = _ASSETS[name]
        directory = _OURS if where == "ours" else _swagger_ui_static()
        body = await self._read(name, directory / name)
        request.setResponseCode(200)
        request.setHeader(b"content-type", ctype)
        request.setHeader(b"cache-control", b"max-age=3600")
        return sized(request, body)

    async def _read(self, name: str, path: Path) -> bytes:
        cached = self._files.get(name)
        if cached is None:
            if self._threads is None:
                cached = path.read_bytes()
            else:
                cached = await deferToThreadPool(
                    self._reactor, self._threads, path.read_bytes
                )
            self._files[name] = cached
        return cached
