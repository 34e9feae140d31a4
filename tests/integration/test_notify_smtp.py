"""The notifier's real SMTP path against an in-process twisted.mail server (§11)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import attrs
import pytest_twisted
from zope.interface import implementer

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IAddress, IListeningPort, ITCPTransport
from twisted.logger import LogEvent, LogLevel, capturedLogs
from twisted.mail import smtp
from twisted.mail.imap4 import PLAINCredentials
from twisted.mail.interfaces import IMessageDelivery, IMessageSMTP

from imagecatcher.notify import MailSettings, Notifier
from tests.conftest import free_port

SUBJECT = "Message from Image Catcher running at capture01 (tcp6:5001, tcp6:5002)"
RECIPIENTS = ("ops@example.org", "lab@example.org")
WAIT = 10.0  # seconds a test waits for mail before failing


@attrs.frozen
class Delivered:
    """One message as the server received it for one recipient."""

    sender: str
    recipient: str
    data: bytes
    user: bytes | None  # the authenticated user, if any


class Mailbox:
    """Messages received by the test server; tests can wait for a count."""

    def __init__(self) -> None:
        self.messages: list[Delivered] = []
        self._waiters: list[tuple[int, Deferred[None]]] = []

    def add(self, message: Delivered) -> None:
        """Store a message and wake the waiters it satisfies."""
        self.messages.append(message)
        ready = [w for w in self._waiters if w[0] <= len(self.messages)]
        for waiter in ready:
            self._waiters.remove(waiter)
            waiter[1].callback(None)

    def wait_for(self, count: int) -> Deferred[None]:
        """Fire once ``count`` messages have arrived."""
        if len(self.messages) >= count:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append((count, d))
        return d


@implementer(IMessageSMTP)
class _Message:
    """Collects the lines of one message and files it at the end."""

    def __init__(self, box: Mailbox, envelope: Delivered) -> None:
        self._box = box
        self._envelope = envelope
        self._lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        self._lines.append(line)

    def eomReceived(self) -> Deferred[None]:
        self._box.add(attrs.evolve(self._envelope, data=b"\n".join(self._lines)))
        return succeed(None)

    def connectionLost(self) -> None:
        self._lines.clear()


@implementer(IMessageDelivery)
class _Delivery:
    """Accepts every sender and recipient into a Mailbox."""

    def __init__(self, box: Mailbox, user: bytes | None) -> None:
        self._box = box
        self._user = user
        self._sender = ""

    def receivedHeader(
        self, helo: tuple[bytes, bytes], origin: smtp.Address, recipients: Any
    ) -> None:
        return None  # no Received: line, so the test sees the message as sent

    def validateFrom(
        self, helo: tuple[bytes, bytes], origin: smtp.Address
    ) -> smtp.Address:
        self._sender = str(origin)
        return origin

    def validateTo(self, user: smtp.User) -> Callable[[], IMessageSMTP]:
        envelope = Delivered(self._sender, str(user.dest), b"", self._user)
        return lambda: _Message(self._box, envelope)


@implementer(IRealm)
class _Realm:
    """Gives each authenticated user a delivery into the Mailbox."""

    def __init__(self, box: Mailbox) -> None:
        self._box = box

    def requestAvatar(
        self, avatar_id: bytes | tuple[()], mind: object, *interfaces: Any
    ) -> tuple[Any, _Delivery, Callable[[], None]]:
        if IMessageDelivery not in interfaces:
            raise NotImplementedError("only IMessageDelivery")
        return IMessageDelivery, _Delivery(self._box, avatar_id or None), lambda: None


class _ServerFactory(smtp.SMTPFactory):
    """ESMTP without TLS; with a portal, AUTH PLAIN is offered and required."""

    def __init__(self, box: Mailbox, portal: Portal | None) -> None:
        super().__init__(portal)
        self.box = box
        self.domain = b"mail.test"
        self.protocols: list[smtp.ESMTP] = []

    def buildProtocol(self, addr: IAddress | None) -> smtp.ESMTP:
        # PLAIN over plain text: acceptable on 127.0.0.1 in a test only.
        proto = smtp.ESMTP({b"PLAIN": PLAINCredentials} if self.portal else {})
        proto.factory = self
        proto.portal = self.portal
        proto.host = self.domain
        if self.portal is None:
            proto.delivery = _Delivery(self.box, None)
        self.protocols.append(proto)
        return proto


@attrs.frozen
class SmtpServer:
    """A listening test SMTP server."""

    port: int
    box: Mailbox


async def _serve(
    reactor: Any, users: dict[str, bytes] | None
) -> AsyncIterator[SmtpServer]:
    box = Mailbox()
    portal = None
    if users is not None:
        checker = InMemoryUsernamePasswordDatabaseDontUse(**users)
        portal = Portal(_Realm(box), [checker])
    factory = _ServerFactory(box, portal)
    port = free_port()
    listening: IListeningPort = reactor.listenTCP(port, factory, interface="127.0.0.1")
    try:
        yield SmtpServer(port, box)
    finally:
        await maybeDeferred(listening.stopListening)
        for proto in factory.protocols:  # normally all closed after QUIT already
            if proto.transport is not None:
                ITCPTransport(proto.transport).abortConnection()


@pytest_twisted.async_yield_fixture
async def smtp_server(reactor: Any) -> AsyncIterator[SmtpServer]:
    """An SMTP server on 127.0.0.1 that accepts mail without authentication."""
    async for server in _serve(reactor, None):
        yield server


@pytest_twisted.async_yield_fixture
async def auth_server(reactor: Any) -> AsyncIterator[SmtpServer]:
    """An SMTP server that requires AUTH PLAIN as catcher / s3cret."""
    async for server in _serve(reactor, {"catcher": b"s3cret"}):
        yield server


def settings(server: SmtpServer, **changes: Any) -> MailSettings:
    """Settings pointing at ``server``, changed by ``changes``."""
    base = MailSettings(
        server="127.0.0.1",
        port=server.port,
        sender="catcher@example.org",
        username="",
        password="",
        recipients=RECIPIENTS,
        throttle_minutes=1.0,
        instance="capture01 (tcp6:5001, tcp6:5002)",
    )
    return attrs.evolve(base, **changes)


def warnings(events: Sequence[LogEvent]) -> list[LogEvent]:
    """The notifier's warnings."""
    return [
        e
        for e in events
        if e["log_namespace"] == "imagecatcher.notify"
        and e["log_level"] == LogLevel.warn
    ]


