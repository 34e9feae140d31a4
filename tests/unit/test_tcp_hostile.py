"""Regression tests for what the TCP fuzzer found, and the limits against hostile peers."""

from __future__ import annotations

import hashlib

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from imagecatcher.protocol import TileRequest, TileResponse, encode_request, frame
from imagecatcher.sink import TileSink
from imagecatcher.tcp import TileProtocol

IMAGE = b"tile bytes" * 8


class GatedHandler:
    """Every capture waits for the test to open its gate."""

    def __init__(self) -> None:
        self.gates: list[Deferred[TileResponse]] = []

    async def capture(
        self, request: TileRequest, sink: TileSink | None = None
    ) -> TileResponse:
        """Wait for the gate."""
        gate: Deferred[TileResponse] = Deferred()
        self.gates.append(gate)
        return await gate


def request_frame(acq_id: int) -> bytes:
    """A framed, valid request."""
    checksum = hashlib.md5(IMAGE).digest()
    return frame(encode_request(acq_id, 1, -1, 0, 2, checksum, IMAGE))


def test_a_tile_answered_after_the_peer_left_arms_no_idle_timer() -> None:
    """A capture that finishes after the peer left leaves no timer behind
    (it used to re-arm the idle timer on the dead connection)."""
    clock = MemoryReactorClock()
    handler = GatedHandler()
    proto = TileProtocol(handler, idle_timeout=30.0)
    proto.callLater = clock.callLater  # type: ignore[method-assign, assignment]
    proto.makeConnection(StringTransport())
    proto.dataReceived(request_frame(1))
    proto.connectionLost(Failure(ConnectionDone()))
    handler.gates[0].callback(TileResponse(acq_id=1, tile_id=1))
    assert clock.getDelayedCalls() == []
