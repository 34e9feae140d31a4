"""Connections spread evenly over the worker processes.

With ``SO_REUSEPORT`` alone the kernel picks a worker for each connection by
a hash of its addresses, blind to load: a rig's four camera connections land
all on one of two workers one time in eight, three on one half the time, and
that worker's one core then sets the rig's pace.  So with several workers,
worker 0 accepts every HTTP and TCP connection itself and gives each to the
worker with the fewest open connections: to itself through its own factory,
to a child by passing the socket over a ``SOCK_SEQPACKET`` pair (one message
per connection: a byte naming the listener, the descriptor attached).  The
child adopts the socket into its reactor with the listener's factory, and
reports after each adoption and each close how many it has received and how
many are open, listener by listener, so that worker 0 counts exactly what
each worker holds of each (an idle HTTP keep-alive connection does not push
a camera's TCP connection elsewhere).

The descriptor passing is written here because no library does it for a
Twisted reactor: :mod:`socket`'s ``send_fds`` and ``recv_fds`` do the
system calls, ``adoptStreamConnection`` the rest.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

from zope.interface import implementer

from twisted.application.service import Service
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure

from imagecatcher.listen import ConnectionLimit, TCPAddress, open_listening_socket

log = Logger()

#: A child's report, per listener (in the order of their codes): connections
#: received so far, connections open now.
REPORT = struct.Struct("<II")
#: Connections taken from the kernel per readiness of a listening socket.
ACCEPTS_PER_READ = 64
#: Where a child finds its end of the pair (the supervisor maps it there).
CHILD_FD = 3
#: The socket pair's buffer: room for many connections in flight.
CHANNEL_BUFFER = 1024 * 1024


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """A (worker 0 end, child end) pair; both close-on-exec, the parent's
    non-blocking."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for end in (parent, child):
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CHANNEL_BUFFER)
    parent.setblocking(False)
    return parent, child


@implementer(IReadDescriptor)
class _Reader:
    """Calls ``ready`` whenever ``sock`` is readable."""

    def __init__(self, sock: socket.socket, ready: Callable[[], None], name: str):
        self._sock = sock
        self._ready = ready
        self._name = name

    def fileno(self) -> int:
        return self._sock.fileno()

    def doRead(self) -> None:  # noqa: N802 - Twisted's name
        self._ready()

    def connectionLost(self, reason: Failure) -> None:
        pass

    def logPrefix(self) -> str:  # noqa: N802 - Twisted's name
        return self._name


def _stop_reading(
    reactor: Any, reader: _Reader | None, sock: socket.socket | None
) -> bool:
    """Stop watching ``reader`` and close ``sock``; whether it was open."""
    if reader is not None:
        reactor.removeReader(reader)
    if sock is None:
        return False
    sock.close()
    return True


class _Child:
    """Worker 0's end of the channel to one child, and what it holds, per
    listener code."""

    def __init__(self, index: int, sock: socket.socket, reader: _Reader) -> None:
        self.index = index
        self.sock = sock
        self.reader = reader
        self.sent: dict[bytes, int] = {}
        self.received: dict[bytes, int] = {}
        self.open: dict[bytes, int] = {}

    def load(self, code: bytes) -> int:
        """Connections of ``code`` open there, counting those on their way."""
        return (
            self.open.get(code, 0) + self.sent.get(code, 0) - self.received.get(code, 0)
        )


