"""A capture round on the remote stores: sproxyd (fake process) and S3 (SeaweedFS)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from imagecatcher.config import Config
from imagecatcher.storage.keys import object_key
from imagecatcher.storage.s3 import S3Store
from tests.conftest import PROJECT
from tests.integration.daemon import ports, run_tool, running, twistd_argv, write_config
from tests.integration.dbcheck import rows
from tests.integration.httpclient import post_form, request, send_tile
from tests.integration.seaweed import SeaweedS3
from tests.integration.test_durability import _fake_sproxyd, _prepare, _process


def _fetch_sproxyd(port: int, key: str) -> bytes:
    with urllib.request.urlopen(
        f"http://127.0.0.1:{port}/proxy/bparc/{key}", timeout=10
    ) as r:
        return bytes(r.read())


def _fetch_s3(server: SeaweedS3, bucket: str, name: str) -> bytes:
    signer = S3Store(
        None,  # type: ignore[arg-type]  # signing needs no client
        None,  # type: ignore[arg-type]
        bucket,
        server.endpoint_url,
        server.access_key,
        server.secret_key,
        server.region,
    )
    url = signer.url(name)
    req = urllib.request.Request(url, headers=signer.sign("GET", url))
    with urllib.request.urlopen(req, timeout=10) as r:
        return bytes(r.read())


def _round(http_port: int, tcp_port: int, config: Config) -> dict[str, bytes]:
    """Capture a tile per channel and an ancillary file; return key -> bytes."""
    _prepare(http_port)
    raw = os.urandom(100_000)
    status, _, body = request(
        http_port,
        "PUT",
        "/service/v1/capture-image-content/123?tile-filename=col0008_row0080_cam0.tif"
        f"&checksum={hashlib.md5(raw).hexdigest()}",
        raw,
    )
    assert status == 200, body
    raw_key = json.loads(body)["tile_jfs_key"]
    tcp_data = os.urandom(70_000)
    with socket.create_connection(("127.0.0.1", tcp_port), timeout=30) as s:
        reply = send_tile(
            s, 123, 1, -1, 9, 80, hashlib.md5(tcp_data).digest(), tcp_data
        )
    assert reply.status == 0
    (tcp_key,) = rows(
        config,
        "SELECT r.jfs_key FROM tem_camera_images t JOIN file_object_fs_replicas r"
        " ON r.file_object_id = t.file_object_id WHERE t.tem_camera_image_id = %s",
        (reply.tile_id,),
    )[0]
    png = os.urandom(3000)
    status, result = post_form(
        http_port,
        "/service/v1/end-acquisition/123",
        [("ancillary-file", "123_mosaic.png", png)],
    )
    assert status == 200, result
    return {raw_key: raw, tcp_key: tcp_data, result["af_results"][0]["jfs_key"]: png}


def test_sproxyd_store(tmp_path: Path, engine_config: Config) -> None:
    """Tiles and ancillary files land in sproxyd under service-generated 40-hex keys."""
    http_port, tcp_port = ports()
    store_port, _ = ports()
    cfg = write_config(
        tmp_path,
        engine_config,
        CONTENT_STORE_URL=f"sproxyd://localhost:{store_port}/proxy/bparc",
        SCALITY_HOST="127.0.0.1",
        ACK_WHEN="stored",  # the option: acknowledged once the store has it
        JFS_MAPPING={"PING": "FAFB"},
    )
    assert run_tool(["--config", str(cfg), "db-init"], tmp_path).returncode == 0
    with _process(
        _fake_sproxyd(store_port, tmp_path),
        PROJECT,
        store_port,
        tmp_path / "sproxyd.log",
    ):
        with running(twistd_argv(cfg, http_port, tcp_port), tmp_path, http_port):
            stored = _round(http_port, tcp_port, engine_config)
        for key, data in stored.items():
            assert len(key) == 40 and int(key, 16) >= 0
            assert _fetch_sproxyd(store_port, key) == data
    urls = rows(
        engine_config,
        "SELECT location_url FROM file_object_fs_replicas WHERE jfs_key <> ''",
    )
    assert urls and all(
        u[0].startswith(f"http://127.0.0.1:{store_port}/proxy/bparc/") for u in urls
    )


def test_s3_store(tmp_path: Path, engine_config: Config, seaweed_s3: SeaweedS3) -> None:
    """Tiles and ancillary files land in a real S3 server named collection/path,
    keyed by the SHA-1 of that name."""
    bucket = f"ic-{os.urandom(4).hex()}"
    http_port, tcp_port = ports()
    cfg = write_config(
        tmp_path,
        engine_config,
        CONTENT_STORE_URL=f"s3://{bucket}",
        ACK_WHEN="stored",  # the option: acknowledged once the store has it
        S3_ENDPOINT_URL=seaweed_s3.endpoint_url,
        S3_ACCESS_KEY_ID=seaweed_s3.access_key,
        S3_SECRET_ACCESS_KEY=seaweed_s3.secret_key,
        S3_REGION=seaweed_s3.region,
        JFS_MAPPING={"PING": "FAFB", "FAFB_00": "FAFB"},
    )
    assert run_tool(["--config", str(cfg), "db-init"], tmp_path).returncode == 0
    with running(twistd_argv(cfg, http_port, tcp_port), tmp_path, http_port):
        stored = _round(http_port, tcp_port, engine_config)
    located = dict(
        rows(
            engine_config,
            "SELECT jfs_key, location_url FROM file_object_fs_replicas"
            " WHERE jfs_key <> ''",
        )
    )
    prefix = f"{seaweed_s3.endpoint_url}/{bucket}/"
    assert located[object_key("FAFB/acquisitions/123/col0008_row0080_cam0.tif")] == (
        prefix + "FAFB/acquisitions/123/col0008_row0080_cam0.tif"
    )
    for key, data in stored.items():
        assert len(key) == 40 and located[key].startswith(prefix)
        name = unquote(located[key][len(prefix) :])
        assert _fetch_s3(seaweed_s3, bucket, name) == data


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: Any) -> None:
    """Keep proxies in the environment away from loopback requests."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
