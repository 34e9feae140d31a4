"""Access control on the real daemon, both engines: API_TOKENS, READ_REQUIRES_TOKEN,
TCP_ALLOWED_CLIENTS, and the client's ``--token``.

Two daemons per engine: ``open_reads`` (tokens, reads open, TCP from
127.0.0.0/8) and ``closed_reads`` (tokens, reads need one, TCP only from
10.0.0.0/8, which refuses the loopback peer).  The acquisition is in
production shape: a 12-digit UID, rig-style ROI file names and tile names,
a non-empty collection.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs
import pytest

from imagecatcher.config import Config
from imagecatcher.rois import parse_roi_tiles
from tests.conftest import FIXTURES
from tests.integration.daemon import (
    ports,
    run_tool,
    running,
    script,
    twistd_argv,
    write_config,
)
from tests.integration.dbcheck import scalar
from tests.integration.httpclient import multipart, request, send_tile

UID = 161105213017
COLLECTION = "FAFB00_serial_sections"
SECTION = f"{UID}_FAFB00_sections_5800-5802_montage"
WRITE = "wr1t3-9f8e7d6c5b4a39281706"
RENDER = "r3nd3r-0a1b2c3d4e5f60718293"
UNKNOWN = "n0n3-5566778899aabbccddeeff"


@attrs.frozen
class Daemon:
    """A running daemon: its ports, directory and database."""

    http: int
    tcp: int
    directory: Path
    config: Config

    def call(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request, with ``Authorization: Bearer <token>`` when given."""
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        return request(self.http, method, f"/service/v1{path}", body, sent)

    def log(self) -> str:
        """The daemon's log so far."""
        return (self.directory / "daemon.log").read_text(errors="replace")

    def files(self) -> set[Path]:
        """Every file under the object store and the spool."""
        found: set[Path] = set()
        for top in ("objects", "spool"):
            base = self.directory / top
            if base.exists():
                found |= {p for p in base.rglob("*") if p.is_file()}
        return found


def _daemon(tmp_path: Path, engine_config: Config, **keys: Any) -> Iterator[Daemon]:
    token_file = tmp_path / "api-tokens"
    token_file.write_text(
        f"# the rig\nwrite {WRITE}\n# the renderer\nrender {RENDER}\n"
    )
    cfg = write_config(
        tmp_path,
        engine_config,
        JFS_MAPPING={"PING": COLLECTION, "FAFB_00": COLLECTION},
        API_TOKENS=str(token_file),
        **keys,
    )
    assert run_tool(["--config", str(cfg), "db-init"], tmp_path).returncode == 0
    http_port, tcp_port = ports()
    with running(twistd_argv(cfg, http_port, tcp_port), tmp_path, http_port):
        yield Daemon(http_port, tcp_port, tmp_path, engine_config)


@pytest.fixture
def open_reads(tmp_path: Path, engine_config: Config) -> Iterator[Daemon]:
    """Tokens from a file, reads open, TCP from loopback."""
    yield from _daemon(tmp_path, engine_config, TCP_ALLOWED_CLIENTS=["127.0.0.0/8"])


@pytest.fixture
def closed_reads(tmp_path: Path, engine_config: Config) -> Iterator[Daemon]:
    """Tokens (a JSON list), reads need one, TCP only from 10.0.0.0/8."""
    yield from _daemon(
        tmp_path,
        engine_config,
        READ_REQUIRES_TOKEN=True,
        TCP_ALLOWED_CLIENTS=["10.0.0.0/8", "fd00::/8"],
    )


def _form(*fields: tuple[str, str | None, bytes]) -> tuple[bytes, dict[str, str]]:
    body, ctype = multipart(fields)
    return body, {"Content-Type": ctype}


def _start_form() -> tuple[bytes, dict[str, str]]:
    log = (FIXTURES / "123_logfile.ini").read_bytes()
    return _form(("acq-inilog", f"{UID}_logfile.ini", log))


def _rois_form() -> tuple[bytes, dict[str, str]]:
    return _form(
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
    )


def _roi_cell() -> tuple[int, int]:
    """A tile position inside an ROI of the fixture."""
    tile = parse_roi_tiles((FIXTURES / "123_ROI_tiles.csv").read_text()).tiles[0]
    return tile.col, tile.row


def _put_path(name: str, data: bytes) -> str:
    return (
        f"/capture-image-content/{UID}?tile-filename={quote(name)}"
        f"&checksum={hashlib.md5(data).hexdigest()}"
    )


def _post_form(name: str, data: bytes) -> tuple[bytes, dict[str, str]]:
    return _form(
        ("tile-file", name, data),
        ("checksum-str", None, hashlib.md5(data).hexdigest().encode()),
    )


def _captured(d: Daemon) -> int:
    """Tiles whose content arrived (create-rois makes rows without any)."""
    return int(
        scalar(
            d.config,
            "SELECT COUNT(*) FROM tem_camera_images WHERE acquired_timestamp IS NOT NULL",
        )
    )


