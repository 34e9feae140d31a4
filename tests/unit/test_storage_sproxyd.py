"""SproxydStore over StubTreq and FakeSproxyd: requests, errors, deadlines, URLs."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest

from treq.testing import StubTreq
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock

from imagecatcher.storage import (
    PING_PATH,
    ObjectNotFound,
    StoredObject,
    StoreError,
)
from imagecatcher.storage.sproxyd import (
    SproxydStore,
    apply_rings_mapping,
    new_key,
    parse_sproxyd_url,
    replace_localhost,
)
from tests.storefakes import FakeSproxyd, result_of, run, stub_client

BASE = "http://localhost:81/proxy/bparc"


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data).digest()


def _store(
    fake: FakeSproxyd,
    clock: Clock | None = None,
    base: str = BASE,
    rings: dict[str, str] | None = None,
    scality_host: str = "",
) -> SproxydStore:
    return SproxydStore(
        stub_client(fake), clock or Clock(), base, rings or {}, scality_host, 30.0
    )


@pytest.fixture
def fake() -> FakeSproxyd:
    """A fake connector serving the ``bparc`` driver."""
    return FakeSproxyd(["bparc"])


def test_put_request(fake: FakeSproxyd) -> None:
    """A put is one PUT to a fresh 40-hex key with Content-MD5, length and usermd."""
    store = _store(fake)
    data = b"tile bytes"
    obj = run(
        store.put("FAFB", "/acquisitions/1/a.tif", data, _md5(data), {"sample": "S1"})
    )
    assert re.fullmatch(r"[0-9A-F]{38}20", obj.key)
    method, path, headers = fake.requests[-1]
    assert (method, path) == ("PUT", f"/proxy/bparc/{obj.key}")
    assert headers[b"content-md5"] == [base64.b64encode(_md5(data))]
    assert headers[b"content-length"] == [b"%d" % len(data)]
    usermd = json.loads(base64.b64decode(headers[b"x-scal-usermd"][0]))
    assert usermd == {
        "collection": "FAFB",
        "path": "/acquisitions/1/a.tif",
        "context": {"sample": "S1"},
    }
    assert fake.objects[("bparc", obj.key)].data == data
    assert obj.location_url == f"{BASE}/{obj.key}"


def test_keys_are_fresh() -> None:
    """Every generated key is new, 40 upper-case hex digits."""
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(re.fullmatch(r"[0-9A-F]{40}", k) for k in keys)


def test_round_trip_and_range(fake: FakeSproxyd) -> None:
    """get returns the bytes; get_range asks for a Range and gets a 206."""
    store = _store(fake)
    obj = run(store.put("C", "/a", b"0123456789", _md5(b"0123456789")))
    assert run(store.get(obj)) == b"0123456789"
    assert run(store.get_range(obj, 3, 5)) == b"345"
    assert fake.requests[-1][2][b"range"] == [b"bytes=3-5"]
    assert run(store.get_range(obj, 8, 50)) == b"89"
    assert run(store.get_range(obj, 10, 50)) == b""


@pytest.mark.parametrize("status", [500, 503, 403, 302, 423])
def test_non_2xx_is_store_error(fake: FakeSproxyd, status: int) -> None:
    """Any non-2xx answer raises StoreError naming method, URL and status."""
    store = _store(fake)
    fake.fail_next(1, status)
    with pytest.raises(StoreError) as excinfo:
        run(store.put("C", "/a", b"x", _md5(b"x")))
    message = str(excinfo.value)
    assert not isinstance(excinfo.value, ObjectNotFound)
    assert "PUT" in message and f"HTTP {status}" in message
    assert re.search(rf"{BASE}/[0-9A-F]{{40}}", message)
    assert fake.objects == {}


def test_404_is_object_not_found(fake: FakeSproxyd) -> None:
    """A missing key is ObjectNotFound for GET and HEAD; DELETE ignores it."""
    store = _store(fake)
    missing = StoredObject(new_key(), "")
    with pytest.raises(ObjectNotFound, match=r"GET .* HTTP 404"):
        run(store.get(missing))
    with pytest.raises(ObjectNotFound, match=r"HEAD .* HTTP 404"):
        run(store.verify(missing, 1, _md5(b"x")))
    run(store.delete(missing))


def test_unknown_driver_put_is_store_error() -> None:
    """A PUT answered 404 (unknown driver) is a plain StoreError, not ObjectNotFound."""
    store = _store(FakeSproxyd(["other"]))
    with pytest.raises(StoreError) as excinfo:
        run(store.put("C", "/a", b"x", _md5(b"x")))
    assert not isinstance(excinfo.value, ObjectNotFound)


def test_malformed_key_is_refused_locally(fake: FakeSproxyd) -> None:
    """A stored key that is not 40 hex digits never reaches the connector."""
    store = _store(fake)
    with pytest.raises(StoreError, match="invalid sproxyd key"):
        run(store.get(StoredObject("../../etc/passwd", "")))
    assert fake.requests == []


def test_wrong_md5_is_refused_by_the_connector(fake: FakeSproxyd) -> None:
    """The Content-MD5 lets the connector refuse a corrupted body (400)."""
    store = _store(fake)
    with pytest.raises(StoreError, match="HTTP 400"):
        run(store.put("C", "/a", b"data", _md5(b"other")))
    assert fake.objects == {}


def test_verify_size_and_etag() -> None:
    """Verify checks Content-Length, and a reported ETag against the MD5."""
    fake = FakeSproxyd(["bparc"], etags=True)
    store = _store(fake)
    obj = run(store.put("C", "/a", b"abc", _md5(b"abc")))
    run(store.verify(obj, 3, _md5(b"abc")))
    with pytest.raises(StoreError, match="3 bytes stored, expected 4"):
        run(store.verify(obj, 4, _md5(b"abc")))
    with pytest.raises(StoreError, match="MD5"):
        run(store.verify(obj, 3, _md5(b"abd")))
    assert [m for m, _, _ in fake.requests[1:]] == ["HEAD"] * 3


def test_deadline_on_the_clock() -> None:
    """An answer slower than the timeout raises StoreError when the clock passes it."""
    clock = Clock()
    fake = FakeSproxyd(["bparc"], clock=clock)
    client = StubTreq(fake)
    store = SproxydStore(client, clock, BASE, {}, "", timeout=30.0)  # type: ignore[arg-type]
    obj = run(store.put("C", "/a", b"x", _md5(b"x")))
    fake.latency = 60.0
    d = Deferred.fromCoroutine(store.get(obj))
    clock.advance(29)
    client.flush()
    assert not d.called
    clock.advance(1)
    client.flush()
    with pytest.raises(StoreError, match=r"GET .* no answer within 30 s"):
        result_of(d)
    clock.advance(60)  # the fake's late answer goes nowhere
    client.flush()
    assert clock.getDelayedCalls() == []


def test_cancellation_by_the_caller_propagates() -> None:
    """A caller cancelling a slow call gets CancelledError, not a StoreError."""
    clock = Clock()
    fake = FakeSproxyd(["bparc"], clock=clock)
    client = StubTreq(fake)
    store = SproxydStore(client, clock, BASE, {}, "", timeout=30.0)  # type: ignore[arg-type]
    obj = run(store.put("C", "/a", b"x", _md5(b"x")))
    fake.latency = 10.0
    d = Deferred.fromCoroutine(store.get(obj))
    d.cancel()
    client.flush()
    with pytest.raises(CancelledError):
        result_of(d)
    client.flush()
    assert clock.getDelayedCalls() == []


def test_answer_within_the_deadline() -> None:
    """A slow answer inside the timeout is delivered normally."""
    clock = Clock()
    fake = FakeSproxyd(["bparc"], clock=clock)
    client = StubTreq(fake)
    store = SproxydStore(client, clock, BASE, {}, "", timeout=30.0)  # type: ignore[arg-type]
    obj = run(store.put("C", "/a", b"x", _md5(b"x")))
    fake.latency = 10.0
    d = Deferred.fromCoroutine(store.get(obj))
    clock.advance(10)
    client.flush()
    assert result_of(d) == b"x"
    assert clock.getDelayedCalls() == []


def test_health_cleans_up(fake: FakeSproxyd) -> None:
    """health puts the ping probe, HEADs it and deletes it again."""
    store = _store(fake)
    run(store.health("FAFB"))
    assert [m for m, _, _ in fake.requests] == ["PUT", "HEAD", "DELETE"]
    usermd = json.loads(base64.b64decode(fake.requests[0][2][b"x-scal-usermd"][0]))
    assert usermd["path"] == PING_PATH
    assert fake.objects == {}


def test_health_fails_when_put_fails(fake: FakeSproxyd) -> None:
    """A failing connector makes health raise StoreError."""
    fake.fail_next(1, 500)
    with pytest.raises(StoreError):
        run(_store(fake).health("FAFB"))


def test_health_survives_a_failed_cleanup(fake: FakeSproxyd) -> None:
    """A probe that cannot be deleted does not make the store unhealthy."""
    fake.fail_next(1, 500, method="DELETE")
    run(_store(fake).health("C"))
    assert [m for m, _, _ in fake.requests] == ["PUT", "HEAD", "DELETE"]
    assert len(fake.objects) == 1


def test_parse_sproxyd_url() -> None:
    """sproxyd:// URLs become http:// base URLs; malformed ones are refused."""
    assert (
        parse_sproxyd_url("sproxyd://sc1-jrc:81/proxy/bparc")
        == "http://sc1-jrc:81/proxy/bparc"
    )
    assert parse_sproxyd_url("sproxyd://h/proxy/bparc/") == "http://h/proxy/bparc"
    for bad in (
        "http://h:81/proxy/bparc",
        "sproxyd://h:81/bparc",
        "sproxyd://h:81/proxy/",
        "sproxyd://h:81/proxy/a/b",
        "sproxyd://:81/proxy/bparc",
        "sproxyd://h:port/proxy/bparc",
        "sproxyd://h:81/proxy/bparc?x=1",
        "sproxyd://u@h:81/proxy/bparc",
    ):
        with pytest.raises(StoreError, match="sproxyd URL"):
            parse_sproxyd_url(bad)


