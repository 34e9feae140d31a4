"""Unit tests for the listening sockets of CONTRACT §10.2 (imagecatcher.listen)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactor

from imagecatcher.config import to_endpoint
from imagecatcher.listen import (
    MAX_BACKLOG,
    EndpointError,
    ReusePortListener,
    TCPAddress,
    open_listening_socket,
    parse_tcp_endpoint,
    somaxconn,
)


class FakeSocket:
    """Records what is done to it; ``fail_on`` names an option or call that fails."""

    def __init__(
        self, family: socket.AddressFamily, kind: socket.SocketKind, fail_on: Any = None
    ) -> None:
        self.family = family
        self.kind = kind
        self.options: dict[tuple[int, int], int] = {}
        self.bound: Any = None
        self.backlog: int | None = None
        self.blocking = True
        self.inheritable = True
        self.closed = False
        self._fail_on = fail_on

    def setsockopt(self, level: int, option: int, value: int) -> None:
        """Record an option."""
        if (level, option) == self._fail_on:
            raise OSError(92, "Protocol not available")
        self.options[(level, option)] = value

    def bind(self, address: Any) -> None:
        """Record the address."""
        if self._fail_on == "bind":
            raise OSError(98, "Address already in use")
        self.bound = address

    def listen(self, backlog: int) -> None:
        """Record the backlog."""
        self.backlog = backlog

    def setblocking(self, flag: bool) -> None:
        """Record the mode."""
        self.blocking = flag

    def set_inheritable(self, flag: bool) -> None:
        """Record inheritability."""
        self.inheritable = flag

    def fileno(self) -> int:
        """A made-up descriptor."""
        return 99

    def close(self) -> None:
        """Mark closed."""
        self.closed = True


class Sockets:
    """A socket factory for ``make_socket`` that remembers what it made."""

    def __init__(self, fail_on: Any = None) -> None:
        self.made: list[FakeSocket] = []
        self._fail_on = fail_on

    def __call__(
        self, family: socket.AddressFamily, kind: socket.SocketKind
    ) -> FakeSocket:
        made = FakeSocket(family, kind, self._fail_on)
        self.made.append(made)
        return made


SOL = socket.SOL_SOCKET


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("tcp:5001", TCPAddress(5001, "", None)),
        ("TCP:5001", TCPAddress(5001, "", None)),
        ("tcp:5001:interface=127.0.0.1", TCPAddress(5001, "127.0.0.1", None)),
        ("tcp:5001:backlog=10:interface=0.0.0.0", TCPAddress(5001, "0.0.0.0", 10)),
        ("tcp:5001:127.0.0.1:7", TCPAddress(5001, "127.0.0.1", 7)),
        ("tcp:5001:interface=\\:\\:1", TCPAddress(5001, "::1", None)),
        ("tcp6:5001", TCPAddress(5001, "::", None)),
        ("tcp6:5001:64", TCPAddress(5001, "::", 64)),
        ("tcp6:5001:interface=\\:\\:1:backlog=8", TCPAddress(5001, "::1", 8)),
    ],
)
def test_tcp_endpoints_are_read_as_twisted_reads_them(
    description: str, expected: TCPAddress
) -> None:
    """tcp: and tcp6: strings give Twisted's port, interface and backlog."""
    assert parse_tcp_endpoint(description) == expected


@pytest.mark.parametrize(
    ("old", "expected"),
    [
        (":5001", TCPAddress(5001, "::", None)),
        ("127.0.0.1:5001", TCPAddress(5001, "127.0.0.1", None)),
        ("[::1]:5001", TCPAddress(5001, "::1", None)),
    ],
)
def test_old_address_forms_arrive_as_tcp_endpoints(
    old: str, expected: TCPAddress
) -> None:
    """The old :5001 and host:5001 forms, converted by config, parse here."""
    assert parse_tcp_endpoint(to_endpoint(old)) == expected


def test_family_follows_the_interface() -> None:
    """An IPv6 interface makes an IPv6 socket, as Twisted's listenTCP decides."""
    assert TCPAddress(1, "").family == socket.AF_INET
    assert TCPAddress(1, "127.0.0.1").family == socket.AF_INET
    assert TCPAddress(1, "::").family == socket.AF_INET6
    assert TCPAddress(1, "::1").family == socket.AF_INET6


@pytest.mark.parametrize(
    "description", ["unix:/run/ic.sock", "ssl:443", "systemd:domain=INET:index=0"]
)
def test_other_endpoint_types_are_left_to_twisted(description: str) -> None:
    """Endpoint types other than tcp and tcp6 are not ours to build."""
    assert parse_tcp_endpoint(description) is None


@pytest.mark.parametrize(
    "description",
    [
        "tcp:",
        "tcp:abc",
        "tcp:70000",
        "tcp:5001:bogus=1",
        "tcp:5001:backlog=x",
        "tcp:5001:backlog=0",
        "tcp:5001:a:1:extra",
        "tcp:5001:interface=a:interface=b",
    ],
)
def test_malformed_tcp_endpoints_are_refused(description: str) -> None:
    """A malformed TCP endpoint raises EndpointError naming it."""
    with pytest.raises(EndpointError, match=r"endpoint|integers"):
        parse_tcp_endpoint(description)