def _refused(d: Daemon, status: int, method: str, path: str, **kw: Any) -> None:
    """The call answers ``status`` with a JSON errormessage (and the challenge on 401)."""
    code, headers, body = d.call(method, path, **kw)
    assert code == status, body
    assert json.loads(body)["errormessage"]
    lower = {k.lower(): v for k, v in headers.items()}
    assert lower["content-type"] == "application/json"
    assert ("www-authenticate" in lower) == (status == 401)
    if status == 401:
        assert lower["www-authenticate"].startswith("Bearer")


def test_each_route_class_answers_401_403_200(open_reads: Daemon) -> None:
    """Lifecycle, capture, calibration import need write; render routes render."""
    d = open_reads
    body, headers = _start_form()
    for token, status in ((None, 401), (UNKNOWN, 401), (RENDER, 403)):
        _refused(
            d,
            status,
            "POST",
            "/start-acquisition",
            body=body,
            token=token,
            headers=headers,
        )
    code, _, raw = d.call("POST", "/start-acquisition", body, WRITE, headers)
    assert (code, json.loads(raw)) == (200, {"uid": UID})

    body, headers = _rois_form()
    _refused(
        d, 403, "POST", f"/create-rois/{UID}", body=body, token=RENDER, headers=headers
    )
    assert d.call("POST", f"/create-rois/{UID}", body, WRITE, headers)[0] == 200

    stable = os.urandom(120_000)
    col, row = _roi_cell()
    path = _put_path(f"col{col:04d}/col{col:04d}_row{row:04d}_cam3.tif", stable)
    _refused(d, 401, "PUT", path, body=stable)
    _refused(d, 403, "PUT", path, body=stable, token=RENDER)
    code, _, raw = d.call("PUT", path, stable, WRITE)
    assert code == 200, raw
    drift = os.urandom(90_000)
    body, headers = _post_form("Dump_cam0_frame12345_col0012_row0005.tif", drift)
    path = f"/capture-image-content/{UID}"
    _refused(d, 401, "POST", path, body=body, headers=headers)
    _refused(d, 403, "POST", path, body=body, token=RENDER, headers=headers)
    assert d.call("POST", path, body, WRITE, headers)[0] == 200
    assert _captured(d) == 2

    calibrations = (FIXTURES / "141028_lens_correction_with_offset.json").read_bytes()
    _refused(d, 401, "POST", "/calibrations", body=calibrations)
    _refused(d, 403, "POST", "/calibrations", body=calibrations, token=RENDER)
    assert d.call("POST", "/calibrations", calibrations, WRITE)[0] == 200

    query = f"/next-tile?acqid={UID}&ntiles=5"
    _refused(d, 401, "POST", query)
    _refused(d, 401, "POST", query, token=UNKNOWN)
    code, _, raw = d.call("POST", query, token=RENDER)
    assert code == 200 and json.loads(raw)["resultType"] == "TILE_FOUND", raw
    ids = [r["tilespec"]["tileId"] for r in json.loads(raw)["results"]]
    state = json.dumps({"state": "COMPLETE", "tileSpecIds": ids}).encode()
    _refused(d, 401, "PUT", "/tile-state", body=state)
    code, _, raw = d.call("PUT", "/tile-state", state, WRITE)  # write implies render
    assert code == 200 and json.loads(raw)["nUpdates"] == len(ids), raw

    _refused(d, 401, "POST", f"/store-ancillary-files/{UID}")
    _refused(d, 403, "POST", f"/store-ancillary-files/{UID}", token=RENDER)
    _refused(d, 401, "POST", f"/end-acquisition/{UID}")
    _refused(d, 403, "POST", f"/end-acquisition/{UID}", token=RENDER)
    assert d.call("POST", f"/end-acquisition/{UID}", token=WRITE)[0] == 200

    # Reads stay open.
    code, _, raw = d.call("GET", f"/acquisitions?acqid={UID}")
    assert code == 200 and json.loads(raw)["acquisitions"][0]["Completed"], raw
    assert d.call("GET", "/calibrations")[0] == 200
    assert WRITE not in d.log() and RENDER not in d.log() and UNKNOWN not in d.log()


def test_refused_upload_stores_nothing(open_reads: Daemon) -> None:
    """A tile without a write token leaves no row, no object and no spool entry."""
    d = open_reads
    body, headers = _start_form()
    assert d.call("POST", "/start-acquisition", body, WRITE, headers)[0] == 200
    before = d.files()
    data = os.urandom(3 * 1024 * 1024)
    _refused(d, 401, "PUT", _put_path("col0012_row0005_cam3.tif", data), body=data)
    body, headers = _post_form("col0013_row0005_cam2.tif", data)
    _refused(
        d,
        403,
        "POST",
        f"/capture-image-content/{UID}",
        body=body,
        token=RENDER,
        headers=headers,
    )
    # A client that waits for 100 Continue is answered before it sends the tile.
    with socket.create_connection(("127.0.0.1", d.http), timeout=30) as s:
        s.sendall(
            f"PUT /service/v1{_put_path('col0014_row0005_cam1.tif', data)} HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nContent-Length: {len(data)}\r\n"
            "Expect: 100-continue\r\n\r\n".encode()
        )
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert b"100 Continue" not in answer
    assert scalar(d.config, "SELECT COUNT(*) FROM tem_camera_images") == 0
    assert _captured(d) == 0 and d.files() == before
    assert d.call("GET", "/ping")[0] == 200


