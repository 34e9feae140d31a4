"""A whole acquisition in production shape, on every store and both engines.

The shape that reaches main only on real rigs: a 12-digit acquisition UID,
drift tiles with five-digit frames, directory-prefixed raw names, ROI and
ancillary files named the way the rig names them, and a non-empty collection
from ``JFS_MAPPING``.  MariaDB runs in strict mode (see ``tests/conftest.py``),
so a value longer than its column fails here as it would in the lab.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs
import pytest

from imagecatcher.config import Config
from imagecatcher.storage.keys import path_key
from tests.conftest import FIXTURES, PROJECT
from tests.integration.daemon import ports, run_tool, running, twistd_argv, write_config
from tests.integration.dbcheck import execute, rows, scalar
from tests.integration.httpclient import post_form, request, send_tile
from tests.integration.seaweed import SeaweedS3
from tests.integration.test_durability import _fake_sproxyd, _process

UID = 161105213017
COLLECTION = "FAFB00_serial_sections"
SECTION = f"{UID}_FAFB00_sections_5800-5802_montage"
#: jfs_key is VARCHAR(64) in every database the old service created.
KEY_COLUMN = 64


@attrs.frozen
class Rig:
    """A running daemon on one store and one engine."""

    http: int
    tcp: int
    config: Config
    store: str
    collection: str


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: Any) -> None:
    """Keep proxies in the environment away from loopback requests."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def _store_settings(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, stack: ExitStack
) -> dict[str, Any]:
    """Config keys for ``kind``, starting the store's server where it has one."""
    if kind == "file":
        return {}
    if kind == "sproxyd":
        port, _ = ports()
        stack.enter_context(
            _process(_fake_sproxyd(port, tmp_path), PROJECT, port, tmp_path / "sp.log")
        )
        return {
            "CONTENT_STORE_URL": f"sproxyd://localhost:{port}/proxy/bparc",
            "SCALITY_HOST": "127.0.0.1",
        }
    server: SeaweedS3 = request.getfixturevalue("seaweed_s3")
    return {
        "CONTENT_STORE_URL": f"s3://ic-{os.urandom(4).hex()}",
        "S3_ENDPOINT_URL": server.endpoint_url,
        "S3_ACCESS_KEY_ID": server.access_key,
        "S3_SECRET_ACCESS_KEY": server.secret_key,
        "S3_REGION": server.region,
    }


@pytest.fixture(params=["file", "sproxyd", "s3"])
def rig(
    request: pytest.FixtureRequest, tmp_path: Path, engine_config: Config
) -> Iterator[Rig]:
    """A daemon with a non-empty collection on each store and each engine
    (``store:collection`` as the parameter picks another collection)."""
    kind, _, collection = str(request.param).partition(":")
    collection = collection or COLLECTION
    with ExitStack() as stack:
        settings = _store_settings(kind, tmp_path, request, stack)
        cfg = write_config(
            tmp_path,
            engine_config,
            JFS_MAPPING={"PING": collection, "FAFB_00": collection},
            **settings,
        )
        assert run_tool(["--config", str(cfg), "db-init"], tmp_path).returncode == 0
        http_port, tcp_port = ports()
        stack.enter_context(
            running(twistd_argv(cfg, http_port, tcp_port), tmp_path, http_port)
        )
        yield Rig(http_port, tcp_port, engine_config, kind, collection)


def _json(status: int, body: bytes) -> Any:
    assert body, status
    return json.loads(body)


def _start_with_rois(rig: Rig) -> None:
    log = (FIXTURES / "123_logfile.ini").read_bytes()
    status, body = post_form(
        rig.http,
        "/service/v1/start-acquisition",
        [("acq-inilog", f"{UID}_logfile.ini", log)],
    )
    assert status == 200, body
    status, body = post_form(
        rig.http,
        f"/service/v1/create-rois/{UID}",
        [
            (
                "roi-spec",
                f"{SECTION}_ROI_spec.ini",
                (FIXTURES / "123_ROI_spec.ini").read_bytes(),
            ),
            (
                "roi-tiles",
                f"{SECTION}_ROI_tiles.csv",
                (FIXTURES / "123_ROI_tiles.csv").read_bytes(),
            ),
        ],
    )
    assert status == 200, body


