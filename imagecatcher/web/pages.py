"""The live pages: plain HTML, CSS and a little JavaScript, served by the daemon.

``GET /`` and ``/ui/`` show the overview, ``/ui/acquisition/<acqid>`` one
acquisition's mosaic; both are static documents whose scripts poll the JSON
routes of :mod:`imagecatcher.web.mosaicview`.  The files ship in the package
(``imagecatcher/web/static/``: no CDN, no build step) and are read once, when
the resource is built, so serving them does no file I/O on the reactor.
"""

from __future__ import annotations

from importlib import resources

from klein import Klein
from twisted.web.iweb import IRequest

from imagecatcher.web.common import plain_response, sized

#: The files served under ``/ui/static/`` and their content types.
STATIC_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".png": b"image/png",
}


def load_static() -> dict[str, bytes]:
    """Every file of the package's ``static`` directory, by name."""
    folder = resources.files("imagecatcher.web") / "static"
    return {
        entry.name: entry.read_bytes()
        for entry in folder.iterdir()
        if entry.is_file() and any(entry.name.endswith(e) for e in STATIC_TYPES)
    }


def _type_of(name: str) -> bytes:
    return next(t for ext, t in STATIC_TYPES.items() if name.endswith(ext))


class Pages:
    """The HTML pages and their static assets (mounted at the server root)."""

    router = Klein()

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self._files = load_static() if files is None else files

    def _send(self, request: IRequest, name: str) -> bytes:
        body = self._files.get(name)
        if body is None:
            return plain_response(request, 404, "404 page not found")
        request.setResponseCode(200)
        request.setHeader(b"content-type", _type_of(name))
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"cache-control", b"no-cache")
        return sized(request, body)

    @router.route("/", methods=["GET"])
    def root(self, request: IRequest) -> bytes:
        """The overview."""
        return self._send(request, "overview.html")

    @router.route("/ui/", methods=["GET"])
    def overview(self, request: IRequest) -> bytes:
        """The overview, under the pages' own prefix."""
        return self._send(request, "overview.html")

    @router.route("/ui", methods=["GET"])
    def overview_bare(self, request: IRequest) -> bytes:
        """The same (a route of its own: werkzeug's redirect would be an error here)."""
        return self._send(request, "overview.html")

    @router.route("/ui/acquisition/<acqid>", methods=["GET"])
    def acquisition(self, request: IRequest, acqid: str) -> bytes:
        """One acquisition's live mosaic (its script reads the id from the path)."""
        return self._send(request, "acquisition.html")

    @router.route("/ui/static/<name>", methods=["GET"])
    def static(self, request: IRequest, name: str) -> bytes:
        """A stylesheet, script or image of the pages."""
        if name.endswith(".html"):
            return plain_response(request, 404, "404 page not found")
        return self._send(request, name)
