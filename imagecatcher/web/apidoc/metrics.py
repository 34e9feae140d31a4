"""OpenAPI fragment: ``GET /metrics``, the Prometheus scrape route.

It sits at the server root, outside ``/service/v1``, and is also the only
route of the ``METRICS_ENDPOINT`` listener when one is configured.
"""

from __future__ import annotations

from typing import Any

PATHS: dict[str, Any] = {
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "tags": ["operations"],
            "summary": "Every metric, in Prometheus's text exposition format",
            "description": (
                "Counters, histograms and gauges of tile capture, the queues,"
                " the spool, the store, the database and the HTTP routes (the"
                " README's Metrics section lists them). With several worker"
                " processes whichever worker answers reports the figures of"
                " all of them. Meant for a Prometheus scraper; the format is"
                " the one named by the response's Content-Type."
            ),
            "responses": {
                "200": {
                    "description": "The metrics, one sample per line.",
                    "content": {
                        "text/plain": {
                            "schema": {"type": "string"},
                            "example": (
                                "# HELP imagecatcher_tiles_captured_total Tiles"
                                " received, by channel and outcome (ok ="
                                " acknowledged).\n"
                                "# TYPE imagecatcher_tiles_captured_total counter\n"
                                'imagecatcher_tiles_captured_total{channel="tcp",'
                                'outcome="ok"} 1024.0\n'
                            ),
                        }
                    },
                }
            },
        }
    }
}
