"""MemoryStore: the test hooks and the fs-like key rules of the verified fake."""

from __future__ import annotations

import hashlib

import pytest

from imagecatcher.storage import StoreError
from imagecatcher.storage.keys import object_key
from imagecatcher.storage.memory import MemoryStore
from tests.storefakes import run


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data).digest()


def test_fail_next_fails_that_many_puts() -> None:
    """fail_next(n) makes exactly the next n puts fail; puts counts every call."""
    store = MemoryStore()
    store.fail_next(2, StoreError("disk on fire"))
    for _ in range(2):
        with pytest.raises(StoreError, match="disk on fire"):
            run(store.put("C", "/a", b"x", _md5(b"x")))
    assert store.objects == {}
    obj = run(store.put("C", "/a", b"x", _md5(b"x")))
    assert store.puts == 3
    assert store.objects == {"C/a": b"x"} and obj.key == object_key("C/a")


def test_fail_next_default_error() -> None:
    """Without an explicit error, fail_next raises a generic StoreError."""
    store = MemoryStore()
    store.fail_next(1)
    with pytest.raises(StoreError):
        run(store.put("C", "/a", b"x", _md5(b"x")))


def test_keys_follow_the_file_store_rules() -> None:
    """Escaping paths are refused like in FileStore; spaces are URL-encoded."""
    store = MemoryStore()
    for collection, path in (("", "../x"), ("/etc/passwd", "/x"), ("C", "/a/../../b")):
        with pytest.raises(StoreError):
            run(store.put(collection, path, b"x", _md5(b"x")))
    obj = run(store.put("C", "/acquisitions/0/jfs ping", b"x", _md5(b"x")))
    assert obj.location_url == "memory:///C/acquisitions/0/jfs%20ping"


def test_verify_checks_md5() -> None:
    """Verify compares the MD5 as well as the size."""
    store = MemoryStore()
    obj = run(store.put("C", "/a", b"abc", _md5(b"abc")))
    with pytest.raises(StoreError, match="MD5"):
        run(store.verify(obj, 3, _md5(b"abd")))
