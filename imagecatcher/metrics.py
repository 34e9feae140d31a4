"""Prometheus metrics: the one owner of every metric object (``GET /metrics``).

:class:`Metrics` creates the metric objects of one process and offers one
method per event the daemon counts (a tile acknowledged, a stage timed, a
database error...).  Callers time their work with :func:`time.monotonic` at
boundaries they already have and report it once per tile, never per chunk.
State that is not an event (queue depth and colour, the spool) is set as
gauges just before each scrape and, with several worker processes, every
second (see :meth:`Metrics.before_scrape`).

With several worker processes the figures are aggregated across them with
``prometheus_client``'s multi-process mode: every process writes its values
to memory-mapped files in one directory and the process that answers a
scrape reads them all.  The mode is chosen when ``prometheus_client`` is
first imported, so :func:`use_multiprocess` must run before that; this
module imports the library only when a :class:`Metrics` is built.  The
supervising process empties the directory when it starts and calls
:meth:`Metrics.process_exited` for every worker that exits (its gauges go;
its counters stay, so totals never go back).

Label values come from fixed sets (channels, outcomes, stages, route
templates, driver exception classes), never from what a client sent.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Gauge

#: The variable that puts ``prometheus_client`` in multi-process mode.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Where tiles come from.
CHANNELS = ("tcp", "http")
#: What became of a tile: acknowledged, refused for the client's fault
#: (bad name, unknown acquisition, checksum mismatch...), failed for ours.
OUTCOMES = ("ok", "rejected", "failed")
#: The timed stages of a capture (see README, "Metrics").
STAGES = ("hash", "durable_write", "database", "upload")
#: The two queues of CONTRACT §4.1.
QUEUES = ("tile", "content")
#: The route label of a request that matched no route.
UNMATCHED = "unmatched"
#: Methods counted under their own name; any other is "other".
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
#: Seconds: a tile's acknowledgement or stage takes from about 1 ms to seconds.
TIME_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
#: The attribute of a request that names its route template.
_ROUTE_ATTRIBUTE = "imagecatcher_route"
_RULE_ARGUMENT = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")


def route_template(rule: str) -> str:
    """A werkzeug rule as an OpenAPI path template (``<acqid>`` -> ``{acqid}``)."""
    return _RULE_ARGUMENT.sub(r"{\1}", rule)


def note_route(request: object, template: str) -> None:
    """Remember which route template ``request`` matched (for its count)."""
    setattr(request, _ROUTE_ATTRIBUTE, template)


def route_of(request: object) -> str:
    """The route template ``request`` matched, or :data:`UNMATCHED`."""
    route: str = getattr(request, _ROUTE_ATTRIBUTE, UNMATCHED)
    return route


def multiprocess_directory(spool_dir: str) -> Path:
    """Where the worker processes of a daemon share their metric files."""
    return Path(spool_dir).absolute() / "metrics"


def use_multiprocess(directory: Path, *, clean: bool) -> None:
    """Put this process's metrics in multi-process mode, with files in ``directory``.

    ``clean`` (the supervising process, at start) removes the files of an
    earlier run first.  Raises RuntimeError when ``prometheus_client`` was
    imported already without the mode: its values would stay private.
    """
    values = sys.modules.get("prometheus_client.values")
    if values is not None and not getattr(values.ValueClass, "_multiprocess", False):
        raise RuntimeError(
            "prometheus_client was imported before its multi-process mode was set"
        )
    directory.mkdir(parents=True, exist_ok=True)
    if clean:
        for stale in directory.glob("*.db"):
            stale.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)


def single_process() -> None:
    """Keep this process's metrics in memory (one worker process)."""
    os.environ.pop(MULTIPROC_ENV, None)


