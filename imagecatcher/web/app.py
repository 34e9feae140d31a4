"""The one Klein application: every resource mounted under ``/service/v1``.

Each resource declares its routes on its own ``Klein()`` router, relative to
the API root; :class:`CatcherAPI` builds the resources from its
collaborators, copies their routes into one URL map (one matcher, so unknown
paths and wrong methods are answered the same way everywhere) and maps
errors to statuses: JSON error bodies ``{"errormessage": ...}`` for the JSON
routes (§1.0); ``ping`` and the content routes answer their own, in plain
text.  ``GET /metrics`` (Prometheus) sits outside the API root.  Every
request that matches a route is labelled with the route's template for the
metrics (:func:`imagecatcher.metrics.note_route`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map

from klein import Klein
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web.iweb import IRequest

from imagecatcher.acquisitions import Acquisitions
from imagecatcher.db.live import LiveQueries
from imagecatcher.db.repository import Repository
from imagecatcher.domain import NotFound as CatcherNotFound
from imagecatcher.domain import QueueStatus
from imagecatcher.metrics import Metrics, note_route, route_template
from imagecatcher.pipeline import Pipeline
from imagecatcher.previews import Previewer
from imagecatcher.storage import ContentStore
from imagecatcher.web.access import AccessPolicy, Refusal
from imagecatcher.web.apidocs import ApiDocs
from imagecatcher.web.calibrations import Calibrations
from imagecatcher.web.capture import Capture, Lifecycle
from imagecatcher.web.common import (
    json_response,
    plain_response,
    status_of,
)
from imagecatcher.web.content import Content
from imagecatcher.web.metrics import MetricsExport
from imagecatcher.web.mosaicview import Live
from imagecatcher.web.operations import Operations
from imagecatcher.web.pages import Pages
from imagecatcher.web.queries import Queries
from imagecatcher.web.render import Render

log = Logger()

#: Where every route of the API lives (§1.0).
API_ROOT = "/service/v1"


class _Resource(Protocol):
    """An object whose ``router`` attribute is a ``Klein()`` (bound to it on access)."""

    @property
    def router(self) -> Klein: ...


class CatcherAPI:
    """The Klein application; collaborators are injected."""

    def __init__(
        self,
        repo: Repository,
        store: ContentStore,
        clock: IReactorTime,
        queue_status: Callable[[], QueueStatus] = QueueStatus,
        *,
        pipeline: Pipeline | None = None,
        acquisitions: Acquisitions | None = None,
        ping_collection: str = "",
        max_tile_bytes: int = 64 * 1024 * 1024,
        threads: ThreadPool | None = None,
        lease_seconds: float = 0.0,
        tiles_url_base: str = "",
        access: AccessPolicy | None = None,
        metrics: Metrics | None = None,
        live: LiveQueries | None = None,
        previewer: Previewer | None = None,
    ) -> None:
        resources: tuple[_Resource, ...] = (
            Operations(
                repo,
                store,
                clock,
                queue_status,
                ping_collection,
                pipeline.ping_problem if pipeline is not None else lambda: "",
                pipeline.health.failed if pipeline is not None else lambda e: None,
                pipeline.spool_report if pipeline is not None else None,
            ),
            Lifecycle(acquisitions),
            Capture(pipeline, max_tile_bytes, metrics),
            Queries(repo),
            Content(repo, store, clock, threads),
            Render(repo, lease_seconds, tiles_url_base, metrics),
            Calibrations(repo),
            ApiDocs(clock, threads),
        )
        if live is not None:
            resources += (
                Live(
                    live,
                    repo,
                    store,
                    clock,
                    previewer or Previewer(clock, threads),
                ),
            )
        self._app = Klein()
        with self._app.subroute(API_ROOT) as app:
            for resource in resources:
                _mount(app, resource, access, API_ROOT)
        if metrics is not None:
            _mount(self._app, MetricsExport(metrics), access)
        # The live pages (HTML) live outside the API root: / and /ui/.
        _mount(self._app, Pages(), access)
        # Klein tries these in order: the first whose class matches answers.
        self._app.handle_errors(NotFound)(self._not_found)
        self._app.handle_errors(MethodNotAllowed)(self._not_allowed)
        self._app.handle_errors(Exception)(self._failed)

    def resource(self) -> Any:
        """The twisted.web resource serving this API."""
        return self._app.resource()

    def url_map(self) -> Map:
        """Every route, as werkzeug matches them (the OpenAPI test reads it)."""
        return self._app.url_map

    def _not_found(self, request: IRequest, failure: Failure) -> bytes:
        if isinstance(failure.value, CatcherNotFound):
            return json_response(
                request, 404, {"errormessage": failure.getErrorMessage()}
            )
        return plain_response(request, 404, "404 page not found")

    def _not_allowed(self, request: IRequest, failure: Failure) -> bytes:
        # RFC 9110 §15.5.6: a 405 names the methods the resource does allow.
        methods = getattr(failure.value, "valid_methods", None) or ()
        if methods:
            request.setHeader(b"allow", ", ".join(sorted(methods)).encode("ascii"))
        return plain_response(request, 405, "405 method not allowed")

    def _failed(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        status = status_of(error)
        if status is None:
            log.failure("unexpected error serving {path}", failure, path=request.path)
            return json_response(
                request, 500, {"errormessage": f"Internal error: {error}"}
            )
        if status >= 500:
            log.warn("{path}: {reason}", path=request.path, reason=error)
        if status == 413:  # the rest of the body is not worth reading
            request.setHeader(b"connection", b"close")
        return json_response(request, status, {"errormessage": str(error)})


def _mount(
    app: Klein, resource: _Resource, access: AccessPolicy | None, root: str = ""
) -> None:
    """Add every route of ``resource`` to ``app``, run by the resource's router
    once ``access`` (if any) lets the request through.

    ``root`` is where ``app`` puts the routes (its subroute), for the
    route templates of the metrics.
    """
    router = resource.router
    prefix = type(resource).__name__
    for rule in router.url_map.iter_rules():
        methods = sorted(rule.methods) if rule.methods is not None else None
        name = f"{prefix}.{rule.endpoint}"
        template = route_template(root + rule.rule)
        handler = _forward(router, rule.endpoint, name, access, template)
        app.route(rule.rule, methods=methods, endpoint=name)(handler)


def _forward(
    router: Klein,
    endpoint: str,
    name: str,
    access: AccessPolicy | None,
    template: str,
) -> Callable[..., Any]:
    def forward(request: IRequest, **kwargs: Any) -> Any:
        note_route(request, template)
        if access is not None:
            refusal = access.check(name, request)
            if refusal is not None:
                return _refuse(request, refusal)
        return router.execute_endpoint(endpoint, request, **kwargs)

    return forward


def _refuse(request: IRequest, refusal: Refusal) -> bytes:
    for header, value in refusal.headers().items():
        request.setHeader(header, value)
    return json_response(request, refusal.status, {"errormessage": refusal.message})