def test_somaxconn_reads_the_kernel_setting(tmp_path: Path) -> None:
    """The backlog is net.core.somaxconn."""
    path = tmp_path / "somaxconn"
    path.write_text("4096\n")
    assert somaxconn(path) == 4096


def test_somaxconn_is_capped(tmp_path: Path) -> None:
    """A kernel setting above 65535 is capped."""
    path = tmp_path / "somaxconn"
    path.write_text("1000000\n")
    assert somaxconn(path) == MAX_BACKLOG == 65535


@pytest.mark.parametrize("content", [None, "", "many", "0", "-5"])
def test_somaxconn_falls_back_to_the_os_constant(
    tmp_path: Path, content: str | None
) -> None:
    """Without a usable kernel setting the backlog is socket.SOMAXCONN."""
    path = tmp_path / "somaxconn"
    if content is not None:
        path.write_text(content)
    assert somaxconn(path) == min(socket.SOMAXCONN, 65535)


def test_socket_gets_every_option_before_bind() -> None:
    """SO_REUSEADDR, SO_REUSEPORT and SO_RCVBUF are set; the backlog is somaxconn."""
    sockets = Sockets()
    sock = open_listening_socket(
        TCPAddress(5001, "127.0.0.1"), rcvbuf=262144, make_socket=sockets
    )
    assert sock is sockets.made[0]
    assert sock.options == {
        (SOL, socket.SO_REUSEADDR): 1,
        (SOL, socket.SO_REUSEPORT): 1,
        (SOL, socket.SO_RCVBUF): 262144,
    }
    assert sock.family == socket.AF_INET and sock.bound == ("127.0.0.1", 5001)
    assert sock.backlog == somaxconn()
    assert not sock.blocking and not sock.inheritable and not sock.closed


def test_no_rcvbuf_keeps_the_os_default() -> None:
    """SO_RECEIVE_BUFSIZE <= 0 leaves SO_RCVBUF alone."""
    sock = open_listening_socket(
        TCPAddress(5001, "127.0.0.1"), rcvbuf=0, make_socket=Sockets()
    )
    assert (SOL, socket.SO_RCVBUF) not in sock.options


def test_reuseport_can_be_turned_off() -> None:
    """SO_REUSEPORT false sets SO_REUSEADDR only."""
    sock = open_listening_socket(
        TCPAddress(5001, "127.0.0.1"), reuseport=False, make_socket=Sockets()
    )
    assert sock.options == {(SOL, socket.SO_REUSEADDR): 1}


def test_ipv6_wildcard_is_dual_stack() -> None:
    """tcp6 without interface binds :: with IPV6_V6ONLY off."""
    sock = open_listening_socket(
        parse_tcp_endpoint("tcp6:5001"),  # type: ignore[arg-type]
        make_socket=Sockets(),
    )
    assert sock.family == socket.AF_INET6
    assert sock.bound[:2] == ("::", 5001)
    assert sock.options[(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)] == 0


def test_endpoint_backlog_wins() -> None:
    """An explicit backlog= of the endpoint string is used, capped at 65535."""
    sock = open_listening_socket(
        TCPAddress(5001, "127.0.0.1", backlog=7), make_socket=Sockets()
    )
    assert sock.backlog == 7
    sock = open_listening_socket(
        TCPAddress(5001, "127.0.0.1", backlog=10**6), make_socket=Sockets()
    )
    assert sock.backlog == 65535


def test_unsupported_reuseport_fails_start_up() -> None:
    """An OS refusing SO_REUSEPORT makes the listen fail, naming the option."""
    sockets = Sockets(fail_on=(SOL, socket.SO_REUSEPORT))
    with pytest.raises(CannotListenError, match="SO_REUSEPORT"):
        open_listening_socket(TCPAddress(5001, "127.0.0.1"), make_socket=sockets)
    assert sockets.made[0].closed


def test_failed_bind_is_cannot_listen() -> None:
    """A taken address raises CannotListenError (twistd prints it and exits)."""
    sockets = Sockets(fail_on="bind")
    with pytest.raises(CannotListenError, match=r"127\.0\.0\.1:5001"):
        open_listening_socket(TCPAddress(5001, "127.0.0.1"), make_socket=sockets)
    assert sockets.made[0].closed


def test_listener_hands_its_socket_to_the_reactor() -> None:
    """The service binds in privilegedStartService, adopts the descriptor, closes its copy."""
    reactor = MemoryReactor()
    sockets = Sockets()
    factory = object()
    service = ReusePortListener(
        reactor, TCPAddress(5001, "127.0.0.1"), factory, make_socket=sockets
    )
    service.privilegedStartService()
    service.startService()
    assert reactor.adoptedPorts == [(99, socket.AF_INET, factory)]
    assert len(sockets.made) == 1 and sockets.made[0].closed
    service.stopService()
    assert service.port is None


def test_listener_failure_propagates_from_privileged_start() -> None:
    """A failed bind raises out of privilegedStartService, aborting start-up."""
    service = ReusePortListener(
        MemoryReactor(),
        TCPAddress(5001, "127.0.0.1"),
        object(),
        make_socket=Sockets(fail_on="bind"),
    )
    with pytest.raises(CannotListenError):
        service.privilegedStartService()
