"""imagecatcher-client and imagecatcher-simulator against a running daemon.

Each test starts the real daemon (SQLite and MariaDB) and runs the installed
console scripts as subprocesses on a synthetic acquisition directory: the
fixture INI log and ROI files, a few random tiles at positions inside the
ROIs, a drift frame, a DAQ timing CSV and a mosaic PNG of random bytes.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from imagecatcher.config import Config
from imagecatcher.names import stable_name
from tests.conftest import FIXTURES, free_port
from tests.integration.daemon import (
    http_get,
    ports,
    run_tool,
    running,
    script,
    twistd_argv,
    write_config,
)
from tests.integration.dbcheck import rows

UID = 123
STEPS = 3  # DAQ timing rows; four cameras each
DRIFT = "Dump_cam0_frame000007_col{col:04d}_row{row:04d}.tif"


@attrs.frozen
class Daemon:
    """A running daemon: its ports, directory and database."""

    http: int
    tcp: int
    directory: Path
    config: Config

    def log_count(self, text: str) -> int:
        """How many lines of the daemon's log contain ``text``."""
        log = (self.directory / "daemon.log").read_text(errors="replace")
        return sum(text in line for line in log.splitlines())


@attrs.frozen
class Acquisition:
    """A synthetic acquisition directory and what it holds."""

    path: Path
    tiles: dict[tuple[int, int, int], bytes]  # (col, row, camera) -> bytes
    drift: dict[str, bytes]
    mosaic: bytes

    def all_tiles(self) -> dict[str, bytes]:
        """Every tile file name with its bytes, stable and drift."""
        named = {stable_name(c, r, k): data for (c, r, k), data in self.tiles.items()}
        return named | self.drift