class Dispatcher:
    """Worker 0's choice of a worker for each accepted connection."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._children: dict[int, _Child] = {}
        #: Listener code -> (factory, its ConnectionLimit) in this process.
        self._local: dict[bytes, tuple[Any, ConnectionLimit | None]] = {}
        self._turn = 0
        #: Connections given to children and kept here (for tests and logs).
        self.handed = 0
        self.kept = 0

    def serve(self, code: bytes, factory: Any, limit: ConnectionLimit | None) -> None:
        """Connections of listener ``code`` kept here go to ``factory``."""
        self._local[code] = (factory, limit)

    def start_factory(self, code: bytes) -> None:
        """Start listener ``code``'s factory (its access log, for one)."""
        self._local[code][0].doStart()

    def stop_factory(self, code: bytes) -> None:
        """Stop listener ``code``'s factory."""
        self._local[code][0].doStop()

    def add_child(self, index: int, sock: socket.socket) -> None:
        """Child ``index`` takes connections from now on through ``sock``."""
        self.remove_child(index)
        reader = _Reader(
            sock, lambda: self._read_reports(child), f"worker-{index}-channel"
        )
        child = self._children[index] = _Child(index, sock, reader)
        self._reactor.addReader(reader)

    def remove_child(self, index: int) -> None:
        """Child ``index`` takes no more (it exited or is stopping)."""
        child = self._children.pop(index, None)
        if child is not None:
            _stop_reading(self._reactor, child.reader, child.sock)

    def close(self) -> None:
        """Forget every child."""
        for index in list(self._children):
            self.remove_child(index)

    def _local_load(self, code: bytes) -> int:
        limit = self._local[code][1]
        return limit.open_connections if limit is not None else 0

    def _read_reports(self, child: _Child) -> None:
        codes = sorted(self._local)
        while True:
            try:
                data = child.sock.recv(REPORT.size * len(codes) + 64)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if len(data) != REPORT.size * len(codes):
                self.remove_child(child.index)  # closed: the child is gone
                return
            for i, code in enumerate(codes):
                received, open_now = REPORT.unpack_from(data, i * REPORT.size)
                child.received[code], child.open[code] = received, open_now

    def dispatch(self, conn: socket.socket, code: bytes) -> None:
        """Give the accepted ``conn`` to the least loaded worker; close ours."""
        try:
            loads = [(self._local_load(code), 0)] + [
                (c.load(code), i) for i, c in sorted(self._children.items())
            ]
            # Ties go round in turn, so that connections opened together
            # (a rig's cameras) alternate.
            self._turn = (self._turn + 1) % len(loads)
            order = loads[self._turn :] + loads[: self._turn]
            _load, index = min(order, key=lambda item: item[0])
            child = self._children.get(index)
            if child is not None and self._hand(child, conn, code):
                self.handed += 1
                return
            self.kept += 1
            factory, _limit = self._local[code]
            conn.setblocking(False)
            self._reactor.adoptStreamConnection(conn.fileno(), conn.family, factory)
        finally:
            conn.close()

    def _hand(self, child: _Child, conn: socket.socket, code: bytes) -> bool:
        try:
            socket.send_fds(child.sock, [code], [conn.fileno()])
        except OSError as e:
            log.warn(
                "could not hand a connection to worker {index}: {reason};"
                " serving it here",
                index=child.index,
                reason=e,
            )
            if e.errno != errno.EAGAIN:
                self.remove_child(child.index)
            return False
        child.sent[code] = child.sent.get(code, 0) + 1
        return True


class DispatchListener(Service):
    """Worker 0's listening socket for one address: each connection it
    accepts goes to :meth:`Dispatcher.dispatch` under ``code``."""

    def __init__(
        self,
        reactor: Any,
        address: TCPAddress,
        dispatcher: Dispatcher,
        code: bytes,
        *,
        rcvbuf: int = 0,
        reuseport: bool = True,
    ) -> None:
        self._reactor = reactor
        self._address = address
        self._dispatcher = dispatcher
        self._code = code
        self._rcvbuf = rcvbuf
        self._reuseport = reuseport
        self._sock: socket.socket | None = None
        self._reader: _Reader | None = None

    @property
    def port(self) -> int:
        """The bound port number."""
        assert self._sock is not None
        port: int = self._sock.getsockname()[1]
        return port

    def privilegedStartService(self) -> None:
        """Bind now; raise ``CannotListenError`` if the address is unusable."""
        super().privilegedStartService()
        if self._sock is None:
            self._sock = open_listening_socket(
                self._address, rcvbuf=self._rcvbuf, reuseport=self._reuseport
            )

    def startService(self) -> None:
        """Bind unless already bound, and accept from now on."""
        super().startService()
        if self._sock is None:
            self.privilegedStartService()
        assert self._sock is not None
        self._dispatcher.start_factory(self._code)
        self._reader = _Reader(self._sock, self._accept, "dispatch")
        self._reactor.addReader(self._reader)
        log.info(
            "listening on {interface}:{port} (SO_REUSEPORT {reuseport}),"
            " connections spread over the workers",
            interface=self._address.interface or "0.0.0.0",
            port=self.port,
            reuseport="on" if self._reuseport else "off",
        )

    def _accept(self) -> None:
        assert self._sock is not None
        for _ in range(ACCEPTS_PER_READ):
            try:
                conn, _addr = self._sock.accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in (errno.ECONNABORTED, errno.EINTR):
                    continue
                # Out of descriptors, most often: the next readiness retries.
                log.warn("accepting a connection failed: {reason}", reason=e)
                return
            try:
                self._dispatcher.dispatch(conn, self._code)
            except Exception:
                log.failure("dispatching a connection")

    def stopService(self) -> None:
        """Stop accepting and close the socket."""
        super().stopService()
        if _stop_reading(self._reactor, self._reader, self._sock):
            self._dispatcher.stop_factory(self._code)
        self._reader, self._sock = None, None


