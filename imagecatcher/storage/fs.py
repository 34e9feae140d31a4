"""``file:`` store: objects are files under one root directory.

An object is the file ``<root>/<collection>/<path without its leading slash>``
(no collection directory for the empty collection), so a re-put of a path
replaces the file.  Its ``jfs_key`` is :func:`~.keys.object_key` of that
name (40 hex digits, so that it fits the schema's ``VARCHAR(64)``) and its
location URL is ``file://`` and the absolute file path, percent-encoded; reads
find the file from the location URL (or, for rows written before, from a
``jfs_key`` that is the name itself).  A name that could leave the root
(``..``, ``.``, empty components, NUL, backslashes, a collection containing
``/``) is refused with StoreError, and the resolved file must still lie under
the root (no escape through symlinks).

Writes are atomic and durable: a temporary file in the target directory is
written, fsynced and renamed over the object, then the directory is fsynced,
so a crash leaves either the old object or the new one.  The MD5 is checked
before anything is written.  All file I/O and hashing run on the thread pool
(``deferToThreadPool``), never on the reactor thread.  The name and key
rules shared with the other stores live in :mod:`.keys`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from imagecatcher.fsio import DirSyncer, process_alive
from imagecatcher.storage import (
    PING_CONTENT,
    PING_PATH,
    Interrupted,
    ObjectNotFound,
    StoredObject,
    StoreError,
)
from imagecatcher.storage.keys import (
    PING_MD5,
    check_key,
    check_md5,
    check_range,
    name_from_location,
    object_key,
    path_key,
)

_T = TypeVar("_T")

_HASH_CHUNK = 1024 * 1024


def _sidecar(replaced: Path) -> Path:
    """Where the note of the placement that replaced ``replaced`` is kept."""
    return replaced.with_name(replaced.name + ".json")


_FILE_MODE = 0o644


def store_path_from_url(url: str) -> Path:
    """``file:///abs/dir`` or ``file:relative/dir`` → the directory path."""
    if url.startswith("file://"):
        path = url[len("file://") :]
        if not path.startswith("/"):
            raise StoreError(
                f"file URL {url!r} must name an absolute path (file:///dir)"
            )
        return Path(path)
    if not url.startswith("file:") or url == "file:":
        raise StoreError(f"not a file store URL: {url!r} (file:///dir or file:dir)")
    return Path(url[len("file:") :])


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: Received tiles wait here, under the root, until they are renamed into place.
#: (No collection can be named so: collection names cannot start with ".".)
STAGING = ".incoming"

#: Files remembered for cheap verification (about 100 KiB of memory).
_REMEMBERED = 1024
#: Directories remembered as existing inside the root, at most.
MAX_DIRECTORIES = 4096


def _identity(info: os.stat_result) -> tuple[int, int, int, int]:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


