"""Sending tiles and acquisition files to the service: the code the client and
the simulator share.

The rig-side tools are blocking by design.  A *sender* owns one persistent
connection (HTTP/1.1 keep-alive or one raw TCP socket) and is used by one
thread at a time; a :class:`SenderPool` runs several senders on worker
threads fed from one bounded queue.  Hashing, file reads and socket writes
release the GIL, so a few threads keep a loopback daemon busy without a
reactor, and the latency of each acknowledgement is measured where it
happens.

Every tile carries its MD5: the ``checksum`` query parameter (hex) for
``HTTP-PUT``, the ``checksum-str`` part for ``HTTP-POST`` and the checksum
field of the FlatBuffers request for ``TCP-SEND`` (§3.3, §14).
"""

from __future__ import annotations

import argparse
import enum
import hashlib
import http.client
import json
import os
import queue
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import attrs

from twisted.logger import Logger

from imagecatcher.cli.progress import Tracker
from imagecatcher.domain import BadParameter, QueueColour
from imagecatcher.names import parse_tile_name
from imagecatcher.protocol import PREFIX, BadMessage, decode_response, encode_request

T = TypeVar("T")

#: The daemon's usual ports (README): HTTP and raw TCP.
DEFAULT_HTTP_PORT = 5001
DEFAULT_TCP_PORT = 5002
#: §8.1: the most rows one list request returns.
PAGE_LENGTH = 1000
API = "/service/v1"
#: Where ``--token`` is read from when it is not given (a command line shows in ps).
TOKEN_ENV = "IMAGECATCHER_TOKEN"


