"""Tile payloads and the two ways of sending one tile (TCP frame, HTTP PUT).

Building and hashing a multi-megabyte tile per request would cost the load
generator as much CPU as the daemon spends, on the same two cores.  So each
size has one random image, and tiles differ only in their last 16 bytes
(acquisition, camera, sequence number): the MD5 of the common prefix is
computed once and each tile's digest is a copy of that state fed 16 bytes.
Each connection owns one request buffer, built once with
:func:`imagecatcher.protocol.encode_request`, in which the tile's fields, MD5
and tail are overwritten in place before each send (the previous request was
acknowledged, so the buffer is free).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
from dataclasses import dataclass

from flatbuffers import encode, packer
from flatbuffers.table import Table

from bench.httpclient import HttpConnection
from imagecatcher.protocol import (
    PREFIX,
    decode_request,
    decode_response,
    encode_request,
)

TAIL = struct.Struct("<QII")  #: acquisition, camera, sequence: 16 bytes
_INT32 = struct.Struct("<i")

# Field slots of ImageTileRequest (CONTRACT §3.2), in schema order.
_CAMERA, _COL, _ROW, _CHECKSUM, _IMAGE = 1, 3, 4, 5, 6


class TileImage:
    """The random bytes of one tile size and the MD5 state of their prefix."""

    def __init__(self, size: int) -> None:
        if size <= TAIL.size:
            raise ValueError(f"a tile needs more than {TAIL.size} bytes")
        self.size = size
        self.prefix = os.urandom(size - TAIL.size)
        self._md5 = hashlib.md5(self.prefix)

    def tail(self, acq_id: int, camera: int, seq: int) -> bytes:
        """The 16 bytes that make tile ``seq`` of this camera unique."""
        return TAIL.pack(acq_id & 0xFFFFFFFFFFFFFFFF, camera, seq)

    def md5(self, tail: bytes) -> bytes:
        """MD5 of ``prefix + tail`` without re-hashing the prefix."""
        digest = self._md5.copy()
        digest.update(tail)
        return digest.digest()


@dataclass(frozen=True)
class Tile:
    """One tile to send: where it goes and what makes it unique."""

    col: int
    row: int
    camera: int
    tail: bytes
    md5: bytes

    @property
    def name(self) -> str:
        """The stable tile file name (CONTRACT §2)."""
        return f"col{self.col:04d}_row{self.row:04d}_cam{self.camera}.tif"


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        r = sock.recv_into(view[got:])
        if r == 0:
            raise ConnectionError(f"connection closed after {got} of {n} bytes")
        got += r
    return bytes(buf)


class TcpSender:
    """One persistent TCP connection sending tiles of one acquisition."""

    def __init__(
        self, host: str, port: int, acq_id: int, image: TileImage, timeout: float
    ) -> None:
        self._acq_id = acq_id
        buf = encode_request(acq_id, 0, -1, 1, 1, bytes(16), image.prefix + bytes(16))
        self._frame = bytearray(PREFIX.pack(len(buf))) + buf
        self._locate(buf)
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _locate(self, buf: bytes) -> None:
        """Find the frame offsets of the fields rewritten per tile."""
        table = Table(buf, encode.Get(packer.uoffset, buf, 0))

        def field(slot: int) -> int:
            offset = int(table.Offset(4 + 2 * slot))
            if not offset:
                raise RuntimeError(f"encode_request left out field {slot}")
            return offset

        base = PREFIX.size
        self._scalars = {
            slot: base + table.Pos + field(slot) for slot in (_CAMERA, _COL, _ROW)
        }
        self._checksum = base + table.Vector(field(_CHECKSUM))
        image_start = base + table.Vector(field(_IMAGE))
        self._tail = image_start + table.VectorLen(field(_IMAGE)) - TAIL.size

    def _fill(self, tile: Tile) -> None:
        frame = self._frame
        for slot, value in ((_CAMERA, tile.camera), (_COL, tile.col), (_ROW, tile.row)):
            _INT32.pack_into(frame, self._scalars[slot], value)
        frame[self._checksum : self._checksum + 16] = tile.md5
        frame[self._tail : self._tail + TAIL.size] = tile.tail

    def self_check(self, tile: Tile) -> None:
        """Decode the patched request and compare it with ``tile``."""
        self._fill(tile)
        req = decode_request(memoryview(self._frame)[PREFIX.size :])
        got = (req.acq_id, req.camera, req.frame, req.col, req.row, req.checksum)
        want = (self._acq_id, tile.camera, -1, tile.col, tile.row, tile.md5)
        if got != want or hashlib.md5(req.image).digest() != tile.md5:
            raise RuntimeError(f"patched TCP frame decodes as {got}, not {want}")

    def send(self, tile: Tile) -> str | None:
        """Send one tile and wait for its response; an error text or None."""
        self._fill(tile)
        self._sock.sendall(self._frame)
        (length,) = PREFIX.unpack(_recv_exactly(self._sock, PREFIX.size))
        resp = decode_response(_recv_exactly(self._sock, length))
        if resp.status != 0 or resp.tile_id <= 0 or resp.acq_id != self._acq_id:
            return f"TCP {tile.name}: status {resp.status}, tile id {resp.tile_id}"
        return None

    def close(self) -> None:
        """Close the connection."""
        self._sock.close()


class HttpSender:
    """One keep-alive HTTP connection PUTting raw tiles of one acquisition.

    A tile counts as acknowledged, as for a rig, on HTTP 200 with a JSON body
    naming a positive ``tile_id`` at the tile's column and row.
    """

    def __init__(
        self, host: str, port: int, acq_id: int, image: TileImage, timeout: float
    ) -> None:
        self._acq_id = acq_id
        self._body = bytearray(image.prefix + bytes(TAIL.size))
        self._conn = HttpConnection(host, port, timeout)
        self._headers = {"Content-Type": "application/octet-stream"}

    def self_check(self, tile: Tile) -> None:
        """Check that the body patched for ``tile`` has ``tile.md5``."""
        self._body[-TAIL.size :] = tile.tail
        if hashlib.md5(self._body).digest() != tile.md5:
            raise RuntimeError("patched HTTP body does not match its MD5")

    def send(self, tile: Tile) -> str | None:
        """PUT one tile with its MD5; an error text or None."""
        self._body[-TAIL.size :] = tile.tail
        target = (
            f"/service/v1/capture-image-content/{self._acq_id}"
            f"?tile-filename={tile.name}&checksum={tile.md5.hex()}"
        )
        resp = self._conn.request("PUT", target, self._body, self._headers)
        if resp.status != 200:
            return f"HTTP {tile.name}: {resp.status} {resp.text(200)}"
        try:
            ack = json.loads(bytes(resp.body))
            acked = (ack["tile_id"] > 0, ack["tile_col"], ack["tile_row"])
        except (ValueError, KeyError, TypeError):
            return f"HTTP {tile.name}: 200 but {resp.text(200)}"
        if acked != (True, tile.col, tile.row):
            return f"HTTP {tile.name}: acknowledged as {resp.text(200)}"
        return None

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


Sender = TcpSender | HttpSender
