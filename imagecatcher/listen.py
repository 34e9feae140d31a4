"""Listening TCP sockets made the way CONTRACT §10.2 asks, handed to the reactor.

The reference service set ``SO_REUSEADDR`` and ``SO_REUSEPORT`` on both
listening sockets, ``SO_RCVBUF`` from ``SO_RECEIVE_BUFSIZE``, and a backlog of
the kernel's ``net.core.somaxconn``.  Twisted's ``listenTCP`` sets only
``SO_REUSEADDR`` and takes a backlog of 50, so the socket is made here and
adopted with ``IReactorSocket.adoptStreamPort``.  ``SO_REUSEPORT`` is also
what lets several worker processes bind the same port: the kernel spreads
new connections over their sockets.

Only ``tcp:`` and ``tcp6:`` endpoint strings (and the old ``:5001`` /
``host:5001`` forms, which :func:`imagecatcher.config.to_endpoint` turns into
them) are built here; :func:`parse_tcp_endpoint` returns ``None`` for any
other endpoint type, which the caller builds with Twisted's own parser.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from twisted.application.service import Service
from twisted.internet.abstract import isIPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

log = Logger()

#: Where Linux publishes ``net.core.somaxconn``.
SOMAXCONN_PATH = Path("/proc/sys/net/core/somaxconn")
#: The largest backlog used, whatever the kernel allows (§10.2).
MAX_BACKLOG = 65535


class EndpointError(ValueError):
    """A ``tcp:``/``tcp6:`` endpoint string cannot be read; the text says why."""


@attrs.frozen
class TCPAddress:
    """Where one listening TCP socket binds."""

    port: int
    #: Host or address to bind; ``""`` is the IPv4 wildcard, ``"::"`` the IPv6 one.
    interface: str = ""
    #: An explicit ``backlog=`` of the endpoint string; ``None`` = somaxconn.
    backlog: int | None = None

    @property
    def family(self) -> socket.AddressFamily:
        """IPv6 when the interface is an IPv6 address (as Twisted decides)."""
        return socket.AF_INET6 if isIPv6Address(self.interface) else socket.AF_INET


def _split(description: str) -> list[tuple[str | None, str]]:
    """``a:k=v:b`` → ``[(None, "a"), ("k", "v"), (None, "b")]``; ``\\`` escapes."""
    fields: list[tuple[str | None, str]] = []
    key: str | None = None
    current: list[str] = []
    chars = iter(description)
    for ch in chars:
        if ch == "\\":
            current.append(next(chars, ""))
        elif ch == ":":
            fields.append((key, "".join(current)))
            key, current = None, []
        elif ch == "=" and key is None:
            key, current = "".join(current), []
        else:
            current.append(ch)
    fields.append((key, "".join(current)))
    return fields


def parse_tcp_endpoint(description: str) -> TCPAddress | None:
    """Read a ``tcp:`` or ``tcp6:`` server endpoint string; ``None`` for other types.

    The grammar is Twisted's: ``tcp:PORT[:interface=ADDR][:backlog=N]`` (or
    ``tcp:PORT:ADDR:N`` positionally) and ``tcp6:PORT[:backlog=N][:interface=ADDR]``
    (positional order port, backlog, interface), with ``\\`` escaping a colon
    inside an IPv6 address.  ``tcp6`` only changes the default interface to
    ``::``.  Raises :class:`EndpointError` for a malformed TCP endpoint.
    """
    fields = _split(description)
    kind = fields[0][1].lower() if fields[0][0] is None else ""
    if kind not in ("tcp", "tcp6"):
        return None
    names = ["port", "interface", "backlog"]
    if kind == "tcp6":
        names = ["port", "backlog", "interface"]
    values: dict[str, str] = {}
    positional = [value for key, value in fields[1:] if key is None]
    if len(positional) > len(names):
        raise EndpointError(f"too many fields in endpoint {description!r}")
    values.update(zip(names, positional, strict=False))
    for key, value in fields[1:]:
        if key is None:
            continue
        if key not in names or key in values:
            raise EndpointError(f"unexpected {key}= in endpoint {description!r}")
        values[key] = value
    if "port" not in values:
        raise EndpointError(f"no port in endpoint {description!r}")
    try:
        port = int(values["port"])
        backlog = int(values["backlog"]) if "backlog" in values else None
    except ValueError:
        raise EndpointError(
            f"port and backlog must be integers: {description!r}"
        ) from None
    if not 0 <= port <= 65535:
        raise EndpointError(f"port out of range in endpoint {description!r}")
    if backlog is not None and backlog <= 0:
        raise EndpointError(f"backlog must be positive in endpoint {description!r}")
    default_interface = "::" if kind == "tcp6" else ""
    return TCPAddress(port, values.get("interface", default_interface), backlog)


def somaxconn(path: Path = SOMAXCONN_PATH) -> int:
    """The kernel's ``net.core.somaxconn`` capped at 65535, else ``SOMAXCONN``."""
    try:
        value = int(path.read_text().strip())
    except (OSError, ValueError):
        return min(socket.SOMAXCONN, MAX_BACKLOG)
    if value <= 0:
        return min(socket.SOMAXCONN, MAX_BACKLOG)
    return min(value, MAX_BACKLOG)


SocketFactory = Callable[[socket.AddressFamily, socket.SocketKind], Any]


