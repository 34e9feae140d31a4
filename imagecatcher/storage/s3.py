"""``s3://bucket`` store: S3 over treq, requests signed with AWS SigV4 by botocore.

Objects live at path-style URLs ``<endpoint>/<bucket>/<name>`` with the name
of :func:`~imagecatcher.storage.keys.path_key` (``<collection>/<path>``), so a
re-put of a path replaces the object.  The name is percent-encoded once
(``/`` kept) and that exact URL is both signed and sent, so names such as
``FAFB/acquisitions/0/jfs ping`` work.  The URL is the location URL; the
``jfs_key`` is :func:`~imagecatcher.storage.keys.object_key` of the name (the
schema's ``VARCHAR(64)`` cannot hold the name), and reads take the name back
from the location URL's path (or from a ``jfs_key`` that is the name itself,
as rows written before recorded).

Puts carry ``Content-MD5`` (the server rejects a body that does not match) and
``x-amz-content-sha256: UNSIGNED-PAYLOAD``: signing then only hashes the
headers, which is cheap enough for the reactor thread; the payload is never
hashed again.  Verify is a HEAD (Content-Length, and the ETag of a single-part
upload is the hex MD5).  Requests go through an injected treq ``HTTPClient``
without redirects, every body is drained and each exchange has a deadline.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials

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
from imagecatcher.storage.keys import (
    PING_MD5,
    check_key,
    check_md5,
    check_range,
    is_path_key,
    name_from_location,
    object_key,
    path_key,
)

log = Logger()

#: Tells S3SigV4Auth not to hash the payload: it signs ``UNSIGNED-PAYLOAD``.
_UNSIGNED_PAYLOAD = BotoConfig(s3={"payload_signing_enabled": False})
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_HEX_MD5 = re.compile(r"[0-9a-f]{32}")
_ERROR_CODE = re.compile(rb"<Code>([^<]*)</Code>")
_META_NAME = re.compile(r"[a-z0-9-]+")


def _error_code(reply: Reply) -> str:
    match = _ERROR_CODE.search(reply.body)
    return match.group(1).decode("utf-8", "replace") if match else ""


class S3Store:
    """A :class:`~imagecatcher.storage.ContentStore` over one S3 bucket."""

    #: A re-put of a path overwrites its object: nothing is left to delete.
    replaces_in_place = True

    def __init__(
        self,
        client: HTTPClient,
        clock: IReactorTime,
        bucket: str,
        endpoint_url: str,
        access_key: str,
        secret_key: str,
        region: str,
        timeout: float = 60.0,
    ) -> None:
        endpoint = urlsplit(endpoint_url)
        if (
            endpoint.scheme not in ("http", "https")
            or not endpoint.hostname
            or endpoint.path.strip("/")
            or endpoint.query
        ):
            raise StoreError(
                f"invalid S3 endpoint URL {endpoint_url!r} (expected http(s)://host[:port])"
            )
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise StoreError(f"invalid S3 bucket name {bucket!r}")
        if not access_key or not secret_key:
            raise StoreError("S3 needs an access key id and a secret access key")
        self._client = client
        self._clock = clock
        self._bucket = bucket
        self._endpoint = f"{endpoint.scheme}://{endpoint.netloc}"
        self._region = region
        self._auth = S3SigV4Auth(Credentials(access_key, secret_key), "s3", region)
        self._timeout = timeout

    def url(self, name: str) -> str:
        """The path-style URL of object ``name``, percent-encoded exactly once."""
        return f"{self._endpoint}/{self._bucket}/{quote(check_key(name), safe='/')}"

    def _object_url(self, obj: StoredObject) -> str:
        """The URL of ``obj`` on this endpoint, its name taken from the
        location URL's path (the endpoint may have been renamed since)."""
        if is_path_key(obj.key):
            return self.url(obj.key)
        located = StoredObject(obj.key, urlsplit(obj.location_url).path)
        return self.url(name_from_location(located, f"/{self._bucket}/"))

    def sign(
        self, method: str, url: str, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """``headers`` plus the SigV4 ``Authorization``, ``X-Amz-Date`` and
        ``X-Amz-Content-SHA256: UNSIGNED-PAYLOAD`` headers for this request."""
        request = AWSRequest(method=method, url=url, headers=dict(headers or {}))
        request.context["client_config"] = _UNSIGNED_PAYLOAD
        self._auth.add_auth(request)
        return {name: str(value) for name, value in request.headers.items()}

    async def _call(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        ok: tuple[int, ...] = (),
    ) -> Reply:
        """One signed exchange; non-2xx (other than ``ok``) → StoreError,
        404 NoSuchKey (or a HEAD's 404) → ObjectNotFound."""
        signed = self.sign(method, url, headers)
        reply = await http_exchange(
            self._client, self._clock, self._timeout, method, url, signed, data
        )
        if 200 <= reply.code < 300 or reply.code in ok:
            return reply
        code = _error_code(reply)
        message = f"S3 {method} {url}: HTTP {reply.code}" + (f" {code}" if code else "")
        if reply.code == 404 and code in ("", "NoSuchKey"):
            raise ObjectNotFound(message)
        raise StoreError(message)

    async def ensure_bucket(self) -> None:
        """Create the bucket unless it exists and is ours already."""
        url = f"{self._endpoint}/{self._bucket}"
        body = b""
        if self._region != "us-east-1":
            body = (
                '<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"<LocationConstraint>{self._region}</LocationConstraint>"
                "</CreateBucketConfiguration>"
            ).encode()
        reply = await self._call("PUT", url, data=body, ok=(409,))
        if reply.code == 409:
            if _error_code(reply) != "BucketAlreadyOwnedByYou":
                raise StoreError(
                    f"S3 PUT {url}: HTTP 409 {_error_code(reply)}{reply.excerpt()}"
                )
        else:
            log.info("created S3 bucket {bucket}", bucket=self._bucket)

    async def put(
        self,
        collection: str,
        path: str,
        data: bytes,
        md5: bytes,
        context: Mapping[str, str] | None = None,
    ) -> StoredObject:
        """PUT ``data`` at ``<collection>/<path>`` with its Content-MD5.

        The collection and context go along as ``x-amz-meta-*`` headers
        (values percent-encoded, so any text is safe in a header).
        """
        check_md5(md5)
        name = path_key(collection, path)
        url = self.url(name)
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-MD5": base64.b64encode(md5).decode("ascii"),
            "x-amz-meta-collection": quote(collection, safe=""),
        }
        for field, value in (context or {}).items():
            if _META_NAME.fullmatch(field.lower()) and field.lower() != "collection":
                headers[f"x-amz-meta-{field.lower()}"] = quote(value, safe="")
        await self._call("PUT", url, headers, data)
        return StoredObject(object_key(name), url)

    async def verify(self, obj: StoredObject, size: int, md5: bytes) -> None:
        """HEAD the object: Content-Length must be ``size`` and a single-part
        ETag (the hex MD5) must equal ``md5``."""
        check_md5(md5)
        url = self._object_url(obj)
        reply = await self._call("HEAD", url)
        length = reply.header("Content-Length")
        if length is None or not length.isdigit():
            raise StoreError(f"S3 HEAD {url}: no valid Content-Length ({length!r})")
        if int(length) != size:
            raise StoreError(f"S3 HEAD {url}: {length} bytes stored, expected {size}")
        etag = (reply.header("ETag") or "").removeprefix("W/").strip('"').lower()
        if _HEX_MD5.fullmatch(etag) and etag != md5.hex():
            raise StoreError(f"S3 HEAD {url}: ETag {etag}, expected MD5 {md5.hex()}")

    async def size(self, obj: StoredObject) -> int:
        """HEAD the object for its Content-Length."""
        url = self._object_url(obj)
        length = (await self._call("HEAD", url)).header("Content-Length")
        if length is None or not length.isdigit():
            raise StoreError(f"S3 HEAD {url}: no valid Content-Length")
        return int(length)

    async def get(self, obj: StoredObject) -> bytes:
        """GET the whole object."""
        return (await self._call("GET", self._object_url(obj))).body

    async def get_range(self, obj: StoredObject, start: int, end: int) -> bytes:
        """GET bytes ``start``..``end`` with a Range header (clipped; empty past the end)."""
        check_range(start, end)
        headers = {"Range": f"bytes={start}-{end}"}
        reply = await self._call("GET", self._object_url(obj), headers, ok=(416,))
        if reply.code == 416:  # InvalidRange: the range starts past the end
            return b""
        if reply.code == 206:
            return reply.body
        return reply.body[start : end + 1]

    async def delete(self, obj: StoredObject) -> None:
        """DELETE the object; S3 answers 204 whether or not it existed."""
        try:
            await self._call("DELETE", self._object_url(obj))
        except ObjectNotFound:
            pass

    async def health(self, collection: str) -> None:
        """Put the ping probe into ``collection`` and verify it."""
        obj = await self.put(collection, PING_PATH, PING_CONTENT, PING_MD5)
        await self.verify(obj, len(PING_CONTENT), PING_MD5)
