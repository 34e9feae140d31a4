"""Wiring: ``build_service(config, reactor)`` returns the daemon's service tree.

Children start in order and stop in reverse order, one after the other:
the listeners stop accepting first, then the pipeline finishes (or spools)
the tiles in flight, then the notifier, the HTTP client pool, the thread pool
and the database pool close (Q42).
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from treq.client import HTTPClient
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Site

from imagecatcher.acquisitions import Acquisitions
from imagecatcher.config import Config
from imagecatcher.db.live import LiveQueries
from imagecatcher.db.pool import open_database
from imagecatcher.db.repository import Repository
from imagecatcher.dispatch import Dispatcher, DispatchListener, DispatchReceiver
from imagecatcher.fsio import BackgroundThreadPool
from imagecatcher.listen import ConnectionLimit, ReusePortListener, parse_tcp_endpoint
from imagecatcher.metrics import Metrics
from imagecatcher.notify import MailSettings, Notifier
from imagecatcher.pipeline import Pipeline, Stage
from imagecatcher.previews import Previewer
from imagecatcher.sink import TileSink, remove_stale_parts
from imagecatcher.spool import Spool
from imagecatcher.storage.factory import open_store
from imagecatcher.storage.fs import FileStore
from imagecatcher.storage.metered import MeteredStore
from imagecatcher.storage.s3 import S3Store
from imagecatcher.tcp import FRAME_OVERHEAD, PipelineHandler, TileFactory
from imagecatcher.web.access import AccessPolicy
from imagecatcher.web.app import CatcherAPI
from imagecatcher.web.metrics import MetricsExport
from imagecatcher.web.request import (
    CatcherChannel,
    CatcherRequest,
    CatcherSite,
    NoKeepAliveChannel,
)

log = Logger()

#: Longest wait for tiles in flight when the daemon stops.
STOP_DEADLINE = 30.0
#: Seconds between two samples of the gauges with several worker processes
#: (the process answering a scrape samples its own just before).
SAMPLE_EVERY = 1.0
#: The nice value of the live pages' threads (previews, page documents).
PREVIEW_NICE = 10


class _Sequential(MultiService):
    """Stops its children in reverse order, each after the previous finished."""

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        children = list(self)[::-1]

        async def stop_all() -> None:
            for child in children:
                try:
                    await maybeDeferred(child.stopService)
                except Exception:
                    log.failure("stopping {child}", child=child)

        return Deferred.fromCoroutine(stop_all())


class _Hooks(Service):
    """Runs ``start`` when the tree starts and ``stop`` when it stops."""

    def __init__(
        self,
        start: Callable[[], Awaitable[object]] | None = None,
        stop: Callable[[], object] | None = None,
    ) -> None:
        self._start = start
        self._stop = stop

    def startService(self) -> None:
        super().startService()
        if self._start is not None:
            d = Deferred.fromCoroutine(_awaited(self._start()))
            d.addErrback(lambda f: log.failure("starting {svc}", f, svc=self))

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self._stop is None:
            return None
        result = self._stop()
        if isinstance(result, Deferred):
            return result
        if hasattr(result, "__await__"):
            return Deferred.fromCoroutine(_awaited(result))
        return None


async def _awaited(awaitable: Awaitable[object]) -> None:
    await awaitable


class _Listener(StreamServerEndpointService):
    """An endpoint service that aborts start-up on a failed bind (like
    ``strports.service``) and applies SO_RCVBUF to the listening socket."""

    def __init__(
        self, reactor: Any, description: str, factory: Any, rcvbuf: int
    ) -> None:
        super().__init__(serverFromString(reactor, description), factory)
        self._raiseSynchronously = True
        self._rcvbuf = rcvbuf

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        if self._rcvbuf > 0 and self._waitingForPort is not None:
            self._waitingForPort.addCallback(self._apply_rcvbuf)

    def _apply_rcvbuf(self, port: Any) -> Any:
        sock = getattr(port, "socket", None)
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._rcvbuf)
        return port


def _listener(reactor: Any, endpoint: str, factory: Any, config: Config) -> IService:
    """A TCP endpoint gets a socket per §10.2 (SO_REUSEPORT, somaxconn backlog);
    other endpoint types (unix:, ssl:, systemd:) Twisted's own."""
    address = parse_tcp_endpoint(endpoint)
    if address is None:
        return _Listener(reactor, endpoint, factory, config.so_receive_bufsize)
    return ReusePortListener(
        reactor,
        address,
        factory,
        rcvbuf=config.so_receive_bufsize,
        reuseport=config.so_reuseport,
    )


#: Listener codes on the connection channel (see imagecatcher.dispatch).
HTTP_CODE, TCP_CODE = b"h", b"t"


