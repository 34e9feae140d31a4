"""Wiring: ``build_service(config, reactor)`` returns the daemon's service tree."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from twisted.web.server import Site

from imagecatcher.config import Config
from imagecatcher.db.pool import open_database
from imagecatcher.db.repository import Repository
from imagecatcher.http import CatcherAPI, CatcherRequest, NoKeepAliveChannel
from imagecatcher.protocol import TileRequest, TileResponse
from imagecatcher.storage import ContentStore, StoreError
from imagecatcher.storage.fs import FileStore, store_path_from_url
from imagecatcher.tcp import TileFactory

log = Logger()


class _OnStop(Service):
    """A service whose only job is to call ``fn`` when the tree stops."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self._fn = fn

    def stopService(self) -> None:
        super().stopService()
        self._fn()


class _ThreadPoolService(Service):
    """Starts and stops a thread pool with the service tree."""

    def __init__(self, pool: ThreadPool) -> None:
        self._pool = pool

    def startService(self) -> None:
        super().startService()
        self._pool.start()

    def stopService(self) -> None:
        super().stopService()
        self._pool.stop()


class _NotCapturing:
    """TCP handler used until tile capture is wired: every tile fails cleanly."""

    async def capture(self, request: TileRequest) -> TileResponse:
        log.warn("tile capture over TCP is not available in this version")
        return TileResponse(acq_id=request.acq_id, status=1, system_status=2)


def open_store(config: Config, reactor: Any, threadpool: ThreadPool) -> ContentStore:
    """The content store named by ``CONTENT_STORE_URL``."""
    url = config.content_store_url
    if url.startswith("file:"):
        return FileStore(store_path_from_url(url), reactor, threadpool)
    raise StoreError(f"CONTENT_STORE_URL: {url!r}: this store is not available yet")


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


def build_service(config: Config, reactor: Any) -> IService:
    """Build the service tree: pools, the HTTP site and the TCP server."""
    root = MultiService()
    for key in config.unknown_keys:
        log.warn("ignoring unknown configuration key {key}", key=key)
    io_pool = ThreadPool(minthreads=1, maxthreads=4, name="imagecatcher-io")
    db = open_database(config, reactor)
    # Children stop in reverse order, so the pools close after the servers.
    _OnStop(db.close).setServiceParent(root)
    _ThreadPoolService(io_pool).setServiceParent(root)
    repo = Repository(db)
    store = open_store(config, reactor, io_pool)
    if config.http_endpoint:
        site = Site(CatcherAPI(repo, store, reactor).resource())
        site.requestFactory = CatcherRequest
        if config.disable_so_keep_alive:
            site.protocol = NoKeepAliveChannel  # type: ignore[method-assign,assignment]
        _Listener(
            reactor, config.http_endpoint, site, config.so_receive_bufsize
        ).setServiceParent(root)
    if config.tcp_endpoint:
        _Listener(
            reactor,
            config.tcp_endpoint,
            TileFactory(_NotCapturing()),
            config.so_receive_bufsize,
        ).setServiceParent(root)
    return root