class FileStore:
    """A :class:`~imagecatcher.storage.ContentStore` over a local directory."""

    #: A re-put of a path overwrites its file: nothing is left to delete.
    replaces_in_place = True

    def __init__(
        self, root: Path, reactor: IReactorFromThreads, threadpool: ThreadPool
    ) -> None:
        self._root = Path(os.path.abspath(root))
        self._reactor = reactor
        self._pool = threadpool
        # What this store wrote and checked: key -> (file identity, MD5).  A
        # verify of a file still identical to what put fsync'd needs no
        # re-read; any change of inode, size or mtime means a full re-hash.
        self._written: OrderedDict[str, tuple[tuple[int, int, int, int], bytes]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()
        self._dirsync = DirSyncer(reactor, threadpool)
        # Placements whose database record is pending: location -> (file,
        # hard link to the file it replaced or None).
        self._placed: dict[str, tuple[Path, Path | None]] = {}
        # Directories known to exist inside the root (see _placement_file).
        self._directories: set[Path] = set()

    @property
    def staging_dir(self) -> Path:
        """Where tiles are received before :meth:`place` (same filesystem)."""
        return self._root / STAGING

    # -- runs on the thread pool ------------------------------------------

    def _file(self, key: str) -> Path:
        """The absolute file of ``key``; StoreError if it resolves outside."""
        path = self._root.joinpath(*check_key(key).split("/"))
        self._check_inside(key, path)
        return path

    def _check_inside(self, key: str, path: Path) -> None:
        """StoreError unless ``path`` (links resolved) lies inside the root."""
        real_root = os.path.realpath(self._root)
        if not os.path.realpath(path).startswith(real_root + os.sep):
            raise StoreError(f"object key {key!r} resolves outside {self._root}")

    def _write(self, key: str, data: bytes, md5: bytes) -> Path:
        actual = hashlib.md5(data).digest()
        if actual != md5:
            raise StoreError(
                f"put {key!r}: MD5 mismatch (data {actual.hex()}, expected {md5.hex()})"
            )
        path = self._file(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), _FILE_MODE)
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        self._remember(key, path, md5)
        return path

    def _placement_file(self, key: str) -> Path:
        """The file of ``key`` for a rename into place.

        A rename replaces the directory entry and never writes through it,
        so only the directory must resolve inside the root; directories
        checked (and created) once are remembered, as a tile's directory is
        the same for the whole acquisition.
        """
        path = self._root.joinpath(*check_key(key).split("/"))
        directory = path.parent
        if directory not in self._directories:
            self._check_inside(key, directory)
            directory.mkdir(parents=True, exist_ok=True)
            if len(self._directories) >= MAX_DIRECTORIES:
                self._directories.clear()
            self._directories.add(directory)
        return path

    def _rename_into(
        self, key: str, source: Path, md5: bytes, note: Mapping[str, Any]
    ) -> tuple[Path, Path | None]:
        path = self._placement_file(key)
        # The file it replaces stays reachable (a hard link in the staging
        # directory) until the caller's transaction settles: see undo().  The
        # note beside it lets a restart decide after a kill -9: interrupted().
        link = source.with_name(source.name + ".prev")
        previous: Path | None = link
        try:
            os.link(path, link)
        except FileNotFoundError:
            previous = None
        else:
            sidecar = {"pid": os.getpid(), "target": str(path), "note": dict(note)}
            _sidecar(link).write_text(json.dumps(sidecar))
        try:
            os.replace(source, path)
        except FileNotFoundError:
            if not source.exists():
                raise
            # The directory went away since it was remembered.
            self._directories.discard(path.parent)
            path = self._placement_file(key)
            os.replace(source, path)
        self._remember(key, path, md5)
        return path, previous

    def _undo(self, path: Path, previous: Path | None) -> None:
        if previous is not None:
            os.replace(previous, path)
            _sidecar(previous).unlink(missing_ok=True)
        else:
            path.unlink(missing_ok=True)
        with self._lock:
            self._written.clear()

    def _settle(self, previous: Path) -> None:
        previous.unlink(missing_ok=True)
        _sidecar(previous).unlink(missing_ok=True)

    def _interrupted(self) -> list[Interrupted]:
        found = []
        for sidecar in sorted(self.staging_dir.glob("*.prev.json")):
            try:
                data = json.loads(sidecar.read_text())
                pid, target, note = int(data["pid"]), Path(data["target"]), data["note"]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # half-written: its placement never replaced anything
            replaced = sidecar.with_name(sidecar.name[: -len(".json")])
            if process_alive(pid) or not replaced.exists():
                continue
            found.append(Interrupted(note, target, replaced, sidecar))
        return found

    def _resolve(self, placement: Interrupted, recorded: bool) -> None:
        if not recorded:
            os.replace(placement.replaced, placement.target)
            _fsync_dir(placement.target.parent)
            with self._lock:
                self._written.clear()
        placement.replaced.unlink(missing_ok=True)
        placement.sidecar.unlink(missing_ok=True)

    def _remember(self, key: str, path: Path, md5: bytes) -> None:
        identity = _identity(os.stat(path))
        with self._lock:
            self._written[key] = (identity, md5)
            self._written.move_to_end(key)
            while len(self._written) > _REMEMBERED:
                self._written.popitem(last=False)

    def _verify(self, key: str, size: int, md5: bytes) -> None:
        path = self._file(key)
        with path.open("rb") as f:
            info = os.fstat(f.fileno())
            actual_size = info.st_size
            if actual_size != size:
                raise StoreError(
                    f"verify {key!r}: {actual_size} bytes stored, expected {size}"
                )
            with self._lock:
                remembered = self._written.get(key)
            if remembered == (_identity(info), md5):
                return  # the very file put checked and fsync'd, unchanged
            digest = hashlib.md5()
            while chunk := f.read(_HASH_CHUNK):
                digest.update(chunk)
        if digest.digest() != md5:
            raise StoreError(
                f"verify {key!r}: MD5 {digest.hexdigest()} stored, expected {md5.hex()}"
            )

    def _read(self, key: str, start: int = 0, length: int = -1) -> bytes:
        with self._file(key).open("rb") as f:
            if start:
                f.seek(start)
            return f.read(length)

    def _remove(self, key: str) -> None:
        try:
            self._file(key).unlink(missing_ok=True)
        except (IsADirectoryError, NotADirectoryError):
            pass  # not an object, so there is nothing to delete

    # -- reactor side -------------------------------------------------------

    async def _in_thread(
        self, operation: str, key: str, fn: Callable[..., _T], *args: object
    ) -> _T:
        """Run ``fn`` on the pool; a missing file (or a directory where the
        object should be) is ObjectNotFound, other OS errors StoreError."""
        try:
            return await deferToThreadPool(self._reactor, self._pool, fn, *args)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
            if operation == "put":  # something is in the way of the new file
                raise StoreError(f"put {key!r}: {e.strerror or e}") from e
            raise ObjectNotFound(f"{operation} {key!r}: no such object") from None
        except OSError as e:
            raise StoreError(
                f"{operation} {key!r} in {self._root}: {e.strerror or e}"
            ) from e

    async def put(
        self,
        collection: str,
        path: str,
        data: bytes,
        md5: bytes,
        context: Mapping[str, str] | None = None,
    ) -> StoredObject:
        """Write ``data`` atomically and durably at ``<root>/<collection>/<path>``.

        The context is not kept: a file has nowhere to put it.
        """
        check_md5(md5)
        name = path_key(collection, path)
        written = await self._in_thread("put", name, self._write, name, data, md5)
        return StoredObject(object_key(name), "file://" + quote(str(written)))

    async def place(
        self,
        source: Path,
        md5: bytes,
        collection: str,
        path: str,
        note: Mapping[str, Any] | None = None,
        durable: bool = True,
    ) -> StoredObject:
        """Rename a received file in :attr:`staging_dir` into place.

        The caller checked its MD5 while receiving it.  With ``durable`` (the
        caller made the file durable) the rename is made durable at once by a
        directory fsync shared with the tiles placed in the same directory at
        the same time; without, the caller fsyncs the file and then calls
        :meth:`sync_placed`.
        """
        check_md5(md5)
        name = path_key(collection, path)
        if source.parent != self.staging_dir:
            raise StoreError(f"place {name!r}: {source} is not in {self.staging_dir}")
        placed, previous = await self._in_thread(
            "put", name, self._rename_into, name, source, md5, note or {}
        )
        obj = StoredObject(object_key(name), "file://" + quote(str(placed)))
        self._placed[obj.location_url] = (placed, previous)
        if durable:
            try:
                await self.sync_placed(obj)
            except StoreError:
                await self.undo(obj)
                raise
        return obj

    async def sync_placed(self, obj: StoredObject) -> None:
        """Make the rename of a placement durable (its directory's fsync)."""
        placed, _previous = self._placed.get(obj.location_url, (None, None))
        if placed is None:
            return
        try:
            await self._dirsync.sync(placed.parent)
        except OSError as e:
            raise StoreError(
                f"put {self._name(obj)!r} in {self._root}: {e.strerror or e}"
            ) from e

    async def settle(self, obj: StoredObject) -> None:
        """The placement of ``obj`` is recorded: forget the file it replaced."""
        _placed, previous = self._placed.pop(obj.location_url, (None, None))
        if previous is not None:
            await self._in_thread("delete", str(previous), self._settle, previous)

    async def undo(self, obj: StoredObject) -> None:
        """The placement of ``obj`` could not be recorded: put back what was
        there before (or nothing), so the store matches the database."""
        placed, previous = self._placed.pop(obj.location_url, (None, None))
        if placed is not None:
            await self._in_thread("put", str(placed), self._undo, placed, previous)
            await self._dirsync.sync(placed.parent)

    async def interrupted(self) -> list[Interrupted]:
        """Replacing placements of processes gone since, still unsettled."""
        return await self._in_thread(
            "recover", str(self.staging_dir), self._interrupted
        )

    async def resolve(self, placement: Interrupted, recorded: bool) -> None:
        """Keep the placed file (``recorded``) or put back the one it replaced."""
        await self._in_thread(
            "recover", str(placement.target), self._resolve, placement, recorded
        )

    def _name(self, obj: StoredObject) -> str:
        """The object name (relative path under the root) of ``obj``."""
        return name_from_location(obj, "file://" + quote(str(self._root)) + "/")

    async def verify(self, obj: StoredObject, size: int, md5: bytes) -> None:
        """Check the file's size, then re-hash it in chunks and compare MD5s."""
        check_md5(md5)
        name = self._name(obj)
        await self._in_thread("verify", name, self._verify, name, size, md5)

    def _size(self, key: str) -> int:
        path = self._file(key)
        if not path.is_file():
            raise FileNotFoundError(key)
        return path.stat().st_size

    async def size(self, obj: StoredObject) -> int:
        """The file's size."""
        name = self._name(obj)
        return await self._in_thread("size", name, self._size, name)

    async def get(self, obj: StoredObject) -> bytes:
        """Read the whole file."""
        name = self._name(obj)
        return await self._in_thread("get", name, self._read, name)

    async def get_range(self, obj: StoredObject, start: int, end: int) -> bytes:
        """Read only bytes ``start``..``end`` (inclusive, clipped to the file)."""
        check_range(start, end)
        name = self._name(obj)
        return await self._in_thread(
            "get", name, self._read, name, start, end - start + 1
        )

    async def delete(self, obj: StoredObject) -> None:
        """Remove the file if it exists."""
        name = self._name(obj)
        await self._in_thread("delete", name, self._remove, name)

    async def health(self, collection: str) -> None:
        """Write the ping probe into ``collection`` and verify it."""
        obj = await self.put(collection, PING_PATH, PING_CONTENT, PING_MD5)
        await self.verify(obj, len(PING_CONTENT), PING_MD5)
