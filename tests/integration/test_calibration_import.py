"""Calibration import on both engines (CONTRACT §7.5, Appendix A step 5)."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from imagecatcher.calibrations import parse_calibrations
from imagecatcher.db.dialect import Cursor
from imagecatcher.db.migrations import Migrator
from imagecatcher.db.pool import Database
from imagecatcher.db.repository import Repository
from imagecatcher.domain import CalibrationError
from tests.conftest import FIXTURES

CALIBRATION_FILE = FIXTURES / "141028_lens_correction_with_offset.json"


async def _state(
    db: Database,
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    def read(cur: Cursor) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        cur.execute(
            "SELECT calibration_id, calibration_name, date_generated FROM calibrations"
            " ORDER BY calibration_id"
        )
        cals = [tuple(r) for r in cur.fetchall()]
        cur.execute(
            "SELECT tem_camera_configuration_id, tem_camera_transformation_ref,"
            " tem_camera_mask_url FROM tem_camera_configurations"
            " WHERE tem_camera_transformation_ref IS NOT NULL"
            " ORDER BY tem_camera_configuration_id"
        )
        return cals, [tuple(r) for r in cur.fetchall()]

    return await db.run(read)


@pytest_twisted.ensureDeferred
async def test_import_links_configurations(
    database: Database, repo: Repository
) -> None:
    """The fixture creates 12 calibrations and links configs 5-8, 17-20 and 26-29."""
    await Migrator(repo).init()
    ids = await repo.import_calibrations(
        parse_calibrations(CALIBRATION_FILE.read_bytes())
    )
    assert len(ids) == 12
    cals, links = await _state(database)
    assert len(cals) == 12 and all(str(c[2]).startswith("2014-10-28") for c in cals)
    linked = {int(c[0]): str(c[1]) for c in links}
    assert sorted(linked) == [5, 6, 7, 8, 17, 18, 19, 20, 26, 27, 28, 29]
    assert linked[29] == "141028offset_temca2_camera3"
    assert linked[20] == "141028offset_temca7_camera3"


@pytest_twisted.ensureDeferred
async def test_second_import_updates(database: Database, repo: Repository) -> None:
    """Importing the same file twice leaves the same rows, updated, not duplicated."""
    await Migrator(repo).init()
    calibrations = parse_calibrations(CALIBRATION_FILE.read_bytes())
    first = await repo.import_calibrations(calibrations)
    before = await _state(database)
    second = await repo.import_calibrations(calibrations)
    assert first == second
    assert await _state(database) == before


@pytest_twisted.ensureDeferred
async def test_failed_import_rolls_back(database: Database, repo: Repository) -> None:
    """A calibration for a camera with no configuration fails the whole import (Q25)."""
    await Migrator(repo).init()
    body = CALIBRATION_FILE.read_text().replace('"camera" : "3"', '"camera" : "9"', 1)
    with pytest.raises(CalibrationError, match="temca 2 camera 9"):
        await repo.import_calibrations(parse_calibrations(body))
    assert await _state(database) == ([], [])


@pytest_twisted.ensureDeferred
async def test_mask_root_sets_mask_urls(database: Database, repo: Repository) -> None:
    """--mask_root points each calibrated camera configuration at its mask PNG."""
    await Migrator(repo).init()
    calibrations = parse_calibrations(CALIBRATION_FILE.read_bytes())
    await repo.import_calibrations(calibrations)
    for cal in calibrations:
        await repo.set_mask_url("file:///masks", cal)
    _, links = await _state(database)
    masks = {int(c[0]): c[2] for c in links}
    assert masks[26] == "file:///masks/temca2_cam0.png"
    assert masks[8] == "file:///masks/temca3_cam3.png"
