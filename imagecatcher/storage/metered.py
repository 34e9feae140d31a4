"""A content store that counts the failures of the store it wraps.

Every call is passed through unchanged; one that raises is counted in
``imagecatcher_store_errors_total`` by operation and kind (``not_found``,
``store_error``, ``timeout``, ``cancelled`` or the exception's class), then
re-raised.  The local-store calls (``place``, ``settle``, ``undo``) are
passed through when the wrapped store has them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet import defer

from imagecatcher.metrics import Metrics
from imagecatcher.storage import (
    ContentStore,
    Interrupted,
    ObjectNotFound,
    StoredObject,
    StoreError,
)

T = TypeVar("T")


def error_kind(error: BaseException) -> str:
    """The ``kind`` label of a failed store call."""
    if isinstance(error, ObjectNotFound):
        return "not_found"
    if isinstance(error, StoreError):
        return "store_error"
    if isinstance(error, defer.TimeoutError | TimeoutError):
        return "timeout"
    if isinstance(error, defer.CancelledError):
        return "cancelled"
    return type(error).__name__


class MeteredStore:
    """Counts the failed calls of ``store``; behaves as ``store`` otherwise."""

    def __init__(self, store: ContentStore, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics
        self.replaces_in_place = store.replaces_in_place

    @property
    def wrapped(self) -> ContentStore:
        """The store whose calls are counted."""
        return self._store

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except BaseException as e:
            self._metrics.store_error(operation, error_kind(e))
            raise

    async def put(
        self,
        collection: str,
        path: str,
        data: bytes,
        md5: bytes,
        context: Mapping[str, str] | None = None,
    ) -> StoredObject:
        """See :meth:`ContentStore.put`."""
        return await self._call(
            "put", lambda: self._store.put(collection, path, data, md5, context)
        )

    async def verify(self, obj: StoredObject, size: int, md5: bytes) -> None:
        """See :meth:`ContentStore.verify`."""
        await self._call("verify", lambda: self._store.verify(obj, size, md5))

    async def size(self, obj: StoredObject) -> int:
        """See :meth:`ContentStore.size`."""
        return await self._call("size", lambda: self._store.size(obj))

    async def get(self, obj: StoredObject) -> bytes:
        """See :meth:`ContentStore.get`."""
        return await self._call("get", lambda: self._store.get(obj))

    async def get_range(self, obj: StoredObject, start: int, end: int) -> bytes:
        """See :meth:`ContentStore.get_range`."""
        return await self._call(
            "get_range", lambda: self._store.get_range(obj, start, end)
        )

    async def delete(self, obj: StoredObject) -> None:
        """See :meth:`ContentStore.delete`."""
        await self._call("delete", lambda: self._store.delete(obj))

    async def health(self, collection: str) -> None:
        """See :meth:`ContentStore.health`."""
        await self._call("health", lambda: self._store.health(collection))

    # -- LocalStore, when the wrapped store is one ----------------------------------

    @property
    def staging_dir(self) -> Path:
        """See :attr:`LocalStore.staging_dir`."""
        directory: Path = self._local().staging_dir
        return directory

    async def place(
        self,
        source: Path,
        md5: bytes,
        collection: str,
        path: str,
        note: Mapping[str, Any] | None = None,
        durable: bool = True,
    ) -> StoredObject:
        """See :meth:`LocalStore.place`."""
        placed: StoredObject = await self._call(
            "place",
            lambda: self._local().place(source, md5, collection, path, note, durable),
        )
        return placed

    async def sync_placed(self, obj: StoredObject) -> None:
        """See :meth:`LocalStore.sync_placed`."""
        await self._call("place", lambda: self._local().sync_placed(obj))

    async def settle(self, obj: StoredObject) -> None:
        """See :meth:`LocalStore.settle`."""
        await self._call("settle", lambda: self._local().settle(obj))

    async def undo(self, obj: StoredObject) -> None:
        """See :meth:`LocalStore.undo`."""
        await self._call("undo", lambda: self._local().undo(obj))

    async def interrupted(self) -> list[Interrupted]:
        """See :meth:`LocalStore.interrupted`."""
        found: list[Interrupted] = await self._call(
            "recover", lambda: self._local().interrupted()
        )
        return found

    async def resolve(self, placement: Interrupted, recorded: bool) -> None:
        """See :meth:`LocalStore.resolve`."""
        await self._call("recover", lambda: self._local().resolve(placement, recorded))

    def _local(self) -> Any:
        return self._store
