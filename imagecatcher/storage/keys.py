"""Keys and arguments every backend checks the same way (no I/O here)."""

from __future__ import annotations

import hashlib
from urllib.parse import unquote

from imagecatcher.storage import PING_CONTENT, StoredObject, StoreError

#: MD5 of the ping probe, so health checks need not hash it each time.
PING_MD5 = hashlib.md5(PING_CONTENT).digest()


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key; raise StoreError.

    Safe means: non-empty ``/``-separated components, none of them ``.`` or
    ``..``, and no NUL or backslash anywhere.
    """
    if (
        not key
        or "\0" in key
        or "\\" in key
        or any(part in ("", ".", "..") for part in key.split("/"))
    ):
        raise StoreError(f"invalid object key {key!r}")
    return key


def path_key(collection: str, path: str) -> str:
    """The key of ``path`` in ``collection`` for path-addressed stores.

    ``("FAFB", "/acquisitions/1/a.tif")`` gives ``"FAFB/acquisitions/1/a.tif"``;
    the empty collection gives just the path.  Raises StoreError for a
    collection or path that could address something outside the store (and
    for a collection starting with ``.``: such names are the stores' own).
    """
    if (
        "/" in collection
        or "\\" in collection
        or "\0" in collection
        or collection.startswith(".")
    ):
        raise StoreError(f"invalid collection name {collection!r}")
    relative = path[1:] if path.startswith("/") else path
    return check_key(f"{collection}/{relative}" if collection else relative)


def object_key(name: str) -> str:
    """The ``jfs_key`` of the path-addressed object ``name``: 40 hex digits.

    ``file_object_fs_replicas.jfs_key`` is ``VARCHAR(64)`` in every database
    the old service created, and object names (``<collection>/acquisitions/
    <uid>/<tile name>``) are often longer, so path-addressed stores record the
    SHA-1 of the name instead: short, unique per object and the same for every
    re-put of a path (the re-put replaces the object, and so keeps its key).
    The object itself is found again through the location URL.
    """
    return hashlib.sha1(name.encode("utf-8")).hexdigest()


def is_path_key(key: str) -> bool:
    """Whether ``key`` is an object name itself (what path-addressed stores
    recorded as ``jfs_key`` before :func:`object_key`; every such name holds a
    ``/``, no generated key does)."""
    return "/" in key


def name_from_location(obj: StoredObject, prefix: str) -> str:
    """The object name of ``obj`` in a path-addressed store.

    Keys recorded before :func:`object_key` are the name; otherwise the name
    is what follows ``prefix`` in the (percent-encoded) location URL.  Raises
    StoreError when the location is not under ``prefix`` or the name is unsafe.
    """
    if is_path_key(obj.key):
        return check_key(obj.key)
    if not obj.location_url.startswith(prefix):
        raise StoreError(
            f"object {obj.key!r} is located at {obj.location_url!r},"
            f" which is not in this store ({prefix}...)"
        )
    return check_key(unquote(obj.location_url[len(prefix) :]))


def check_md5(md5: bytes) -> None:
    """Raise StoreError unless ``md5`` is a raw 16-byte MD5 digest."""
    if len(md5) != 16:
        raise StoreError(f"an MD5 digest has 16 bytes, got {len(md5)}")


def check_range(start: int, end: int) -> None:
    """Raise ValueError unless ``0 <= start <= end`` (a caller's mistake)."""
    if start < 0 or end < start:
        raise ValueError(f"invalid byte range {start}-{end}")
