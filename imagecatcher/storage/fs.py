"""``file:`` store: objects are files under one root directory.

Writes are atomic (temporary file, fsync, rename, fsync of the directory) so a
crash leaves either the old object or the new one.  Keys are relative paths;
a key that would leave the root (``..``, absolute paths, NUL) is refused.
All file I/O runs on a thread pool, never on the reactor thread.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from imagecatcher.storage import PING_CONTENT, PING_KEY, ObjectNotFound, StoreError


def store_path_from_url(url: str) -> Path:
    """``file:///abs/dir`` or ``file:relative/dir`` → the directory path."""
    if url.startswith("file://"):
        path = url[len("file://") :]
        if not path.startswith("/"):
            raise StoreError(
                f"file URL {url!r} must name an absolute path (file:///dir)"
            )
        return Path(path)
    return Path(url[len("file:") :])


class FileStore:
    """A :class:`~imagecatcher.storage.ContentStore` over a local directory."""

    def __init__(self, root: Path, reactor: Any, threadpool: ThreadPool) -> None:
        self._root = root.absolute()
        self._reactor = reactor
        self._pool = threadpool

    def _path(self, key: str) -> Path:
        parts = PurePosixPath(key).parts
        if (
            not key
            or "\0" in key
            or key.startswith("/")
            or any(p in ("..", ".") for p in parts)
        ):
            raise StoreError(f"invalid object key {key!r}")
        return self._root.joinpath(*parts)

    def _write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r}") from None

    def _remove(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        try:
            return await deferToThreadPool(self._reactor, self._pool, fn, *args)
        except OSError as e:
            raise StoreError(f"file store {self._root}: {e}") from e

    async def put(self, key: str, data: bytes) -> None:
        """Write the object atomically and durably."""
        await self._in_thread(self._write, key, data)

    async def get(self, key: str) -> bytes:
        """Read the object's bytes."""
        data: bytes = await self._in_thread(self._read, key)
        return data

    async def delete(self, key: str) -> None:
        """Remove the object if it exists."""
        await self._in_thread(self._remove, key)

    async def health(self) -> None:
        """Write the probe object and read it back."""
        await self.put(PING_KEY, PING_CONTENT)
        if await self.get(PING_KEY) != PING_CONTENT:
            raise StoreError("file store probe read back different bytes")