def _put(rig: Rig, name: str, data: bytes) -> int:
    status, _, body = request(
        rig.http,
        "PUT",
        f"/service/v1/capture-image-content/{UID}?tile-filename={quote(name)}"
        f"&checksum={hashlib.md5(data).hexdigest()}",
        data,
    )
    reply = _json(status, body)
    assert status == 200, reply
    return int(reply["tile_id"])


def _post(rig: Rig, name: str, data: bytes) -> int:
    status, reply = post_form(
        rig.http,
        f"/service/v1/capture-image-content/{UID}",
        [
            ("tile-file", name, data),
            ("checksum-str", None, hashlib.md5(data).hexdigest().encode()),
        ],
    )
    assert status == 200, reply
    return int(reply["tile_id"])


def _tcp(rig: Rig, camera: int, frame: int, col: int, row: int, data: bytes) -> int:
    with socket.create_connection(("127.0.0.1", rig.tcp), timeout=30) as s:
        reply = send_tile(
            s, UID, camera, frame, col, row, hashlib.md5(data).digest(), data
        )
    assert reply.status == 0, reply
    return reply.tile_id


def _capture_every_kind(rig: Rig) -> dict[int, tuple[str, bytes]]:
    """Stable and drift tiles over raw PUT, multipart and TCP: id -> (name, bytes)."""
    sent: dict[int, tuple[str, bytes]] = {}
    for name, send in (
        ("col0012/col0012_row0005_cam3.tif", _put),
        ("Dump_cam0_frame12345_col0012_row0005.tif", _put),
        ("col0013/col0013_row0005_cam2.tif", _post),
        ("Dump_cam1_frame00042_col0013_row0006.tif", _post),
    ):
        data = os.urandom(200_000)
        sent[send(rig, name, data)] = (name, data)
    for camera, frame, col, row, name in (
        (1, -1, 14, 5, "col0014_row0005_cam1.tif"),
        (2, 54321, 14, 6, "Dump_cam2_frame054321_col0014_row0006.tif"),
    ):
        data = os.urandom(150_000)
        sent[_tcp(rig, camera, frame, col, row, data)] = (name, data)
    assert len(sent) == 6
    return sent


def _tile_ids(listing: Any) -> set[int]:
    """Every ``tile_id`` anywhere in a JSON document."""
    if isinstance(listing, dict):
        found = {int(listing["tile_id"])} if "tile_id" in listing else set()
        for value in listing.values():
            found |= _tile_ids(value)
        return found
    if isinstance(listing, list):
        return set().union(*(_tile_ids(v) for v in listing)) if listing else set()
    return set()


def _stored_info(rig: Rig, tile_id: int, timeout: float = 30.0) -> dict[str, Any]:
    """The tile's TileInfo once its content is in the store (remote stores
    acknowledge from the spool and upload behind)."""
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = request(rig.http, "GET", f"/service/v1/tile/{tile_id}")
        info: dict[str, Any] = _json(status, body)
        assert status == 200, info
        if info["tile_jfs_key"] or time.monotonic() > deadline:
            return info
        time.sleep(0.1)


def _check_tile(rig: Rig, tile_id: int, data: bytes) -> dict[str, Any]:
    """The tile is stored, fetched byte-identical and verified; its TileInfo."""
    info = _stored_info(rig, tile_id)
    assert 0 < len(info["tile_jfs_key"]) <= KEY_COLUMN, info
    status, _, content = request(rig.http, "GET", f"/service/v1/tile/{tile_id}/content")
    assert status == 200 and content == data
    for algorithm in ("MD5", "SHA1"):
        status, _, body = request(
            rig.http,
            "GET",
            f"/service/v1/verify-tile/{UID}/tile/{tile_id}?checksum-algorithm={algorithm}",
        )
        assert status == 200, body
    return info