def _serve(
    reactor: Any,
    endpoint: str,
    factory: Any,
    limit: ConnectionLimit,
    code: bytes,
    config: Config,
    dispatch: Dispatcher | DispatchReceiver | None,
) -> IService | None:
    """The service listening for ``factory``; None for a worker whose
    connections come from worker 0."""
    if isinstance(dispatch, DispatchReceiver):
        dispatch.serve(code, factory, limit)
        return None
    address = parse_tcp_endpoint(endpoint)
    if isinstance(dispatch, Dispatcher) and address is not None:
        dispatch.serve(code, factory, limit)
        return DispatchListener(
            reactor,
            address,
            dispatch,
            code,
            rcvbuf=config.so_receive_bufsize,
            reuseport=config.so_reuseport,
        )
    return _listener(reactor, endpoint, factory, config)


def build_service(
    config: Config,
    reactor: Any,
    workers: IService | None = None,
    metrics: Metrics | None = None,
    dispatch: Dispatcher | DispatchReceiver | None = None,
) -> IService:
    """Build the service tree: pools, store, pipeline, HTTP site, TCP server.

    ``workers`` (the supervisor of the other worker processes) is added last,
    so it stops first: every child has drained and exited before this
    process's own listeners close.  ``metrics`` defaults to this process's
    own (one worker process).  ``dispatch`` is worker 0's Dispatcher (it
    accepts the HTTP and TCP connections and spreads them over the workers)
    or a child's DispatchReceiver (it gets its connections from worker 0).
    """
    root = _Sequential()
    for key in config.unknown_keys:
        log.warn("ignoring unknown configuration key {key}", key=key)
    if metrics is None:
        metrics = Metrics()
    db = open_database(config, reactor)
    db.on_error = metrics.database_error
    _Hooks(stop=db.close).setServiceParent(root)
    # Hashing and file I/O of big buffers run here, never on the reactor thread.
    threads = ThreadPool(minthreads=2, maxthreads=16, name="imagecatcher-io")
    _Hooks(start=_started(threads.start), stop=threads.stop).setServiceParent(root)
    # Spool uploads read and check their files on threads of lower priority
    # (fsio.BACKGROUND_NICE): a draining spool takes the cores capture leaves.
    background = BackgroundThreadPool(
        minthreads=0,
        maxthreads=max(config.content_store_workers, 1),
        name="imagecatcher-background",
    )
    _Hooks(start=_started(background.start), stop=background.stop).setServiceParent(
        root
    )
    http_pool = HTTPConnectionPool(reactor)
    http_pool.maxPersistentPerHost = max(config.content_store_workers, 1) * 2
    _Hooks(stop=http_pool.closeCachedConnections).setServiceParent(root)
    client = HTTPClient(Agent(reactor, pool=http_pool))
    notifier = Notifier(
        MailSettings.from_config(config, config.http_endpoint, config.tcp_endpoint),
        reactor,
    )
    _Hooks(stop=notifier.stop).setServiceParent(root)

    repo = Repository(db, reactor)
    backend = open_store(config, reactor, client, threads)
    store = MeteredStore(backend, metrics)
    pipeline = Pipeline(
        repo,
        store,
        Spool(Path(config.spool_dir), reactor, threads, notifier.notify, background),
        reactor,
        threads,
        tile_stage=Stage(
            config.tile_processing_workers,
            config.tile_processing_queue_size,
            config.wait_timeout,
            reactor,
        ),
        content_stage=Stage(
            config.content_store_workers,
            config.content_store_queue_size,
            config.wait_timeout,
            reactor,
        ),
        jfs_mapping=config.jfs_mapping,
        notify=notifier.notify,
        local=store if isinstance(backend, FileStore) else None,
        max_tile_bytes=config.max_tile_bytes,
        ack_when=config.ack_when,
        upload_rate=float(config.upload_max_bytes_per_second),
        capture_target=config.capture_latency_target_ms / 1000.0,
        spool_max_bytes=config.spool_max_bytes,
        min_free_bytes=config.spool_min_free_bytes,
        probe_collection=config.jfs_mapping.get("PING", ""),
        metrics=metrics,
    )

    async def start_pipeline() -> None:
        await pipeline.recover_placements()
        removed = await deferToThreadPool(
            reactor, threads, remove_stale_parts, pipeline.staging_dir
        )
        if removed:
            log.info("removed {n} tile(s) received but never acknowledged", n=removed)
        if isinstance(backend, S3Store):
            await backend.ensure_bucket()
        await pipeline.resume()
        pipeline.start_watching()

    _Hooks(
        start=start_pipeline, stop=lambda: pipeline.stop(STOP_DEADLINE)
    ).setServiceParent(root)
    acquisitions = Acquisitions(
        repo,
        store,
        reactor,
        threads,
        config.jfs_mapping,
        notify_now=lambda text: Deferred.fromCoroutine(notifier.notify_now(text)),
    )

    access = (
        AccessPolicy(config.api_tokens, config.read_requires_token)
        if config.api_tokens is not None
        else None
    )
    if access is not None:
        log.info(
            "access control on: {tokens}; reads {reads}",
            tokens=config.api_tokens,
            reads="need a token" if config.read_requires_token else "are open",
        )
    sampler = _Sampler(metrics, pipeline, reactor)
    metrics.before_scrape(sampler)
    if metrics.multiprocess_dir is not None:
        # The other workers answer scrapes too: this one's gauges must be
        # in the shared files, fresh.
        loop = LoopingCall(sampler)
        loop.clock = reactor

        async def start_sampling() -> None:
            done = loop.start(SAMPLE_EVERY, now=True)
            done.addErrback(lambda f: log.failure("sampling the gauges", f))

        def stop_sampling() -> None:
            if loop.running:
                loop.stop()

        _Hooks(start=start_sampling, stop=stop_sampling).setServiceParent(root)

    if config.http_endpoint:
        # The live pages' work on threads of its own, at a lower priority than
        # capture's (imagecatcher.previews): PREVIEW_WORKERS previews at a time
        # (the Previewer's slots) and one more thread, so that page documents
        # never wait behind a preview.
        preview_threads = ThreadPool(
            minthreads=0,
            maxthreads=config.preview_workers + 1,
            name="imagecatcher-live",
        )
        _Hooks(
            start=_started(preview_threads.start), stop=preview_threads.stop
        ).setServiceParent(root)
        api = CatcherAPI(
            repo,
            store,
            reactor,
            pipeline.status,
            pipeline=pipeline,
            acquisitions=acquisitions,
            ping_collection=config.jfs_mapping.get("PING", ""),
            max_tile_bytes=config.max_tile_bytes,
            threads=threads,
            lease_seconds=config.tile_lease_seconds,
            tiles_url_base=config.tiles_url_base,
            access=access,
            metrics=metrics,
            live=LiveQueries(db),
            previewer=Previewer(
                reactor,
                preview_threads,
                workers=config.preview_workers,
                cache_bytes=config.preview_cache_bytes,
                nice=PREVIEW_NICE,
            ),
        )
        site = CatcherSite(
            api.resource(),
            max_connections=config.http_max_connections,
            metrics=metrics,
            reactor=reactor,
        )
        sampler.http = site.limit
        site.requestFactory = _request_factory(
            config, pipeline.open_sink, reactor, access
        )
        site.protocol = (
            NoKeepAliveChannel if config.disable_so_keep_alive else CatcherChannel
        )
        listening = _serve(
            reactor, config.http_endpoint, site, site.limit, HTTP_CODE, config, dispatch
        )
        if listening is not None:
            listening.setServiceParent(root)
    if config.tcp_endpoint:
        factory = TileFactory(
            PipelineHandler(pipeline, metrics),
            float(config.tcp_idle_timeout),
            max_connections=config.tcp_max_connections,
            allowed_clients=config.tcp_allowed_clients,
        )
        factory.max_frame = config.max_tile_bytes + FRAME_OVERHEAD
        if config.tcp_allowed_clients:
            log.info(
                "TCP connections only from {networks}",
                networks=", ".join(str(n) for n in config.tcp_allowed_clients),
            )
        listening = _serve(
            reactor,
            config.tcp_endpoint,
            factory,
            factory.limit,
            TCP_CODE,
            config,
            dispatch,
        )
        if listening is not None:
            listening.setServiceParent(root)
        sampler.tcp = factory.limit
    if config.metrics_endpoint:
        scrape = Site(MetricsExport(metrics).resource(), reactor=reactor)
        _listener(reactor, config.metrics_endpoint, scrape, config).setServiceParent(
            root
        )
    if isinstance(dispatch, DispatchReceiver):
        dispatch.setServiceParent(root)
    if workers is not None:
        workers.setServiceParent(root)
    return root


