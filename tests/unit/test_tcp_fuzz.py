"""A seeded fuzzer for the TCP framing: hostile byte streams against TileProtocol (§3).

Streams are built from valid ``encode_request`` buffers, mutated ones (bytes
flipped in the root offset, the vtable and the vector lengths, absurd values
written there), truncated and random buffers, lying length prefixes and an
over-long prefix, and are cut into random chunks.  A reference framer (the
four lines of §3.1) says where every frame starts and ends; the whole-buffer
decoder says what each frame holds.  The protocol must answer every complete
frame exactly once and in order (or close after an over-long prefix), hand
the handler exactly what the frame holds, never raise out of
``dataReceived``, and leave no sink open and no timer pending.

Hypothesis is derandomized (a fixed seed per test), so CI runs the same
examples every time.
"""

from __future__ import annotations

import gc
import hashlib
import random
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import flatbuffers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure

from imagecatcher.protocol import (
    PREFIX,
    BadMessage,
    TileRequest,
    TileResponse,
    decode_request,
    decode_response,
    encode_request,
)
from imagecatcher.tcp import STREAM_MIN, HeldBytes, TileProtocol

#: The largest frame the fuzzed protocol accepts (a daemon with a small
#: MAX_TILE_BYTES), so that over-long prefixes are cheap to reach.
MAX_FRAME = 4 * STREAM_MIN

FUZZ = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)

#: Reasons the streaming path may refuse a frame that the whole-buffer
#: decoder reads: fields or vectors inside the image bytes, or too much
#: outside them.  Anything else refused must be undecodable.
STREAM_ONLY_REFUSALS = (
    "inside the image bytes",
    "the image overlaps the request's fields",
    "too many bytes outside the image",
)
#: Why a big frame that must be kept whole is refused when too many are held.
HELD_REFUSAL = "frames that cannot be streamed hold"

_INT32 = st.one_of(
    st.integers(-3, 12),
    st.sampled_from([-(2**31), 2**31 - 1, -2, 9999, 10000, 999999, 1000000]),
    st.integers(-(2**31), 2**31 - 1),
)
_U64 = st.one_of(
    st.integers(0, 200),
    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1]),
    st.integers(0, 2**64 - 1),
)
_U32_VALUES = st.one_of(
    st.sampled_from([0, 1, 2, 3, 4, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]),
    st.integers(0, 4 * STREAM_MIN),
    st.integers(0, 2**32 - 1),
)


# -- what the protocol talks to -------------------------------------------------------


