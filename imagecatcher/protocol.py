"""The raw TCP wire format (CONTRACT §3): frames and FlatBuffers messages.

Every message is a little-endian ``uint32`` length followed by a FlatBuffers
buffer: ``ImageTileRequest`` from the rig, ``ImageTileResponse`` back, both
in namespace ``idls.tilerequests``.  The tables are small and fixed, so they
are read and written here with the FlatBuffers runtime directly; decoding
the request does not copy the image bytes.
"""

from __future__ import annotations

import struct

import attrs
import flatbuffers
from flatbuffers import encode, packer, table
from flatbuffers import number_types as N

#: §3.1: the frame prefix.
PREFIX = struct.Struct("<I")


class BadMessage(ValueError):
    """A frame does not hold a well-formed FlatBuffers message."""


@attrs.frozen
class TileRequest:
    """An ``ImageTileRequest``; ``image`` is a view into the received frame."""

    acq_id: int
    camera: int
    frame: int
    col: int
    row: int
    checksum: bytes
    image: memoryview = attrs.field(eq=False, repr=lambda v: f"<{len(v)} bytes>")


@attrs.frozen
class TileResponse:
    """An ``ImageTileResponse``; queue colours as numbers 0 green..2 red."""

    acq_id: int = 0
    tile_id: int = 0
    status: int = 0
    system_status: int = 0
    tile_queue_status: int = 0
    content_queue_status: int = 0


#: What the FlatBuffers runtime raises on a malformed buffer: struct.error for
#: a read past the end, TypeError (from ``enforce_number``) for an offset that
#: points before the start.
_DECODE_ERRORS = (struct.error, IndexError, TypeError, ValueError)


def _slot(index: int) -> int:
    return 4 + 2 * index  # vtable offset of the index-th field


class _Reader:
    def __init__(self, buf: bytes | memoryview) -> None:
        self._buf = buf
        if len(buf) < 4:
            raise BadMessage(f"a {len(buf)}-byte buffer cannot hold a FlatBuffer")
        root = encode.Get(packer.uoffset, buf, 0)
        self._tab = table.Table(buf, root)

    def scalar(self, index: int, flags: N.NumberTypeFlags) -> int:
        offset = self._tab.Offset(_slot(index))
        return int(self._tab.Get(flags, offset + self._tab.Pos)) if offset else 0

    def vector(self, index: int) -> memoryview:
        offset = self._tab.Offset(_slot(index))
        if not offset:
            return memoryview(b"")
        start = self._tab.Vector(offset)
        length = self._tab.VectorLen(offset)
        if start + length > len(self._buf):
            raise BadMessage("a vector runs past the end of the buffer")
        return memoryview(self._buf)[start : start + length]


def decode_request(buf: bytes | memoryview) -> TileRequest:
    """Read an ``ImageTileRequest``; BadMessage when the buffer is malformed."""
    try:
        r = _Reader(buf)
        return TileRequest(
            acq_id=r.scalar(0, N.Uint64Flags),
            camera=r.scalar(1, N.Int32Flags),
            frame=r.scalar(2, N.Int32Flags),
            col=r.scalar(3, N.Int32Flags),
            row=r.scalar(4, N.Int32Flags),
            checksum=bytes(r.vector(5)),
            image=r.vector(6),
        )
    except BadMessage:
        raise
    except _DECODE_ERRORS as e:
        raise BadMessage(f"malformed ImageTileRequest: {e}") from None


def decode_response(buf: bytes | memoryview) -> TileResponse:
    """Read an ``ImageTileResponse`` (clients and tests)."""
    try:
        r = _Reader(buf)
        return TileResponse(
            acq_id=r.scalar(0, N.Uint64Flags),
            tile_id=r.scalar(1, N.Int64Flags),
            status=r.scalar(2, N.Int16Flags),
            system_status=r.scalar(3, N.Int16Flags),
            tile_queue_status=r.scalar(4, N.Int16Flags),
            content_queue_status=r.scalar(5, N.Int16Flags),
        )
    except _DECODE_ERRORS as e:
        raise BadMessage(f"malformed ImageTileResponse: {e}") from None


def encode_response(resp: TileResponse) -> bytes:
    """Build an ``ImageTileResponse`` buffer (without the frame prefix)."""
    b = flatbuffers.Builder(48)
    b.StartObject(6)
    b.PrependUint64Slot(0, resp.acq_id, 0)
    b.PrependInt64Slot(1, resp.tile_id, 0)
    b.PrependInt16Slot(2, resp.status, 0)
    b.PrependInt16Slot(3, resp.system_status, 0)
    b.PrependInt16Slot(4, resp.tile_queue_status, 0)
    b.PrependInt16Slot(5, resp.content_queue_status, 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


def encode_request(
    acq_id: int,
    camera: int,
    frame: int,
    col: int,
    row: int,
    checksum: bytes,
    image: bytes,
) -> bytes:
    """Build an ``ImageTileRequest`` buffer (clients and tests)."""
    b = flatbuffers.Builder(len(image) + 128)
    b.ForceDefaults(True)  # write frame 0 explicitly; absent would also read 0
    image_vec = b.CreateByteVector(image)
    checksum_vec = b.CreateByteVector(checksum)
    b.StartObject(7)
    b.PrependUint64Slot(0, acq_id, 0)
    b.PrependInt32Slot(1, camera, 0)
    b.PrependInt32Slot(2, frame, 0)
    b.PrependInt32Slot(3, col, 0)
    b.PrependInt32Slot(4, row, 0)
    b.PrependUOffsetTRelativeSlot(5, checksum_vec, 0)
    b.PrependUOffsetTRelativeSlot(6, image_vec, 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


def frame(message: bytes) -> bytes:
    """Prefix a message with its little-endian length."""
    return PREFIX.pack(len(message)) + message