class Metrics:
    """The metric objects of this process, and the events that move them."""

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        # Imported here, not at the top: the multi-process mode is read when
        # the library is first imported (see use_multiprocess).
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            multiprocess,
        )

        #: The directory of the multi-process files, or None (one process).
        self.multiprocess_dir = multiprocess_dir
        #: What a scrape reads.
        self.registry: CollectorRegistry = CollectorRegistry(auto_describe=True)
        own: CollectorRegistry | None = self.registry
        if multiprocess_dir is not None:
            # Values live in the files; the collector reads every process's.
            multiprocess.MultiProcessCollector(
                self.registry, path=str(multiprocess_dir)
            )
            own = None
        self._before_scrape: list[Callable[[], None]] = []

        captured = Counter(
            "imagecatcher_tiles_captured",
            "Tiles received, by channel and outcome (ok = acknowledged).",
            ["channel", "outcome"],
            registry=own,
        )
        tile_bytes = Counter(
            "imagecatcher_tile_bytes",
            "Bytes of the tiles acknowledged, by channel.",
            ["channel"],
            registry=own,
        )
        ack = Histogram(
            "imagecatcher_ack_latency_seconds",
            "Seconds from a tile's last byte (its turn, on TCP) to its acknowledgement.",
            ["channel"],
            buckets=TIME_BUCKETS,
            registry=own,
        )
        stage = Histogram(
            "imagecatcher_stage_duration_seconds",
            "Seconds a capture stage took for one tile.",
            ["stage"],
            buckets=TIME_BUCKETS,
            registry=own,
        )
        self._captured = {
            (c, o): captured.labels(c, o) for c in CHANNELS for o in OUTCOMES
        }
        self._bytes = {c: tile_bytes.labels(c) for c in CHANNELS}
        self._ack = {c: ack.labels(c) for c in CHANNELS}
        self._stages = {s: stage.labels(s) for s in STAGES}

        self._store_errors = Counter(
            "imagecatcher_store_errors",
            "Failed content store calls, by operation and kind of error.",
            ["operation", "kind"],
            registry=own,
        )
        self._db_errors = Counter(
            "imagecatcher_database_errors",
            "Database interactions that failed in the driver, by exception class.",
            ["kind"],
            registry=own,
        )
        next_tile = Counter(
            "imagecatcher_next_tile_requests",
            "next-tile calls answered, by resultType.",
            ["result"],
            registry=own,
        )
        self._next_tile = next_tile
        self._served = Counter(
            "imagecatcher_next_tile_served_tiles",
            "Tile specs handed out by next-tile.",
            registry=own,
        )
        self._http = Counter(
            "imagecatcher_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=own,
        )
        self._http_children: dict[tuple[str, str, str], Any] = {}

        def gauge(name: str, text: str, labels: list[str], mode: str) -> Gauge:
            return Gauge(
                name,
                text,
                labels,
                registry=own,
                multiprocess_mode=mode,  # type: ignore[arg-type]
            )

        # Per-process state: summed over the live workers (depths,
        # capacities, connections), or the worst of them (colours, the
        # store), or the largest (the spool, which all of them see).
        depth = gauge(
            "imagecatcher_queue_depth",
            "Jobs waiting for a worker of a capture stage (§4.5's n).",
            ["queue"],
            "livesum",
        )
        capacity = gauge(
            "imagecatcher_queue_capacity",
            "Jobs a capture stage's queue holds (TILE_/CONTENT_STORE_QUEUE_SIZE).",
            ["queue"],
            "livesum",
        )
        colour = gauge(
            "imagecatcher_queue_colour",
            "A queue's colour: 0 GREEN, 1 YELLOW, 2 RED (the worst worker's).",
            ["queue"],
            "livemax",
        )
        self._depth = {q: depth.labels(q) for q in QUEUES}
        self._capacity = {q: capacity.labels(q) for q in QUEUES}
        self._colour = {q: colour.labels(q) for q in QUEUES}
        self._spool_entries = gauge(
            "imagecatcher_spool_entries",
            "Tiles waiting in the spool for their upload.",
            [],
            "livemax",
        )
        self._spool_bytes = gauge(
            "imagecatcher_spool_bytes",
            "Bytes of the tiles waiting in the spool.",
            [],
            "livemax",
        )
        self._spool_age = gauge(
            "imagecatcher_spool_oldest_entry_age_seconds",
            "Seconds the oldest spooled tile has waited (0 when none).",
            [],
            "livemax",
        )
        self._store_down = gauge(
            "imagecatcher_store_down",
            "1 while the content store is down (for any worker), else 0.",
            [],
            "livemax",
        )
        connections = gauge(
            "imagecatcher_open_connections",
            "Client connections open now, by channel.",
            ["channel"],
            "livesum",
        )
        self._connections = {c: connections.labels(c) for c in CHANNELS}
        self._workers = gauge(
            "imagecatcher_worker_processes",
            "Worker processes running (each counts itself).",
            [],
            "livesum",
        )
        # Nothing is set here: twistd may fork after this (a daemon), and a
        # multi-process value set before the fork stays in a file of the old
        # pid.  Every gauge is set by the samplers, from the running service.

    # -- events ------------------------------------------------------------------

    def tile_acknowledged(self, channel: str, size: int, seconds: float) -> None:
        """A tile of ``size`` bytes was acknowledged ``seconds`` after its last byte."""
        self._captured[channel, "ok"].inc()
        self._bytes[channel].inc(size)
        self._ack[channel].observe(seconds)

    def tile_refused(self, channel: str, outcome: str) -> None:
        """A tile was not acknowledged: ``"rejected"`` or ``"failed"``."""
        self._captured[channel, outcome].inc()

    def stage(self, name: str, seconds: float) -> None:
        """A capture stage took ``seconds`` for one tile."""
        self._stages[name].observe(seconds)

    def store_error(self, operation: str, kind: str) -> None:
        """A content store call failed."""
        self._store_errors.labels(operation, kind).inc()

    def database_error(self, kind: str) -> None:
        """A database interaction failed in the driver (``kind``: its class)."""
        self._db_errors.labels(kind).inc()

    def next_tile(self, result: str, served: int) -> None:
        """next-tile answered ``result`` with ``served`` tile specs."""
        self._next_tile.labels(result).inc()
        if served:
            self._served.inc(served)

    def http_request(self, route: str, method: bytes | str | None, status: int) -> None:
        """An HTTP request was answered."""
        if isinstance(method, bytes):
            method = method.decode("latin-1")
        if method not in _METHODS:
            method = "other"
        key = (route, method, str(status))
        child = self._http_children.get(key)
        if child is None:
            child = self._http_children[key] = self._http.labels(*key)
        child.inc()

    # -- state ---------------------------------------------------------------------

    def queue(self, name: str, depth: int, capacity: int, colour: int) -> None:
        """A capture stage's queue now."""
        self._depth[name].set(depth)
        self._capacity[name].set(capacity)
        self._colour[name].set(colour)

    def spool(self, entries: int, size: int, oldest_age: float) -> None:
        """The spool now."""
        self._spool_entries.set(entries)
        self._spool_bytes.set(size)
        self._spool_age.set(oldest_age)

    def store_up(self, up: bool) -> None:
        """Whether the content store takes objects now."""
        self._store_down.set(0 if up else 1)

    def running(self) -> None:
        """This worker process runs (it counts itself)."""
        self._workers.set(1)

    def connections(self, channel: str, n: int) -> None:
        """Connections open now on ``channel``."""
        self._connections[channel].set(n)

    # -- scraping --------------------------------------------------------------------

    def before_scrape(self, sample: Callable[[], None]) -> None:
        """Call ``sample`` (which sets gauges) before every scrape."""
        self._before_scrape.append(sample)

    def sample(self) -> None:
        """Run every sampler now (before a scrape, or periodically)."""
        for sample in self._before_scrape:
            sample()

    def exposition(self) -> bytes:
        """The text exposition of every metric (all processes' in multi-process mode)."""
        from prometheus_client import generate_latest

        self.sample()
        return generate_latest(self.registry)

    @property
    def content_type(self) -> str:
        """The media type of :meth:`exposition`."""
        from prometheus_client import CONTENT_TYPE_LATEST

        return CONTENT_TYPE_LATEST

    def process_exited(self, pid: int) -> None:
        """A worker process exited: its gauges go (its counters stay)."""
        if self.multiprocess_dir is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, str(self.multiprocess_dir))
