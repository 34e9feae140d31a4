"""Render work distribution: two daemons share one database, the render client, leases."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from imagecatcher.config import Config
from imagecatcher.rois import parse_roi_tiles
from tests.conftest import FIXTURES, MariaDB
from tests.integration.daemon import ports, run_tool, running, twistd_argv, write_config
from tests.integration.httpclient import request, start_fixture_acquisition


def _cells(n: int) -> list[tuple[int, int]]:
    """``n`` positions that belong to exactly one ROI of the fixture."""
    tiles = parse_roi_tiles((FIXTURES / "123_ROI_tiles.csv").read_text()).tiles
    sections: dict[tuple[int, int], set[str]] = {}
    for t in tiles:
        sections.setdefault((t.col, t.row), set()).add(t.section_name)
    return sorted(c for c, s in sections.items() if len(s) == 1)[:n]


def _prepare(port: int, cells: list[tuple[int, int]]) -> None:
    start_fixture_acquisition(port)

    def put(cell: tuple[int, int]) -> None:
        col, row = cell
        data = f"tile {col} {row}".encode()
        status, _, raw = request(
            port,
            "PUT",
            f"/service/v1/capture-image-content/123?tile-filename=col{col:04d}_row{row:04d}"
            f"_cam{(col % 2) + 2 * (row % 2)}.tif&checksum={hashlib.md5(data).hexdigest()}",
            data,
        )
        assert status == 200, raw

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(put, cells))


def _next(port: int, query: str) -> dict[str, Any]:
    status, _, raw = request(port, "POST", f"/service/v1/next-tile?{query}")
    assert status == 200, raw
    reply: dict[str, Any] = json.loads(raw)
    return reply


def _drain(port: int, got: list[str]) -> None:
    while True:
        reply = _next(port, "acqid=123&ntiles=7")
        if reply["resultType"] != "TILE_FOUND":
            return
        got.extend(r["tilespec"]["tileId"] for r in reply["results"])


def test_two_daemons_hand_out_each_tile_once(tmp_path: Path, mariadb: MariaDB) -> None:
    """Two next-tile loops on two daemons sharing one MariaDB get every tile once."""
    admin = mariadb.admin()
    with admin.cursor() as cur:
        cur.execute("CREATE DATABASE ic_two_daemons")
    admin.close()
    engine_config = mariadb.config("ic_two_daemons")
    cells = _cells(1000)
    cfg = write_config(tmp_path, engine_config, JFS_MAPPING={"PING": "FAFB"})
    assert run_tool(["--config", str(cfg), "db-init"], tmp_path).returncode == 0
    (a_http, a_tcp), (b_http, b_tcp) = ports(), ports()
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    with (
        running(twistd_argv(cfg, a_http, a_tcp), first, a_http),
        running(twistd_argv(cfg, b_http, b_tcp), second, b_http),
    ):
        _prepare(a_http, cells)
        got_a: list[str] = []
        got_b: list[str] = []
        threads = [
            threading.Thread(target=_drain, args=(a_http, got_a)),
            threading.Thread(target=_drain, args=(b_http, got_b)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    assert got_a and got_b, "both daemons should have served work"
    everything = got_a + got_b
    assert len(everything) == len(set(everything)) == 1000


def test_render_client_sequence(tmp_path: Path, engine_config: Config) -> None:
    """The render client's calls (§9.4), with JSON read the way it reads it."""
    cfg = write_config(tmp_path, engine_config, JFS_MAPPING={"PING": "FAFB"})
    assert run_tool(["--config", str(cfg), "db-init"], tmp_path).returncode == 0
    http, tcp = ports()
    with running(twistd_argv(cfg, http, tcp), tmp_path, http):
        cells = _cells(12)
        _prepare(http, cells)
        body = (FIXTURES / "141028_lens_correction_with_offset.json").read_bytes()
        assert request(http, "POST", "/service/v1/calibrations", body)[0] == 200
        status, _, raw = request(
            http, "GET", "/service/v1/acquisitions?exists-tile-in-state=READY&acqid=123"
        )
        acq = json.loads(raw)["acquisitions"][0]
        assert (acq["AcqUID"], acq["ProjectName"], acq["StackName"]) == (123, "", "")
        status, _, raw = request(http, "GET", "/service/v1/calibrations")
        transforms = [c["content"] for c in json.loads(raw)["calibrations"]]
        assert all({"id", "type", "specList"} <= set(t) for t in transforms)
        assert request(http, "POST", "/service/v1/end-acquisition/123")[0] == 200
        served: list[dict[str, Any]] = []
        for _ in range(100):
            reply = _next(
                http, "oldState=READY&newState=IN_PROGRESS&acqid=123&ntiles=5"
            )
            kind = reply["resultType"]
            assert kind in {"NO_TILE_READY", "TILE_FOUND", "SERVED_ALL_ACQ"}
            if kind == "SERVED_ALL_ACQ":
                break
            for result in reply["results"]:
                spec = result["tilespec"]
                assert str(result["acqid"]) == "123" and str(result["section"])
                assert isinstance(spec["layout"]["sectionId"], str)
                assert isinstance(spec["layout"]["temca"], str)
                assert isinstance(spec["layout"]["imageCol"], int)
                float(spec["layout"]["stageX"]), float(spec["layout"]["rotation"])
                str(spec["layout"]["camera"])
                served.append(spec)
        assert kind == "SERVED_ALL_ACQ" and len(served) == 12
        ids = [s["tileId"] for s in served]
        for state, chunk in (("COMPLETE", ids[:8]), ("FAILED", ids[8:])):
            status, _, raw = request(
                http,
                "PUT",
                "/service/v1/tile-state",
                json.dumps({"state": state, "tileSpecIds": chunk}).encode(),
                {"Content-Type": "application/json"},
            )
            assert status == 200 and json.loads(raw)["nUpdates"] == len(chunk)


@pytest.fixture
def leased(tmp_path: Path, engine_config: Config) -> Iterator[int]:
    """A daemon with one-second leases and a few READY tiles; yields its HTTP port."""
    cfg = write_config(
        tmp_path, engine_config, JFS_MAPPING={"PING": "FAFB"}, TILE_LEASE_SECONDS=1
    )
    assert run_tool(["--config", str(cfg), "db-init"], tmp_path).returncode == 0
    http, tcp = ports()
    with running(twistd_argv(cfg, http, tcp), tmp_path, http):
        _prepare(http, _cells(3))
        yield http


def test_expired_lease_returns_the_tile(leased: int) -> None:
    """A tile not moved on within its lease is served again; a finished one is not."""
    first = _next(leased, "acqid=123&ntiles=2")
    ids = [r["tilespec"]["tileId"] for r in first["results"]]
    assert len(ids) == 2
    status, _, _ = request(
        leased,
        "PUT",
        "/service/v1/tile-state",
        json.dumps({"state": "COMPLETE", "tileSpecIds": ids[:1]}).encode(),
    )
    assert status == 200
    time.sleep(1.5)
    again = _next(leased, "acqid=123&ntiles=10")
    served = {r["tilespec"]["tileId"] for r in again["results"]}
    assert ids[1] in served and ids[0] not in served
