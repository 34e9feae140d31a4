"""Tile previews and mosaic images: small PNGs made from the stored TIFFs.

Decoding and downsampling are blocking (Pillow), so :class:`Previewer` runs
them on a thread pool, at most ``workers`` at a time (a
``DeferredSemaphore``): however many people browse previews, they cost at
most that many cores and that many tiles in memory, and the capture path
never waits for them (it does not use this module).  Results are kept in a
:class:`ByteCache` bounded in bytes, keyed by the tile's content checksum, so
a re-captured tile is never shown stale.

With a thread pool of its own (the daemon's), :class:`Previewer` lowers the
priority of those threads (``nice``): on a busy capture host the rig's tiles
get the processor first.

A preview is the tile downsampled with Pillow's box filter to at most
``size`` pixels on its longer side; a 16-bit tile is then stretched linearly
from its darkest to its brightest downsampled pixel onto 8 bits.
"""

from __future__ import annotations

import io
import os
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, TypeVar

import attrs
from PIL import Image, UnidentifiedImageError

from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from imagecatcher.domain import BadParameter, CatcherError

T = TypeVar("T")

#: Bounds of ``size`` (pixels of a preview's longer side) and its default.
MIN_SIZE, MAX_SIZE, DEFAULT_SIZE = 8, 1024, 256
#: Bounds of a mosaic image: pixels per cell, and pixels in all.
MAX_SCALE, DEFAULT_SCALE = 64, 8
MAX_MOSAIC_PIXELS = 16 * 1024 * 1024
#: Tiles larger than this many pixels are refused rather than decoded.
MAX_TILE_PIXELS = 256 * 1024 * 1024
#: The grey of a cell whose tile has no preview (yet) in a mosaic image.
NO_PREVIEW = 32


class NotAnImage(CatcherError):
    """The content is not an image Pillow can read (HTTP 415)."""


def check_size(size: int) -> int:
    """``size`` if it is within bounds; BadParameter otherwise."""
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise BadParameter(
            f"Error while parsing the size parameter - {size}:"
            f" must be between {MIN_SIZE} and {MAX_SIZE}"
        )
    return size


def check_scale(scale: int, cols: int, rows: int) -> int:
    """``scale`` if the mosaic image it gives stays within bounds."""
    if not 1 <= scale <= MAX_SCALE:
        raise BadParameter(
            f"Error while parsing the scale parameter - {scale}:"
            f" must be between 1 and {MAX_SCALE}"
        )
    if cols * rows * scale * scale > MAX_MOSAIC_PIXELS:
        raise BadParameter(
            f"Error while parsing the scale parameter - {scale}: a {cols}x{rows}"
            f" mosaic at that scale exceeds {MAX_MOSAIC_PIXELS} pixels"
        )
    return scale


def fitted(width: int, height: int, size: int) -> tuple[int, int]:
    """The dimensions of a ``width`` x ``height`` image shrunk to fit ``size``."""
    longest = max(width, height, 1)
    if longest <= size:
        return max(width, 1), max(height, 1)
    factor = size / longest
    return max(round(width * factor), 1), max(round(height * factor), 1)


def to_eight_bits(image: Image.Image) -> Image.Image:
    """An 8-bit grey image: 16-bit and other deep modes stretched min..max."""
    if image.mode == "L":
        return image
    if image.mode in ("1", "P", "RGB", "RGBA", "LA", "CMYK", "YCbCr"):
        return image.convert("L")
    extrema: Any = image.getextrema()  # one band: (min, max)
    lo, hi = float(extrema[0]), float(extrema[1])
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    offset = -lo * scale
    if image.mode.startswith("I"):  # I;16 variants and 32-bit I: exact integers
        # Pillow truncates integer results: + 0.5 rounds them.
        stretched = image.convert("I").point(lambda v: v * scale + offset + 0.5)
    else:
        stretched = image.convert("F").point(lambda v: v * scale + offset)
    return stretched.convert("L")


def _open(data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > MAX_TILE_PIXELS:
            raise NotAnImage(f"Image of {width}x{height} pixels is too large")
        image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as e:
        raise NotAnImage(f"Content is not an image: {e}") from None
    return image


def shrink(data: bytes, size: int) -> Image.Image:
    """The tile in ``data`` downsampled to fit ``size``, as 8-bit grey."""
    image = _open(data)
    try:
        small = image.resize(fitted(*image.size, size), Image.Resampling.BOX)
    finally:
        image.close()
    return to_eight_bits(small)


def png(image: Image.Image) -> bytes:
    """``image`` as PNG bytes."""
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=3)
    return out.getvalue()


