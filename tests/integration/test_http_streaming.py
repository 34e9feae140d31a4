"""HTTP tiles streamed to their durable home by a running daemon, on both engines.

16 MiB tiles sent raw and as multipart in small pieces arrive byte for byte;
refused uploads (wrong MD5, bad name, malformed or incomplete forms, too
large, a client leaving mid-body) leave the staging directory empty.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs
import pytest

from imagecatcher.config import Config
from tests.conftest import FIXTURES
from tests.integration.daemon import ports, run_tool, running, twistd_argv, write_config
from tests.integration.dbcheck import rows, scalar
from tests.integration.httpclient import multipart, post_form

MIB = 1024 * 1024
MAX_TILE = 20 * MIB
NAME = "col0006_row0017_cam1.tif"
PATH = "/service/v1/capture-image-content/123"


@attrs.frozen
class Daemon:
    """A running daemon with a file store."""

    http: int
    directory: Path
    config: Config

    @property
    def staging(self) -> Path:
        """Where the file store receives tiles before placing them."""
        return self.directory / "objects" / ".incoming"

    def leftovers(self) -> list[Path]:
        """Files received but never placed."""
        return list(self.staging.iterdir()) if self.staging.exists() else []

    def stored(self, name: str = NAME) -> bytes:
        """The bytes the file store holds for a tile of acquisition 123."""
        path = self.directory / "objects" / "FAFB" / "acquisitions" / "123" / name
        return path.read_bytes()

    def tiles(self) -> int:
        """Tile rows in the database."""
        return int(scalar(self.config, "SELECT COUNT(*) FROM tem_camera_images"))


@pytest.fixture
def daemon(tmp_path: Path, engine_config: Config) -> Iterator[Daemon]:
    """A daemon with a registered acquisition 123 and MAX_TILE_BYTES 20 MiB."""
    cfg = write_config(
        tmp_path,
        engine_config,
        JFS_MAPPING={"PING": "FAFB", "FAFB_00": "FAFB"},
        MAX_TILE_BYTES=MAX_TILE,
    )
    assert run_tool(["--config", str(cfg), "db-init"], tmp_path).returncode == 0
    http_port, _tcp_port = ports()
    with running(twistd_argv(cfg, http_port, None), tmp_path, http_port):
        status, body = post_form(
            http_port,
            "/service/v1/start-acquisition",
            [
                (
                    "acq-inilog",
                    "123_logfile.ini",
                    (FIXTURES / "123_logfile.ini").read_bytes(),
                )
            ],
        )
        assert status == 200, body
        yield Daemon(http_port, tmp_path, engine_config)


def head(method: str, target: str, headers: Sequence[tuple[str, str]]) -> bytes:
    """A request line and headers (the connection closes after the answer)."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def exchange(
    port: int, start: bytes, body: bytes, piece: int = 8192
) -> tuple[int, bytes]:
    """Send the head, then the body in ``piece``-byte sends; the status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        s.sendall(start)
        view = memoryview(body)
        for i in range(0, len(body), piece):
            s.sendall(view[i : i + piece])
        answer = bytearray()
        while chunk := s.recv(65536):
            answer += chunk
    status_line, _, rest = bytes(answer).partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def put_raw(
    d: Daemon, data: bytes, name: str = NAME, headers: Sequence[tuple[str, str]] = ()
) -> tuple[int, bytes]:
    """A raw PUT of ``data`` in small pieces."""
    start = head(
        "PUT",
        f"{PATH}?tile-filename={name}",
        [("Content-Length", str(len(data))), *headers],
    )
    return exchange(d.http, start, data)


def post_multipart(
    d: Daemon, fields: Sequence[tuple[str, str | None, bytes]]
) -> tuple[int, bytes]:
    """A multipart POST in small pieces."""
    body, ctype = multipart(fields)
    start = head(
        "POST", PATH, [("Content-Type", ctype), ("Content-Length", str(len(body)))]
    )
    return exchange(d.http, start, body)


def recorded_md5(d: Daemon) -> bytes:
    """The MD5 the database holds for the one tile."""
    ((md5,),) = rows(
        d.config,
        "SELECT f.md5_checksum FROM file_objects f JOIN tem_camera_images t"
        " ON t.file_object_id = f.file_object_id",
    )
    return bytes(md5)


def test_16_mib_raw_tile_in_small_pieces(daemon: Daemon) -> None:
    """A 16 MiB raw PUT sent 8 KiB at a time is stored byte for byte."""
    data = os.urandom(16 * MIB)
    md5 = hashlib.md5(data).digest()
    status, body = put_raw(
        daemon, data, headers=[("Content-MD5", base64.b64encode(md5).decode())]
    )
    assert status == 200, body
    assert daemon.stored() == data
    assert recorded_md5(daemon) == md5
    assert daemon.leftovers() == []


def test_16_mib_multipart_tile_in_small_pieces(daemon: Daemon) -> None:
    """A 16 MiB multipart tile-file part sent 8 KiB at a time is stored exactly."""
    data = os.urandom(16 * MIB)
    status, body = post_multipart(
        daemon,
        [
            ("tile-file", f"col0006/{NAME}", data),
            ("checksum-str", None, hashlib.md5(data).hexdigest().encode()),
        ],
    )
    assert status == 200, body
    assert daemon.stored() == data
    assert recorded_md5(daemon) == hashlib.md5(data).digest()
    assert daemon.leftovers() == []


def test_refused_uploads_leave_no_file(daemon: Daemon) -> None:
    """Wrong MD5, bad name, bad forms and too-large bodies keep nothing."""
    data = os.urandom(16 * MIB)
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    status, body = put_raw(daemon, data, headers=[("Content-MD5", wrong)])
    assert status == 400 and b"do not match" in body
    status, body = post_multipart(
        daemon,
        [
            ("tile-file", NAME, data),
            ("checksum-str", None, hashlib.md5(b"other").hexdigest().encode()),
        ],
    )
    assert status == 400 and b"do not match" in body
    status, body = put_raw(daemon, data, name="not_a_tile.tif")
    assert status == 400 and b"Invalid tile file name" in body
    status, body = post_multipart(daemon, [("tile-filename", None, NAME.encode())])
    assert status == 400 and b"No tile-file part" in body
    form, ctype = multipart([("tile-file", NAME, data)])
    truncated = form[: -len("--\r\n") - 40]
    start = head(
        "POST", PATH, [("Content-Type", ctype), ("Content-Length", str(len(truncated)))]
    )
    status, body = exchange(daemon.http, start, truncated)
    assert status == 400 and b"malformed multipart body" in body
    status, body = put_raw(daemon, os.urandom(MAX_TILE + 1))
    assert status == 413, body
    big = os.urandom(MAX_TILE + 1)
    status, body = post_multipart(daemon, [("tile-file", NAME, big)])
    assert status == 413, body
    assert daemon.tiles() == 0
    assert daemon.leftovers() == []
    assert not list((daemon.directory / "objects").rglob("*.tif"))


@pytest.mark.parametrize("form", [False, True])
def test_client_leaving_mid_body_leaves_no_file(daemon: Daemon, form: bool) -> None:
    """A client that hangs up half-way through a tile leaves no file behind."""
    data = os.urandom(16 * MIB)
    if form:
        body, ctype = multipart([("tile-file", NAME, data)])
        headers = [("Content-Type", ctype), ("Content-Length", str(len(body)))]
        start = head("POST", PATH, headers)
    else:
        body = data
        start = head(
            "PUT",
            f"{PATH}?tile-filename={NAME}",
            [("Content-Length", str(len(body)))],
        )
    with socket.create_connection(("127.0.0.1", daemon.http), timeout=30) as s:
        s.sendall(start)
        s.sendall(body[: len(body) // 2])
        deadline = time.monotonic() + 30
        while not daemon.leftovers():  # the sink has started writing
            assert time.monotonic() < deadline, "nothing was received"
            time.sleep(0.05)
    deadline = time.monotonic() + 30
    while daemon.leftovers():
        assert time.monotonic() < deadline, f"left behind: {daemon.leftovers()}"
        time.sleep(0.05)
    status, _ = put_raw(daemon, b"next")  # the daemon carries on
    assert status == 200
    assert daemon.tiles() == 1 and daemon.leftovers() == []