def add_token_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--token``, defaulting to the ``IMAGECATCHER_TOKEN`` variable."""
    parser.add_argument(
        "--token",
        "-token",
        default=os.environ.get(TOKEN_ENV, ""),
        metavar="TOKEN",
        help="bearer token for a daemon with API_TOKENS (default: the"
        f" {TOKEN_ENV} environment variable, which ps does not show)",
    )


class Method(enum.Enum):
    """How tiles travel to the service."""

    HTTP_PUT = "HTTP-PUT"
    HTTP_POST = "HTTP-POST"
    TCP = "TCP-SEND"

    @property
    def is_tcp(self) -> bool:
        """Whether tiles go over the raw TCP protocol."""
        return self is Method.TCP


#: Accepted spellings; ``TCP-PUT`` is the old tools' name, ``TCP-SEND`` the docs' (Q10).
METHODS = {
    "HTTP-PUT": Method.HTTP_PUT,
    "HTTP-POST": Method.HTTP_POST,
    "TCP-SEND": Method.TCP,
    "TCP-PUT": Method.TCP,
}


def parse_method(text: str) -> Method:
    """A send method from its name, case-insensitively.

    :raises ValueError: for an unknown name.
    """
    try:
        return METHODS[text.strip().upper()]
    except KeyError:
        names = ", ".join(METHODS)
        raise ValueError(f"unknown send method {text!r} (use one of {names})") from None


@attrs.frozen
class Endpoint:
    """Where a service listens: host, port and, for HTTP, a path prefix."""

    host: str
    port: int
    path: str = ""

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}{self.path}"


def parse_endpoint(text: str, default_port: int) -> Endpoint:
    """Parse ``http://host:port[/prefix]``, ``tcp://host:port`` or ``host:port``.

    The same forms are accepted for every send method (Q10, Q40): a TCP sender
    uses only the host and port of an HTTP URL.  A missing port is
    ``default_port``; a missing host (``:5002``) is ``localhost``.

    :raises ValueError: for another scheme, a bad port or an empty text.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty service address")
    if "://" not in text:
        text = "tcp://" + text
    parts = urllib.parse.urlsplit(text)
    if parts.scheme.lower() not in ("http", "tcp"):
        raise ValueError(f"unsupported scheme {parts.scheme!r} in {text!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"unexpected query or fragment in {text!r}")
    try:
        port = parts.port
    except ValueError as e:
        raise ValueError(f"bad port in {text!r}: {e}") from None
    if port == 0:
        raise ValueError(f"bad port in {text!r}: 0")
    host = parts.hostname or "localhost"
    path = parts.path.rstrip("/") if parts.scheme.lower() == "http" else ""
    if parts.path.strip("/") and not path:
        raise ValueError(f"unexpected path in {text!r}")
    return Endpoint(host, port or default_port, path)


class SendError(Exception):
    """A request failed; ``transient`` failures are worth retrying."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@attrs.frozen
class Tile:
    """One tile ready to send: its name, coordinates, bytes and MD5."""

    name: str
    col: int
    row: int
    camera: int
    frame: int
    data: bytes = attrs.field(repr=lambda v: f"<{len(v)} bytes>")
    md5: bytes

    @classmethod
    def from_bytes(cls, name: str, data: bytes, md5: bytes | None = None) -> Tile:
        """A tile named by its file name (stable or drift, §2).

        :raises BadParameter: when the name is not a tile name.
        """
        parsed = parse_tile_name(name)
        digest = md5 if md5 is not None else hashlib.md5(data).digest()
        return cls(
            parsed.name,
            parsed.col,
            parsed.row,
            parsed.camera,
            parsed.frame,
            data,
            digest,
        )


@attrs.frozen
class Ack:
    """The service's acknowledgement of one tile."""

    tile_id: int
    system_status: str


def colour_name(value: int) -> str:
    """``GREEN``, ``YELLOW``, ``RED`` or ``INVALID`` for a TCP status number."""
    try:
        return QueueColour(value).name
    except ValueError:
        return "INVALID"


class TileSender(Protocol):
    """Sends tiles of one acquisition over one persistent connection."""

    def send(self, acq_id: int, tile: Tile) -> Ack:
        """Send one tile and wait for its acknowledgement.

        :raises SendError: when the service refuses it or the connection fails.
        """
        ...

    def close(self) -> None:
        """Close the connection (a later send reopens it)."""
        ...


class _NoDelayConnection(http.client.HTTPConnection):
    """An HTTP connection without Nagle's delay between headers and body."""

    def connect(self) -> None:
        super().connect()
        assert self.sock is not None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class HttpSession:
    """One keep-alive HTTP/1.1 connection, reopened when it drops.

    A request that fails on a *reused* connection (the server closed it while
    idle) is repeated once on a fresh one; every request this module sends is
    safe to repeat (§1.5: re-sending a tile is idempotent).
    """

    def __init__(self, endpoint: Endpoint, timeout: float, token: str = "") -> None:
        self._endpoint = endpoint
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        # Sent with every request when the daemon's API_TOKENS is set.
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}

    @property
    def endpoint(self) -> Endpoint:
        """Where requests go."""
        return self._endpoint

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, http.client.HTTPResponse, bytes]:
        """Send one request; return (status, response, body).

        :raises SendError: (transient) when the connection fails.
        """
        target = self._endpoint.path + path
        for attempt in (1, 2):
            reused = self._conn is not None
            if self._conn is None:
                self._conn = _NoDelayConnection(
                    self._endpoint.host, self._endpoint.port, timeout=self._timeout
                )
            conn = self._conn
            try:
                conn.request(
                    method, target, body=body, headers={**(headers or {}), **self._auth}
                )
                response = conn.getresponse()
                data = response.read()
            except (http.client.HTTPException, OSError) as e:
                self.close()
                if reused and attempt == 1 and not isinstance(e, TimeoutError):
                    continue
                reason = str(e) or type(e).__name__
                raise SendError(
                    f"{method} {self._endpoint}{path.partition('?')[0]}: {reason}",
                    transient=True,
                ) from e
            if response.will_close:
                self.close()
            return response.status, response, data
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _error_text(status: int, body: bytes) -> str:
    try:
        message = json.loads(body)["errormessage"]
    except (ValueError, KeyError, TypeError):
        message = body.decode("utf-8", "replace").strip()[:200]
    return f"HTTP {status}: {message}" if message else f"HTTP {status}"


def _http_error(status: int, body: bytes) -> SendError:
    return SendError(_error_text(status, body), transient=status >= 500)