def test_acquisition_in_production_shape(rig: Rig) -> None:
    """Stable and drift tiles of a 12-digit acquisition are stored, listed, fetched
    byte-identical and verified over every channel, and its ROI files import."""
    _start_with_rois(rig)
    cfg = rig.config
    mosaic = scalar(
        cfg,
        "SELECT m.tem_camera_image_mosaic_id FROM tem_camera_image_mosaics m"
        " JOIN ini_files_denorm a ON a.ini_file_denorm_id = m.ini_file_denorm_id"
        " WHERE a.uid = %s",
        (UID,),
    )
    assert (
        scalar(
            cfg,
            "SELECT COUNT(*) FROM image_mosaic_rois WHERE tem_camera_image_mosaic_id = %s",
            (mosaic,),
        )
        == 3
    )
    assert scalar(cfg, "SELECT COUNT(*) FROM roi_images") == 1750

    sent = _capture_every_kind(rig)
    for tile_id, (name, data) in sent.items():
        info = _check_tile(rig, tile_id, data)
        stored_name = name.rsplit("/", 1)[-1]  # base names on every channel (Q13)
        assert info["tile_jfs_path"] == f"/acquisitions/{UID}/{stored_name}"
    status, _, body = request(
        rig.http, "GET", f"/service/v1/acquisition/{UID}/tiles?frame-type=all"
    )
    assert status == 200, body
    assert set(sent) <= _tile_ids(_json(status, body))

    ancillary = [
        (f"{UID}_Controller timing_cam2.csv", os.urandom(5000)),
        (f"{UID}_FAFB00_sections_5800-5802_montage_mosaic.png", os.urandom(9000)),
        (f"{UID}_stored_image_list_cam3.csv", os.urandom(700)),
    ]
    status, reply = post_form(
        rig.http,
        f"/service/v1/end-acquisition/{UID}",
        [("ancillary-file", name, data) for name, data in ancillary],
    )
    assert status == 200, reply
    results = reply["af_results"]
    assert [r["name"] for r in results] == [name for name, _ in ancillary]
    assert all(
        "errormessage" not in r and 0 < len(r["jfs_key"]) <= KEY_COLUMN for r in results
    )

    keys = [
        k
        for (k,) in rows(
            cfg, "SELECT jfs_key FROM file_object_fs_replicas WHERE jfs_key <> ''"
        )
    ]
    assert len(keys) == len(set(keys)) == len(sent) + len(ancillary) + 2  # + ROI files
    assert all(0 < len(k) <= KEY_COLUMN for k in keys)


def _replica_of(cfg: Config, tile_id: int) -> tuple[int, str, str]:
    """(replica id, jfs_key, location_url) of a tile's content."""
    replica_id, key, url = rows(
        cfg,
        "SELECT r.file_object_fs_replica_id, r.jfs_key, r.location_url"
        " FROM tem_camera_images t JOIN file_object_fs_replicas r"
        " ON r.file_object_id = t.file_object_id WHERE t.tem_camera_image_id = %s",
        (tile_id,),
    )[0]
    return int(replica_id), str(key), str(url)


# A short collection: on MariaDB such rows could only exist for names that fit.
@pytest.mark.parametrize("rig", ["file:FAFB", "s3:FAFB"], indirect=True)
def test_tiles_keyed_by_their_path_stay_readable(rig: Rig) -> None:
    """Rows whose jfs_key is the object's path (what path-addressed stores wrote
    before) are still fetched, verified, re-sent idempotently and replaced."""
    _start_with_rois(rig)
    cfg = rig.config
    name, data = "col0001_row0002_cam0.tif", os.urandom(100_000)
    tile_id = _put(rig, name, data)
    _stored_info(rig, tile_id)
    replica_id, _key, url = _replica_of(cfg, tile_id)
    legacy = path_key(rig.collection, f"/acquisitions/{UID}/{name}")
    assert len(legacy) <= KEY_COLUMN  # such rows could only hold short names
    for location in (url, ""):
        _write_key(cfg, replica_id, legacy, location)
        _check_tile(rig, tile_id, data)
    _write_key(cfg, replica_id, legacy, url)

    assert _put(rig, name, data) == tile_id  # unchanged: nothing is rewritten
    assert _replica_of(cfg, tile_id)[1] == legacy

    newer = os.urandom(120_000)
    assert _put(rig, name, newer) == tile_id
    info = _check_tile(rig, tile_id, newer)
    assert info["tile_jfs_key"] != legacy and len(info["tile_jfs_key"]) == 40


def _write_key(cfg: Config, replica_id: int, key: str, url: str) -> None:
    """Rewrite one replica row the way older code left it."""
    execute(
        cfg,
        "UPDATE file_object_fs_replicas SET jfs_key = %s, location_url = %s"
        " WHERE file_object_fs_replica_id = %s",
        (key, url, replica_id),
    )