def test_rings_mapping_rules() -> None:
    """A ring-name host is replaced by its mapped host (and port, if it has one)."""
    rings = {
        "replicated": "sc1-jrc",
        "immutable": "sc2:8081",
        "v6": "[::1]",
        "b6": "::1",
    }
    assert apply_rings_mapping("http://replicated:81/proxy/d", rings) == (
        "http://sc1-jrc:81/proxy/d"
    )
    assert apply_rings_mapping("http://immutable:81/proxy/d", rings) == (
        "http://sc2:8081/proxy/d"
    )
    assert (
        apply_rings_mapping("http://v6:81/proxy/d", rings) == "http://[::1]:81/proxy/d"
    )
    assert apply_rings_mapping("http://REPLICATED/proxy/d", rings) == (
        "http://sc1-jrc/proxy/d"
    )
    assert apply_rings_mapping("http://other:81/proxy/d", rings) == (
        "http://other:81/proxy/d"
    )
    with pytest.raises(StoreError, match="empty host"):
        apply_rings_mapping("http://nonreplicated:81/proxy/d", {"nonreplicated": ""})


def test_store_connects_to_the_mapped_host(fake: FakeSproxyd) -> None:
    """Requests go to the mapped host; the location URL reports SCALITY_HOST."""
    store = _store(
        fake,
        base="sproxyd://replicated:81/proxy/bparc",
        rings={"replicated": "localhost"},
        scality_host="sc1-jrc",
    )
    assert store.base_url == "http://localhost:81/proxy/bparc"
    obj = run(store.put("C", "/a", b"x", _md5(b"x")))
    assert fake.requests[-1][2][b"host"] == [b"localhost:81"]
    assert obj.location_url == f"http://sc1-jrc:81/proxy/bparc/{obj.key}"


@pytest.mark.parametrize(
    ("scality_host", "expected"),
    [
        ("sc1-jrc", "http://sc1-jrc:81/proxy/localhost/K"),
        ("localhost", "http://localhost:81/proxy/localhost/K"),
        ("", "http://localhost:81/proxy/localhost/K"),
    ],
)
def test_scality_host_replaces_the_first_localhost(
    scality_host: str, expected: str
) -> None:
    """Only the first ``localhost`` is replaced; an empty SCALITY_HOST replaces none."""
    assert replace_localhost("http://localhost:81/proxy/localhost/K", scality_host) == (
        expected
    )


def test_scality_host_without_localhost(fake: FakeSproxyd) -> None:
    """A base URL without ``localhost`` is reported unchanged."""
    store = _store(fake, base="http://sc9:81/proxy/bparc", scality_host="sc1-jrc")
    obj = run(store.put("C", "/a", b"x", _md5(b"x")))
    assert obj.location_url == f"http://sc9:81/proxy/bparc/{obj.key}"
