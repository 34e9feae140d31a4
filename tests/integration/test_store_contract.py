"""One contract suite over every content store: the memory fake and the real backends.

``memory`` and ``fs`` (a temporary directory) run in-process; ``sproxyd`` talks
HTTP to :class:`~tests.storefakes.FakeSproxyd` on a real 127.0.0.1 port; ``s3``
talks to a real SeaweedFS S3 gateway (session fixture ``seaweed_s3``).  The
suite keeps the fake honest: whatever a test here asserts, MemoryStore does
exactly what the real backends do.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import pytest_twisted

from treq.client import HTTPClient
from twisted.python.threadpool import ThreadPool
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Site

from imagecatcher.storage import (
    PING_CONTENT,
    PING_PATH,
    ContentStore,
    ObjectNotFound,
    StoredObject,
    StoreError,
)
from imagecatcher.storage.fs import FileStore
from imagecatcher.storage.keys import path_key
from imagecatcher.storage.memory import MemoryStore
from imagecatcher.storage.s3 import S3Store
from imagecatcher.storage.sproxyd import SproxydStore, new_key
from tests.integration.seaweed import SeaweedS3
from tests.storefakes import FakeSproxyd

BUCKET = "imagecatcher-contract"
_names = itertools.count()


@attrs.frozen
class Backend:
    """A store under test and what the suite needs to know about it."""

    name: str
    store: ContentStore
    path_addressed: bool
    sproxyd: FakeSproxyd | None = None

    def missing(self, collection: str) -> StoredObject:
        """A handle to an object that was never stored."""
        if self.path_addressed:
            return StoredObject(path_key(collection, "/acquisitions/9/never.tif"), "")
        return StoredObject(new_key(), "")


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data).digest()


@pytest.fixture
def collection() -> str:
    """A collection name no other test uses (the S3 bucket lives all session)."""
    return f"C{os.getpid()}x{next(_names)}"


@pytest_twisted.async_yield_fixture(params=["memory", "fs", "sproxyd", "s3"])
async def backend(
    request: pytest.FixtureRequest, reactor: Any, tmp_path: Any
) -> AsyncIterator[Backend]:
    """Each backend in turn, with its servers and connection pools."""
    kind: str = request.param
    if kind == "memory":
        yield Backend(kind, MemoryStore(), path_addressed=True)
    elif kind == "fs":
        threads = ThreadPool(minthreads=1, maxthreads=4, name="test-file-store")
        threads.start()
        try:
            store = FileStore(tmp_path / "objects", reactor, threads)
            yield Backend(kind, store, path_addressed=True)
        finally:
            threads.stop()
    else:
        pool = HTTPConnectionPool(reactor, persistent=True)
        client = HTTPClient(Agent(reactor, pool=pool))
        try:
            if kind == "sproxyd":
                fake = FakeSproxyd(["bparc"], clock=reactor)
                site = Site(fake)
                site.noisy = False
                port = reactor.listenTCP(0, site, interface="127.0.0.1")
                try:
                    # A ring name as host, resolved by the rings mapping.
                    url = f"sproxyd://replicated:{port.getHost().port}/proxy/bparc"
                    sproxyd = SproxydStore(
                        client, reactor, url, {"replicated": "127.0.0.1"}, ""
                    )
                    yield Backend(kind, sproxyd, path_addressed=False, sproxyd=fake)
                finally:
                    await port.stopListening()
            else:
                server: SeaweedS3 = request.getfixturevalue("seaweed_s3")
                s3 = S3Store(
                    client,
                    reactor,
                    BUCKET,
                    server.endpoint_url,
                    server.access_key,
                    server.secret_key,
                    server.region,
                )
                await s3.ensure_bucket()
                yield Backend(kind, s3, path_addressed=True)
        finally:
            await pool.closeCachedConnections()


@pytest.mark.parametrize(
    "data",
    [b"", b"tile bytes", os.urandom(1024 * 1024)],
    ids=["empty", "small", "1MiB-random"],
)
@pytest_twisted.ensureDeferred
async def test_put_get_round_trip(
    backend: Backend, collection: str, data: bytes
) -> None:
    """What put stores, get returns unchanged and verify accepts."""
    store = backend.store
    context = {"sample": "FAFB_00", "project": "FAFB", "checksum": _md5(data).hex()}
    obj = await store.put(
        collection,
        "/acquisitions/1/col0001_row0002_cam0.tif",
        data,
        _md5(data),
        context,
    )
    assert obj.key and obj.location_url
    assert await store.get(obj) == data
    await store.verify(obj, len(data), _md5(data))


@pytest_twisted.ensureDeferred
async def test_verify_wrong_size(backend: Backend, collection: str) -> None:
    """Verify with a size other than the stored one raises StoreError."""
    data = b"twelve bytes"
    obj = await backend.store.put(collection, "/acquisitions/1/a.tif", data, _md5(data))
    with pytest.raises(StoreError) as excinfo:
        await backend.store.verify(obj, len(data) + 1, _md5(data))
    assert not isinstance(excinfo.value, ObjectNotFound)


@pytest_twisted.ensureDeferred
async def test_delete_then_verify_and_get(backend: Backend, collection: str) -> None:
    """After delete, verify and get raise ObjectNotFound and a second delete is fine."""
    data = b"short-lived"
    store = backend.store
    obj = await store.put(collection, "/acquisitions/1/b.tif", data, _md5(data))
    await store.delete(obj)
    with pytest.raises(ObjectNotFound):
        await store.verify(obj, len(data), _md5(data))
    with pytest.raises(ObjectNotFound):
        await store.get(obj)
    await store.delete(obj)


@pytest_twisted.ensureDeferred
async def test_missing_object(backend: Backend, collection: str) -> None:
    """An object that was never stored is ObjectNotFound for get, range and verify."""
    missing = backend.missing(collection)
    with pytest.raises(ObjectNotFound):
        await backend.store.get(missing)
    with pytest.raises(ObjectNotFound):
        await backend.store.get_range(missing, 0, 10)
    with pytest.raises(ObjectNotFound):
        await backend.store.verify(missing, 1, _md5(b"x"))
    await backend.store.delete(missing)


@pytest_twisted.ensureDeferred
async def test_get_range(backend: Backend, collection: str) -> None:
    """Ranges are inclusive, clipped at the end and empty past the end."""
    data = b"0123456789" * 10_000  # compressible, in case a server gzips
    store = backend.store
    obj = await store.put(collection, "/acquisitions/1/c.tif", data, _md5(data))
    assert await store.get_range(obj, 10, 19) == data[10:20]
    assert await store.get_range(obj, 5, 5) == data[5:6]
    assert await store.get_range(obj, len(data) - 4, len(data) + 100) == data[-4:]
    assert await store.get_range(obj, 0, len(data) - 1) == data
    assert await store.get_range(obj, len(data), len(data) + 10) == b""


@pytest_twisted.ensureDeferred
async def test_size(backend: Backend, collection: str) -> None:
    """size() reports the stored length, and ObjectNotFound once deleted."""
    store = backend.store
    data = b"x" * 12345
    obj = await store.put(collection, "/acquisitions/1/s.tif", data, _md5(data))
    assert await store.size(obj) == len(data)
    await store.delete(obj)
    with pytest.raises(ObjectNotFound):
        await store.size(obj)


@pytest_twisted.ensureDeferred
async def test_put_same_path_again(backend: Backend, collection: str) -> None:
    """A re-put replaces the object in path-addressed stores; sproxyd keeps both."""
    store, path = backend.store, "/acquisitions/1/d.tif"
    first = await store.put(collection, path, b"first", _md5(b"first"))
    second = await store.put(collection, path, b"second!", _md5(b"second!"))
    assert await store.get(second) == b"second!"
    if backend.path_addressed:
        assert (first.key, first.location_url) == (second.key, second.location_url)
    else:
        assert first.key != second.key
        assert await store.get(first) == b"first"


@pytest_twisted.ensureDeferred
async def test_collections_do_not_collide(backend: Backend, collection: str) -> None:
    """The same path in two collections names two objects."""
    store, path = backend.store, "/acquisitions/1/e.tif"
    one = await store.put(collection + "a", path, b"in a", _md5(b"in a"))
    two = await store.put(collection + "b", path, b"in b", _md5(b"in b"))
    assert one.key != two.key
    assert await store.get(one) == b"in a"
    assert await store.get(two) == b"in b"


@pytest_twisted.ensureDeferred
async def test_path_with_spaces(backend: Backend, collection: str) -> None:
    """The ping path ``/acquisitions/0/jfs ping`` works and its URL has no raw space."""
    store = backend.store
    obj = await store.put(collection, PING_PATH, PING_CONTENT, _md5(PING_CONTENT))
    assert " " not in obj.location_url
    assert await store.get(obj) == PING_CONTENT
    assert await store.get_range(obj, 4, 7) == PING_CONTENT[4:8]
    await store.verify(obj, len(PING_CONTENT), _md5(PING_CONTENT))


@pytest_twisted.ensureDeferred
async def test_health(backend: Backend, collection: str) -> None:
    """A working store is healthy in any collection, the empty one included."""
    await backend.store.health(collection)
    await backend.store.health("")


@pytest_twisted.ensureDeferred
async def test_put_wrong_md5_stores_nothing(backend: Backend, collection: str) -> None:
    """A put whose MD5 does not match the data fails and leaves nothing behind."""
    path = "/acquisitions/1/f.tif"
    before = dict(backend.sproxyd.objects) if backend.sproxyd is not None else {}
    with pytest.raises(StoreError):
        await backend.store.put(collection, path, b"real bytes", _md5(b"other bytes"))
    if backend.path_addressed:
        with pytest.raises(ObjectNotFound):
            await backend.store.get(StoredObject(path_key(collection, path), ""))
    else:
        assert backend.sproxyd is not None and backend.sproxyd.objects == before


#: A production-shaped name: 12-digit UID, directory-prefixed drift tile.
_LONG_PATH = (
    "/acquisitions/161105213017/col0012/Dump_cam0_frame12345_col0012_row0005.tif"
)


@pytest_twisted.ensureDeferred
async def test_key_fits_the_schema_column(backend: Backend, collection: str) -> None:
    """However long the object's name, its key fits ``jfs_key VARCHAR(64)``,
    and two long names that differ only at the end get two keys."""
    store = backend.store
    one = await store.put(collection, _LONG_PATH, b"one", _md5(b"one"))
    two = await store.put(collection, _LONG_PATH + "x", b"two", _md5(b"two"))
    assert len(path_key(collection, _LONG_PATH)) > 64
    assert 0 < len(one.key) <= 64 and 0 < len(two.key) <= 64 and one.key != two.key
    assert len(one.location_url) <= 1024
    assert await store.get(one) == b"one" and await store.get(two) == b"two"
    await store.verify(one, 3, _md5(b"one"))


@pytest_twisted.ensureDeferred
async def test_objects_found_by_what_older_rows_hold(
    backend: Backend, collection: str
) -> None:
    """Rows written before keep working: a path-addressed object is found by a
    ``jfs_key`` that is its name (with or without the location URL), a sproxyd
    object by its key alone."""
    store, path, data = (
        backend.store,
        "/acquisitions/1/col0001_row0002_cam0.tif",
        b"old",
    )
    obj = await store.put(collection, path, data, _md5(data))
    if backend.path_addressed:
        name = path_key(collection, path)
        olds = [StoredObject(name, obj.location_url), StoredObject(name, "")]
    else:
        olds = [StoredObject(obj.key, "")]
    for old in olds:
        assert await store.get(old) == data
        assert await store.get_range(old, 1, 2) == data[1:3]
        assert await store.size(old) == len(data)
        await store.verify(old, len(data), _md5(data))


@pytest_twisted.ensureDeferred
async def test_location_outside_the_store_is_refused(
    backend: Backend, collection: str
) -> None:
    """A generated key whose location URL points elsewhere is a StoreError
    (path-addressed stores) and never reaches another object."""
    store = backend.store
    obj = await store.put(collection, "/acquisitions/1/g.tif", b"g", _md5(b"g"))
    elsewhere = StoredObject(obj.key, "file:///etc/passwd")
    if backend.path_addressed:
        with pytest.raises(StoreError) as excinfo:
            await store.get(elsewhere)
        assert not isinstance(excinfo.value, ObjectNotFound)
    else:  # sproxyd addresses by key only; the URL is informative
        assert await store.get(elsewhere) == b"g"
