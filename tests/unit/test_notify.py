"""Unit tests for the e-mail notifier: throttle, summaries, formatting (§11, Q26)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import attrs
import pytest

from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogEvent, LogLevel, capturedLogs
from twisted.mail.smtp import ESMTPSender, SMTPDeliveryError

from imagecatcher.config import Config
from imagecatcher.notify import (
    SEND_TIMEOUT,
    STOP_TIMEOUT,
    MailSettings,
    Notifier,
    compose_message,
    instance_text,
)

T = TypeVar("T")

SUBJECT = "Message from Image Catcher running at capture01 (tcp6:5001, tcp6:5002)"


def settings(**changes: Any) -> MailSettings:
    """Enabled settings with a one-minute window, changed by ``changes``."""
    base = MailSettings(
        server="mail.example.org",
        port=25,
        sender="catcher@example.org",
        username="",
        password="",
        recipients=("ops@example.org", "lab@example.org"),
        throttle_minutes=1.0,
        instance="capture01 (tcp6:5001, tcp6:5002)",
    )
    return attrs.evolve(base, **changes)


class FakeSend:
    """A ``send`` that records its calls; it fails with ``error`` when set."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.error: Exception | None = None
        self.gate: Deferred[None] | None = None

    async def __call__(self, subject: str, text: str) -> None:
        """Record the message, then wait for ``gate`` and raise ``error``."""
        self.calls.append((subject, text))
        if self.gate is not None:
            await self.gate
        if self.error is not None:
            raise self.error

    @property
    def texts(self) -> list[str]:
        """The texts sent so far."""
        return [text for _, text in self.calls]


def make(**changes: Any) -> tuple[Notifier, FakeSend, Clock]:
    """A notifier over a fake send and a Clock."""
    send, clock = FakeSend(), Clock()
    return Notifier(settings(**changes), clock, send), send, clock


def result_of(d: Deferred[T]) -> T:
    """The result of a Deferred that has already fired successfully."""
    results: list[T] = []
    d.addCallback(results.append)
    assert results, "the Deferred has not fired"
    return results[0]


def ours(events: Sequence[LogEvent], level: LogLevel) -> list[LogEvent]:
    """The notifier's events at ``level``."""
    return [
        e
        for e in events
        if e["log_namespace"] == "imagecatcher.notify" and e["log_level"] == level
    ]


def test_first_message_is_sent_at_once() -> None:
    """The first notification goes out immediately, with the subject of §11."""
    notifier, send, _ = make()
    notifier.notify("tile failed")
    assert send.calls == [(SUBJECT, "tile failed")]


def test_messages_inside_the_window_become_one_summary() -> None:
    """Messages inside the window are held and sent as one summary when it ends."""
    notifier, send, clock = make()
    notifier.notify("first")
    clock.advance(10)
    notifier.notify("second")
    notifier.notify("third")
    notifier.notify("fourth")
    clock.advance(49.9)
    assert send.texts == ["first"]
    clock.advance(0.1)
    assert send.texts == [
        "first",
        "second\n\n(2 more notification(s) suppressed; latest: fourth)",
    ]
    assert clock.getDelayedCalls() == []


def test_a_single_held_message_is_sent_verbatim() -> None:
    """One held message is sent unchanged when the window ends."""
    notifier, send, clock = make()
    notifier.notify("first")
    notifier.notify("second")
    clock.advance(60)
    assert send.texts == ["first", "second"]


def test_after_the_window_a_message_goes_out_at_once() -> None:
    """Once the window has passed without mail, the next message is not held."""
    notifier, send, clock = make()
    notifier.notify("first")
    clock.advance(60)
    notifier.notify("second")
    assert send.texts == ["first", "second"]
    assert clock.getDelayedCalls() == []


def test_a_summary_starts_a_new_window() -> None:
    """A message right after a summary waits for the window the summary started."""
    notifier, send, clock = make()
    notifier.notify("a")
    notifier.notify("b")
    clock.advance(60)
    clock.advance(30)
    notifier.notify("c")
    clock.advance(29)
    assert send.texts == ["a", "b"]
    clock.advance(1)
    assert send.texts == ["a", "b", "c"]


def test_fractional_window_is_honoured() -> None:
    """A 0.5-minute window holds messages for 30 seconds, not 0 or 60."""
    notifier, send, clock = make(throttle_minutes=0.5)
    notifier.notify("a")
    notifier.notify("b")
    clock.advance(29.9)
    assert send.texts == ["a"]
    clock.advance(0.1)
    assert send.texts == ["a", "b"]


def test_zero_window_sends_everything() -> None:
    """Without a throttle window every message is sent at once."""
    notifier, send, clock = make(throttle_minutes=0)
    for text in ("a", "b", "c"):
        notifier.notify(text)
    assert send.texts == ["a", "b", "c"]
    assert clock.getDelayedCalls() == []