def _roi_positions() -> list[tuple[int, int]]:
    """Tile positions inside some ROI of the fixture ROI tiles CSV."""
    with (FIXTURES / "123_ROI_tiles.csv").open(newline="") as f:
        records = list(csv.DictReader(f))
    inside = sorted(
        {
            (int(r["Col"]), int(r["Row"]))
            for r in records
            if r["Inclusion"].strip() not in ("", "-1")
        }
    )
    return inside[:: len(inside) // (4 * STEPS)][: 4 * STEPS]


def make_acquisition(base: Path) -> Acquisition:
    """Write a synthetic acquisition directory ``<base>/123_acq``."""
    d = base / f"{UID}_acq"
    d.mkdir(parents=True)
    shutil.copy(FIXTURES / "123_logfile.ini", d / f"{UID}_logfile.ini")
    shutil.copy(FIXTURES / "123_ROI_spec.ini", d / f"{UID}_ROI_spec.ini")
    shutil.copy(FIXTURES / "123_ROI_tiles.csv", d / f"{UID}_ROI_tiles.csv")
    positions = _roi_positions()
    tiles: dict[tuple[int, int, int], bytes] = {}
    header = ["Step"] + [f"Cam {k} {x}" for k in range(4) for x in ("Col", "Row")]
    lines = [",".join([*header, "Time (s)"])]
    for step in range(STEPS):
        cells = [str(step)]
        for camera in range(4):
            col, row = positions[4 * step + camera]
            data = os.urandom(1000 + int.from_bytes(os.urandom(2), "big"))
            path = d / f"col{col:04d}" / stable_name(col, row, camera)
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
            tiles[(col, row, camera)] = data
            cells += [str(col), str(row)]
        lines.append(",".join([*cells, f"{step * 0.15:.2f}"]))
    (d / f"{UID}_DAQ timing.csv").write_text("\r\n".join(lines) + "\r\n")
    col, row = positions[0]
    drift_name = DRIFT.format(col=col, row=row)
    drift = {drift_name: os.urandom(2000)}
    (d / "Dump").mkdir()
    (d / "Dump" / drift_name).write_bytes(drift[drift_name])
    mosaic = os.urandom(3000)
    (d / f"{UID}_acq_mosaic.png").write_bytes(mosaic)
    return Acquisition(d, tiles, drift, mosaic)


@pytest.fixture
def daemon(tmp_path: Path, engine_config: Config) -> Iterator[Daemon]:
    """A daemon on an initialised database with a file store, on loopback."""
    cfg = write_config(
        tmp_path, engine_config, JFS_MAPPING={"PING": "FAFB", "FAFB_00": "FAFB"}
    )
    assert run_tool(["--config", str(cfg), "db-init"], tmp_path).returncode == 0
    http_port, tcp_port = ports()
    with running(twistd_argv(cfg, http_port, tcp_port), tmp_path, http_port):
        yield Daemon(http_port, tcp_port, tmp_path, engine_config)


@pytest.fixture
def acq(tmp_path: Path) -> Acquisition:
    """A synthetic acquisition directory."""
    return make_acquisition(tmp_path / "rig")


def run(
    command: str, *args: str, cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run an installed console script; capture its output."""
    return subprocess.run(
        [script(command), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def client(d: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    """imagecatcher-client with the daemon's HTTP URL."""
    return run(
        "imagecatcher-client",
        "-service-url",
        f"http://127.0.0.1:{d.http}",
        *args,
        cwd=d.directory,
    )


def get_json(d: Daemon, path: str) -> Any:
    """GET a JSON route of the daemon."""
    status, _, body = http_get(d.http, path)
    assert status == 200, body
    return json.loads(body)


def stored(d: Daemon, uid: int = UID) -> dict[str, dict[str, Any]]:
    """The stored tiles of an acquisition (stable and drift) by name."""
    body = get_json(
        d, f"/service/v1/acquisition/{uid}/tiles?frame-type=all&length=1000"
    )
    return {
        t["tile_jfs_path"].rpartition("/")[2]: t
        for group in body["acquisitions"]
        for t in group["tiles"]
    }


def completed(d: Daemon, uid: int = UID) -> bool:
    """Whether the acquisition exists and is marked complete."""
    body = get_json(d, f"/service/v1/acquisitions?acqid={uid}")
    assert [a["AcqUID"] for a in body["acquisitions"]] == [uid]
    return body["acquisitions"][0]["Completed"] is not None


def content(d: Daemon, col: int, row: int) -> bytes:
    """The bytes the daemon serves for a stable tile."""
    status, _, body = http_get(
        d.http, f"/service/v1/acquisition/{UID}/tile/{col}/{row}/content"
    )
    assert status == 200, body
    return body


def wait_stored(d: Daemon, count: int, uid: int = UID, timeout: float = 20) -> None:
    """Wait until ``count`` tiles of the acquisition are stored."""
    deadline = time.monotonic() + timeout
    while len(stored(d, uid)) < count:
        assert time.monotonic() < deadline, f"only {len(stored(d, uid))} stored"
        time.sleep(0.1)


def ancillary_paths(d: Daemon) -> set[str]:
    """Paths of the ancillary files recorded for any acquisition."""
    return {
        r[0]
        for r in rows(
            d.config,
            "SELECT r.path FROM ancillary_files a JOIN file_object_fs_replicas r"
            " ON r.file_object_id = a.file_object_id",
        )
    }


def check_stable_tiles(d: Daemon, acq: Acquisition) -> None:
    """Every stable tile is stored with its SHA-1 and served back unchanged."""
    held = stored(d)
    for (col, row, camera), data in acq.tiles.items():
        tile = held[stable_name(col, row, camera)]
        assert tile["tile_file_checksum"] == hashlib.sha1(data).hexdigest()
        assert (tile["tile_col"], tile["tile_row"], tile["tile_frame"]) == (
            col,
            row,
            -1,
        )
        assert content(d, col, row) == data


def test_actions_one_by_one_with_old_flags(daemon: Daemon, acq: Acquisition) -> None:
    """send-acq-log, create-rois, send-tile by every method and end-acq each work."""
    dir_url = f"file://{acq.path}"
    r = client(daemon, "-action", "send-acq-log", "-acq-dir-url", dir_url)
    assert r.returncode == 0 and "started acquisition 123" in r.stderr, r.stderr
    r = client(daemon, "-action", "create-rois", "-acq-dir-url", dir_url)
    assert r.returncode == 0, r.stderr
    links = rows(daemon.config, "SELECT COUNT(*) FROM roi_images")[0][0]
    assert links == 1750

    tiles = sorted(acq.tiles.items())
    methods = [
        ("HTTP-PUT", f"127.0.0.1:{daemon.http}"),
        ("HTTP-POST", f"http://127.0.0.1:{daemon.http}"),
        ("TCP-PUT", f"127.0.0.1:{daemon.tcp}"),
        ("TCP-SEND", f"http://127.0.0.1:{daemon.tcp}"),
    ]
    for ((col, row, camera), data), (method, url) in zip(tiles, methods, strict=False):
        r = client(
            daemon,
            "-action",
            "send-tile",
            "-acq-dir-url",
            dir_url,
            "-col",
            str(col),
            "-row",
            str(row),
            "-camera",
            str(camera),
            "-send-method",
            method,
            "-tile-service-url",
            url,
        )
        assert r.returncode == 0, (method, r.stdout, r.stderr)
        assert f"sent {stable_name(col, row, camera)}: tile id" in r.stdout
        assert content(daemon, col, row) == data
    md5 = hashlib.md5(tiles[0][1]).hexdigest()
    assert daemon.log_count(f"checksum={md5}") == 1  # HTTP-PUT carries the MD5
    md5s = {
        bytes(r[0]).hex()
        for r in rows(daemon.config, "SELECT md5_checksum FROM file_objects")
        if r[0] is not None
    }
    assert {hashlib.md5(data).hexdigest() for _, data in tiles[:4]} <= md5s

    r = client(daemon, "-action", "end-acq", "-acq-dir-url", str(acq.path))
    assert r.returncode == 0, r.stderr
    assert "stored ancillary file 123_acq_mosaic.png" in r.stderr
    assert completed(daemon)
    assert {"123_acq_mosaic.png", "123_DAQ timing.csv", "123_logfile.ini"} <= (
        ancillary_paths(daemon)
    )
    stored_mosaic = (
        daemon.directory / "objects/FAFB/acquisitions/123/123_acq_mosaic.png"
    )
    assert stored_mosaic.read_bytes() == acq.mosaic


@pytest.mark.parametrize("method", ["TCP-PUT", "HTTP-POST"])
def test_send_acq_replays_the_daq_timing(
    daemon: Daemon, acq: Acquisition, method: str
) -> None:
    """send-acq sends every DAQ step's tiles for all cameras, then ends (Q40)."""
    tile_port = daemon.tcp if method.startswith("TCP") else daemon.http
    out = daemon.directory / "send-acq.json"
    r = client(
        daemon,
        "-action",
        "send-acq",
        "-acq-dir-url",
        str(acq.path),
        "-camera",
        "-1",
        "-rate",
        "50",
        "-send-method",
        method,
        "-tile-service-url",
        f"http://127.0.0.1:{tile_port}",
        "-logfile",
        str(daemon.directory / "logs" / "client.log"),
        "--json",
        str(out),
    )
    assert r.returncode == 0, (r.stdout, r.stderr)
    result = json.loads(out.read_text())
    assert result["steps"] == STEPS and result["tiles"]["sent"] == 4 * STEPS
    assert result["tiles"]["failed"] == 0 and result["ok"] is True
    assert result["end_acquisition"]["status"] == 200
    assert result["end_acquisition"]["af_results"][0]["name"] == "123_acq_mosaic.png"
    assert f"Submitted {4 * STEPS} image tiles for 123" in r.stdout
    assert "tiles sent" in r.stdout and "ack p99" in r.stdout  # the summary table
    check_stable_tiles(daemon, acq)
    assert len(stored(daemon)) == 4 * STEPS  # no drift frames in a DAQ replay
    assert completed(daemon)
    log = (daemon.directory / "logs" / "client.log").read_text()
    assert log.count("sent col") == 4 * STEPS


def test_feed_then_resume_sends_no_tile_bytes(daemon: Daemon, acq: Acquisition) -> None:
    """feed-acquisition stores everything; --resume skips what the service holds."""
    every = acq.all_tiles()
    col, row, camera = sorted(acq.tiles)[0]
    r = client(daemon, "send-acq-log", "--acq-dir", str(acq.path))
    assert r.returncode == 0, r.stderr
    r = client(
        daemon,
        "send-tile",
        "--acq-dir",
        str(acq.path),
        "--col",
        str(col),
        "--row",
        str(row),
        "--camera",
        str(camera),
        "--send-method",
        "HTTP-PUT",
    )
    assert r.returncode == 0, r.stderr
    wait_stored(daemon, 1)

    out = daemon.directory / "feed.json"
    r = client(
        daemon,
        "feed-acquisition",
        "--acq-dir",
        str(acq.path),
        "--send-method",
        "HTTP-PUT",
        "--parallel",
        "3",
        "--resume",
        "--json",
        str(out),
    )
    assert r.returncode == 0, (r.stdout, r.stderr)
    result = json.loads(out.read_text())
    assert result["tiles"]["skipped"] == 1 and result["tiles"]["failed"] == 0
    assert result["tiles"]["sent"] == len(every) - 1
    assert f"Submitted {len(every)} image tiles for 123" in r.stdout
    wait_stored(daemon, len(every))
    check_stable_tiles(daemon, acq)
    held = stored(daemon)
    for name, data in acq.drift.items():
        assert held[name]["tile_frame"] == 7
        assert held[name]["tile_file_checksum"] == hashlib.sha1(data).hexdigest()
    assert completed(daemon)

    captures = daemon.log_count("/service/v1/capture-image-content/")
    assert captures == len(every)
    again = daemon.directory / "again.json"
    r = client(
        daemon,
        "-action",
        "feed-acquisition",
        "-acq-dir-url",
        f"file://{acq.path}",
        "-send-method",
        "HTTP-PUT",
        "--resume",
        "--json",
        str(again),
    )
    assert r.returncode == 0, (r.stdout, r.stderr)
    result = json.loads(again.read_text())
    assert result["tiles"]["sent"] == 0 and result["tiles"]["bytes_sent"] == 0
    assert result["tiles"]["skipped"] == len(every)
    assert {t["outcome"] for t in result["results"]} == {"skipped"}
    assert daemon.log_count("/service/v1/capture-image-content/") == captures
    assert completed(daemon)


def test_feed_over_tcp(daemon: Daemon, acq: Acquisition) -> None:
    """feed-acquisition over TCP stores stable tiles and drift frames alike."""
    r = client(
        daemon,
        "feed-acquisition",
        "--acq-dir",
        str(acq.path),
        "--tile-service-url",
        f"127.0.0.1:{daemon.tcp}",
        "--parallel",
        "2",
    )
    assert r.returncode == 0, (r.stdout, r.stderr)
    wait_stored(daemon, len(acq.all_tiles()))
    check_stable_tiles(daemon, acq)
    assert completed(daemon)


def test_feed_failures_exit_non_zero_and_leave_it_open(
    daemon: Daemon, acq: Acquisition
) -> None:
    """Tiles that cannot be sent fail after bounded retries; nothing is ended."""
    out = daemon.directory / "failed.json"
    r = client(
        daemon,
        "feed-acquisition",
        "--acq-dir",
        str(acq.path),
        "--tile-service-url",
        f"127.0.0.1:{free_port()}",  # nothing listens there
        "--retries",
        "1",
        "--json",
        str(out),
    )
    assert r.returncode == 1, (r.stdout, r.stderr)
    result = json.loads(out.read_text())
    assert result["tiles"]["failed"] == len(acq.all_tiles())
    assert result["tiles"]["retried"] == len(acq.all_tiles())
    assert result["ok"] is False and "end_acquisition" not in result
    assert "not ended" in r.stderr and "--resume" in r.stderr
    assert stored(daemon) == {} and not completed(daemon)


@pytest.mark.parametrize("method", ["tcp", "http"])
def test_simulator_short_run(daemon: Daemon, method: str) -> None:
    """Two cameras for a second: every tile acknowledged and stored under new names."""
    tile_port = daemon.tcp if method == "tcp" else daemon.http
    out = daemon.directory / "sim.json"
    r = run(
        "imagecatcher-simulator",
        "--service-url",
        f"http://127.0.0.1:{daemon.http}",
        "--tile-service-url",
        f"127.0.0.1:{tile_port}",
        "--method",
        method,
        "--cameras",
        "2",
        "--duration",
        "1",
        "--rate",
        "100",
        "--tile-size",
        "64k",
        "--json",
        str(out),
        cwd=daemon.directory,
    )
    assert r.returncode == 0, (r.stdout, r.stderr)
    result = json.loads(out.read_text())
    cameras = result["cameras"]
    assert [c["camera"] for c in cameras] == [0, 1]
    assert all(c["failed"] == 0 and c["sent"] >= 5 for c in cameras)
    assert all(c["latency"]["count"] == c["sent"] for c in cameras)
    assert result["end_acquisition_status"] == 200
    sent = sum(c["sent"] for c in cameras)
    uid = result["acq_id"]
    wait_stored(daemon, sent, uid)
    held = stored(daemon, uid)
    assert len(held) == sent
    assert {t["tile_camera"] for t in held.values()} == {0, 1}
    assert completed(daemon, uid)
    assert "acks > 100 ms" in r.stdout and "p99 ms" in r.stdout


def test_unknown_action_or_method_is_a_usage_error(tmp_path: Path) -> None:
    """The installed script exits 2 with its usage for unknown actions and methods."""
    for args in (
        ["-action", "send-everything", "-acq-dir-url", str(tmp_path)],
        ["-send-method", "CARRIER-PIGEON", "-acq-dir-url", str(tmp_path)],
    ):
        r = run("imagecatcher-client", *args, cwd=tmp_path)
        assert r.returncode == 2 and "usage: imagecatcher-client" in r.stderr


def test_simulator_at_rate_zero_stops_at_its_duration(daemon: Daemon) -> None:
    """--rate 0 (back to back) still ends when --duration is over."""
    r = run(
        "imagecatcher-simulator",
        "--service-url",
        f"http://127.0.0.1:{daemon.http}",
        "--tile-service-url",
        f"127.0.0.1:{daemon.tcp}",
        "--cameras",
        "1",
        "--duration",
        "1",
        "--rate",
        "0",
        "--tile-size",
        "4k",
        cwd=daemon.directory,
        timeout=30,  # it used to run forever: "due" never passed the deadline
    )
    assert r.returncode == 0, (r.stdout, r.stderr)
