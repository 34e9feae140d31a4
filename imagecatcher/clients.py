"""Who may open a raw TCP connection: ``TCP_ALLOWED_CLIENTS``.

The raw TCP channel (§3) carries no credentials, so it is restricted by
peer address instead: a list of networks in CIDR notation, IPv4 and IPv6
(a bare address is a single host).  An empty list lets everyone in, as
before.  On a dual-stack socket an IPv4 peer arrives as ``::ffff:a.b.c.d``;
it is matched as the IPv4 address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from twisted.logger import Logger

log = Logger()

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Sequence[str]) -> tuple[Network, ...]:
    """Read CIDR networks; ValueError names the first bad one."""
    networks = []
    for text in values:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=True))
        except ValueError as e:
            raise ValueError(f"invalid network {text!r}: {e}") from None
    return tuple(networks)


def _peer_address(addr: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    host = getattr(addr, "host", None)
    if not isinstance(host, str):
        return None
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class ClientAllowList:
    """Admits connections from the allowed networks only.

    Each refusal is counted in :attr:`refused` (for the metrics) and logged
    with the peer's address.  With no networks every peer is admitted.
    """

    def __init__(self, networks: Sequence[Network], key: str) -> None:
        self.networks = tuple(networks)
        self._key = key
        #: Connections closed at once because their peer is not allowed.
        self.refused = 0

    def admit(self, addr: Any) -> bool:
        """Whether a connection from ``addr`` (an ``IAddress``) may be served."""
        if not self.networks:
            return True
        ip = _peer_address(addr)
        if ip is not None and any(ip in net for net in self.networks):
            return True
        self.refused += 1
        log.warn(
            "closing connection from {peer}: not in {key}",
            peer=getattr(addr, "host", addr),
            key=self._key,
        )
        return False
