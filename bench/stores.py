"""Where the daemon under test puts tile bytes: ``--store file`` or ``--store s3``.

A store gives the daemon's configuration keys for itself, measures its PUT
ceiling if it has one beyond the fsync'd file write that every run measures
(S3: 16 MiB objects, one at a time, as the daemon's content stage puts
them), and deletes an acquisition's objects between measurements so that a
long run does not fill the disk.  ``file`` is a directory in the scratch
space; ``s3`` is a bucket on a private SeaweedFS (:mod:`bench.seaweed`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from bench.ceilings import BLOCK
from bench.httpclient import HttpConnection
from bench.seaweed import HOST, Seaweed, running_seaweed
from bench.stats import MB

BUCKET = "imagecatcher-bench"
STORES = ("file", "s3")


class ContentStore(Protocol):
    """What the benchmark needs of the daemon's content store."""

    kind: str

    def settings(self) -> dict[str, Any]:
        """The daemon's ``CONTENT_STORE_URL`` and related keys."""
        ...

    def put_ceiling_mb_s(self, files: int) -> float | None:
        """MB/s of putting ``files`` 16 MiB objects, one after the other; None
        where that is the file write ceiling."""
        ...

    def discard(self, uid: int) -> None:
        """Delete the stored objects of acquisition ``uid`` (its rows stay)."""
        ...


class FileStore:
    """The file store in a directory of the scratch space."""

    kind = "file"

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self._root = root

    def settings(self) -> dict[str, Any]:
        """``CONTENT_STORE_URL`` = ``file://<root>``."""
        return {"CONTENT_STORE_URL": f"file://{self._root}"}

    def put_ceiling_mb_s(self, files: int) -> None:
        """None: the store writes files, whose ceiling every run measures."""
        return None

    def discard(self, uid: int) -> None:
        """Remove ``[<collection>/]acquisitions/<uid>``."""
        for directory in (
            self._root / "acquisitions" / str(uid),
            *self._root.glob(f"*/acquisitions/{uid}"),
        ):
            shutil.rmtree(directory, ignore_errors=True)


class S3Store:
    """A bucket on the private SeaweedFS, through its S3 gateway."""

    kind = "s3"

    def __init__(self, weed: Seaweed) -> None:
        self.weed = weed

    def settings(self) -> dict[str, Any]:
        """``s3://<bucket>`` with the gateway's endpoint and credentials."""
        return self.weed.store_settings(BUCKET)

    def put_ceiling_mb_s(self, files: int) -> float:
        """Signed PUTs with ``Content-MD5`` into a probe bucket, then dropped."""
        data = os.urandom(BLOCK)
        headers = {"Content-MD5": base64.b64encode(hashlib.md5(data).digest()).decode()}
        conn = HttpConnection(HOST, self.weed.ports.s3, timeout=120)
        try:
            self._check(self.weed.s3("PUT", "/ceiling-probe", conn=conn).status)
            start = time.perf_counter()
            for i in range(files):
                path = f"/ceiling-probe/probe-{i}.bin"
                self._check(self.weed.s3("PUT", path, data, headers, conn).status)
            elapsed = time.perf_counter() - start
            self.weed.s3("DELETE", "/ceiling-probe", conn=conn)
        finally:
            conn.close()
        return files * BLOCK / MB / elapsed

    def discard(self, uid: int) -> None:
        """Delete ``<collection>/acquisitions/<uid>`` of the bucket."""
        self.weed.delete_prefix(BUCKET, f"acquisitions/{uid}")

    @staticmethod
    def _check(status: int) -> None:
        if status != 200:
            raise RuntimeError(f"S3 ceiling probe: HTTP {status}")


@contextmanager
def content_store(kind: str, base: Path) -> Iterator[ContentStore]:
    """The store of ``kind`` under ``base``, running until the block ends."""
    if kind == "file":
        yield FileStore(base / "objects")
    elif kind == "s3":
        with running_seaweed(base / "seaweed") as weed:
            yield S3Store(weed)
    else:
        raise ValueError(f"unknown store {kind!r}; one of {', '.join(STORES)}")
