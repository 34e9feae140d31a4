"""The local durable spool: acknowledged tiles not yet in the store.

A tile that cannot be stored at once (the store is down, slow or its queue is
full) is written here before it is acknowledged: the bytes go to
``<tile_id>-<sha1>.tile`` and what is needed to upload them later to
``<tile_id>-<sha1>.json``, each via a temporary file (``.tmp-<pid>-*``),
fsync and rename, then the directory is fsync'd.  An entry exists only when
its JSON file does, so a crash half-way leaves either a complete entry or
debris that :meth:`Spool.entries` removes.  All file I/O runs on a thread pool.

Several worker processes may share one spool directory.  Whoever uploads an
entry first takes :meth:`Spool.claim` on it: an exclusive, non-blocking
``flock`` on its ``.json`` file, held until the upload is done and the entry
removed; another process's claim of that entry meanwhile returns ``None``.
The kernel drops the lock of a process that dies, so a killed worker's entry
can be claimed again at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from imagecatcher.fsio import DirSyncer

log = Logger()

#: Subdirectory where tiles bound for a remote store are received.
INCOMING = "incoming"
#: Seconds after which a file without metadata is debris of a crash, not a
#: write another worker is finishing.
DEBRIS_AGE = 300.0
#: Temporary files of an atomic write: ``.tmp-<pid of the writer>-<random>``.
TMP_PREFIX = ".tmp-"


@attrs.frozen
class SpoolEntry:
    """What an upload of a spooled tile needs, besides the bytes."""

    tile_id: int
    uid: int
    name: str
    col: int
    row: int
    collection: str
    path: str
    context: dict[str, str]
    sha1: bytes
    md5: bytes
    #: The store key of the content this tile had before (deleted after upload).
    superseded_key: str = ""

    @property
    def stem(self) -> str:
        """The file name without extension."""
        return f"{self.tile_id}-{self.sha1.hex()}"

    def to_json(self) -> bytes:
        """Serialise (checksums as hex)."""
        data = attrs.asdict(self)
        data["sha1"], data["md5"] = self.sha1.hex(), self.md5.hex()
        return json.dumps(data, sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> SpoolEntry:
        """Parse what :meth:`to_json` wrote."""
        data: dict[str, Any] = json.loads(raw)
        data["sha1"], data["md5"] = (
            bytes.fromhex(data["sha1"]),
            bytes.fromhex(data["md5"]),
        )
        return cls(**data)


def _write_atomic(path: Path, data: bytes | memoryview) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _writer_gone(name: str) -> bool:
    """Whether the temporary file ``name`` was left by a process that is gone.

    Names without a pid (older versions) and this process's own never count:
    their age decides.
    """
    pid_text = name[len(TMP_PREFIX) :].split("-", 1)[0]
    if not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SpoolClaim:
    """One process's exclusive hold on a spool entry, until :meth:`release`.

    A context manager too: ``with claim: ...`` releases on exit.
    """

    def __init__(self, entry: SpoolEntry, fd: int) -> None:
        self.entry = entry
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        """Whether the claim has not been released yet."""
        return self._fd is not None

    def release(self) -> None:
        """Let other processes claim the entry (closing drops the lock); idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> SpoolClaim:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _claim(meta: Path, entry: SpoolEntry) -> SpoolClaim | None:
    """Lock ``meta`` exclusively without waiting; ``None`` if held or gone."""
    try:
        fd = os.open(meta, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # The holder we waited for may have removed (or set aside) the entry
        # between our open and our lock: then the path names another file or
        # none, and the lock guards nothing.
        current = os.stat(meta)
        if not os.path.samestat(os.fstat(fd), current):
            raise FileNotFoundError(meta)
    except (BlockingIOError, FileNotFoundError):
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return SpoolClaim(entry, fd)


class Spool:
    """A directory of spooled tiles."""

    def __init__(
        self,
        directory: Path,
        reactor: Any,
        threadpool: ThreadPool,
        notify: Callable[[str], None] = lambda text: None,
        background: ThreadPool | None = None,
    ) -> None:
        self._dir = directory
        self._reactor = reactor
        self._pool = threadpool
        #: Where uploads read and check entries (a BackgroundThreadPool).
        self._background = background if background is not None else threadpool
        self._notify = notify
        self._dirsync = DirSyncer(reactor, threadpool)

    @property
    def directory(self) -> Path:
        """The spool directory."""
        return self._dir

    @property
    def staging_dir(self) -> Path:
        """Where tiles for a remote store are received (same filesystem)."""
        return self._dir / INCOMING

    def _adopt(self, entry: SpoolEntry, source: Path) -> None:
        os.replace(source, self._dir / f"{entry.stem}.tile")
        _write_atomic(self._dir / f"{entry.stem}.json", entry.to_json())

    async def adopt(self, entry: SpoolEntry, source: Path) -> None:
        """Make a received, fsync'd file in :attr:`staging_dir` an entry.

        The bytes are not written again: the file is renamed, the entry's
        metadata written beside it, and the directory fsync is shared with
        the entries adopted at the same time.
        """
        if source.parent != self.staging_dir:
            raise ValueError(f"{source} is not in {self.staging_dir}")
        await self._thread(self._adopt, entry, source)
        await self._dirsync.sync(self._dir)

    def _thread(self, fn: Any, *args: Any) -> Any:
        return deferToThreadPool(self._reactor, self._pool, fn, *args)

    def _put(self, entry: SpoolEntry, data: bytes | memoryview) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(self._dir / f"{entry.stem}.tile", data)
        _write_atomic(self._dir / f"{entry.stem}.json", entry.to_json())
        _fsync_dir(self._dir)

    async def put(self, entry: SpoolEntry, data: bytes | memoryview) -> None:
        """Write the entry durably; when this returns it survives a crash."""
        await self._thread(self._put, entry, data)

    def _has(self, entry_stem: str) -> bool:
        return (self._dir / f"{entry_stem}.json").exists()

    async def has(self, tile_id: int, sha1: bytes) -> bool:
        """Whether these exact bytes of that tile wait in the spool."""
        result: bool = await self._thread(self._has, f"{tile_id}-{sha1.hex()}")
        return result

    def try_claim(self, entry: SpoolEntry) -> SpoolClaim | None:
        """:meth:`claim`, on the calling thread (a non-blocking open and flock)."""
        return _claim(self._dir / f"{entry.stem}.json", entry)

    async def claim(self, entry: SpoolEntry) -> SpoolClaim | None:
        """Claim the entry for this process, or ``None``.

        ``None`` means another process (or another claim in this one) holds
        it, or the entry is gone (uploaded, superseded or set aside): skip it
        either way.  Hold the claim across the whole upload, including
        :meth:`remove` or :meth:`quarantine`, then :meth:`SpoolClaim.release`.
        """
        claim: SpoolClaim | None = await self._thread(self.try_claim, entry)
        return claim

    def _read(self, entry: SpoolEntry) -> bytes:
        return (self._dir / f"{entry.stem}.tile").read_bytes()

    async def read(self, entry: SpoolEntry) -> bytes:
        """The spooled bytes."""
        data: bytes = await self._thread(self._read, entry)
        return data

    def _read_checked(self, entry: SpoolEntry) -> tuple[bytes, bool]:
        data = (self._dir / f"{entry.stem}.tile").read_bytes()
        return data, hashlib.sha1(data).digest() == entry.sha1

    async def read_checked(self, entry: SpoolEntry) -> tuple[bytes, bool]:
        """The spooled bytes and whether they still have the entry's SHA-1,
        read and hashed on a background thread.  The SHA-1 alone tells
        damage; the MD5, at twice its cost, the store checks (Content-MD5)."""
        result: tuple[bytes, bool] = await deferToThreadPool(
            self._reactor, self._background, self._read_checked, entry
        )
        return result

    def _remove(self, entry: SpoolEntry) -> None:
        (self._dir / f"{entry.stem}.json").unlink(missing_ok=True)
        (self._dir / f"{entry.stem}.tile").unlink(missing_ok=True)

    async def remove(self, entry: SpoolEntry) -> None:
        """Forget an entry (after its upload, or when it is superseded)."""
        await self._thread(self._remove, entry)

    def _quarantine(self, entry: SpoolEntry) -> None:
        for suffix in (".json", ".tile"):
            src = self._dir / f"{entry.stem}{suffix}"
            if src.exists():
                src.rename(src.with_name(src.name + ".bad"))

    async def quarantine(self, entry: SpoolEntry) -> None:
        """Set a damaged entry aside (renamed ``*.bad``), never deleted."""
        await self._thread(self._quarantine, entry)

    def _entries(self) -> tuple[list[SpoolEntry], list[str]]:
        if not self._dir.is_dir():
            return [], []
        found = []
        damaged = set()
        for meta in self._dir.glob("*.json"):
            try:
                found.append(SpoolEntry.from_json(meta.read_bytes()))
            except FileNotFoundError:
                continue  # uploaded or set aside by another worker meanwhile
            except (ValueError, KeyError, TypeError):
                # Set aside with its bytes: an acknowledged tile is never deleted.
                damaged.add(meta.stem)
                for part in (meta, meta.with_suffix(".tile")):
                    try:
                        part.rename(part.with_name(part.name + ".bad"))
                    except FileNotFoundError:
                        pass  # another worker's scan set it aside first
        found.sort(key=lambda e: (e.tile_id, e.stem))
        stems = {e.stem for e in found} | damaged
        now = time.time()
        for stray in self._dir.iterdir():
            # Data without metadata: a write interrupted before it was
            # acknowledged.  A temporary file of a process that is gone goes
            # at once; other debris only when old: another worker may be
            # between its rename and its metadata write right now.
            temporary = stray.name.startswith(TMP_PREFIX)
            if temporary and _writer_gone(stray.name):
                stray.unlink(missing_ok=True)
            elif temporary or (stray.suffix == ".tile" and stray.stem not in stems):
                try:
                    if now - stray.stat().st_mtime > DEBRIS_AGE:
                        stray.unlink(missing_ok=True)
                except FileNotFoundError:
                    pass
        return found, sorted(damaged)

    async def entries(self) -> list[SpoolEntry]:
        """Every complete entry, oldest tile id first; removes interrupted writes.

        Entries whose metadata does not parse are set aside (``*.bad``), logged
        and notified: their tiles were acknowledged and are not uploaded.
        """
        found: list[SpoolEntry]
        found, damaged = await self._thread(self._entries)
        for stem in damaged:
            message = (
                f"Spool entry {self._dir / stem}.json is damaged: set aside with its"
                " tile as *.bad, not uploaded"
            )
            log.error("{message}", message=message)
            self._notify(message)
        return found
