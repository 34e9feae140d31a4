"""Access control: tokens, the role table, the routes' answers, the OpenAPI
fragment and the TCP allow-list (no sockets)."""

from __future__ import annotations

import hmac
import ipaddress
import json
from pathlib import Path
from typing import Any, cast

import pytest

from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from imagecatcher.clients import ClientAllowList, parse_networks
from imagecatcher.metrics import Metrics
from imagecatcher.tcp import TileFactory
from imagecatcher.tokens import Role, TokenTable, bearer_token, parse_api_tokens
from imagecatcher.web.access import OPEN_ROUTES, ROUTE_ROLES, AccessPolicy
from imagecatcher.web.apidoc import build_document
from imagecatcher.web.apidoc.access import amend, protected_operations
from imagecatcher.web.app import CatcherAPI
from tests.storefakes import result_of
from tests.unit.test_http import FakeRepo, FakeStore
from tests.unit.test_http_capture import (
    NAME,
    form_post,
    make_daemon,
    raw_put,
)
from tests.unit.test_multipart import Field

WRITE = "w-3f9a1c7e5b2d4f60a8c1"
RENDER = "r-8e2b6d0f4a1c3e57b9d2"


def table() -> TokenTable:
    """One write and one render token."""
    return parse_api_tokens(
        [{"token": WRITE, "role": "write"}, {"token": RENDER, "role": "render"}]
    )


def bearer(token: str) -> bytes:
    """An Authorization header value."""
    return f"Bearer {token}".encode()


# -- tokens and the check ---------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (b"Bearer abc", b"abc"),
        (b"bearer   abc  ", b"abc"),
        (b"Basic abc", None),
        (b"Bearer", None),
        (b"Bearer ", None),
        (None, None),
    ],
)
def test_bearer_token_is_read_from_the_header(
    header: bytes | None, token: bytes | None
) -> None:
    """Only the Bearer scheme (any case) with a token gives one."""
    assert bearer_token(header) == token


def test_write_implies_render_and_not_the_reverse() -> None:
    """A write token may render; a render token may not write."""
    assert Role.WRITE.grants(Role.RENDER) and Role.WRITE.grants(Role.WRITE)
    assert Role.RENDER.grants(Role.RENDER) and not Role.RENDER.grants(Role.WRITE)


@pytest.mark.parametrize(
    ("endpoint", "header", "status"),
    [
        ("Capture.capture", None, 401),
        ("Capture.capture", bearer("n-" + WRITE), 401),
        ("Capture.capture", b"Basic " + WRITE.encode(), 401),
        ("Capture.capture", bearer(RENDER), 403),
        ("Capture.capture", bearer(WRITE), None),
        ("Calibrations.post_calibrations", bearer(RENDER), 403),
        ("Lifecycle.start_acquisition", bearer(WRITE), None),
        ("Render.next_tile", None, 401),
        ("Render.next_tile", bearer(RENDER), None),
        ("Render.tile_state", bearer(WRITE), None),
        ("Queries.tile_by_id", None, None),
        ("Operations.ping", None, None),
    ],
)
def test_policy_with_open_reads(
    endpoint: str, header: bytes | None, status: int | None
) -> None:
    """Routes with a role need a token that has it; reads are open."""
    refusal = AccessPolicy(table()).refusal(endpoint, header)
    assert (refusal.status if refusal else None) == status


@pytest.mark.parametrize(
    ("endpoint", "header", "status"),
    [
        ("Queries.tile_by_id", None, 401),
        ("Queries.tile_by_id", bearer("n-" + WRITE), 401),
        ("Queries.tile_by_id", bearer(RENDER), None),
        ("Content.tile_content", bearer(WRITE), None),
        ("Operations.ping", None, None),
        ("Capture.capture", bearer(RENDER), 403),
    ],
)
def test_policy_with_closed_reads(
    endpoint: str, header: bytes | None, status: int | None
) -> None:
    """With READ_REQUIRES_TOKEN any valid token reads; ping stays open."""
    refusal = AccessPolicy(table(), read_requires_token=True).refusal(endpoint, header)
    assert (refusal.status if refusal else None) == status