def open_listening_socket(
    address: TCPAddress,
    *,
    rcvbuf: int = 0,
    reuseport: bool = True,
    backlog: int | None = None,
    make_socket: SocketFactory = socket.socket,
) -> Any:
    """Create, configure, bind and listen; raise ``CannotListenError`` on failure.

    ``SO_REUSEADDR`` always; ``SO_REUSEPORT`` when ``reuseport`` (an OS
    without it fails start-up, §10.2); ``SO_RCVBUF`` when ``rcvbuf > 0``
    (before ``listen`` so accepted connections inherit it and the window
    scale is chosen to match); an IPv6 socket is dual stack.  The backlog is
    the endpoint's ``backlog=`` if given, else ``backlog``, else
    :func:`somaxconn`.  The socket is returned non-blocking and close-on-exec.
    """
    family = address.family
    host = address.interface or None
    try:
        infos = socket.getaddrinfo(
            host, address.port, family, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
    except socket.gaierror as e:
        raise CannotListenError(address.interface, address.port, e) from None
    sockaddr = infos[0][4]
    sock = make_socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            option = getattr(socket, "SO_REUSEPORT", None)
            if option is None:
                raise OSError("SO_REUSEPORT is not supported on this system")
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, 1)
            except OSError as e:
                raise OSError(f"SO_REUSEPORT is not supported: {e}") from None
        if rcvbuf > 0:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(sockaddr)
        if address.backlog is not None:
            backlog = address.backlog
        sock.listen(somaxconn() if backlog is None else min(backlog, MAX_BACKLOG))
        sock.setblocking(False)
        sock.set_inheritable(False)
    except OSError as e:
        sock.close()
        raise CannotListenError(address.interface, address.port, e) from None
    return sock


class ReusePortListener(Service):
    """Listens on one TCP address with a socket from :func:`open_listening_socket`.

    The socket is bound in ``privilegedStartService`` (before twistd sheds
    privileges) and a failed bind raises there, which aborts start-up with
    twistd's ``CannotListenError`` message, as ``strports.service`` does.
    """

    def __init__(
        self,
        reactor: Any,
        address: TCPAddress,
        factory: Any,
        *,
        rcvbuf: int = 0,
        reuseport: bool = True,
        make_socket: SocketFactory = socket.socket,
    ) -> None:
        self._reactor = reactor
        self._make_socket = make_socket
        self._address = address
        self._factory = factory
        self._rcvbuf = rcvbuf
        self._reuseport = reuseport
        self.port: Any = None

    def privilegedStartService(self) -> None:
        """Bind now; raise ``CannotListenError`` if the address is unusable."""
        super().privilegedStartService()
        if self.port is None:
            self._listen()

    def startService(self) -> None:
        """Bind unless ``privilegedStartService`` already did."""
        super().startService()
        if self.port is None:
            self._listen()

    def _listen(self) -> None:
        sock = open_listening_socket(
            self._address,
            rcvbuf=self._rcvbuf,
            reuseport=self._reuseport,
            make_socket=self._make_socket,
        )
        try:
            # The reactor works on its own duplicate of the descriptor.
            self.port = self._reactor.adoptStreamPort(
                sock.fileno(), sock.family, self._factory
            )
        finally:
            sock.close()
        log.info(
            "listening on {interface}:{port} (SO_REUSEPORT {reuseport})",
            interface=self._address.interface or "0.0.0.0",
            port=self.port.getHost().port,
            reuseport="on" if self._reuseport else "off",
        )

    def stopService(self) -> Deferred[None] | None:
        """Stop accepting; the Deferred fires once the socket is closed."""
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return None
        result: Deferred[None] | None = port.stopListening()
        return result


def _nothing() -> None:
    pass


class ConnectionLimit:
    """Admission of new connections up to ``max_connections`` (0: no limit).

    A refusal is counted in :attr:`refused` and logged once per run of
    refusals, with a second line when connections are accepted again.  The
    owner counts :attr:`open_connections` up when it builds a protocol and
    down when one closes.
    """

    def __init__(self, kind: str, key: str, max_connections: int = 0) -> None:
        self._kind = kind
        self._key = key
        self.max_connections = max_connections
        #: Connections open now.
        self.open_connections = 0
        #: Called after every change of :attr:`open_connections`.
        self.on_change: Callable[[], None] = _nothing
        #: Connections closed at once because ``max_connections`` were open.
        self.refused = 0
        self._refusing = False
        self._refused_before = 0

    def admit(self, addr: Any) -> bool:
        """Whether a connection from ``addr`` may be served."""
        limit = self.max_connections
        if limit and self.open_connections >= limit:
            self.refused += 1
            if not self._refusing:
                self._refusing, self._refused_before = True, self.refused - 1
                log.warn(
                    "closing {kind} connection from {peer}: {n} are open, the limit"
                    " ({key}); more refusals are only counted until a connection"
                    " is accepted again",
                    kind=self._kind,
                    key=self._key,
                    peer=addr,
                    n=self.open_connections,
                )
            return False
        if self._refusing:
            self._refusing = False
            log.warn(
                "accepting {kind} connections again after refusing {n} at the"
                " limit of {limit}",
                kind=self._kind,
                n=self.refused - self._refused_before,
                limit=limit,
            )
        return True

    def opened(self) -> None:
        """One connection admitted is served from now on."""
        self.open_connections += 1
        self.on_change()

    def closed(self) -> None:
        """One connection admitted before has closed."""
        self.open_connections -= 1
        self.on_change()
