"""``GET /metrics``: every metric in Prometheus's text format.

The route lives at the server root, outside ``/service/v1``, where
Prometheus looks by default; :class:`MetricsExport` also serves it alone on
``METRICS_ENDPOINT``.  With several worker processes whichever worker
answers reports the figures of all of them (see :mod:`imagecatcher.metrics`).
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.web.iweb import IRequest

from imagecatcher.metrics import Metrics
from imagecatcher.web.common import sized

#: Where the metrics are served.
METRICS_PATH = "/metrics"


class MetricsExport:
    """The scrape route."""

    router = Klein()

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    @router.route(METRICS_PATH, methods=["GET"])
    def metrics(self, request: IRequest) -> bytes:
        """Every metric, as the text exposition format."""
        body = self._metrics.exposition()
        request.setHeader(b"content-type", self._metrics.content_type.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        return sized(request, body)

    def resource(self) -> Any:
        """The route alone, as a twisted.web resource (METRICS_ENDPOINT)."""
        return self.router.resource()