def test_forced_message_ignores_the_throttle() -> None:
    """A forced message inside the window is sent immediately."""
    notifier, send, _ = make()
    notifier.notify("a")
    result_of(Deferred.fromCoroutine(notifier.notify_now("forced")))
    assert send.texts == ["a", "forced"]


def test_messages_after_a_forced_one_are_held_then_sent() -> None:
    """After a forced mail, a non-forced one is held, not lost (the Q26 bug)."""
    notifier, send, clock = make()
    result_of(Deferred.fromCoroutine(notifier.notify_now("forced")))
    clock.advance(1)
    notifier.notify("a")
    assert send.texts == ["forced"]
    clock.advance(59)
    assert send.texts == ["forced", "a"]
    clock.advance(60)
    notifier.notify("b")
    assert send.texts == ["forced", "a", "b"]


def test_forced_message_does_not_postpone_a_held_summary() -> None:
    """A held summary keeps its time when a forced message goes out meanwhile."""
    notifier, send, clock = make()
    notifier.notify("a")
    notifier.notify("b")
    clock.advance(30)
    result_of(Deferred.fromCoroutine(notifier.notify_now("forced")))
    clock.advance(30)
    assert send.texts == ["a", "forced", "b"]


def test_failed_send_is_logged_and_later_messages_still_go_out() -> None:
    """A send failure is a logged warning, and notifications keep flowing (Q26)."""
    notifier, send, clock = make()
    send.error = SMTPDeliveryError(550, b"mailbox unavailable")
    with capturedLogs() as events:
        notifier.notify("lost")
    [warning] = ours(events, LogLevel.warn)
    assert warning["reason"] is send.error and warning["text"] == "lost"
    send.error = None
    notifier.notify("held")
    clock.advance(60)
    clock.advance(60)
    notifier.notify("direct")
    assert send.texts == ["lost", "held", "direct"]


def test_failed_forced_send_is_logged_not_raised() -> None:
    """A failing forced message completes normally and logs a warning."""
    notifier, send, _ = make()
    send.error = OSError("connection refused")
    with capturedLogs() as events:
        result_of(Deferred.fromCoroutine(notifier.notify_now("forced")))
    assert [e["reason"] for e in ours(events, LogLevel.warn)] == [send.error]


def test_notify_does_not_wait_for_a_slow_send() -> None:
    """notify returns while the send is still in progress."""
    notifier, send, _ = make()
    send.gate = Deferred()
    notifier.notify("slow")
    assert send.texts == ["slow"]
    send.gate.callback(None)


@pytest.mark.parametrize(
    "changes", [{"recipients": ()}, {"server": ""}], ids=["no-recipients", "no-server"]
)
def test_disabled_without_server_or_recipients(changes: dict[str, Any]) -> None:
    """Without a server or recipients nothing is sent and no timer is set."""
    clock = Clock()
    notifier = Notifier(settings(**changes), clock)  # no IReactorTCP needed
    assert not notifier.enabled
    with capturedLogs() as events:
        notifier.notify("a")
        notifier.notify("b")
        result_of(Deferred.fromCoroutine(notifier.notify_now("c")))
    assert [e["text"] for e in ours(events, LogLevel.debug)] == ["a", "b", "c"]
    assert clock.getDelayedCalls() == []
    assert result_of(notifier.stop()) is None


def test_a_fake_send_on_disabled_settings_is_not_called() -> None:
    """An injected send is not used when the settings disable notifications."""
    send = FakeSend()
    notifier = Notifier(settings(recipients=()), Clock(), send)
    notifier.notify("a")
    assert send.calls == []


def test_stop_cancels_the_timer_without_flush() -> None:
    """stop(flush=False) drops the held message and leaves no delayed call."""
    notifier, send, clock = make()
    notifier.notify("a")
    notifier.notify("b")
    assert result_of(notifier.stop(flush=False)) is None
    assert clock.getDelayedCalls() == []
    notifier.notify("after stop")
    clock.advance(3600)
    assert send.texts == ["a"]


def test_stop_flushes_the_held_summary() -> None:
    """By default stop() sends the held summary at once and cancels the timer."""
    notifier, send, clock = make()
    notifier.notify("a")
    notifier.notify("b")
    notifier.notify("c")
    result_of(notifier.stop())
    assert send.texts == ["a", "b\n\n(1 more notification(s) suppressed; latest: c)"]
    assert clock.getDelayedCalls() == []


def test_stop_waits_for_sends_then_gives_up() -> None:
    """stop() waits for an unfinished send and abandons it after its deadline."""
    notifier, send, clock = make()
    send.gate = Deferred()
    notifier.notify("stuck")
    with capturedLogs() as events:
        stopped = notifier.stop()
        clock.advance(STOP_TIMEOUT - 0.1)
        assert not stopped.called
        clock.advance(0.1)
    assert result_of(stopped) is None
    assert [e["count"] for e in ours(events, LogLevel.warn) if "count" in e] == [1]
    assert clock.getDelayedCalls() == []


