"""The ceilings every capture figure is compared with, measured in the same run.

* loopback: one Python TCP connection over 127.0.0.1, a thread sending a
  16 MiB buffer with ``sendall`` and the other receiving it (MB/s);
* MD5 and SHA-1 of one core: :mod:`hashlib` over a 16 MiB buffer (MB/s);
* store write: 16 MiB files written and fsynced (then renamed, and the
  directory fsynced, as the file store and the spool do) in the scratch
  directory that holds the file store and the spool (MB/s);
* with ``--store s3``, also the S3 PUT of 16 MiB objects, one connection
  (:meth:`bench.stores.S3Store.put_ceiling_mb_s`).

:meth:`Ceilings.tiles_per_s` turns any of them into tiles/s at a tile size.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.stats import MB, MiB

BLOCK = 16 * MiB


@dataclass(frozen=True)
class Ceilings:
    """Throughputs in MB/s (10**6 bytes per second)."""

    loopback_mb_s: float
    md5_mb_s: float
    sha1_mb_s: float
    store_write_mb_s: float  # fsync'd files: the file store's and the spool's
    s3_put_mb_s: float | None = None

    @property
    def store_mb_s(self) -> float:
        """The ceiling of the configured store: S3 PUT, else the file write."""
        return self.store_write_mb_s if self.s3_put_mb_s is None else self.s3_put_mb_s

    @staticmethod
    def tiles_per_s(mb_s: float, size: int) -> float:
        """A ceiling of ``mb_s`` MB/s in tiles of ``size`` bytes per second."""
        return mb_s * MB / size

    def hash_tiles_per_s(self, size: int) -> float:
        """Tiles/s one core can hash once with MD5 and once with SHA-1.

        That is the least a daemon must do per tile: verify the client's
        MD5 and compute the SHA-1 it records.
        """
        seconds = size / MB / self.md5_mb_s + size / MB / self.sha1_mb_s
        return 1.0 / seconds

    def as_dict(self) -> dict[str, float | None]:
        """The figures, for the JSON results."""
        return asdict(self)


def loopback_mb_s(seconds: float) -> float:
    """Throughput of one loopback TCP connection between two Python threads."""
    payload = os.urandom(BLOCK)
    with socket.create_server(("127.0.0.1", 0)) as server:
        sender = socket.create_connection(server.getsockname())
        receiver, _ = server.accept()

    def pump() -> None:
        try:
            while True:
                sender.sendall(payload)
        except OSError:
            pass  # the receiver closed: the measurement is over

    thread = threading.Thread(target=pump, daemon=True)
    buf = bytearray(MiB)
    view = memoryview(buf)
    try:
        thread.start()
        received = 0
        start = time.perf_counter()
        deadline = start + seconds
        while (now := time.perf_counter()) < deadline:
            received += receiver.recv_into(view)
        return received / MB / (now - start)
    finally:
        receiver.close()
        sender.close()
        thread.join(10)


def hash_mb_s(algorithm: str, seconds: float) -> float:
    """Throughput of ``hashlib.new(algorithm)`` over a 16 MiB buffer, one core."""
    data = os.urandom(BLOCK)
    rounds = 0
    start = time.perf_counter()
    while (now := time.perf_counter()) - start < seconds or rounds == 0:
        hashlib.new(algorithm, data).digest()
        rounds += 1
    return rounds * BLOCK / MB / (now - start)


def store_write_mb_s(directory: Path, files: int) -> float:
    """Write ``files`` 16 MiB files durably into ``directory``, then delete them."""
    directory.mkdir(parents=True, exist_ok=True)
    data = os.urandom(BLOCK)
    written: list[Path] = []
    try:
        start = time.perf_counter()
        for i in range(files):
            tmp, final = directory / f".probe-{i}.part", directory / f"probe-{i}.bin"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
            written.append(final)
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return files * BLOCK / MB / (time.perf_counter() - start)
    finally:
        for path in written:
            path.unlink(missing_ok=True)
        directory.rmdir()


def measure(
    probe_dir: Path,
    seconds: float,
    files: int,
    store_put: Callable[[int], float | None],
) -> Ceilings:
    """All ceilings; ``probe_dir`` is a fresh directory next to the spool,
    ``store_put`` the store's own PUT ceiling for ``files`` objects, if any."""
    return Ceilings(
        loopback_mb_s=loopback_mb_s(seconds),
        md5_mb_s=hash_mb_s("md5", seconds),
        sha1_mb_s=hash_mb_s("sha1", seconds),
        store_write_mb_s=store_write_mb_s(probe_dir, files),
        s3_put_mb_s=store_put(files),
    )