@pytest_twisted.ensureDeferred
async def test_forced_message_is_delivered(
    smtp_server: SmtpServer, reactor: Any
) -> None:
    """A forced message reaches every recipient with §11's envelope and headers."""
    notifier = Notifier(settings(smtp_server), reactor)
    try:
        await notifier.notify_now("Acq 42 marked as complete\n.dot line")
    finally:
        await notifier.stop()
    box = smtp_server.box.messages
    assert sorted(m.recipient for m in box) == sorted(RECIPIENTS)
    for message in box:
        assert message.sender == "catcher@example.org"
        assert message.user is None
        assert message.data == (
            b"To: ops@example.org, lab@example.org\n"
            b"Subject: " + SUBJECT.encode() + b"\n"
            b"\n"
            b"Acq 42 marked as complete\n"
            b".dot line"
        )
        assert b"\nfrom:" not in b"\n" + message.data.lower()


@pytest_twisted.ensureDeferred
async def test_plain_auth_when_a_password_is_set(
    auth_server: SmtpServer, reactor: Any
) -> None:
    """With a password the client authenticates with PLAIN and the mail goes through."""
    notifier = Notifier(
        settings(auth_server, username="catcher", password="s3cret"), reactor
    )
    try:
        await notifier.notify_now("authenticated")
    finally:
        await notifier.stop()
    box = auth_server.box.messages
    assert [m.user for m in box] == [b"catcher", b"catcher"]
    assert all(m.data.endswith(b"\n\nauthenticated") for m in box)


@pytest_twisted.ensureDeferred
async def test_wrong_password_is_logged_not_raised(
    auth_server: SmtpServer, reactor: Any
) -> None:
    """A rejected password logs a warning, delivers nothing and raises nothing."""
    notifier = Notifier(
        settings(auth_server, username="catcher", password="wrong"), reactor
    )
    try:
        with capturedLogs() as events:
            await notifier.notify_now("refused")
    finally:
        await notifier.stop()
    assert len(warnings(events)) == 1
    assert isinstance(warnings(events)[0]["reason"], smtp.AUTHDeclinedError)
    assert auth_server.box.messages == []


@pytest_twisted.ensureDeferred
async def test_no_password_means_no_auth(auth_server: SmtpServer, reactor: Any) -> None:
    """Without a password the client does not authenticate (so this server refuses)."""
    notifier = Notifier(settings(auth_server, username="catcher"), reactor)
    try:
        with capturedLogs() as events:
            await notifier.notify_now("anonymous")
    finally:
        await notifier.stop()
    [warning] = warnings(events)
    assert isinstance(warning["reason"], smtp.SMTPDeliveryError)
    assert b"Unauthenticated" in warning["reason"].resp
    assert auth_server.box.messages == []


@pytest_twisted.ensureDeferred
async def test_throttled_messages_arrive_as_a_summary(
    smtp_server: SmtpServer, reactor: Any
) -> None:
    """With a 0.01-minute window, held messages arrive as one summary after it."""
    notifier = Notifier(
        settings(smtp_server, recipients=("ops@example.org",), throttle_minutes=0.01),
        reactor,
    )
    try:
        started = reactor.seconds()
        notifier.notify("first")
        notifier.notify("second")
        notifier.notify("third")
        await smtp_server.box.wait_for(2).addTimeout(WAIT, reactor)
        elapsed = reactor.seconds() - started
    finally:
        await notifier.stop()
    bodies = [m.data.split(b"\n\n", 1)[1] for m in smtp_server.box.messages]
    assert bodies == [
        b"first",
        b"second\n\n(1 more notification(s) suppressed; latest: third)",
    ]
    assert elapsed >= 0.6 - 0.05


@pytest_twisted.ensureDeferred
async def test_unreachable_server_is_logged(reactor: Any) -> None:
    """A refused connection is a logged warning and later notifications still try."""
    closed = SmtpServer(free_port(), Mailbox())
    notifier = Notifier(settings(closed, throttle_minutes=0), reactor)
    try:
        with capturedLogs() as events:
            await notifier.notify_now("nobody listens")
            await notifier.notify_now("still nobody")
    finally:
        await notifier.stop()
    assert [e["text"] for e in warnings(events)] == ["nobody listens", "still nobody"]