def _json_body(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as e:
        raise SendError(f"unexpected response: {e}", transient=False) from e


def _tile_ack(status: int, response: http.client.HTTPResponse, body: bytes) -> Ack:
    if status != 200:
        raise _http_error(status, body)
    try:
        tile_id = int(json.loads(body)["tile_id"])
    except (ValueError, KeyError, TypeError) as e:
        raise SendError(f"unexpected capture response: {e}", transient=False) from e
    colour = (
        response.getheader("System-Status")
        or response.getheader("System Status")
        or "GREEN"
    )
    return Ack(tile_id, colour)


Field = tuple[str, str | None, bytes]  # (form name, file name or None, content)


def encode_multipart(fields: Sequence[Field]) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body and its content type."""
    boundary = "imagecatcher-" + os.urandom(12).hex()
    chunks: list[bytes] = []
    for name, filename, content in fields:
        disposition = f'form-data; name="{_quote_header(name)}"'
        if filename is not None:
            disposition += f'; filename="{_quote_header(filename)}"'
        kind = "application/octet-stream" if filename is not None else "text/plain"
        chunks.append(
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
            f"Content-Type: {kind}\r\n\r\n".encode()
        )
        chunks.append(content)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def _quote_header(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\r\n", " ")


class HttpPutSender:
    """``HTTP-PUT``: the tile as the raw body, name and MD5 in the query (§1.5)."""

    def __init__(self, endpoint: Endpoint, timeout: float, token: str = "") -> None:
        self._session = HttpSession(endpoint, timeout, token)

    def send(self, acq_id: int, tile: Tile) -> Ack:
        """Send one tile and wait for its acknowledgement."""
        query = urllib.parse.urlencode(
            {"tile-filename": tile.name, "checksum": tile.md5.hex()}
        )
        return _tile_ack(
            *self._session.request(
                "PUT",
                f"{API}/capture-image-content/{acq_id}?{query}",
                tile.data,
                {"Content-Type": "application/octet-stream"},
            )
        )

    def close(self) -> None:
        """Close the connection."""
        self._session.close()


class HttpPostSender:
    """``HTTP-POST``: a multipart form with ``tile-file``, ``tile-filename``, ``checksum-str``."""

    def __init__(self, endpoint: Endpoint, timeout: float, token: str = "") -> None:
        self._session = HttpSession(endpoint, timeout, token)

    def send(self, acq_id: int, tile: Tile) -> Ack:
        """Send one tile and wait for its acknowledgement."""
        body, ctype = encode_multipart(
            [
                ("tile-file", tile.name, tile.data),
                ("tile-filename", None, tile.name.encode()),
                ("checksum-str", None, tile.md5.hex().encode()),
            ]
        )
        return _tile_ack(
            *self._session.request(
                "POST",
                f"{API}/capture-image-content/{acq_id}",
                body,
                {"Content-Type": ctype},
            )
        )

    def close(self) -> None:
        """Close the connection."""
        self._session.close()


class TcpSender:
    """``TCP-SEND``: one FlatBuffers request per tile on a persistent socket (§3)."""

    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        self._endpoint = endpoint
        self._timeout = timeout
        self._sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(
            (self._endpoint.host, self._endpoint.port), timeout=self._timeout
        )
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _exactly(self, sock: socket.socket, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            r = sock.recv_into(view[got:], n - got)
            if r == 0:
                raise ConnectionError(
                    f"connection closed after {got} of {n} response bytes"
                )
            got += r
        return bytes(buf)

    def send(self, acq_id: int, tile: Tile) -> Ack:
        """Send one tile and wait for its acknowledgement."""
        message = encode_request(
            acq_id, tile.camera, tile.frame, tile.col, tile.row, tile.md5, tile.data
        )
        prefix = PREFIX.pack(len(message))
        for attempt in (1, 2):
            reused = self._sock is not None
            try:
                if self._sock is None:
                    self._sock = self._connect()
                sock = self._sock
                sock.sendall(prefix)
                sock.sendall(message)
                (length,) = PREFIX.unpack(self._exactly(sock, PREFIX.size))
                response = decode_response(self._exactly(sock, length))
            except (OSError, BadMessage) as e:
                self.close()
                if reused and attempt == 1 and isinstance(e, ConnectionError):
                    continue  # the daemon closed an idle connection
                reason = str(e) or type(e).__name__
                raise SendError(
                    f"TCP {self._endpoint} {tile.name}: {reason}",
                    transient=not isinstance(e, BadMessage),
                ) from e
            break
        if response.status != 0:
            # §14: only a server-side failure reports the system status RED.
            server_side = response.system_status == QueueColour.RED
            raise SendError(
                f"TCP {tile.name}: refused (status {response.status},"
                f" system {colour_name(response.system_status)})",
                transient=server_side,
            )
        return Ack(response.tile_id, colour_name(response.system_status))

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def make_sender(
    method: Method, endpoint: Endpoint, timeout: float, token: str = ""
) -> TileSender:
    """A new sender for ``method`` (it connects on its first send).

    ``token`` goes with every HTTP request (``Authorization: Bearer``); the
    raw TCP channel has no room for one (TCP_ALLOWED_CLIENTS guards it).
    """
    if method is Method.HTTP_PUT:
        return HttpPutSender(endpoint, timeout, token)
    if method is Method.HTTP_POST:
        return HttpPostSender(endpoint, timeout, token)
    return TcpSender(endpoint, timeout)


class ServiceClient:
    """The acquisition-level HTTP calls (§1.3, §1.4, §1.6, §1.12)."""

    def __init__(self, endpoint: Endpoint, timeout: float, token: str = "") -> None:
        self._session = HttpSession(endpoint, timeout, token)

    def _post_form(self, path: str, fields: Sequence[Field]) -> tuple[int, bytes]:
        body, ctype = encode_multipart(fields)
        status, _, data = self._session.request(
            "POST", path, body, {"Content-Type": ctype}
        )
        return status, data

    def start_acquisition(self, filename: str, content: bytes) -> int:
        """POST the INI log; the acquisition UID the service answers."""
        status, data = self._post_form(
            f"{API}/start-acquisition", [("acq-inilog", filename, content)]
        )
        if status != 200:
            raise _http_error(status, data)
        return int(_json_body(data)["uid"])

    def create_rois(
        self, acq_id: int, spec: tuple[str, bytes], tiles: tuple[str, bytes]
    ) -> None:
        """POST the ROI spec and ROI tiles CSV."""
        status, data = self._post_form(
            f"{API}/create-rois/{acq_id}",
            [("roi-tiles", *tiles), ("roi-spec", *spec)],
        )
        if status != 200:
            raise _http_error(status, data)

    def end_acquisition(
        self, acq_id: int, files: Sequence[tuple[str, bytes]]
    ) -> tuple[int, list[dict[str, Any]]]:
        """POST end-acquisition with ancillary files: (status, af_results).

        A 400 with ``af_results`` (a file was refused) is returned, not raised:
        the acquisition is marked complete all the same (§1.6).
        """
        path = f"{API}/end-acquisition/{acq_id}"
        if files:
            fields = [("ancillary-file", name, content) for name, content in files]
            status, data = self._post_form(path, fields)
        else:
            status, _, data = self._session.request("POST", path, b"")
        if status not in (200, 400):
            raise _http_error(status, data)
        body = _json_body(data) if data else {}
        results = body.get("af_results") if isinstance(body, dict) else None
        if status != 200 and results is None:
            raise _http_error(status, data)
        return status, list(results or [])

    def held_tiles(self, acq_id: int) -> dict[str, str]:
        """Stored tiles of an acquisition, stable and drift: name -> SHA-1 hex.

        Pages through ``GET /acquisition/<uid>/tiles`` until a page is empty.
        """
        held: dict[str, str] = {}
        offset = 0
        while True:
            query = urllib.parse.urlencode(
                {
                    "include-all": "false",
                    "frame-type": "all",
                    "offset": offset,
                    "length": PAGE_LENGTH,
                }
            )
            status, _, data = self._session.request(
                "GET", f"{API}/acquisition/{acq_id}/tiles?{query}"
            )
            if status != 200:
                raise _http_error(status, data)
            groups = _json_body(data)["acquisitions"]
            tiles = [t for group in groups for t in group["tiles"]]
            if not tiles:
                return held
            for t in tiles:
                name = str(t.get("tile_jfs_path", "")).rpartition("/")[2]
                if name:
                    held[name] = str(t.get("tile_file_checksum", "")).lower()
            offset += PAGE_LENGTH

    def close(self) -> None:
        """Close the connection."""
        self._session.close()


@attrs.frozen
class RetryPolicy:
    """Bounded retries with exponential backoff and jitter."""

    retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The pause before each retry: base, 2 base, 4 base... capped, jittered."""
        r = rng or random.Random()
        for n in range(self.retries):
            delay = min(self.base_delay * 2**n, self.max_delay)
            yield delay * r.uniform(0.5, 1.0)


def with_retries(
    call: Callable[[], T],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[SendError, float], None] | None = None,
) -> T:
    """Run ``call``, retrying transient :class:`SendError` as ``policy`` says."""
    delays = policy.delays()
    while True:
        try:
            return call()
        except SendError as e:
            delay = next(delays, None) if e.transient else None
            if delay is None:
                raise
            if on_retry is not None:
                on_retry(e, delay)
            sleep(delay)


