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


# -- reading a request whose image has not been kept ------------------------------

_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_U64 = struct.Struct("<Q")
#: Field indexes of ImageTileRequest (§3.2).
_IMAGE, _CHECKSUM = 6, 5


class NeedMore(Exception):
    """More leading bytes of the frame are needed; ``args[0]`` is how many."""


class _Parts:
    """A frame of which only ``head`` (its first bytes) and ``tail`` (the
    bytes from ``tail_start`` to the end) are at hand: reads inside the hole
    between them are errors, reads past ``head`` before the hole ask for more."""

    def __init__(
        self,
        frame_len: int,
        head: bytes | bytearray,
        tail: bytes | bytearray = b"",
        tail_start: int | None = None,
    ) -> None:
        self.frame_len = frame_len
        self.head = head
        self.tail = tail
        self.tail_start = frame_len if tail_start is None else tail_start
        self.hole = tail_start is not None

    def read(self, fmt: struct.Struct, pos: int) -> int:
        end = pos + fmt.size
        if pos < 0 or end > self.frame_len:
            raise BadMessage("an offset points outside the message")
        if end <= len(self.head):
            return int(fmt.unpack_from(self.head, pos)[0])
        if pos >= self.tail_start:
            return int(fmt.unpack_from(self.tail, pos - self.tail_start)[0])
        if self.hole:
            raise BadMessage("a field lies inside the image bytes")
        raise NeedMore(end)

    def bytes(self, start: int, length: int) -> bytes:
        end = start + length
        if start < 0 or end > self.frame_len:
            raise BadMessage("a vector runs past the end of the message")
        if end <= len(self.head):
            return bytes(self.head[start:end])
        if start >= self.tail_start:
            return bytes(self.tail[start - self.tail_start : end - self.tail_start])
        if self.hole:
            raise BadMessage("a vector lies inside the image bytes")
        raise NeedMore(end)


class _Table:
    """The root table of an ImageTileRequest, read through :class:`_Parts`."""

    def __init__(self, parts: _Parts) -> None:
        self._p = parts
        self._root = parts.read(_U32, 0)
        self._vtable = self._root - parts.read(_I32, self._root)
        self._vtable_len = parts.read(_U16, self._vtable)

    def _offset(self, index: int) -> int:
        slot = _slot(index)
        if slot + 2 > self._vtable_len:
            return 0
        return self._p.read(_U16, self._vtable + slot)

    def scalar(self, index: int, fmt: struct.Struct) -> int:
        offset = self._offset(index)
        return self._p.read(fmt, self._root + offset) if offset else 0

    def vector(self, index: int) -> tuple[int, int]:
        """(start, length) of a byte vector; (0, 0) when absent."""
        offset = self._offset(index)
        if not offset:
            return 0, 0
        at = self._root + offset
        start = at + self._p.read(_U32, at) + 4
        length = self._p.read(_U32, start - 4)
        if start + length > self._p.frame_len:
            raise BadMessage("a vector runs past the end of the buffer")
        return start, length


def locate_image(head: bytes | bytearray, frame_len: int) -> tuple[int, int]:
    """Where the ``image`` vector of an ImageTileRequest frame lies.

    ``head`` is the frame's first bytes; NeedMore says how many leading bytes
    are needed to tell, BadMessage that no well-formed request can follow.
    """
    try:
        return _Table(_Parts(frame_len, head)).vector(_IMAGE)
    except (NeedMore, BadMessage):
        raise
    except _DECODE_ERRORS as e:
        raise BadMessage(f"malformed ImageTileRequest: {e}") from None


def decode_request_around(
    frame_len: int,
    head: bytes | bytearray,
    tail: bytes | bytearray,
    image: tuple[int, int],
) -> TileRequest:
    """Read an ImageTileRequest from the bytes before and after its image.

    ``image`` is what :func:`locate_image` returned; ``head`` holds the
    frame's bytes before it and ``tail`` those after it.  The request's
    ``image`` is empty: its bytes went to a sink as they arrived.
    """
    start, length = image
    try:
        t = _Table(_Parts(frame_len, head, tail, start + length))
        checksum_start, checksum_len = t.vector(_CHECKSUM)
        checksum = t._p.bytes(checksum_start, checksum_len) if checksum_len else b""
        return TileRequest(
            acq_id=t.scalar(0, _U64),
            camera=t.scalar(1, _I32),
            frame=t.scalar(2, _I32),
            col=t.scalar(3, _I32),
            row=t.scalar(4, _I32),
            checksum=checksum,
            image=memoryview(b""),
        )
    except NeedMore:
        raise BadMessage("the image overlaps the request's fields") from None
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
