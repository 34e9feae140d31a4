"""The live pages in a real headless Chromium (Selenium), while a rig sends tiles.

A daemon on MariaDB with the fake sproxyd store; the fixture acquisition's
ROIs imported.  With the acquisition page open, tiles arrive over TCP: the
cells of exactly those tiles turn to the stored colour; a render FAILED set
by tile-state turns its cell red; with the store stopped, the next tile
stays in the spool and its cell shows so.  Clicking a cell opens the tile's
details and preview.  What the canvas shows is read back from its pixels and
compared with the legend's swatches.  Screenshots of both pages go into the
test's directory.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make os-deps``).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from imagecatcher.config import Config
from tests.integration.liverig import UID, LiveRig, live_rig, tiff16

#: Seconds a cell may take to change after the change is in the database.
WAIT = 10

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

#: Colours of cells (as the canvas holds them) for a list of [col, row].
_CELL_COLOURS = """
const canvas = document.getElementById("grid");
const size = Number(canvas.dataset.cell || 0);
if (!size) { return null; }
const ctx = canvas.getContext("2d");
const inset = Math.floor((size - 1) / 2);
return arguments[0].map(([col, row]) => {
  const p = ctx.getImageData(col * size + inset, row * size + inset, 1, 1).data;
  return `rgb(${p[0]}, ${p[1]}, ${p[2]})`;
});
"""
#: The legend's swatch colour of each state.
_LEGEND = """
const out = {};
for (const li of document.querySelectorAll("#legend li")) {
  out[li.dataset.state] = getComputedStyle(li.querySelector(".swatch")).backgroundColor;
}
return out;
"""


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """A headless Chromium driven by Debian's chromedriver."""
    assert Path(CHROMEDRIVER).exists(), (
        "chromedriver missing: install Debian's chromium and chromium-driver"
        " (make os-deps)"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _colours(driver: WebDriver, cells: list[tuple[int, int]]) -> list[str] | None:
    result: Any = driver.execute_script(_CELL_COLOURS, [list(c) for c in cells])
    return None if result is None else [str(c) for c in result]


def _legend(driver: WebDriver) -> dict[str, str]:
    result: Any = driver.execute_script(_LEGEND)
    return {str(k): str(v) for k, v in result.items()}


def _wait_cells(
    driver: WebDriver, cells: list[tuple[int, int]], colour: str, what: str
) -> None:
    WebDriverWait(driver, WAIT, poll_frequency=0.2).until(
        lambda d: _colours(d, cells) == [colour] * len(cells),
        message=f"cells {cells} never turned {what} ({colour})",
    )


def _click_cell(driver: WebDriver, col: int, row: int) -> None:
    canvas = driver.find_element(By.ID, "grid")
    size = int(canvas.get_attribute("data-cell") or "0")
    width, height = canvas.size["width"], canvas.size["height"]
    # Offsets are from the element's centre (W3C actions).
    x = col * size + size // 2 - width // 2
    y = row * size + size // 2 - height // 2
    ActionChains(driver).move_to_element_with_offset(canvas, x, y).click().perform()


def _open_acquisition(driver: WebDriver, rig: LiveRig) -> dict[str, str]:
    driver.get(f"http://127.0.0.1:{rig.http}/ui/acquisition/{UID}")
    WebDriverWait(driver, WAIT).until(
        lambda d: (
            d.find_element(By.TAG_NAME, "body").get_attribute("data-refreshes")
            and _colours(d, rig.cells[:1]) is not None
        ),
        message="the acquisition page never drew its mosaic",
    )
    legend = _legend(driver)
    assert {"outside", "expected", "spooled", "stored", "FAILED"} <= set(legend)
    assert len(set(legend.values())) == len(legend)  # every state its own colour
    return legend


def test_page_follows_the_rig(
    tmp_path: Path, mariadb_config: Config, browser: WebDriver
) -> None:
    """Sent tiles turn stored, exactly those; FAILED shows failed, a tile left
    in the spool shows spooled; a cell's details and preview open."""
    with live_rig(tmp_path, mariadb_config) as rig:
        legend = _open_acquisition(browser, rig)
        assert set(_colours(browser, rig.cells) or []) == {legend["expected"]}

        sent = rig.cells[100:106]
        data = {cell: tiff16(i) for i, cell in enumerate(sent)}
        ids = {
            cell: rig.send(*cell, data[cell], camera=i % 4)
            for i, cell in enumerate(sent)
        }
        _wait_cells(browser, sent, legend["stored"], "stored")
        colours = dict(zip(rig.cells, _colours(browser, rig.cells) or [], strict=True))
        assert {c for c, v in colours.items() if v == legend["stored"]} == set(sent)
        assert {c for c, v in colours.items() if v == legend["expected"]} == (
            set(rig.cells) - set(sent)
        )

        doc = rig.live()
        flat = doc["tiles"]
        section = {
            (flat[i + 1], flat[i + 2]): doc["sections"][flat[i + 5]]
            for i in range(0, len(flat), 6)
            if flat[i + 5] >= 0
        }
        failed = sent[0]
        rig.set_state("FAILED", [(*failed, section[failed])])
        _wait_cells(browser, [failed], legend["FAILED"], "failed")

        shown = sent[1]
        _click_cell(browser, *shown)
        details = browser.find_element(By.ID, "details")
        WebDriverWait(browser, WAIT).until(
            lambda d: details.get_attribute("data-loaded") == str(ids[shown]),
            message="the tile's details never loaded",
        )
        assert browser.find_element(By.ID, "d-col").text == str(shown[0])
        assert browser.find_element(By.ID, "d-row").text == str(shown[1])
        assert browser.find_element(By.ID, "d-checksum").text == (
            hashlib.sha1(data[shown]).hexdigest()
        )
        assert browser.find_element(By.ID, "d-section").text == str(section[shown])
        link = browser.find_element(By.ID, "d-content").get_attribute("href") or ""
        assert link.endswith(f"/service/v1/tile/{ids[shown]}/content")
        preview = browser.find_element(By.ID, "d-preview")
        WebDriverWait(browser, WAIT).until(
            lambda d: (
                d.execute_script(
                    "return arguments[0].complete && arguments[0].naturalWidth", preview
                )
                == 256
            ),
            message="the preview never loaded",
        )

        rig.store.stop()
        spooled = rig.cells[200]
        rig.send(*spooled, tiff16(42))
        _wait_cells(browser, [spooled], legend["spooled"], "spooled")
        assert _colours(browser, [failed]) == [legend["FAILED"]]
        browser.save_screenshot(str(tmp_path / "acquisition.png"))

        browser.get(f"http://127.0.0.1:{rig.http}/")
        row = WebDriverWait(browser, WAIT).until(
            lambda d: d.find_element(By.CSS_SELECTOR, f'tr[data-acqid="{UID}"]'),
            message="the overview never listed the acquisition",
        )
        cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
        assert cells[1] == str(UID) and cells[-1] == "no"
        assert cells[4].endswith(f"{len(sent)} / {len(rig.cells)}")
        assert (cells[6], cells[7]) == ("1", "1")  # one in the spool, one failed
        browser.save_screenshot(str(tmp_path / "overview.png"))
        row.find_element(By.TAG_NAME, "a").click()
        WebDriverWait(browser, WAIT).until(
            lambda d: d.current_url.endswith(f"/ui/acquisition/{UID}"),
            message="the overview's link did not open the acquisition",
        )
    assert (tmp_path / "acquisition.png").stat().st_size > 0
    assert (tmp_path / "overview.png").stat().st_size > 0