def test_stop_returns_once_sends_finish() -> None:
    """stop() fires as soon as the unfinished send completes."""
    notifier, send, clock = make()
    send.gate = Deferred()
    notifier.notify("slow")
    stopped = notifier.stop()
    assert not stopped.called
    send.gate.callback(None)
    assert result_of(stopped) is None
    assert clock.getDelayedCalls() == []


def test_message_has_to_and_subject_but_no_from() -> None:
    """The message is To and Subject headers, a blank line and the text."""
    message = compose_message(
        ("ops@example.org", "lab@example.org"), SUBJECT, "line 1\r\nline 2"
    )
    assert message == (
        b"To: ops@example.org, lab@example.org\n"
        b"Subject: " + SUBJECT.encode() + b"\n"
        b"\n"
        b"line 1\nline 2"
    )


def test_subject_names_the_instance() -> None:
    """The subject follows §11's wording around the instance text."""
    assert settings().subject == SUBJECT


def test_instance_uses_the_host_name() -> None:
    """The instance text is the host name and both endpoints."""
    assert instance_text(":5001", ":5002", "Unknown", lambda: "capture01") == (
        "capture01 (:5001, :5002)"
    )


def test_instance_name_replaces_an_unknown_host_name() -> None:
    """INSTANCE_NAME is used when the host name is empty or cannot be read."""

    def broken() -> str:
        raise OSError("no host name")

    assert instance_text("a", "b", "rig-7", lambda: "") == "rig-7 (a, b)"
    assert instance_text("a", "b", "rig-7", broken) == "rig-7 (a, b)"


def test_settings_from_config() -> None:
    """from_config maps the MAIL_* keys and drops blank recipients."""
    config = Config(
        mail_server="smtp.example.org",
        mail_port=587,
        mail_sender="catcher@example.org",
        mail_username="user",
        mail_password="secret",
        error_notification_recipients=("ops@example.org", " "),
        min_time_between_email_notifs_in_mins=0.25,
        instance_name="rig-7",
    )
    got = MailSettings.from_config(config, "tcp6:5001", "tcp6:5002", hostname=str)
    assert got == MailSettings(
        server="smtp.example.org",
        port=587,
        sender="catcher@example.org",
        username="user",
        password="secret",
        recipients=("ops@example.org",),
        throttle_minutes=0.25,
        instance="rig-7 (tcp6:5001, tcp6:5002)",
    )
    assert got.throttle_seconds == 15.0


@pytest.mark.parametrize(
    ("server", "port", "address"),
    [
        ("mail.example.org", 2525, ("mail.example.org", 2525)),
        ("mail.example.org", 0, ("mail.example.org", 25)),
        ("mail.example.org", -1, ("mail.example.org", 25)),
        ("mail.example.org:587", 0, ("mail.example.org", 587)),
        ("[::1]:587", 0, ("::1", 587)),
        ("::1", 0, ("::1", 25)),
        ("[::1]", 0, ("::1", 25)),
    ],
)
def test_smtp_address(server: str, port: int, address: tuple[str, int]) -> None:
    """A positive port wins; otherwise the server value is used as is, or port 25."""
    assert settings(server=server, port=port).address() == address


def test_default_sender_needs_a_tcp_reactor() -> None:
    """Without an injected send, the clock must be able to open connections."""
    with pytest.raises(TypeError):
        Notifier(settings(), Clock())


def test_default_sender_connects_and_times_out() -> None:
    """The default sender dials server:25 and gives up, logged, at its deadline."""
    reactor = MemoryReactorClock()
    notifier = Notifier(settings(port=0), reactor)
    with capturedLogs() as events:
        notifier.notify("a")
        [(host, port, _, timeout, _)] = reactor.tcpClients
        assert (host, port, timeout) == ("mail.example.org", 25, SEND_TIMEOUT)
        reactor.advance(SEND_TIMEOUT)
    [warning] = ours(events, LogLevel.warn)
    assert isinstance(warning["reason"], TimeoutError)
    assert reactor.getDelayedCalls() == []


@pytest.mark.parametrize(("password", "schemes"), [("pw", [b"PLAIN"]), ("", [])])
def test_default_sender_offers_only_plain_auth(
    password: str, schemes: list[bytes]
) -> None:
    """PLAIN is the only mechanism, and only when a password is set."""
    reactor = MemoryReactorClock()
    notifier = Notifier(settings(username="u", password=password), reactor)
    notifier.notify("a")
    factory = reactor.tcpClients[0][2]
    proto = factory.buildProtocol(None)
    assert isinstance(proto, ESMTPSender)
    assert [a.getName() for a in proto.authenticators] == schemes
    assert proto.requireAuthentication is bool(password)
    assert not proto.requireTransportSecurity


def test_successful_send_is_logged() -> None:
    """A successful send is logged at info level with the recipients."""
    notifier, _, _ = make()
    with capturedLogs() as events:
        notifier.notify("a")
    [info] = ours(events, LogLevel.info)
    assert info["recipients"] == "ops@example.org, lab@example.org"