def test_reads_need_a_token_when_configured(closed_reads: Daemon) -> None:
    """With READ_REQUIRES_TOKEN reads need any valid token; ping stays open."""
    d = closed_reads
    _refused(d, 401, "GET", "/acquisitions")
    _refused(d, 401, "GET", "/calibrations", token=UNKNOWN)
    for token in (RENDER, WRITE):
        code, _, raw = d.call("GET", "/acquisitions", token=token)
        assert code == 200 and json.loads(raw)["acquisitions"] == [], raw
    code, _, raw = d.call("GET", "/tile/424242", token=RENDER)
    assert code == 404, raw
    assert d.call("GET", "/ping")[0] == 200


def _tcp_closed_at_once(port: int) -> bool:
    """Whether the daemon closes a new TCP connection before any exchange."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        try:
            return s.recv(1) == b""
        except ConnectionResetError:
            return True


def test_tcp_from_outside_the_allowed_networks_is_closed(closed_reads: Daemon) -> None:
    """With 10.0.0.0/8 only, a loopback peer is closed at once and logged."""
    d = closed_reads
    assert _tcp_closed_at_once(d.tcp)
    assert _tcp_closed_at_once(d.tcp)
    lines = [line for line in d.log().splitlines() if "TCP_ALLOWED_CLIENTS" in line]
    assert len(lines) == 2 and "127.0.0.1" in lines[0]


def test_tcp_from_an_allowed_network_captures(open_reads: Daemon) -> None:
    """With 127.0.0.0/8 allowed, a loopback rig sends a tile over TCP."""
    d = open_reads
    body, headers = _start_form()
    assert d.call("POST", "/start-acquisition", body, WRITE, headers)[0] == 200
    data = os.urandom(150_000)
    with socket.create_connection(("127.0.0.1", d.tcp), timeout=30) as s:
        reply = send_tile(s, UID, 1, -1, 14, 5, hashlib.md5(data).digest(), data)
    assert reply.status == 0, reply
    assert _captured(d) == 1
    assert "TCP_ALLOWED_CLIENTS" not in d.log()


def _client(
    d: Daemon, acq: Path, *args: str, env_token: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "IMAGECATCHER_TOKEN"}
    if env_token is not None:
        env["IMAGECATCHER_TOKEN"] = env_token
    return subprocess.run(
        [
            script("imagecatcher-client"),
            "-service-url",
            f"http://127.0.0.1:{d.http}",
            "-acq-dir-url",
            f"file://{acq}",
            *args,
        ],
        cwd=d.directory,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def _acquisition_dir(base: Path) -> tuple[Path, bytes]:
    acq = base / f"{UID}_acq"
    (acq / "col0012").mkdir(parents=True)
    (acq / f"{UID}_logfile.ini").write_bytes(
        (FIXTURES / "123_logfile.ini").read_bytes()
    )
    (acq / f"{UID}_ROI_spec.ini").write_bytes(
        (FIXTURES / "123_ROI_spec.ini").read_bytes()
    )
    (acq / f"{UID}_ROI_tiles.csv").write_bytes(
        (FIXTURES / "123_ROI_tiles.csv").read_bytes()
    )
    data = os.urandom(80_000)
    (acq / "col0012" / "col0012_row0005_cam3.tif").write_bytes(data)
    return acq, data


def test_client_sends_its_token(open_reads: Daemon, tmp_path: Path) -> None:
    """imagecatcher-client is refused without a token; --token or the variable work."""
    d = open_reads
    acq, data = _acquisition_dir(tmp_path / "rig")
    r = _client(d, acq, "-action", "send-acq-log")
    assert r.returncode == 1 and "HTTP 401" in r.stderr, r.stderr
    r = _client(d, acq, "-action", "send-acq-log", env_token=RENDER)
    assert r.returncode == 1 and "HTTP 403" in r.stderr, r.stderr
    r = _client(d, acq, "-action", "send-acq-log", "--token", WRITE)
    assert r.returncode == 0, r.stderr
    r = _client(d, acq, "-action", "create-rois", env_token=WRITE)
    assert r.returncode == 0, r.stderr
    tile = ("-action", "send-tile", "-col", "12", "-row", "5", "-camera", "3")
    r = _client(d, acq, *tile, "-send-method", "HTTP-PUT", env_token=RENDER)
    assert r.returncode == 1 and "HTTP 403" in r.stderr, r.stderr
    r = _client(d, acq, *tile, "-send-method", "HTTP-POST", env_token=WRITE)
    assert r.returncode == 0, r.stderr
    code, _, raw = d.call("GET", f"/acquisition/{UID}/tile/12/5/content")
    assert code == 200 and raw == data
    assert WRITE not in d.log()
