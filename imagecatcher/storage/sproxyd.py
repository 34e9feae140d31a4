"""``sproxyd://`` store: Scality's sproxyd REST connector, by key.

Every put stores the bytes under a fresh 160-bit key (40 upper-case hex
digits) at ``<base>/<key>`` where ``<base>`` is ``http://host:port/proxy/<driver>``;
the collection, path and storage context travel as user metadata
(``X-Scal-Usermd``: base64 of a small JSON object).  Verify is a HEAD (size,
and MD5 when the connector reports an ETag or Content-MD5), reads are GETs
(with ``Range`` for :meth:`SproxydStore.get_range`), delete is a DELETE.

Requests go through an injected treq ``HTTPClient`` without redirects, every
response body is drained, and each exchange has a deadline on the injected
clock.  Non-2xx answers raise StoreError naming method, URL and status; 404
raises ObjectNotFound.  ``SCALITY_RINGS_MAPPING`` redirects a base URL whose
host is a ring name to the host running that ring's proxy; ``SCALITY_HOST``
replaces the first ``localhost`` of the reported location URL (§5.3; empty
means no replacement, §13 Q28).

:func:`http_exchange` and :class:`Reply` are shared with :mod:`.s3`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from treq.client import HTTPClient
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from imagecatcher.storage import (
    PING_CONTENT,
    PING_PATH,
    ObjectNotFound,
    StoredObject,
    StoreError,
)
from imagecatcher.storage.httpcall import Reply, http_exchange
from imagecatcher.storage.keys import PING_MD5, check_md5, check_range

log = Logger()

_KEY = re.compile(r"[0-9A-F]{40}")
_HEX_MD5 = re.compile(r"[0-9a-fA-F]{32}")
#: Last key byte: class of service 2 in the high nibble, replica 0 in the low
#: one (Scality's key layout: 152 bits of entropy, 4 bits class, 4 bits replica).
DEFAULT_KEY_SUFFIX = 0x20


def parse_sproxyd_url(url: str) -> str:
    """``sproxyd://host:port/proxy/<driver>`` → ``http://host:port/proxy/<driver>``."""
    parts = urlsplit(url)
    segments = parts.path.rstrip("/").split("/")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        segments = []
    if (
        parts.scheme != "sproxyd"
        or not parts.hostname
        or parts.username is not None
        or parts.query
        or parts.fragment
        or len(segments) != 3
        or segments[1] != "proxy"
        or not segments[2]
    ):
        raise StoreError(
            f"invalid sproxyd URL {url!r} (expected sproxyd://host:port/proxy/<driver>)"
        )
    return urlunsplit(("http", parts.netloc, "/".join(segments), "", ""))


def _split_host_port(netloc: str) -> tuple[str, str]:
    """``host:81`` → (``host``, ``:81``); ``[::1]:81`` → (``[::1]``, ``:81``)."""
    if netloc.startswith("["):
        host, _, rest = netloc.partition("]")
        return host + "]", rest
    if netloc.count(":") > 1:  # a bare IPv6 address, no port
        return f"[{netloc}]", ""
    host, colon, port = netloc.partition(":")
    return host, colon + port


def apply_rings_mapping(base_url: str, rings: Mapping[str, str]) -> str:
    """Replace a ring name as host of ``base_url`` by the host mapped to it.

    The mapped value is a host (the port of ``base_url`` is kept) or
    ``host:port``.  A host that is not a ring name is left alone.
    """
    parts = urlsplit(base_url)
    host, port = _split_host_port(parts.netloc)
    mapped = rings.get(host)
    if mapped is None:
        mapped = next((v for k, v in rings.items() if k.lower() == host.lower()), None)
    if mapped is None:
        return base_url
    if not mapped:
        raise StoreError(f"SCALITY_RINGS_MAPPING maps ring {host!r} to an empty host")
    new_host, new_port = _split_host_port(mapped)
    netloc = new_host + (new_port or port)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def replace_localhost(url: str, scality_host: str) -> str:
    """Replace the first ``localhost`` in ``url`` by ``scality_host`` (§5.3).

    An empty ``scality_host`` means no replacement (§13 Q28).
    """
    return url.replace("localhost", scality_host, 1) if scality_host else url


def new_key(suffix: int = DEFAULT_KEY_SUFFIX) -> str:
    """A fresh random sproxyd key: 19 random bytes and the class/replica byte."""
    return (os.urandom(19) + bytes([suffix])).hex().upper()


def _usermd(collection: str, path: str, context: Mapping[str, str] | None) -> str:
    document = {"collection": collection, "path": path, "context": dict(context or {})}
    text = json.dumps(document, separators=(",", ":"), sort_keys=True)
    return base64.b64encode(text.encode("ascii")).decode("ascii")


def _reported_md5(reply: Reply) -> bytes | None:
    """The MD5 the connector reports in ETag or Content-MD5, if any."""
    etag = reply.header("ETag")
    if etag is not None:
        etag = etag.removeprefix("W/").strip('"')
        if _HEX_MD5.fullmatch(etag):
            return bytes.fromhex(etag)
    content_md5 = reply.header("Content-MD5")
    if content_md5 is not None:
        try:
            digest = base64.b64decode(content_md5, validate=True)
        except binascii.Error:
            return None
        if len(digest) == 16:
            return digest
    return None