class DispatchReceiver(Service):
    """A child's end: adopts each connection worker 0 passes, and reports."""

    def __init__(self, reactor: Any, fd: int = CHILD_FD) -> None:
        self._reactor = reactor
        self._fd = fd
        self._sock: socket.socket | None = None
        self._reader: _Reader | None = None
        self._factories: dict[bytes, tuple[Any, ConnectionLimit | None]] = {}
        #: Connections received per listener code.
        self.received: dict[bytes, int] = {}

    def serve(self, code: bytes, factory: Any, limit: ConnectionLimit | None) -> None:
        """Connections passed under ``code`` go to ``factory``; ``limit``
        counts them (its changes are reported)."""
        self._factories[code] = (factory, limit)
        if limit is not None:
            limit.on_change = self.report

    def startService(self) -> None:
        """Take connections from now on."""
        super().startService()
        for factory, _limit in self._factories.values():
            factory.doStart()
        self._sock = socket.socket(fileno=self._fd)
        self._sock.setblocking(False)
        self._reader = _Reader(self._sock, self._receive, "dispatch-channel")
        self._reactor.addReader(self._reader)
        log.info("taking connections from worker 0")

    def stopService(self) -> None:
        """Take no more connections (those open stay until they close)."""
        super().stopService()
        if _stop_reading(self._reactor, self._reader, self._sock):
            for factory, _limit in self._factories.values():
                factory.doStop()
        self._reader, self._sock = None, None

    def report(self) -> None:
        """Tell worker 0 what this worker holds now."""
        if self._sock is None:
            return
        parts = []
        for code in sorted(self._factories):
            limit = self._factories[code][1]
            open_now = limit.open_connections if limit is not None else 0
            parts.append(REPORT.pack(self.received.get(code, 0), open_now))
        try:
            self._sock.send(b"".join(parts))
        except OSError as e:
            log.warn("could not report to worker 0: {reason}", reason=e)

    def _receive(self) -> None:
        assert self._sock is not None
        while self._sock is not None:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self._sock, 16, 4)
            except BlockingIOError:
                return
            except OSError as e:
                log.warn("the channel from worker 0 failed: {reason}", reason=e)
                data, fds = b"", []
            if not data and not fds:
                log.info("worker 0 closed the connection channel")
                self.stopService()
                return
            for fd in fds:
                self._adopt(data[:1], fd)
            self.report()

    def _adopt(self, code: bytes, fd: int) -> None:
        self.received[code] = self.received.get(code, 0) + 1
        try:
            conn = socket.socket(fileno=fd)
        except OSError as e:
            os.close(fd)
            log.warn("a passed connection was unusable: {reason}", reason=e)
            return
        try:
            served = self._factories.get(code)
            if served is None:
                log.warn("a connection for unknown listener {code!r}", code=code)
                return
            conn.setblocking(False)
            self._reactor.adoptStreamConnection(conn.fileno(), conn.family, served[0])
        except Exception:
            log.failure("adopting a passed connection")
        finally:
            conn.close()