def test_every_token_is_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lookup compares the presented token with every configured one."""
    calls: list[bytes] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(a)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    assert table().role_of(WRITE.encode()) is Role.WRITE  # the first one matches
    assert calls == [WRITE.encode(), RENDER.encode()]


# -- the role table and the app ---------------------------------------------------------


def _endpoints(api: CatcherAPI) -> dict[str, set[str]]:
    app: Any = api._app
    found: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        found.setdefault(rule.endpoint, set()).update(rule.methods or ())
    return found


def test_role_table_names_mounted_routes() -> None:
    """Every endpoint of the role table (and the open ones) is a route of the app."""
    api = CatcherAPI(FakeRepo(), FakeStore(), Clock())  # type: ignore[arg-type]
    endpoints = _endpoints(api)
    assert set(ROUTE_ROLES) | OPEN_ROUTES <= set(endpoints)


def test_every_route_that_changes_things_needs_a_role() -> None:
    """Each POST, PUT or DELETE route of the app is in the role table."""
    api = CatcherAPI(FakeRepo(), FakeStore(), Clock())  # type: ignore[arg-type]
    changing = {
        name
        for name, methods in _endpoints(api).items()
        if methods & {"POST", "PUT", "DELETE", "PATCH"}
    }
    assert changing == set(ROUTE_ROLES)


def _api(read_requires_token: bool = False) -> HTTPClient:
    api = CatcherAPI(
        FakeRepo(),  # type: ignore[arg-type]
        FakeStore(),  # type: ignore[arg-type]
        Clock(),
        access=AccessPolicy(table(), read_requires_token),
    )
    return cast(HTTPClient, StubTreq(api.resource()))


def _call(
    client: HTTPClient, method: str, path: str, token: str | None = None
) -> tuple[int, Any, bytes]:
    headers: dict[bytes | str, bytes | str] = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    response = result_of(
        client.request(method, f"http://x/service/v1{path}", headers=headers, data=b"")
    )
    return response.code, response.headers, result_of(response.content())


def test_missing_token_is_401_with_the_challenge() -> None:
    """A route with a role, without a token: JSON 401 and WWW-Authenticate."""
    status, headers, body = _call(_api(), "PUT", "/tile-state")
    assert status == 401
    assert headers.getRawHeaders(b"www-authenticate") == [
        b'Bearer realm="imagecatcher"'
    ]
    assert headers.getRawHeaders(b"content-type") == [b"application/json"]
    assert "Bearer" in json.loads(body)["errormessage"]


def test_unknown_token_is_401_and_never_echoed() -> None:
    """A token that is not configured: 401; neither the body nor the log shows it."""
    presented = "u-77aa88bb99cc00dd11ee"
    with capturedLogs() as events:
        status, headers, body = _call(_api(), "POST", "/next-tile", presented)
    assert status == 401 and json.loads(body) == {"errormessage": "Unknown token"}
    assert headers.getRawHeaders(b"www-authenticate") == [
        b'Bearer realm="imagecatcher", error="invalid_token"'
    ]
    assert presented not in repr(events)


def test_token_without_the_role_is_403() -> None:
    """A render token on the calibration import: 403, no challenge."""
    status, headers, body = _call(_api(), "POST", "/calibrations", RENDER)
    assert status == 403 and not headers.hasHeader(b"www-authenticate")
    assert json.loads(body) == {"errormessage": "This token lacks the write role"}


def test_allowed_token_reaches_the_route() -> None:
    """A write token passes: the route itself answers (here: 400, an empty body)."""
    status, _, body = _call(_api(), "POST", "/calibrations", WRITE)
    assert status == 400, body


def test_reads_open_or_closed() -> None:
    """A read needs no token unless READ_REQUIRES_TOKEN; then any valid one."""
    assert _call(_api(), "GET", "/tile/abc")[0] == 400
    closed = _api(read_requires_token=True)
    assert _call(closed, "GET", "/tile/abc")[0] == 401
    assert _call(closed, "GET", "/tile/abc", RENDER)[0] == 400
    assert _call(closed, "GET", "/ping")[0] == 200


def test_metrics_are_a_read() -> None:
    """/metrics is open by default and needs a token with READ_REQUIRES_TOKEN."""

    def scrape(read_requires_token: bool, token: str | None = None) -> int:
        api = CatcherAPI(
            FakeRepo(),  # type: ignore[arg-type]
            FakeStore(),  # type: ignore[arg-type]
            Clock(),
            access=AccessPolicy(table(), read_requires_token),
            metrics=Metrics(),
        )
        client = cast(HTTPClient, StubTreq(api.resource()))
        headers: dict[bytes | str, bytes | str] = (
            {"Authorization": f"Bearer {token}"} if token else {}
        )
        response = result_of(client.get("http://x/metrics", headers=headers))
        result_of(response.content())
        return int(response.code)

    assert scrape(False) == 200
    assert scrape(True) == 401
    assert scrape(True, RENDER) == 200


def test_unknown_paths_stay_404() -> None:
    """Access control does not turn an unknown path into a 401."""
    assert _call(_api(read_requires_token=True), "GET", "/no-such-thing")[0] == 404


# -- refused before the body streams ----------------------------------------------------


@pytest.mark.parametrize("multipart", [False, True])
def test_refused_upload_never_opens_a_sink(tmp_path: Path, multipart: bool) -> None:
    """Without a token a capture body goes nowhere: nothing written even mid-body."""
    daemon = make_daemon(tmp_path, access=AccessPolicy(table()))
    data = b"\x49\x49\x2a\x00" * 200_000
    raw = form_post([Field("tile-file", data, NAME)]) if multipart else raw_put(data)
    protocol, transport = daemon.connect()
    protocol.dataReceived(raw[: len(raw) // 2])
    assert daemon.leftovers() == [] and transport.value() == b""
    protocol.dataReceived(raw[len(raw) // 2 :])
    answer = parse_answer(transport.value())
    assert answer[0] == 401 and answer[1]["connection"] == "close"
    assert daemon.tiles() == 0 and daemon.leftovers() == []
    assert not (tmp_path / "objects").exists() or not any(
        p.is_file() for p in (tmp_path / "objects").rglob("*")
    )


def test_waiting_client_is_refused_at_its_headers(tmp_path: Path) -> None:
    """A client sending Expect: 100-continue gets the 401 at once, no 100 Continue."""
    daemon = make_daemon(tmp_path, access=AccessPolicy(table()))
    raw = raw_put(b"x" * 100_000, NAME, ("Expect", "100-continue"))
    head = raw[: raw.index(b"\r\n\r\n") + 4]
    protocol, transport = daemon.connect()
    protocol.dataReceived(head)
    assert b"100 Continue" not in transport.value()
    status, headers, body = parse_answer(transport.value())
    assert status == 401 and headers["connection"] == "close"
    assert "errormessage" in json.loads(body)
    assert transport.disconnecting and daemon.leftovers() == []


def test_wrong_role_upload_is_403_and_right_one_is_stored(tmp_path: Path) -> None:
    """A render token's tile is refused with 403; a write token's is stored."""
    daemon = make_daemon(tmp_path, access=AccessPolicy(table()))
    data = b"\x49\x49\x2a\x00" * 5000
    refused = daemon.send(raw_put(data, NAME, ("Authorization", f"Bearer {RENDER}")))
    assert refused.status == 403 and daemon.tiles() == 0
    assert daemon.leftovers() == []
    stored = daemon.send(raw_put(data, NAME, ("Authorization", f"Bearer {WRITE}")))
    assert stored.status == 200, stored.body
    assert daemon.stored() == data and daemon.tiles() == 1


def test_no_access_control_keeps_capture_open(tmp_path: Path) -> None:
    """Without API_TOKENS a capture without a header is stored, as before."""
    daemon = make_daemon(tmp_path)
    answer = daemon.send(raw_put(b"tile" * 1000))
    assert answer.status == 200 and daemon.tiles() == 1


def parse_answer(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, lower-case headers and body of one response."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no response: {raw!r}"
    lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:])
    }
    return int(lines[0].split()[1]), headers, body


# -- the OpenAPI fragment ---------------------------------------------------------------


def _operation() -> dict[str, Any]:
    return {"summary": "x", "responses": {"200": {"description": "ok"}}}


def test_amend_marks_exactly_the_operations_with_a_role() -> None:
    """security, 401 and 403 go to the role table's operations, not to reads."""
    protected = list(protected_operations())
    document: dict[str, Any] = {"paths": {}}
    for path, method, _ in protected:
        document["paths"].setdefault(path, {})[method] = _operation()
    document["paths"]["/service/v1/calibrations"]["get"] = _operation()
    document["paths"]["/service/v1/tile/{tileid}"] = {"get": _operation()}
    amend(document)
    for path, method, role in protected:
        operation = document["paths"][path][method]
        assert operation["security"] == [{"bearer": []}, {}]
        assert {"200", "401", "403"} <= set(operation["responses"])
        assert role.value in operation["description"]
    for path, method in (
        ("/service/v1/calibrations", "get"),
        ("/service/v1/tile/{tileid}", "get"),
    ):
        assert document["paths"][path][method] == _operation()