def render_preview(data: bytes, size: int) -> bytes:
    """The PNG preview of the tile in ``data`` (blocking: run it in a thread)."""
    return png(shrink(data, size))


def cell_pixels(data: bytes, scale: int) -> bytes:
    """The tile shrunk to exactly ``scale`` x ``scale`` grey pixels (a mosaic cell)."""
    image = _open(data)
    try:
        small = image.resize((scale, scale), Image.Resampling.BOX)
    finally:
        image.close()
    return to_eight_bits(small).tobytes()


@attrs.frozen
class Cell:
    """A mosaic cell: where it goes and its pixels (None: no preview)."""

    col: int
    row: int
    pixels: bytes | None


def compose_mosaic(cols: int, rows: int, scale: int, cells: Sequence[Cell]) -> bytes:
    """A PNG of ``cols`` x ``rows`` cells of ``scale`` pixels (blocking)."""
    canvas = Image.new("L", (max(cols, 1) * scale, max(rows, 1) * scale), 0)
    blank = Image.new("L", (scale, scale), NO_PREVIEW)
    for cell in cells:
        if not (0 <= cell.col < cols and 0 <= cell.row < rows):
            continue
        where = (cell.col * scale, cell.row * scale)
        if cell.pixels is None:
            canvas.paste(blank, where)
        else:
            canvas.paste(Image.frombytes("L", (scale, scale), cell.pixels), where)
    return png(canvas)


class ByteCache:
    """Least-recently-used values of bytes, at most ``max_bytes`` in all."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._bytes = 0
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()

    @property
    def size(self) -> int:
        """Bytes held now."""
        return self._bytes

    def get(self, key: Hashable) -> bytes | None:
        """The value, now the most recently used; None when not held."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: Hashable, value: bytes) -> None:
        """Hold ``value`` (not if it alone exceeds the bound), evicting the oldest."""
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= len(old)
        if len(value) > self._max:
            return
        self._items[key] = value
        self._bytes += len(value)
        while self._bytes > self._max:
            _, evicted = self._items.popitem(last=False)
            self._bytes -= len(evicted)


class Previewer:
    """Runs preview work on a thread pool, a few jobs at a time, and caches it."""

    def __init__(
        self,
        reactor: Any,
        threads: ThreadPool | None,
        workers: int = 1,
        cache_bytes: int = 64 * 1024 * 1024,
        nice: int = 0,
    ) -> None:
        self._reactor = reactor
        self._threads = threads
        self._nice = nice
        self._slots = DeferredSemaphore(max(workers, 1))
        self.cache = ByteCache(cache_bytes)

    async def cached(
        self,
        key: Hashable,
        fetch: Callable[[], Awaitable[bytes]],
        work: Callable[[bytes], bytes],
    ) -> bytes:
        """The cached value of ``key``, else ``work(await fetch())`` in a thread.

        The fetch happens inside the slot too, so at most ``workers`` tiles'
        bytes are in memory for previews at any time.
        """
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        await self._slots.acquire()
        try:
            hit = self.cache.get(key)  # made while this request waited
            if hit is not None:
                return hit
            data = await fetch()
            value = await self.run(work, data)
        finally:
            self._slots.release()
        self.cache.put(key, value)
        return value

    async def compose(self, work: Callable[[], T]) -> T:
        """Run ``work`` (e.g. :func:`compose_mosaic`) in a slot, in a thread."""
        await self._slots.acquire()
        try:
            return await self.run(work)
        finally:
            self._slots.release()

    def run(self, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        """``fn(*args)`` on the thread pool (inline when there is none: tests)."""
        if self._threads is None:
            return Deferred.fromCoroutine(_inline(fn, *args))
        if self._nice > 0:
            return deferToThreadPool(
                self._reactor, self._threads, _niced, self._nice, fn, *args
            )
        return deferToThreadPool(self._reactor, self._threads, fn, *args)


def _niced(nice: int, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on this thread lowered to at least ``nice`` (Linux sets a
    thread's own priority; elsewhere it runs as it is)."""
    try:
        tid = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, tid) < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except (AttributeError, OSError):
        pass
    return fn(*args)


async def _inline(fn: Callable[..., T], *args: Any) -> T:
    return fn(*args)