class SproxydStore:
    """A :class:`~imagecatcher.storage.ContentStore` over one sproxyd driver."""

    #: Every put makes a new object under a fresh key; the old one stays
    #: until it is deleted.
    replaces_in_place = False

    def __init__(
        self,
        client: HTTPClient,
        clock: IReactorTime,
        base_url: str,
        rings_mapping: Mapping[str, str],
        scality_host: str,
        timeout: float = 30.0,
    ) -> None:
        if base_url.startswith("sproxyd://"):
            base_url = parse_sproxyd_url(base_url)
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise StoreError(f"invalid sproxyd base URL {base_url!r}")
        self._client = client
        self._clock = clock
        self._base = apply_rings_mapping(base_url.rstrip("/"), rings_mapping)
        self._scality_host = scality_host
        self._timeout = timeout

    @property
    def base_url(self) -> str:
        """The URL requests go to, after the rings mapping."""
        return self._base

    def _url(self, key: str) -> str:
        if not _KEY.fullmatch(key):
            raise StoreError(f"invalid sproxyd key {key!r} (40 upper-case hex digits)")
        return f"{self._base}/{key}"

    async def _call(
        self,
        method: str,
        key: str,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        ok: tuple[int, ...] = (),
    ) -> Reply:
        """One exchange; non-2xx (other than ``ok``) → StoreError, 404 → ObjectNotFound."""
        url = self._url(key)
        reply = await http_exchange(
            self._client, self._clock, self._timeout, method, url, headers, data
        )
        if 200 <= reply.code < 300 or reply.code in ok:
            return reply
        message = f"sproxyd {method} {url}: HTTP {reply.code}{reply.excerpt()}"
        if reply.code == 404:
            raise ObjectNotFound(message)
        raise StoreError(message)

    async def put(
        self,
        collection: str,
        path: str,
        data: bytes,
        md5: bytes,
        context: Mapping[str, str] | None = None,
    ) -> StoredObject:
        """PUT ``data`` under a fresh key with its Content-MD5 and metadata."""
        check_md5(md5)
        key = new_key()
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-MD5": base64.b64encode(md5).decode("ascii"),
            "X-Scal-Usermd": _usermd(collection, path, context),
        }
        try:
            await self._call("PUT", key, headers, data)
        except ObjectNotFound as e:  # the driver is unknown to the connector
            raise StoreError(str(e)) from e
        location = replace_localhost(self._url(key), self._scality_host)
        return StoredObject(key, location)

    async def verify(self, obj: StoredObject, size: int, md5: bytes) -> None:
        """HEAD the object: its Content-Length must be ``size`` and a reported
        MD5 (ETag or Content-MD5) must equal ``md5``."""
        check_md5(md5)
        reply = await self._call("HEAD", obj.key)
        url = self._url(obj.key)
        length = reply.header("Content-Length")
        if length is None or not length.isdigit():
            raise StoreError(
                f"sproxyd HEAD {url}: no valid Content-Length ({length!r})"
            )
        if int(length) != size:
            raise StoreError(
                f"sproxyd HEAD {url}: {length} bytes stored, expected {size}"
            )
        reported = _reported_md5(reply)
        if reported is not None and reported != md5:
            raise StoreError(
                f"sproxyd HEAD {url}: MD5 {reported.hex()} stored, expected {md5.hex()}"
            )

    async def size(self, obj: StoredObject) -> int:
        """HEAD the object for its Content-Length."""
        reply = await self._call("HEAD", obj.key)
        length = reply.header("Content-Length")
        if length is None or not length.isdigit():
            raise StoreError(
                f"sproxyd HEAD {self._url(obj.key)}: no valid Content-Length"
            )
        return int(length)

    async def get(self, obj: StoredObject) -> bytes:
        """GET the whole object."""
        return (await self._call("GET", obj.key)).body

    async def get_range(self, obj: StoredObject, start: int, end: int) -> bytes:
        """GET bytes ``start``..``end`` with a Range header (clipped; empty past the end)."""
        check_range(start, end)
        headers = {"Range": f"bytes={start}-{end}"}
        reply = await self._call("GET", obj.key, headers, ok=(416,))
        if reply.code == 416:  # the range starts past the end of the object
            return b""
        if reply.code == 206:
            return reply.body
        return reply.body[start : end + 1]  # the connector ignored the Range

    async def delete(self, obj: StoredObject) -> None:
        """DELETE the object; a missing object is not an error."""
        await self._call("DELETE", obj.key, ok=(404,))

    async def health(self, collection: str) -> None:
        """Put the ping probe, verify it, then delete it (keys are never reused,
        so each probe would otherwise stay behind)."""
        obj = await self.put(collection, PING_PATH, PING_CONTENT, PING_MD5)
        await self.verify(obj, len(PING_CONTENT), PING_MD5)
        try:
            await self.delete(obj)
        except StoreError as e:
            log.warn(
                "could not delete the sproxyd ping probe {key}: {reason}",
                key=obj.key,
                reason=str(e),
            )
