"""In-memory store: the verified fake that stands in for a real backend in tests.

It has the semantics of the ``file:`` store (objects named by
:func:`~imagecatcher.storage.keys.path_key`, so a re-put replaces; the
``jfs_key`` of :func:`~imagecatcher.storage.keys.object_key`; MD5 checked
before anything is stored; ranges clipped) and the shared contract suite runs
it next to the real backends to keep it honest.  Test hooks: :meth:`fail_next`
makes the next puts fail and :attr:`puts` counts put calls.  Hashing happens
on the calling thread, which is fine for a fake.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from types import MappingProxyType
from urllib.parse import quote

from imagecatcher.storage import (
    PING_CONTENT,
    PING_PATH,
    ObjectNotFound,
    StoredObject,
    StoreError,
)
from imagecatcher.storage.keys import (
    PING_MD5,
    check_md5,
    check_range,
    name_from_location,
    object_key,
    path_key,
)

_LOCATION = "memory:///"


class MemoryStore:
    """A dict-backed :class:`~imagecatcher.storage.ContentStore`."""

    #: A re-put of a path replaces its object: nothing is left to delete.
    replaces_in_place = True

    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}
        self._failures: list[StoreError] = []
        #: Number of put calls so far, failed ones included.
        self.puts = 0

    @property
    def objects(self) -> Mapping[str, bytes]:
        """A read-only view of the stored objects by name."""
        return MappingProxyType(self._objects)

    def fail_next(self, n: int, error: StoreError | None = None) -> None:
        """Make the next ``n`` puts raise ``error`` (a generic StoreError by default)."""
        failure = error if error is not None else StoreError("injected put failure")
        self._failures.extend([failure] * n)

    def _lookup(self, obj: StoredObject) -> bytes:
        name = name_from_location(obj, _LOCATION)
        try:
            return self._objects[name]
        except KeyError:
            raise ObjectNotFound(f"no object {name!r}") from None

    async def put(
        self,
        collection: str,
        path: str,
        data: bytes,
        md5: bytes,
        context: Mapping[str, str] | None = None,
    ) -> StoredObject:
        """Keep a copy of ``data`` under ``<collection>/<path>``."""
        self.puts += 1
        if self._failures:
            raise self._failures.pop(0)
        check_md5(md5)
        name = path_key(collection, path)
        actual = hashlib.md5(data).digest()
        if actual != md5:
            raise StoreError(
                f"put {name!r}: MD5 mismatch (data {actual.hex()}, expected {md5.hex()})"
            )
        self._objects[name] = bytes(data)
        return StoredObject(object_key(name), _LOCATION + quote(name))

    async def verify(self, obj: StoredObject, size: int, md5: bytes) -> None:
        """Check the stored copy's size and MD5."""
        check_md5(md5)
        data = self._lookup(obj)
        if len(data) != size:
            raise StoreError(
                f"verify {obj.key!r}: {len(data)} bytes stored, expected {size}"
            )
        if hashlib.md5(data).digest() != md5:
            raise StoreError(f"verify {obj.key!r}: MD5 differs from {md5.hex()}")

    async def size(self, obj: StoredObject) -> int:
        """Length of the stored copy."""
        return len(self._lookup(obj))

    async def get(self, obj: StoredObject) -> bytes:
        """Return the stored bytes."""
        return self._lookup(obj)

    async def get_range(self, obj: StoredObject, start: int, end: int) -> bytes:
        """Return bytes ``start``..``end`` inclusive, clipped to the object."""
        check_range(start, end)
        return self._lookup(obj)[start : end + 1]

    async def delete(self, obj: StoredObject) -> None:
        """Forget the object if there is one."""
        self._objects.pop(name_from_location(obj, _LOCATION), None)

    async def health(self, collection: str) -> None:
        """Put the ping probe into ``collection`` and verify it."""
        obj = await self.put(collection, PING_PATH, PING_CONTENT, PING_MD5)
        await self.verify(obj, len(PING_CONTENT), PING_MD5)
