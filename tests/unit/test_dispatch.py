"""Worker 0 spreads connections by what each worker holds, per listener."""

from __future__ import annotations

import socket
from typing import Any

from imagecatcher.dispatch import REPORT, Dispatcher, channel_pair
from imagecatcher.listen import ConnectionLimit


class _Reactor:
    """Records adoptions (each counted as opened by the listener's limit)."""

    def __init__(self, limits: dict[Any, ConnectionLimit]) -> None:
        self.adopted: list[Any] = []
        self.readers: list[Any] = []
        self._limits = limits

    def adoptStreamConnection(self, fd: int, family: int, factory: Any) -> None:  # noqa: N802
        self.adopted.append(factory)
        self._limits[factory].opened()

    def addReader(self, reader: Any) -> None:  # noqa: N802
        self.readers.append(reader)

    def removeReader(self, reader: Any) -> None:  # noqa: N802
        self.readers.remove(reader)


def _conn() -> socket.socket:
    ours, _theirs = socket.socketpair()
    return ours


def _passed(child_end: socket.socket) -> list[bytes]:
    codes: list[bytes] = []
    child_end.setblocking(False)
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(child_end, 16, 4)
        except BlockingIOError:
            return codes
        for fd in fds:
            socket.socket(fileno=fd).close()
        codes.append(data)


def test_least_loaded_per_listener() -> None:
    """Four TCP connections go two and two; the child's idle HTTP
    connections do not count against its TCP share; its reports (received,
    open) keep the counts exact."""
    tcp, http = object(), object()
    limits = {tcp: ConnectionLimit("TCP", "K"), http: ConnectionLimit("HTTP", "K")}
    reactor = _Reactor(limits)
    dispatcher = Dispatcher(reactor)
    dispatcher.serve(b"t", tcp, limits[tcp])
    dispatcher.serve(b"h", http, limits[http])
    parent, child = channel_pair()
    dispatcher.add_child(1, parent)
    # The child holds three idle HTTP connections.
    child.send(REPORT.pack(3, 3) + REPORT.pack(0, 0))  # codes in order: h, t
    dispatcher._read_reports(dispatcher._children[1])
    for _ in range(4):
        dispatcher.dispatch(_conn(), b"t")
    assert reactor.adopted == [tcp, tcp]
    assert _passed(child) == [b"t", b"t"]
    # The child reports both received and one closed: the next goes there.
    child.send(REPORT.pack(3, 3) + REPORT.pack(2, 1))
    dispatcher._read_reports(dispatcher._children[1])
    dispatcher.dispatch(_conn(), b"t")
    assert _passed(child) == [b"t"] and len(reactor.adopted) == 2
    assert (dispatcher.handed, dispatcher.kept) == (3, 2)


def test_a_gone_child_gets_nothing() -> None:
    """A child whose channel closed is forgotten; its connections stay here."""
    tcp = object()
    limits = {tcp: ConnectionLimit("TCP", "K")}
    reactor = _Reactor(limits)
    dispatcher = Dispatcher(reactor)
    dispatcher.serve(b"t", tcp, limits[tcp])
    parent, child = channel_pair()
    dispatcher.add_child(1, parent)
    child.close()
    dispatcher._read_reports(dispatcher._children[1])
    assert dispatcher._children == {} and reactor.readers == []
    for _ in range(3):
        dispatcher.dispatch(_conn(), b"t")
    assert reactor.adopted == [tcp, tcp, tcp]
