"""Blocking HTTP and TCP helpers for talking to a daemon under test."""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Sequence
from typing import Any

from imagecatcher.protocol import PREFIX, TileResponse, decode_response, encode_request

Field = tuple[str, str | None, bytes]  # (form name, file name or None, content)


def multipart(fields: Sequence[Field]) -> tuple[bytes, str]:
    """Encode form fields; return (body, content type)."""
    boundary = os.urandom(12).hex()
    chunks = []
    for name, filename, content in fields:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        chunks.append(
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def request(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    timeout: float = 60,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def post_form(port: int, path: str, fields: Sequence[Field]) -> tuple[int, Any]:
    """POST a multipart form; return (status, parsed JSON body)."""
    body, ctype = multipart(fields)
    status, _, raw = request(port, "POST", path, body, {"Content-Type": ctype})
    return status, json.loads(raw) if raw else None


def read_frame(sock: socket.socket) -> bytes:
    """Read one length-prefixed frame."""

    def exactly(n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return bytes(data)

    (length,) = PREFIX.unpack(exactly(PREFIX.size))
    return exactly(length)


def send_tile(
    sock: socket.socket,
    acq_id: int,
    camera: int,
    frame: int,
    col: int,
    row: int,
    checksum: bytes,
    image: bytes,
) -> TileResponse:
    """Send one TCP tile request and read its response."""
    message = encode_request(acq_id, camera, frame, col, row, checksum, image)
    sock.sendall(PREFIX.pack(len(message)) + message)
    return decode_response(read_frame(sock))


def start_fixture_acquisition(port: int) -> None:
    """Start acquisition 123 from the shared fixtures and import its ROIs."""
    from tests.conftest import FIXTURES

    status, body = post_form(
        port,
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
    status, body = post_form(
        port,
        "/service/v1/create-rois/123",
        [
            (
                "roi-spec",
                "123_ROI_spec.ini",
                (FIXTURES / "123_ROI_spec.ini").read_bytes(),
            ),
            (
                "roi-tiles",
                "123_ROI_tiles.csv",
                (FIXTURES / "123_ROI_tiles.csv").read_bytes(),
            ),
        ],
    )
    assert status == 200, body
