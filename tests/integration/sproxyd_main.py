"""Run the fake sproxyd (tests/storefakes.py) as its own process.

``python -m tests.integration.sproxyd_main PORT`` serves ``/proxy/bparc/`` on
127.0.0.1:PORT until terminated; daemons under test reach it like a real
Scality connector.
"""

from __future__ import annotations

import sys

from twisted.internet import reactor
from twisted.web.server import Site

from tests.storefakes import FakeSproxyd


def main() -> None:
    """Listen on the port given as the only argument."""
    port = int(sys.argv[1])
    reactor.listenTCP(port, Site(FakeSproxyd()), interface="127.0.0.1")  # type: ignore[arg-type]
    reactor.run()


if __name__ == "__main__":
    main()
