"""Unit tests for the live page's document (imagecatcher.web.mosaicview)."""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs

from imagecatcher.db.live import (
    EXPECTED,
    SPOOLED,
    STORED,
    AcquisitionSummary,
    Mosaic,
    MosaicHeader,
    MosaicTile,
)
from imagecatcher.web.mosaicview import (
    STATES,
    TILE_FIELDS,
    mosaic_document,
    summary_json,
    tile_state,
)

NOW = datetime(2026, 12, 1, 10, 0, 0)
HEADER = MosaicHeader(
    uid=170301120000,
    sample="FAFB_00",
    cameras=4,
    cols=108,
    rows=152,
    acquired=datetime(2017, 3, 1, 12, 0, 0),
    completed=None,
)


def _tile(
    tile_id: int,
    *,
    content: int = STORED,
    link: str | None = None,
    section: int | None = 5800,
    ago: float | None = 5.0,
    camera: int | None = 0,
) -> MosaicTile:
    received = None if ago is None else NOW - timedelta(seconds=ago)
    return MosaicTile(
        tile_id, tile_id % 100, tile_id // 100, camera, content, link, section, received
    )


def test_states_follow_content_then_the_render_state() -> None:
    """No content is expected, content without a key is spooled, stored content
    takes its link's render state (READY and CREATE read as stored)."""
    assert tile_state(_tile(1, content=EXPECTED)) == "expected"
    assert tile_state(_tile(2, content=SPOOLED)) == "spooled"
    assert tile_state(_tile(3, link=None)) == "stored"
    assert tile_state(_tile(3, link="READY")) == "stored"
    assert tile_state(_tile(4, link=None, section=None)) == "stored"
    assert tile_state(_tile(5, link="FAILED")) == "FAILED"
    assert tile_state(_tile(6, link="REIMAGE")) == "REIMAGE"


def test_document_counts_rates_and_packs_tiles() -> None:
    """The document counts each state, packs six integers per tile, adds
    unknown render states after the known ones, and counts the last minute."""
    tiles = (
        _tile(101, content=EXPECTED, ago=None),
        _tile(102, content=SPOOLED, ago=2),
        _tile(103, ago=30, camera=None),
        _tile(104, link="FAILED", ago=90),
        _tile(205, link="REIMAGE", section=5801, ago=400),
        _tile(306, link=None, section=None, ago=1),
    )
    doc = mosaic_document(Mosaic(HEADER, tiles), NOW)
    assert doc["states"][: len(STATES)] == list(STATES)
    assert doc["states"][len(STATES) :] == ["REIMAGE"]
    assert doc["counts"] == {
        "expected": 1,
        "spooled": 1,
        "stored": 2,
        "IN_PROGRESS": 0,
        "COMPLETE": 0,
        "FAILED": 1,
        "REIMAGE": 1,
    }
    assert doc["tile_fields"] == list(TILE_FIELDS)
    flat = doc["tiles"]
    assert len(flat) == 6 * len(tiles)
    packed = [flat[i : i + 6] for i in range(0, len(flat), 6)]
    states = doc["states"]
    sections = doc["sections"]
    assert packed[1] == [102, 2, 1, 0, states.index("spooled"), sections.index(5800)]
    assert packed[2][3] == -1  # camera unknown
    assert packed[4][4] == states.index("REIMAGE") and sections[packed[4][5]] == 5801
    assert packed[5][5] == -1 and doc["outside_roi"] == 1
    # Accepted within the last 60 s: 102, 103, 306 (101 never was).
    assert doc["rate"]["tiles_per_second"] == 3 / 60
    assert doc["rate"]["per_minute"][-1] == 3 and doc["rate"]["per_minute"][-2] == 1
    assert doc["last"]["id"] == 306
    assert (doc["cols"], doc["rows"]) == (108, 152)


def test_grid_grows_to_tiles_outside_the_steps() -> None:
    """A tile beyond the logged steps widens the grid instead of vanishing."""
    far = MosaicTile(9, 200, 3, 1, STORED, None, None, NOW)
    doc = mosaic_document(Mosaic(HEADER, (far,)), NOW)
    assert doc["cols"] == 201 and doc["rows"] == 152


def test_summary_expects_the_grid_without_rois() -> None:
    """Without ROI tiles the overview expects the whole grid."""
    base = AcquisitionSummary(
        uid=170301120000,
        sample="FAFB_00",
        cameras=4,
        acquired=None,
        completed=NOW,
        cols=10,
        rows=20,
        stored=3,
    )
    doc = summary_json(base)
    assert doc["expected"] == 200 and doc["expected_from"] == "grid" and doc["ended"]
    with_rois = summary_json(attrs.evolve(base, expected=7))
    assert with_rois["expected"] == 7 and with_rois["expected_from"] == "rois"