def test_protected_operations_follow_the_routers() -> None:
    """The paths come from the routes: templates in braces, one per method."""
    found = {(path, method): role for path, method, role in protected_operations()}
    assert found[("/service/v1/capture-image-content/{acqid}", "put")] is Role.WRITE
    assert found[("/service/v1/capture-image-content/{acqid}", "post")] is Role.WRITE
    assert found[("/service/v1/tile-state", "put")] is Role.RENDER
    assert found[("/service/v1/end-acquisition/{acqid}", "post")] is Role.WRITE
    assert len(found) == len(ROUTE_ROLES) + 1  # capture takes PUT and POST


def test_amend_tolerates_operations_not_described() -> None:
    """A document without those paths (the core fragments not in yet) is left alone."""
    document: dict[str, Any] = {"paths": {"/service/v1/next-tile": {}}}
    amend(document)
    assert document == {"paths": {"/service/v1/next-tile": {}}}
    built = build_document()
    assert built["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "Error" in built["components"]["schemas"]


# -- the TCP allow-list -------------------------------------------------------------


def _allow(*networks: str) -> ClientAllowList:
    return ClientAllowList(parse_networks(networks), "TCP_ALLOWED_CLIENTS")


@pytest.mark.parametrize(
    ("networks", "peer", "admitted"),
    [
        ((), IPv4Address("TCP", "203.0.113.9", 4000), True),
        (("10.0.0.0/8",), IPv4Address("TCP", "10.20.30.40", 4000), True),
        (("10.0.0.0/8",), IPv4Address("TCP", "127.0.0.1", 4000), False),
        (("10.0.0.0/8",), IPv6Address("TCP", "::ffff:10.1.2.3", 4000), True),
        (("10.0.0.0/8",), IPv6Address("TCP", "::1", 4000), False),
        (("fd00::/8",), IPv6Address("TCP", "fd12::5", 4000), True),
        (("fd00::/8",), IPv6Address("TCP", "fe80::1%eth0", 4000), False),
        (("127.0.0.0/8", "::1"), IPv6Address("TCP", "::1", 4000), True),
        (("127.0.0.0/8",), UNIXAddress(b"/run/x.sock"), False),
    ],
)
def test_allow_list(networks: tuple[str, ...], peer: Any, admitted: bool) -> None:
    """Peers inside a listed network (IPv4, IPv6, IPv4-mapped) are admitted."""
    assert _allow(*networks).admit(peer) is admitted


def test_refused_peers_are_closed_counted_and_logged() -> None:
    """The factory builds no protocol for a peer outside the list; it counts it."""
    factory = TileFactory(
        handler=None,  # type: ignore[arg-type]
        allowed_clients=(ipaddress.ip_network("10.0.0.0/8"),),
    )
    with capturedLogs() as events:
        assert factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5)) is None
        assert factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 6)) is None
    assert factory.refused_clients == 2 and factory.open_connections == 0
    assert factory.refused == 0  # the connection limit did not refuse them
    assert [e["peer"] for e in events if "TCP_ALLOWED_CLIENTS" in repr(e)] == [
        "127.0.0.1",
        "127.0.0.1",
    ]
    assert factory.buildProtocol(IPv4Address("TCP", "10.9.8.7", 5)) is not None
    assert factory.open_connections == 1 and factory.refused_clients == 2
