"""Unit tests for tile previews and mosaic images (imagecatcher.previews)."""

from __future__ import annotations

import io
import os
import random
import threading
import warnings

import pytest
from PIL import Image

from twisted.internet.defer import Deferred

from imagecatcher.domain import BadParameter
from imagecatcher.previews import (
    MAX_SIZE,
    NO_PREVIEW,
    ByteCache,
    Cell,
    NotAnImage,
    Previewer,
    _niced,
    cell_pixels,
    check_scale,
    check_size,
    compose_mosaic,
    fitted,
    render_preview,
)
from tests.unit.test_notify import result_of


def _tiff(mode: str, width: int, height: int, seed: int) -> tuple[bytes, Image.Image]:
    """A TIFF of noise plus a gradient, as the camera's grey levels go."""
    rng = random.Random(seed)
    top = 65535 if mode == "I;16" else 255
    image = Image.new(mode, (width, height))
    image.putdata(
        [
            min(top, (x * top) // (2 * width) + rng.randrange(top // 2))
            for y in range(height)
            for x in range(width)
        ]
    )
    out = io.BytesIO()
    image.save(out, format="TIFF")
    return out.getvalue(), image


def _pixels(image: Image.Image) -> list[int]:
    return list(image.get_flattened_data())  # type: ignore[arg-type]


def _png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image


def test_sixteen_bit_preview_is_pillows_box_downsampling_stretched() -> None:
    """A 16-bit tile's preview is Pillow's own box downsampling of it, stretched
    linearly from its darkest to its brightest pixel onto 0..255."""
    data, original = _tiff("I;16", 600, 400, 1)
    preview = _png(render_preview(data, 150))
    assert preview.mode == "L" and preview.size == (150, 100)
    reference = original.resize((150, 100), Image.Resampling.BOX)
    values = _pixels(reference)
    lo, hi = min(values), max(values)
    expected = [(v - lo) * 255 / (hi - lo) for v in values]
    got = _pixels(preview)
    assert len(got) == len(expected)
    assert max(abs(g - e) for g, e in zip(got, expected, strict=True)) <= 1
    assert min(got) == 0 and max(got) == 255


def test_eight_bit_preview_is_pillows_box_downsampling() -> None:
    """An 8-bit tile's preview is exactly Pillow's box downsampling of it."""
    data, original = _tiff("L", 300, 500, 2)
    preview = _png(render_preview(data, 100))
    assert preview.mode == "L" and preview.size == (60, 100)
    reference = original.resize((60, 100), Image.Resampling.BOX)
    assert _pixels(preview) == _pixels(reference)


def test_small_tile_is_not_enlarged() -> None:
    """A tile smaller than the size asked for keeps its own dimensions."""
    data, _ = _tiff("L", 40, 30, 3)
    assert _png(render_preview(data, 256)).size == (40, 30)
    assert fitted(4000, 4000, 256) == (256, 256)


def test_flat_sixteen_bit_tile_previews_black() -> None:
    """A tile of one grey level (no range to stretch) gives a black preview."""
    image = Image.new("I;16", (64, 64), 1234)
    out = io.BytesIO()
    image.save(out, format="TIFF")
    assert set(_pixels(_png(render_preview(out.getvalue(), 16)))) == {0}


def test_content_that_is_not_an_image_is_refused() -> None:
    """Bytes Pillow cannot read raise NotAnImage (answered 415)."""
    with pytest.raises(NotAnImage):
        render_preview(b"a log file, not a tile\n" * 100, 64)
    with warnings.catch_warnings():  # Pillow warns about the broken header
        warnings.simplefilter("ignore")
        with pytest.raises(NotAnImage):
            render_preview(b"II*\x00 certainly not a tiff" * 100, 64)
    with pytest.raises(NotAnImage):
        cell_pixels(b"", 8)


def test_sizes_and_scales_are_bounded() -> None:
    """Sizes outside 8..MAX_SIZE, and mosaic images past the pixel cap, are 400s."""
    assert check_size(8) == 8 and check_size(MAX_SIZE) == MAX_SIZE
    for size in (0, 7, MAX_SIZE + 1, 10**9):
        with pytest.raises(BadParameter):
            check_size(size)
    assert check_scale(8, 108, 152) == 8
    with pytest.raises(BadParameter):
        check_scale(0, 10, 10)
    with pytest.raises(BadParameter):
        check_scale(64, 1000, 1000)


def test_mosaic_places_cells_by_column_and_row() -> None:
    """Each cell's pixels land at (col, row) x scale; cells without a preview
    are grey and the rest of the grid black."""
    scale = 4
    white = bytes([255]) * scale * scale
    png = compose_mosaic(3, 2, scale, [Cell(2, 1, white), Cell(0, 1, None)])
    image = _png(png)
    assert image.size == (12, 8)
    assert image.getpixel((2 * scale + 1, 1 * scale + 2)) == 255
    assert image.getpixel((0 * scale + 1, 1 * scale + 1)) == NO_PREVIEW
    assert image.getpixel((1 * scale, 0)) == 0


def test_cell_pixels_are_scale_squared() -> None:
    """A mosaic cell is exactly scale x scale grey pixels."""
    data, _ = _tiff("I;16", 100, 80, 4)
    assert len(cell_pixels(data, 6)) == 36


def test_byte_cache_stays_within_its_bound() -> None:
    """The cache evicts the least recently used values past its byte bound and
    never holds a value larger than the bound."""
    cache = ByteCache(10)
    cache.put("a", b"1234")
    cache.put("b", b"5678")
    assert cache.get("a") == b"1234"  # now the most recent
    cache.put("c", b"90ab")
    assert cache.get("b") is None and cache.get("a") and cache.get("c")
    assert cache.size == 8
    cache.put("huge", b"x" * 11)
    assert cache.get("huge") is None and cache.size == 8


def test_previewer_caches_and_fetches_once() -> None:
    """A second request for the same key is served from the cache, without a fetch."""
    previewer = Previewer(None, None, workers=1, cache_bytes=1024)
    fetches: list[int] = []

    async def fetch() -> bytes:
        fetches.append(1)
        return b"raw"

    def work(data: bytes) -> bytes:
        return data.upper()

    first = result_of(Deferred.fromCoroutine(previewer.cached("k", fetch, work)))
    second = result_of(Deferred.fromCoroutine(previewer.cached("k", fetch, work)))
    assert first == second == b"RAW" and fetches == [1]


def test_preview_work_runs_niced_on_its_own_thread_only() -> None:
    """Work run through _niced lowers its own thread's priority, not the caller's."""
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: list[int] = []

    def work() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    worker = threading.Thread(target=lambda: seen.append(_niced(own + 5, work)))
    worker.start()
    worker.join()
    assert seen == [own + 5]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own