@attrs.frozen
class TileJob:
    """A tile file to send; ``held_sha1`` is the SHA-1 the service already has."""

    path: Path
    held_sha1: str | None = None

    @property
    def name(self) -> str:
        """The tile's file name."""
        return self.path.name


@attrs.frozen
class TileResult:
    """What became of one tile: ``sent``, ``skipped`` or ``failed``."""

    name: str
    outcome: str
    tile_id: int = 0
    attempts: int = 0
    seconds: float = 0.0
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        """The record written to ``--json``."""
        out: dict[str, Any] = {"name": self.name, "outcome": self.outcome}
        if self.outcome == "sent":
            out.update(tile_id=self.tile_id, seconds=round(self.seconds, 6))
        if self.attempts > 1 or self.outcome == "failed":
            out["attempts"] = self.attempts
        if self.error:
            out["error"] = self.error
        return out


class SenderPool:
    """Worker threads, each with its own sender, draining one bounded job queue.

    :meth:`submit` blocks while the queue is full, so a producer never runs
    far ahead of the senders; :meth:`join` waits for every job submitted.
    """

    def __init__(
        self,
        *,
        size: int,
        connect: Callable[[], TileSender],
        acq_id: int,
        retry: RetryPolicy,
        tracker: Tracker,
        log: Logger,
        report: Callable[[str], None],
    ) -> None:
        self._connect = connect
        self._acq_id = acq_id
        self._retry = retry
        self._tracker = tracker
        self._log = log
        self._report = report
        self._jobs: queue.Queue[TileJob | None] = queue.Queue(maxsize=2 * size)
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._results: list[TileResult] = []
        self._threads = [
            threading.Thread(target=self._work, name=f"sender-{n}", daemon=True)
            for n in range(size)
        ]
        for t in self._threads:
            t.start()

    def submit(self, job: TileJob) -> None:
        """Queue one tile (blocks while the queue is full)."""
        self._jobs.put(job)

    def join(self) -> list[TileResult]:
        """Wait for every queued tile; stop the workers; the results in order done."""
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            while t.is_alive():
                t.join(0.2)  # short waits keep Ctrl-C responsive
        return list(self._results)

    def cancel(self) -> list[TileResult]:
        """Drop the queued tiles, let the ones in flight finish, stop the workers."""
        self._cancelled.set()
        while True:
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                break
        return self.join()

    def _work(self) -> None:
        sender = self._connect()
        try:
            while (job := self._jobs.get()) is not None:
                if self._cancelled.is_set():
                    continue
                try:
                    result = self._run(sender, job)
                except Exception as e:  # a bug must not lose the tile silently
                    self._log.failure("sending {name}", name=job.name)
                    result = self._fail(job, f"{type(e).__name__}: {e}")
                with self._lock:
                    self._results.append(result)
        finally:
            sender.close()

    def _fail(self, job: TileJob, error: str, attempts: int = 0) -> TileResult:
        self._tracker.failed_one()
        self._log.error("failed {name}: {error}", name=job.name, error=error)
        self._report(f"failed {job.name}: {error}")
        return TileResult(job.name, "failed", attempts=attempts, error=error)

    def _run(self, sender: TileSender, job: TileJob) -> TileResult:
        try:
            data = job.path.read_bytes()
        except OSError as e:
            return self._fail(job, f"cannot read {job.path}: {e.strerror or e}")
        if job.held_sha1 and hashlib.sha1(data).hexdigest() == job.held_sha1:
            self._tracker.skipped_one()
            self._log.info("skipped {name}: already stored", name=job.name)
            return TileResult(job.name, "skipped")
        try:
            tile = Tile.from_bytes(job.name, data)
        except BadParameter as e:
            return self._fail(job, str(e))
        attempts = 0
        started = 0.0

        def once() -> Ack:
            nonlocal attempts, started
            attempts += 1
            started = time.monotonic()
            return sender.send(self._acq_id, tile)

        def retrying(e: SendError, delay: float) -> None:
            self._tracker.retried_one()
            self._log.warn(
                "retrying {name} in {delay:.2f}s: {error}",
                name=job.name,
                delay=delay,
                error=e,
            )

        try:
            ack = with_retries(once, self._retry, on_retry=retrying)
        except SendError as e:
            return self._fail(job, str(e), attempts)
        seconds = time.monotonic() - started
        self._tracker.sent_one(len(data), seconds)
        self._log.info(
            "sent {name} as tile {tile_id} in {seconds:.3f}s ({status})",
            name=job.name,
            tile_id=ack.tile_id,
            seconds=seconds,
            status=ack.system_status,
        )
        return TileResult(job.name, "sent", ack.tile_id, attempts, seconds)
