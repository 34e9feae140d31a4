"""S3Store without a network: SigV4 headers, URL quoting and status mapping."""

from __future__ import annotations

import base64
import hashlib
import re

import attrs
import pytest

from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.server import Request

from imagecatcher.storage import ObjectNotFound, StoredObject, StoreError
from imagecatcher.storage.keys import object_key
from imagecatcher.storage.s3 import S3Store
from tests.storefakes import run, stub_client

ENDPOINT = "http://s3.test:8333"


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data).digest()


@attrs.define
class Seen:
    """One request the scripted server received."""

    method: str
    path: str
    headers: dict[bytes, bytes]
    body: bytes


class ScriptedS3(Resource):
    """Answers every request with the next scripted (status, headers, body)."""

    isLeaf = True  # noqa: N815 - Twisted's name

    def __init__(self, *answers: tuple[int, dict[bytes, bytes], bytes]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.seen: list[Seen] = []

    def render(self, request: Request) -> bytes:
        """Record the request, then play the next answer."""
        self.seen.append(
            Seen(
                request.method.decode(),
                request.uri.decode(),
                {k.lower(): v[0] for k, v in request.requestHeaders.getAllRawHeaders()},
                request.content.read() if request.content is not None else b"",
            )
        )
        status, headers, body = self.answers.pop(0) if self.answers else (200, {}, b"")
        request.setResponseCode(status)
        for name, value in headers.items():
            request.setHeader(name, value)
        return body


def _store(server: ScriptedS3, region: str = "eu-west-1") -> S3Store:
    return S3Store(
        stub_client(server), Clock(), "tiles", ENDPOINT, "AKID", "SECRET", region
    )


def _error(code: str) -> bytes:
    return f"<Error><Code>{code}</Code><Message>m</Message></Error>".encode()


def test_signature_scope_and_unsigned_payload() -> None:
    """Signing adds an AWS4 Authorization for region/s3/aws4_request and
    declares UNSIGNED-PAYLOAD."""
    store = _store(ScriptedS3())
    url = store.url("FAFB/acquisitions/0/jfs ping")
    headers = store.sign("PUT", url, {"Content-MD5": "abc="})
    authorization = headers["Authorization"]
    assert re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=AKID/\d{8}/eu-west-1/s3/aws4_request, "
        r"SignedHeaders=([a-z0-9;-]+), Signature=[0-9a-f]{64}",
        authorization,
    )
    signed = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"host", "content-md5", "x-amz-date", "x-amz-content-sha256"} <= set(signed)
    assert headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"


def test_url_quotes_the_key_once() -> None:
    """Keys are percent-encoded (slashes kept) in the path-style URL."""
    store = _store(ScriptedS3())
    assert store.url("FAFB/acquisitions/0/jfs ping") == (
        f"{ENDPOINT}/tiles/FAFB/acquisitions/0/jfs%20ping"
    )
    assert store.url("C/a+b=c&d%e~f") == f"{ENDPOINT}/tiles/C/a%2Bb%3Dc%26d%25e~f"
    assert store.url("C/ü") == f"{ENDPOINT}/tiles/C/%C3%BC"


def test_put_request() -> None:
    """A put is one signed PUT of the body with Content-MD5 and metadata."""
    server = ScriptedS3((200, {b"etag": b'"x"'}, b""))
    store = _store(server)
    data = b"tile"
    obj = run(
        store.put(
            "FAFB", "/acquisitions/0/jfs ping", data, _md5(data), {"sample": "a b"}
        )
    )
    assert obj.key == object_key("FAFB/acquisitions/0/jfs ping")
    assert obj.location_url == f"{ENDPOINT}/tiles/FAFB/acquisitions/0/jfs%20ping"
    [seen] = server.seen
    assert (seen.method, seen.path, seen.body) == (
        "PUT",
        "/tiles/FAFB/acquisitions/0/jfs%20ping",
        data,
    )
    assert seen.headers[b"content-md5"] == base64.b64encode(_md5(data))
    assert seen.headers[b"x-amz-content-sha256"] == b"UNSIGNED-PAYLOAD"
    assert seen.headers[b"authorization"].startswith(b"AWS4-HMAC-SHA256 ")
    assert seen.headers[b"x-amz-meta-sample"] == b"a%20b"
    assert seen.headers[b"x-amz-meta-collection"] == b"FAFB"