class FuzzSink:
    """A sink that checks it is used as the protocol promises.

    Writes after ``finish`` or ``discard`` raise (and would escape
    ``dataReceived``).  Past ``pause_at`` bytes it pauses its producer, as a
    sink whose threads fall behind does; the test resumes it later.
    """

    def __init__(self, pause_at: int | None) -> None:
        self.data = bytearray()
        self.state = "open"
        self.discards = 0
        self.producer: Any = None
        self.paused = False
        self._pause_at = pause_at

    def attach(self, producer: Any) -> None:
        """Remember who to pause."""
        self.producer = producer

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Keep the bytes; pause the producer past the threshold."""
        assert self.state == "open", f"write to a {self.state} sink"
        self.data += data
        if self._pause_at is not None and len(self.data) >= self._pause_at:
            self._pause_at = None
            self.paused = True
            self.producer.pauseProducing()

    def catch_up(self) -> bool:
        """Resume a paused producer (the threads caught up); whether it was."""
        if not self.paused:
            return False
        self.paused = False
        self.producer.resumeProducing()
        return True

    async def finish(self) -> None:
        """The handler took the tile."""
        assert self.state == "open", f"finish of a {self.state} sink"
        self.catch_up()
        self.state = "finished"

    async def discard(self) -> None:
        """Delete the bytes (idempotent, like the real sink)."""
        self.discards += 1
        if self.state == "open":
            self.catch_up()
            self.state = "discarded"


@attrs.define
class Call:
    """One capture the handler saw."""

    index: int  # the frame it answers: responses written before it
    request: TileRequest
    image: bytes
    sink: FuzzSink | None
    raised: bool


class FuzzHandler:
    """Records captures, answers each now or later, sometimes raises.

    ``modes`` is consumed one per capture: ``now``, ``later`` (a Deferred
    the test fires), ``raise`` and ``later-raise``.  Success answers with
    the capture's number as the tile id.
    """

    def __init__(
        self,
        modes: list[str],
        pause_at: list[int | None],
        answered: Callable[[], int],
    ) -> None:
        self.calls: list[Call] = []
        self.sinks: list[FuzzSink] = []
        self.pending: list[Deferred[None]] = []
        self._modes = modes
        self._pause_at = pause_at
        self._answered = answered

    def open_sink(self) -> FuzzSink:
        """A new checked sink."""
        pause_at = self._pause_at[len(self.sinks) % len(self._pause_at)]
        sink = FuzzSink(pause_at)
        self.sinks.append(sink)
        return sink

    async def capture(
        self, request: TileRequest, sink: FuzzSink | None = None
    ) -> TileResponse:
        """Record the call; finish or discard the sink as the pipeline would."""
        mode = self._modes[len(self.calls) % len(self._modes)]
        image = bytes(sink.data) if sink is not None else bytes(request.image)
        call = Call(self._answered(), request, image, sink, "raise" in mode)
        self.calls.append(call)
        if mode.startswith("later"):
            gate: Deferred[None] = Deferred()
            self.pending.append(gate)
            await gate
        if sink is not None:
            if hashlib.md5(sink.data).digest() == request.checksum:
                await sink.finish()
            else:
                await sink.discard()
        if call.raised:
            raise RuntimeError("handler fault")
        return TileResponse(acq_id=request.acq_id, tile_id=len(self.calls))


# -- building streams -----------------------------------------------------------------


@st.composite
def _image(draw: st.DrawFn) -> bytes:
    size = draw(
        st.one_of(
            st.integers(0, 300),
            st.integers(STREAM_MIN - 64, STREAM_MIN + 64),
            st.integers(STREAM_MIN, 3 * STREAM_MIN),
        )
    )
    return random.Random(draw(st.integers(0, 2**32))).randbytes(size)


def _encode(
    fields: list[tuple[int, int]],
    checksum: bytes | None,
    image: bytes | None,
    image_first: bool,
    force_defaults: bool,
) -> bytes:
    """An ImageTileRequest laid out in one of the ways a FlatBuffers builder
    may lay it out: vectors in either order, fields absent or present."""
    b = flatbuffers.Builder(len(image or b"") + 128)
    b.ForceDefaults(force_defaults)
    vectors: dict[int, int] = {}
    order = [(6, image), (5, checksum)] if image_first else [(5, checksum), (6, image)]
    for slot, data in order:
        if data is not None:
            vectors[slot] = b.CreateByteVector(data)
    b.StartObject(7)
    for slot, value in fields:
        if slot == 0:
            b.PrependUint64Slot(0, value, 0)
        else:
            b.PrependInt32Slot(slot, value, 0)
    for slot, offset in vectors.items():
        b.PrependUOffsetTRelativeSlot(slot, offset, 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


def _vtable_last(values: list[int], checksum: bytes, image: bytes) -> bytes:
    """A request laid out by hand with its vtable after the image: valid
    (a table's vtable offset is signed), but the image cannot be located
    from the first bytes, so the frame is kept whole."""
    table = struct.pack("<iQiiiiII", 0, *values, 0, 0)
    root, at = 4, 4 + len(table)
    checksum_vec = struct.pack("<I", len(checksum)) + checksum
    checksum_vec += bytes(-len(checksum_vec) % 4)
    image_vec = struct.pack("<I", len(image)) + image
    image_vec += bytes(-len(image_vec) % 4)
    checksum_at, image_at = at, at + len(checksum_vec)
    vtable_at = image_at + len(image_vec)
    entries = [4, 12, 16, 20, 24, 28, 32]
    vtable = struct.pack("<9H", 18, len(table), *entries)
    body = bytearray(
        struct.pack("<I", root) + table + checksum_vec + image_vec + vtable
    )
    struct.pack_into("<i", body, root, root - vtable_at)
    struct.pack_into("<I", body, root + 28, checksum_at - (root + 28))
    struct.pack_into("<I", body, root + 32, image_at - (root + 32))
    return bytes(body)


@st.composite
def _valid(draw: st.DrawFn) -> bytearray:
    image = draw(_image())
    checksum = draw(
        st.one_of(
            st.just(hashlib.md5(image).digest()),
            st.just(b""),
            st.binary(min_size=0, max_size=40),
        )
    )
    acq_id = draw(_U64)
    coords = [draw(_INT32) for _ in range(4)]
    layout = draw(st.integers(0, 7))
    if layout < 5:
        camera, frame_no, col, row = coords
        return bytearray(
            encode_request(acq_id, camera, frame_no, col, row, checksum, image)
        )
    if layout == 5:
        return bytearray(_vtable_last([acq_id, *coords], checksum, image))
    present = draw(st.lists(st.integers(0, 4), unique=True, max_size=5))
    values = [acq_id, *coords]
    buf = _encode(
        [(slot, values[slot]) for slot in present],
        checksum if draw(st.booleans()) else None,
        image if draw(st.integers(0, 5)) else None,
        draw(st.booleans()),
        draw(st.booleans()),
    )
    return bytearray(buf)


def _u32(buf: bytearray, at: int) -> int:
    return int(struct.unpack_from("<I", buf, at)[0]) if 0 <= at <= len(buf) - 4 else -1


def _landmarks(buf: bytearray) -> dict[str, tuple[int, int]]:
    """Where the words that steer decoding lie in a well-formed buffer, and
    their widths: the root offset, the root's vtable offset, the vtable's two
    lengths, each field's vtable entry, and both vectors' offset and length."""
    marks = {"root": (0, 4)}
    root = _u32(buf, 0)
    if root < 0 or root + 4 > len(buf):
        return marks
    marks["soffset"] = (root, 4)
    vtable = root - struct.unpack_from("<i", buf, root)[0]
    if not 0 <= vtable <= len(buf) - 4:
        return marks
    marks["vtable_len"], marks["table_len"] = (vtable, 2), (vtable + 2, 2)
    vtable_len = struct.unpack_from("<H", buf, vtable)[0]
    for index in range(7):
        slot = 4 + 2 * index
        if slot + 2 <= vtable_len and vtable + slot + 2 <= len(buf):
            marks[f"entry{index}"] = (vtable + slot, 2)
            offset = struct.unpack_from("<H", buf, vtable + slot)[0]
            if index >= 5 and offset:
                at = root + offset
                marks[f"vector{index}"] = (at, 4)
                target = at + _u32(buf, at)
                if 0 <= target <= len(buf) - 4:
                    marks[f"length{index}"] = (target, 4)
    return marks


@st.composite
def _mutated(draw: st.DrawFn) -> bytearray:
    buf = draw(_valid())
    marks = _landmarks(buf)
    frame_len = len(buf)
    for _ in range(draw(st.integers(1, 3))):
        if not buf:
            break
        op = draw(
            st.sampled_from(["word", "word", "word", "flip", "byte", "cut", "grow"])
        )
        if op == "word":
            at, width = marks[draw(st.sampled_from(sorted(marks)))]
            if at + width > len(buf):
                continue
            old = int.from_bytes(buf[at : at + width], "little")
            value = draw(
                st.one_of(
                    _U32_VALUES,
                    st.sampled_from([old + 1, old - 1, old + 4, old // 2, old * 2]),
                    st.sampled_from([frame_len, frame_len - at, frame_len - at - 4]),
                    st.integers(max(0, old - 70000), old + 70000),
                )
            )
            buf[at : at + width] = (value % 2 ** (8 * width)).to_bytes(width, "little")
        elif op == "flip":
            at = draw(st.integers(0, min(len(buf), 128) - 1))
            buf[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            at = draw(st.integers(0, min(len(buf), 128) - 1))
            buf[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del buf[draw(st.integers(0, len(buf))) :]
        elif op == "grow":
            size = draw(st.sampled_from([1, 3, 64, STREAM_MIN + 5]))
            buf += random.Random(size).randbytes(size)
    return buf


@st.composite
def _random(draw: st.DrawFn) -> bytearray:
    size = draw(st.one_of(st.integers(0, 40), st.integers(0, 2 * STREAM_MIN)))
    return bytearray(random.Random(draw(st.integers(0, 2**32))).randbytes(size))


@st.composite
def _framed(draw: st.DrawFn) -> tuple[bytes, bool]:
    """One frame: a payload behind its true length, now and then a lying one;
    whether it is a well-formed request."""
    kind = draw(st.integers(0, 19))
    if kind < 6:
        payload = draw(_valid())
    elif kind < 16:
        payload = draw(_mutated())
    elif kind < 19:
        payload = draw(_random())
    else:
        payload = bytearray()
    length = len(payload)
    lie = draw(st.integers(0, 19))
    if lie == 0:
        length = max(0, length + draw(st.integers(-16, 16)))
    elif lie == 1:
        length = draw(st.integers(0, MAX_FRAME + 16))
    return PREFIX.pack(length) + bytes(payload), kind < 6 and length == len(payload)


@attrs.frozen
class Framing:
    """What a reference framer makes of a stream."""

    frames: list[bytes]  # complete frames, in order
    too_long: bool  # an over-long prefix ends the stream
    partial: int  # bytes of an incomplete frame at the end


def reference_framing(stream: bytes) -> Framing:
    """§3.1 read plainly: length, bytes, repeat."""
    frames: list[bytes] = []
    pos = 0
    while len(stream) - pos >= PREFIX.size:
        (length,) = PREFIX.unpack_from(stream, pos)
        if length > MAX_FRAME:
            return Framing(frames, True, 0)
        if len(stream) - pos - PREFIX.size < length:
            break
        frames.append(stream[pos + PREFIX.size : pos + PREFIX.size + length])
        pos += PREFIX.size + length
    return Framing(frames, False, len(stream) - pos)


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    """Several frames, maybe an over-long prefix, maybe cut short."""
    framed = draw(st.lists(_framed(), min_size=2, max_size=6))
    parts = [data for data, _ in framed]
    if draw(st.integers(0, 14)) == 0:
        parts.append(PREFIX.pack(draw(st.integers(MAX_FRAME + 1, 2**32 - 1))))
        parts.append(draw(st.binary(max_size=20)))
    stream = b"".join(parts)
    if draw(st.integers(0, 4)) == 0:
        stream = stream[: draw(st.integers(0, len(stream)))]
    valid = frozenset(data[PREFIX.size :] for data, ok in framed if ok)
    return Stream(stream, valid)


@attrs.frozen
class Stream:
    """Bytes a client sends, and the well-formed requests among them."""

    data: bytes = attrs.field(repr=lambda v: f"<{len(v)} bytes>")
    valid: frozenset[bytes] = attrs.field(repr=lambda v: f"<{len(v)} requests>")


_CHUNK = st.one_of(
    st.integers(1, 8), st.integers(9, 5000), st.integers(5000, 3 * STREAM_MIN)
)


@st.composite
def chunkings(draw: st.DrawFn) -> list[int]:
    """Chunk sizes, cycled over the stream."""
    return draw(st.lists(_CHUNK, min_size=1, max_size=12))


def cut(stream: bytes, sizes: list[int]) -> list[bytes]:
    """``stream`` in chunks of the given sizes (cycled; big once many were cut)."""
    chunks, pos, i = [], 0, 0
    while pos < len(stream):
        size = sizes[i % len(sizes)] if i < 2000 else 64 * 1024
        chunks.append(stream[pos : pos + size])
        pos += size
        i += 1
    return chunks


# -- driving and judging ---------------------------------------------------------------


def count_responses(data: bytes) -> int:
    """Complete response frames in ``data``."""
    n, pos = 0, 0
    while len(data) - pos >= PREFIX.size:
        (length,) = PREFIX.unpack_from(data, pos)
        pos += PREFIX.size + length
        n += 1
    return n


def read_responses(data: bytes) -> list[TileResponse]:
    """Every response written."""
    out, pos = [], 0
    while pos < len(data):
        (length,) = PREFIX.unpack_from(data, pos)
        out.append(
            decode_response(data[pos + PREFIX.size : pos + PREFIX.size + length])
        )
        pos += PREFIX.size + length
    return out


def settle(handler: FuzzHandler) -> bool:
    """Let time pass once: the oldest pending capture answers, or a paused
    sink catches up; whether anything happened."""
    if handler.pending:
        handler.pending.pop(0).callback(None)
        return True
    return any([sink.catch_up() for sink in handler.sinks])


def refusal_reasons(events: Sequence[Mapping[str, Any]]) -> list[str]:
    """The reasons of the protocol's "bad frame" warnings, in order."""
    return [
        str(e["reason"])
        for e in events
        if e.get("log_format", "").startswith("bad frame from")
    ]


def run_stream(
    stream: Stream,
    sizes: list[int],
    modes: list[str],
    pause_at: list[int | None],
    held_limit: int | None,
    leave_early: bool,
) -> None:
    """Feed ``stream`` to a TileProtocol and check everything it did."""
    clock = MemoryReactorClock()
    transport = StringTransport()
    handler = FuzzHandler(modes, pause_at, lambda: count_responses(transport.value()))
    held = HeldBytes(held_limit)
    proto = TileProtocol(handler, 30.0, held=held)  # type: ignore[arg-type]
    proto.callLater = clock.callLater  # type: ignore[method-assign, assignment]
    proto.max_frame = MAX_FRAME
    expected = reference_framing(stream.data)
    with capturedLogs() as events:
        proto.makeConnection(transport)
        for chunk in cut(stream.data, sizes):
            while transport.producerState == "paused" and not transport.disconnecting:
                assert settle(handler), "paused with nothing left to wait for"
            if transport.disconnecting:
                break  # after an over-long prefix the peer sees a close
            proto.dataReceived(chunk)
        if leave_early:
            proto.connectionLost(Failure(ConnectionDone()))
        while settle(handler):
            pass
        if not leave_early:
            if not transport.disconnecting:
                assert transport.producerState == "producing"
            proto.connectionLost(Failure(ConnectionDone()))
        while settle(handler):
            pass
        gc.collect()
    failures = [e["log_failure"] for e in events if "log_failure" in e]
    assert all(
        f.check(RuntimeError) and "handler fault" in str(f.value) for f in failures
    ), failures
    assert clock.getDelayedCalls() == [], "a timer outlived the connection"
    assert held.used == 0, "held bytes outlived the connection"
    for sink in handler.sinks:
        assert sink.state in ("finished", "discarded"), "a sink was left open"
    handed = {id(c.sink) for c in handler.calls if c.sink is not None}
    for sink in handler.sinks:
        if id(sink) not in handed:
            assert sink.state == "discarded", "an unused sink was not discarded"
    if leave_early:
        answered = read_responses(transport.value())
        assert len(answered) <= len(expected.frames) + expected.too_long
        return
    answered = read_responses(transport.value())
    judge(expected, stream.valid, answered, handler.calls, events, transport)


def judge(
    expected: Framing,
    valid: frozenset[bytes],
    answered: list[TileResponse],
    calls: list[Call],
    events: Sequence[Mapping[str, Any]],
    transport: StringTransport,
) -> None:
    """Every complete frame answered once, in order, with what it holds."""
    assert len(answered) == len(expected.frames) + expected.too_long
    assert transport.disconnecting == expected.too_long
    if expected.too_long:
        assert answered[-1] == TileResponse(status=1, system_status=2)
    by_index = {c.index: c for c in calls}
    assert len(by_index) == len(calls), "a frame was captured twice"
    reasons = iter(refusal_reasons(events))
    for i, payload in enumerate(expected.frames):
        try:
            whole: TileRequest | None = decode_request(payload)
        except BadMessage:
            whole = None
        call = by_index.get(i)
        if call is None:
            assert answered[i] == TileResponse(status=1, system_status=2)
            reason = next(reasons)
            if HELD_REFUSAL in reason:
                assert len(payload) >= STREAM_MIN, f"small frame {i} held: {reason}"
                continue
            assert payload not in valid, f"well-formed frame {i} refused: {reason}"
            if whole is not None:
                assert len(payload) >= STREAM_MIN, f"small frame {i} refused: {reason}"
                assert any(r in reason for r in STREAM_ONLY_REFUSALS), reason
            continue
        assert whole is not None, f"frame {i} is undecodable yet was captured"
        got = call.request
        assert (got.acq_id, got.camera, got.frame, got.col, got.row, got.checksum) == (
            whole.acq_id,
            whole.camera,
            whole.frame,
            whole.col,
            whole.row,
            whole.checksum,
        )
        assert call.image == bytes(whole.image)
        if call.raised:
            assert answered[i] == TileResponse(
                acq_id=whole.acq_id, status=1, system_status=2
            )
        else:
            assert answered[i] == TileResponse(
                acq_id=whole.acq_id, tile_id=calls.index(call) + 1
            )


_MODES = st.lists(
    st.sampled_from(["now", "now", "later", "raise", "later-raise"]),
    min_size=1,
    max_size=6,
)
_PAUSES = st.lists(
    st.one_of(st.none(), st.integers(1, 2 * STREAM_MIN)), min_size=1, max_size=4
)


_HELD = st.one_of(
    st.none(), st.sampled_from([STREAM_MIN, 3 * STREAM_MIN, 2 * MAX_FRAME])
)


@FUZZ
@given(streams(), chunkings(), _MODES, _PAUSES, _HELD)
def test_fuzzed_streams_are_answered_in_order(
    stream: Stream,
    sizes: list[int],
    modes: list[str],
    pause_at: list[int | None],
    held: int | None,
) -> None:
    """Any stream: every complete frame answered once and in order with what it
    holds, or one failure and a close after an over-long prefix; no sink open."""
    run_stream(stream, sizes, modes, pause_at, held, leave_early=False)


@settings(FUZZ, max_examples=150)
@given(streams(), chunkings(), _MODES, _PAUSES, _HELD)
def test_fuzzed_streams_cut_off_by_the_peer(
    stream: Stream,
    sizes: list[int],
    modes: list[str],
    pause_at: list[int | None],
    held: int | None,
) -> None:
    """A peer leaving at any point, tiles still being handled: nothing raises,
    no sink stays open, no timer or held byte outlives the connection."""
    run_stream(stream, sizes, modes, pause_at, held, leave_early=True)