class _Sampler:
    """Sets the gauges of this process's state: queues, spool, store, connections."""

    def __init__(self, metrics: Metrics, pipeline: Pipeline, clock: Any) -> None:
        self._metrics = metrics
        self._pipeline = pipeline
        self._clock = clock
        self.http: ConnectionLimit | None = None
        self.tcp: ConnectionLimit | None = None

    def __call__(self) -> None:
        metrics, pipeline = self._metrics, self._pipeline
        status = pipeline.status()
        for name, stage, colour in (
            ("tile", pipeline.tile_stage, status.tile),
            ("content", pipeline.content_stage, status.content),
        ):
            metrics.queue(name, stage.waiting, stage.capacity, int(colour))
        stats = pipeline.watch.stats
        metrics.spool(stats.entries, stats.bytes, stats.age(self._clock.seconds()))
        metrics.store_up(pipeline.health.up)
        for channel, limit in (("http", self.http), ("tcp", self.tcp)):
            metrics.connections(channel, limit.open_connections if limit else 0)
        metrics.running()


def _started(fn: Callable[[], object]) -> Callable[[], Awaitable[object]]:
    async def run() -> object:
        return fn()

    return run


def _request_factory(
    config: Config,
    open_sink: Callable[[], TileSink],
    reactor: Any,
    access: AccessPolicy | None = None,
) -> type[CatcherRequest]:
    # Capture bodies stream into sinks from open_sink (Pipeline.open_sink);
    # every body is watched on the reactor (HTTP_BODY_TIMEOUT, _MIN_RATE).
    return CatcherRequest.for_daemon(
        config.max_tile_bytes,
        open_sink,
        clock=reactor,
        body_timeout=config.http_body_timeout,
        body_min_rate=config.http_body_min_rate,
        access=access,
    )