def test_status_mapping() -> None:
    """NoSuchKey is ObjectNotFound, NoSuchBucket and 5xx are StoreError."""
    server = ScriptedS3(
        (404, {}, _error("NoSuchKey")),
        (404, {}, _error("NoSuchBucket")),
        (503, {}, _error("SlowDown")),
        (404, {}, b""),
    )
    store = _store(server)
    obj = StoredObject("C/a", "")
    with pytest.raises(ObjectNotFound):
        run(store.get(obj))
    for expected in ("NoSuchBucket", "SlowDown"):
        with pytest.raises(StoreError, match=expected) as excinfo:
            run(store.get(obj))
        assert not isinstance(excinfo.value, ObjectNotFound)
    with pytest.raises(ObjectNotFound, match="HEAD"):
        run(store.verify(obj, 1, _md5(b"x")))


def test_verify_compares_length_and_etag() -> None:
    """Verify needs the right Content-Length and a matching single-part ETag."""
    etag = b'"%s"' % hashlib.md5(b"abc").hexdigest().encode()
    server = ScriptedS3(
        (200, {b"content-length": b"3", b"etag": etag}, b""),
        (200, {b"content-length": b"3", b"etag": etag}, b""),
        (200, {b"content-length": b"3", b"etag": b'"0123-2"'}, b""),
    )
    store = _store(server)
    obj = StoredObject("C/a", "")
    run(store.verify(obj, 3, _md5(b"abc")))
    with pytest.raises(StoreError, match="ETag"):
        run(store.verify(obj, 3, _md5(b"abd")))
    run(store.verify(obj, 3, _md5(b"abd")))  # multipart ETag: not an MD5
    assert [s.method for s in server.seen] == ["HEAD"] * 3


def test_range_past_the_end_is_empty() -> None:
    """A 416 InvalidRange answer means the range starts past the end."""
    store = _store(ScriptedS3((416, {}, _error("InvalidRange"))))
    assert run(store.get_range(StoredObject("C/a", ""), 10, 20)) == b""


def test_ensure_bucket() -> None:
    """ensure_bucket creates the bucket, accepts one we own, refuses a foreign one."""
    server = ScriptedS3(
        (200, {}, b""),
        (409, {}, _error("BucketAlreadyOwnedByYou")),
        (409, {}, _error("BucketAlreadyExists")),
    )
    store = _store(server)
    run(store.ensure_bucket())
    run(store.ensure_bucket())
    with pytest.raises(StoreError, match="BucketAlreadyExists"):
        run(store.ensure_bucket())
    assert server.seen[0].path == "/tiles"
    assert b"<LocationConstraint>eu-west-1</LocationConstraint>" in server.seen[0].body


def test_ensure_bucket_us_east_1_sends_no_body() -> None:
    """In us-east-1 the bucket PUT has no location constraint."""
    server = ScriptedS3((200, {}, b""))
    run(_store(server, region="us-east-1").ensure_bucket())
    assert server.seen[0].body == b""


def test_unsafe_keys_are_refused() -> None:
    """Keys that could address another object never reach the server."""
    server = ScriptedS3()
    store = _store(server)
    with pytest.raises(StoreError):
        run(store.put("C", "/a/../../b", b"x", _md5(b"x")))
    with pytest.raises(StoreError):
        run(store.get(StoredObject("../tiles2/a", "")))
    assert server.seen == []


@pytest.mark.parametrize(
    ("bucket", "endpoint", "key"),
    [
        ("Tiles", ENDPOINT, "AK"),
        ("ab", ENDPOINT, "AK"),
        ("tiles", "ftp://s3.test", "AK"),
        ("tiles", "http://s3.test/prefix", "AK"),
        ("tiles", ENDPOINT, ""),
    ],
)
def test_bad_settings(bucket: str, endpoint: str, key: str) -> None:
    """Invalid bucket names, endpoints or missing credentials are refused."""
    with pytest.raises(StoreError):
        S3Store(
            stub_client(ScriptedS3()), Clock(), bucket, endpoint, key, "S", "us-east-1"
        )
