"""Run the fake sproxyd (tests/storefakes.py) as its own process.

``python -m tests.integration.sproxyd_main PORT [JOURNAL]`` serves
``/proxy/bparc/`` on 127.0.0.1:PORT until terminated; daemons under test reach
it like a real Scality connector.  With ``JOURNAL``, every change it makes is
appended to that file as one JSON object per line, so that a test can tell
what the fake holds: ``{"op": "start"}`` when it starts (empty),
``{"op": "put", "key", "sha1", "size", "path"}`` for each stored object (the
path from its ``X-Scal-Usermd``) and ``{"op": "delete", "key"}``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from typing import IO, Any

from twisted.internet import reactor
from twisted.web.server import Request, Site

from tests.storefakes import FakeSproxyd


class JournalledSproxyd(FakeSproxyd):
    """The fake sproxyd, writing each successful PUT and DELETE to a journal."""

    def __init__(self, journal: IO[str]) -> None:
        super().__init__()
        self._journal = journal
        self._write({"op": "start"})

    def _write(self, record: dict[str, Any]) -> None:
        self._journal.write(json.dumps(record) + "\n")
        self._journal.flush()

    def render(self, request: Request) -> int:
        """Answer as the fake does, then journal what changed."""
        result = super().render(request)
        if request.code != 200 or request.method not in (b"PUT", b"DELETE"):
            return result
        key = request.path.rsplit(b"/", 1)[-1].decode("ascii").upper()
        if request.method == b"DELETE":
            self._write({"op": "delete", "key": key})
            return result
        blob = self.objects[("bparc", key)]
        path = ""
        if blob.usermd is not None:
            path = json.loads(base64.b64decode(blob.usermd)).get("path", "")
        self._write(
            {
                "op": "put",
                "key": key,
                "sha1": hashlib.sha1(blob.data).hexdigest(),
                "size": len(blob.data),
                "path": path,
            }
        )
        return result


def main() -> None:
    """Listen on the port given as the first argument; journal to the second."""
    port = int(sys.argv[1])
    if len(sys.argv) > 2:
        resource: FakeSproxyd = JournalledSproxyd(
            open(sys.argv[2], "a", encoding="utf-8")
        )
    else:
        resource = FakeSproxyd()
    reactor.listenTCP(port, Site(resource), interface="127.0.0.1")  # type: ignore[arg-type]
    reactor.run()


if __name__ == "__main__":
    main()
