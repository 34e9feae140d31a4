"""Keys and arguments every backend checks the same way (no I/O here)."""

from __future__ import annotations

import hashlib

from imagecatcher.storage import PING_CONTENT, StoreError

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
    collection or path that could address something outside the store.
    """
    if (
        "/" in collection
        or "\\" in collection
        or "\0" in collection
        or collection in (".", "..")
    ):
        raise StoreError(f"invalid collection name {collection!r}")
    relative = path[1:] if path.startswith("/") else path
    return check_key(f"{collection}/{relative}" if collection else relative)


def check_md5(md5: bytes) -> None:
    """Raise StoreError unless ``md5`` is a raw 16-byte MD5 digest."""
    if len(md5) != 16:
        raise StoreError(f"an MD5 digest has 16 bytes, got {len(md5)}")


def check_range(start: int, end: int) -> None:
    """Raise ValueError unless ``0 <= start <= end`` (a caller's mistake)."""
    if start < 0 or end < start:
        raise ValueError(f"invalid byte range {start}-{end}")
