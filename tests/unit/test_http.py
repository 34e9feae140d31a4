"""Ping and error routes through Klein with fakes (no sockets)."""

from __future__ import annotations

from typing import Any, cast

from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from imagecatcher.domain import QueueColour, QueueStatus
from imagecatcher.storage import StoreError
from imagecatcher.web.app import CatcherAPI


class FakeRepo:
    """Answers probe() with a fixed outcome."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    async def probe(self) -> bool:
        if self.error:
            raise self.error
        return True


class FakeStore:
    """A store whose health check succeeds, fails or never finishes."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode

    async def health(self, collection: str) -> None:
        if self.mode == "fail":
            raise StoreError("disk on fire")
        if self.mode == "hang":
            await Deferred()


def stub_client(api: CatcherAPI) -> HTTPClient:
    """StubTreq has the HTTPClient methods, made dynamically (twisted/treq#243)."""
    return cast(HTTPClient, StubTreq(api.resource()))


def _result(d: Deferred[Any]) -> Any:
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "deferred did not fire"
    return results[0]


def _get(api: CatcherAPI, path: str, clock: Clock | None = None) -> tuple[Any, bytes]:
    client = stub_client(api)
    d = client.get(f"http://x{path}")
    if clock is not None:
        clock.advance(2)
        cast(StubTreq, client).flush()
    response = _result(d)
    body = _result(response.content())
    return response, body


def test_ping_ok_sends_aliases() -> None:
    """A healthy ping is 200 with the hyphenated queue headers."""
    status = QueueStatus(tile=QueueColour.YELLOW)
    api = CatcherAPI(FakeRepo(), FakeStore(), Clock(), lambda: status)  # type: ignore[arg-type]
    response, body = _get(api, "/service/v1/ping")
    assert response.code == 200 and body == b""
    headers = response.headers
    assert headers.getRawHeaders(b"System-Status") == [b"YELLOW"]
    assert headers.getRawHeaders(b"Tile-Queue-Status") == [b"YELLOW"]
    assert headers.getRawHeaders(b"Content-Queue-Status") == [b"GREEN"]


def test_ping_database_failure_is_500_text() -> None:
    """A failing database probe is a plain-text 500 without queue headers."""
    api = CatcherAPI(FakeRepo(RuntimeError("gone")), FakeStore(), Clock())  # type: ignore[arg-type]
    response, body = _get(api, "/service/v1/ping")
    assert response.code == 500 and body == b"Database check failed: gone\n"
    assert response.headers.getRawHeaders(b"System-Status") is None


def test_ping_store_failure_is_500() -> None:
    """A failing store probe is a 500 naming the store error."""
    api = CatcherAPI(FakeRepo(), FakeStore("fail"), Clock())  # type: ignore[arg-type]
    response, body = _get(api, "/service/v1/ping")
    assert response.code == 500 and b"disk on fire" in body


def test_ping_store_timeout_is_500() -> None:
    """A store probe slower than 1.5 s fails ping with the old timeout message."""
    clock = Clock()
    api = CatcherAPI(FakeRepo(), FakeStore("hang"), clock)  # type: ignore[arg-type]
    response, body = _get(api, "/service/v1/ping", clock)
    assert response.code == 500 and body == b"JFS/Scality write timeout\n"


def test_wrong_method_is_405() -> None:
    """POST to ping is 405."""
    api = CatcherAPI(FakeRepo(), FakeStore(), Clock())  # type: ignore[arg-type]
    response = _result(stub_client(api).post("http://x/service/v1/ping"))
    assert response.code == 405


def test_wrong_method_names_the_allowed_ones() -> None:
    """A 405 carries Allow with the route's methods (RFC 9110; found by fuzzing)."""
    api = CatcherAPI(FakeRepo(), FakeStore(), Clock())  # type: ignore[arg-type]
    response = _result(
        stub_client(api).request("TRACE", "http://x/service/v1/capture-image-content/1")
    )
    assert response.code == 405
    assert response.headers.getRawHeaders(b"allow") == [b"POST, PUT"]
    response = _result(stub_client(api).delete("http://x/service/v1/ping"))
    assert response.headers.getRawHeaders(b"allow") == [b"GET, HEAD"]
