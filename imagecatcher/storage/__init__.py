"""The content-store port (CONTRACT §5.1) shared by every backend.

A store keeps tile and ancillary bytes.  Callers name an object by its
*collection* (chosen per acquisition by ``JFS_MAPPING``, §5.2) and its *path*
(``/acquisitions/<uid>/<name>``, §5.3); the backend decides the object key
(``jfs_key``, at most 64 characters: the schema's ``VARCHAR(64)``) and the
location URL it reports.  Path-addressed backends (``file:``, ``s3://``) name
the object ``<collection>/<path>``, so a re-put of the same path replaces it;
their key is the SHA-1 of that name in hex and the location URL says where the
object is.  ``sproxyd://`` generates a fresh 40-hex-digit key per put.

Backends: :mod:`.fs` (``file:``), :mod:`.sproxyd` (``sproxyd://``),
:mod:`.s3` (``s3://``) and :mod:`.memory` (the verified fake for tests).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import attrs


class StoreError(Exception):
    """The store refused or failed an operation; the text says which and why."""


class ObjectNotFound(StoreError):
    """No object is stored under that key."""


#: Where ping writes and verifies its probe object (kept from the old service, Q27).
PING_PATH = "/acquisitions/0/jfs ping"
PING_CONTENT = b"JFS Ping"


@attrs.frozen
class StoredObject:
    """Where a put left the bytes: ``jfs_key`` and ``location_url`` of §5.3/§5.4."""

    key: str
    location_url: str


class ContentStore(Protocol):
    """Put, verify, get and delete byte objects."""

    #: True when a re-put of a path overwrites the object it had (so there
    #: is never a superseded object to delete); False when each put makes a
    #: new object under a new key.
    replaces_in_place: bool

    async def put(
        self,
        collection: str,
        path: str,
        data: bytes,
        md5: bytes,
        context: Mapping[str, str] | None = None,
    ) -> StoredObject:
        """Store ``data`` durably; ``md5`` (16 raw bytes) lets the store check it.

        Returns only once the store has the whole object.  Raises StoreError.
        """

    async def verify(self, obj: StoredObject, size: int, md5: bytes) -> None:
        """Check the stored object has ``size`` bytes (and ``md5`` where the
        store reports one); raise StoreError or ObjectNotFound otherwise."""

    async def size(self, obj: StoredObject) -> int:
        """The object's size in bytes; ObjectNotFound when there is none."""

    async def get(self, obj: StoredObject) -> bytes:
        """Return the object's bytes; ObjectNotFound when there is none."""

    async def get_range(self, obj: StoredObject, start: int, end: int) -> bytes:
        """Return bytes ``start`` to ``end`` inclusive (both >= 0, clipped to
        the object's size); ObjectNotFound when there is none."""

    async def delete(self, obj: StoredObject) -> None:
        """Remove the object; no error when it does not exist."""

    async def health(self, collection: str) -> None:
        """Put the ping probe (PING_PATH) and verify it; raise StoreError when unhealthy."""


class LocalStore(ContentStore, Protocol):
    """A store on a local filesystem: received tiles are renamed into place."""

    @property
    def staging_dir(self) -> Path:
        """Where tiles are received, on the store's own filesystem."""

    async def place(
        self,
        source: Path,
        md5: bytes,
        collection: str,
        path: str,
        note: Mapping[str, Any] | None = None,
        durable: bool = True,
    ) -> StoredObject:
        """Rename ``source`` (in :attr:`staging_dir`, its MD5 checked while
        received) to ``<collection>/<path>``; StoreError if not.  With
        ``durable`` the caller fsync'd it and the rename is made durable too;
        without, the caller fsyncs the file, then calls :meth:`sync_placed`.
        Then :meth:`settle` or :meth:`undo` it once its record is written or
        refused.  ``note`` (JSON) is kept with the replaced file until then,
        for :meth:`interrupted`."""

    async def sync_placed(self, obj: StoredObject) -> None:
        """Make a placement's rename durable; StoreError if not."""

    async def settle(self, obj: StoredObject) -> None:
        """The placement is recorded: drop what it replaced."""

    async def undo(self, obj: StoredObject) -> None:
        """The placement could not be recorded: restore what it replaced."""

    async def interrupted(self) -> list[Interrupted]:
        """Replacing placements that a process gone since left unsettled."""

    async def resolve(self, placement: Interrupted, recorded: bool) -> None:
        """Settle (``recorded``) or undo an interrupted placement."""


@attrs.frozen
class Interrupted:
    """A placement that replaced a file, left unsettled by a process that
    died (kill -9) before its record was written or refused."""

    note: Mapping[str, Any]  # what the placing caller noted
    target: Path  # the file placed
    replaced: Path  # a hard link to the file it replaced
    sidecar: Path  # where the note is kept
