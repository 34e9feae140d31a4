"""Faults of the store: the S3 server killed and restarted mid-stream (write-behind).

A private SeaweedFS whose S3 gateway the test kills while a rig streams
tiles over TCP: every tile is still acknowledged (from the spool), ``ping``
says the store is down and how much waits, and once the gateway is back the
spool drains: every acknowledged tile ends up stored with identical bytes and
checksum, verified and listed, and nothing else does.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.seaweed import Seaweed, running_seaweed
from imagecatcher.config import Config
from tests.conftest import FIXTURES
from tests.integration.daemon import (
    http_get,
    ports,
    run_tool,
    running,
    twistd_argv,
    write_config,
)
from tests.integration.dbcheck import rows
from tests.integration.httpclient import post_form, request, send_tile

UID = 161105213017
COLLECTION = "FAFB00_serial_sections"


@pytest.fixture
def weed() -> Iterator[Seaweed]:
    """A SeaweedFS of this test's own, so its gateway can be killed (a short
    base path keeps its unix sockets under the 108-byte limit)."""
    base = Path(tempfile.mkdtemp(prefix="icw-"))
    try:
        with running_seaweed(base) as w:
            yield w
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: Any) -> None:
    """Keep proxies in the environment away from loopback requests."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def _wait(what: str, check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _send(tcp: int, tiles: list[tuple[int, bytes]]) -> list[int]:
    ids = []
    with socket.create_connection(("127.0.0.1", tcp), timeout=60) as s:
        for col, data in tiles:
            reply = send_tile(
                s, UID, col % 4, 12345, col, 5, hashlib.md5(data).digest(), data
            )
            assert reply.status == 0, reply
            ids.append(reply.tile_id)
    return ids


def _keys(cfg: Config, ids: list[int]) -> dict[int, str]:
    found = rows(
        cfg,
        "SELECT t.tem_camera_image_id, r.jfs_key FROM tem_camera_images t"
        " JOIN file_object_fs_replicas r ON r.file_object_id = t.file_object_id",
    )
    return {int(i): str(k or "") for i, k in found if int(i) in ids}


def test_s3_outage_is_absorbed_by_the_spool(
    tmp_path: Path, mariadb_config: Config, weed: Seaweed
) -> None:
    """With the S3 gateway killed mid-stream every tile is acknowledged from
    the spool; after its restart the spool drains and every acknowledged tile
    is stored byte-identical and verified, and no other tile exists."""
    cfg_path = write_config(
        tmp_path,
        mariadb_config,
        JFS_MAPPING={"PING": COLLECTION, "FAFB_00": COLLECTION},
        **weed.store_settings(f"ic-{os.urandom(3).hex()}"),
    )
    assert run_tool(["--config", str(cfg_path), "db-init"], tmp_path).returncode == 0
    http_port, tcp_port = ports()
    with running(twistd_argv(cfg_path, http_port, tcp_port), tmp_path, http_port):
        status, body = post_form(
            http_port,
            "/service/v1/start-acquisition",
            [
                (
                    "acq-inilog",
                    f"{UID}_logfile.ini",
                    (FIXTURES / "123_logfile.ini").read_bytes(),
                )
            ],
        )
        assert status == 200, body
        sent = {col: os.urandom(300_000 + col) for col in range(30)}
        before = _send(tcp_port, [(c, sent[c]) for c in range(10)])
        _wait(
            "the first tiles stored",
            lambda: all(_keys(mariadb_config, before).values()),
        )

        weed.kill_gateway()
        during = _send(tcp_port, [(c, sent[c]) for c in range(10, 30)])
        assert len(set(before + during)) == 30
        spool = tmp_path / "spool"
        assert len(list(spool.glob("*.tile"))) == 20

        def ping_says_down() -> bool:
            code, _, text = http_get(http_port, "/service/v1/ping", timeout=10)
            return (
                code == 500 and b"down since" in text and b"wait in the spool" in text
            )

        _wait("ping to report the store down", ping_says_down, 30)
        status, _, raw = request(http_port, "GET", "/service/v1/spool")
        report = json.loads(raw)
        assert status == 200 and report["store"]["up"] is False
        assert report["store"]["down_for_s"] >= 0 and report["damaged"] == []
        assert not any(_keys(mariadb_config, during).values())

        weed.start_gateway()
        _wait("the spool to drain", lambda: not list(spool.glob("*.tile")), 120)
        ids = before + during
        _wait("every tile stored", lambda: all(_keys(mariadb_config, ids).values()))
        _wait("ping 200", lambda: http_get(http_port, "/service/v1/ping")[0] == 200)
        for tile_id, col in zip(ids, range(30), strict=True):
            status, _, content = request(
                http_port, "GET", f"/service/v1/tile/{tile_id}/content"
            )
            assert status == 200 and content == sent[col]
            status, _, verified = request(
                http_port,
                "GET",
                f"/service/v1/verify-tile/{UID}/tile/{tile_id}?checksum-algorithm=SHA1",
            )
            assert status == 200, verified
    all_tiles = rows(mariadb_config, "SELECT COUNT(*) FROM tem_camera_images")
    assert all_tiles[0][0] == 30
