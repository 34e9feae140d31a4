"""E-mail notifications to the operators (CONTRACT §11), throttled without stopping.

A :class:`Notifier` sends two kinds of message:

* **non-forced** (:meth:`Notifier.notify`): tile- and content-stage failures.  At
  most one e-mail goes out per throttle window
  (``MIN_TIME_BETWEEN_EMAIL_NOTIFS_IN_MINS``, fractions honoured).  A message
  arriving inside the window is held; later ones are coalesced into it (the
  first text is kept, plus a count of the suppressed ones and the latest
  text), and one summary e-mail goes out when the window ends.  Unlike the
  reference product (§13 Q26) the throttle never stops working, and a failed
  send only logs a warning.
* **forced** (:meth:`Notifier.notify_now`): sent at once, whatever the
  throttle.  A forced e-mail starts a new throttle window for the non-forced
  ones that follow it; a summary already held keeps its scheduled time, so no
  non-forced message waits longer than one window.

The window counts from the *start* of each send attempt, successful or not, so
an unreachable mail server is not hammered.  Time comes only from the
injected clock.  Notifications are disabled (every call is a no-op logged at
debug level) when ``MAIL_SERVER`` or ``ERROR_NOTIFICATION_RECIPIENTS`` is empty.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from io import BytesIO
from typing import Any

import attrs

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import (
    IAddress,
    IConnector,
    IDelayedCall,
    IReactorTCP,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.mail import smtp

from imagecatcher.config import Config

#: ``send(subject, text)``: deliver one message; raise (or fail) on error.
Send = Callable[[str, str], Awaitable[None]]

#: Deadline in seconds for one SMTP transaction, connection included.
SEND_TIMEOUT = 60.0
#: How long :meth:`Notifier.stop` waits for e-mails still being sent.
STOP_TIMEOUT = 10.0
#: The SMTP port used when ``MAIL_PORT`` ≤ 0 and ``MAIL_SERVER`` names none.
DEFAULT_SMTP_PORT = 25

log = Logger()


def instance_text(
    http: str,
    tcp: str,
    instance_name: str,
    hostname: Callable[[], str] = socket.gethostname,
) -> str:
    """The ``<instance>`` of the e-mail subject: ``<host name> (<http>, <tcp>)``.

    ``instance_name`` (``INSTANCE_NAME``) replaces the host name only when the
    host name cannot be determined (an error or an empty name).
    """
    try:
        host = hostname()
    except OSError:
        host = ""
    return f"{host or instance_name} ({http}, {tcp})"


@attrs.frozen
class MailSettings:
    """Everything the notifier needs from the configuration (§10.1, §11)."""

    server: str
    port: int
    sender: str
    username: str
    password: str
    recipients: tuple[str, ...]
    throttle_minutes: float
    instance: str

    @classmethod
    def from_config(
        cls,
        config: Config,
        http: str,
        tcp: str,
        *,
        hostname: Callable[[], str] = socket.gethostname,
    ) -> MailSettings:
        """Read the ``MAIL_*`` keys; ``http``/``tcp`` name the endpoints in the subject.

        Blank recipient entries are dropped.
        """
        return cls(
            server=config.mail_server.strip(),
            port=config.mail_port,
            sender=config.mail_sender,
            username=config.mail_username,
            password=config.mail_password,
            recipients=tuple(
                r.strip() for r in config.error_notification_recipients if r.strip()
            ),
            throttle_minutes=config.min_time_between_email_notifs_in_mins,
            instance=instance_text(http, tcp, config.instance_name, hostname),
        )

    @property
    def enabled(self) -> bool:
        """Whether e-mails are sent at all: a server and a recipient are set."""
        return bool(self.server and self.recipients)

    @property
    def subject(self) -> str:
        """The subject line of every notification."""
        return f"Message from Image Catcher running at {self.instance}"

    @property
    def throttle_seconds(self) -> float:
        """The throttle window in seconds; a negative setting means none."""
        return max(0.0, self.throttle_minutes * 60.0)

    def address(self) -> tuple[str, int]:
        """The SMTP host and port to connect to.

        A positive ``port`` wins.  Otherwise the server is used as is: a
        ``host:port`` or ``[v6]:port`` value names its port, a bare host
        gets port 25.
        """
        if self.port > 0:
            return self.server.strip("[]"), self.port
        host, sep, port = self.server.rpartition(":")
        if sep and host and port.isdigit() and (host[0] == "[" or ":" not in host):
            return host.strip("[]"), int(port)
        return self.server.strip("[]"), DEFAULT_SMTP_PORT


def compose_message(recipients: tuple[str, ...], subject: str, text: str) -> bytes:
    """The message as sent: ``To`` and ``Subject`` headers, a blank line, the text.

    There is deliberately no ``From`` header (§11).  Lines end in ``\\n``: the
    SMTP client turns them into CRLF on the wire.
    """
    body = text.replace("\r\n", "\n").replace("\r", "\n")
    head = f"To: {', '.join(recipients)}\nSubject: {subject}\n\n"
    return (head + body).encode("utf-8")


class _SenderFactory(smtp.ESMTPSenderFactory):
    """An ``ESMTPSenderFactory`` whose protocols offer only PLAIN authentication."""

    def buildProtocol(self, addr: IAddress | None) -> smtp.ESMTPSender:
        proto: smtp.ESMTPSender = super().buildProtocol(addr)
        proto.authenticators = (
            [smtp.PLAINAuthenticator(self.username)] if self.password else []
        )
        return proto


class SmtpSender:
    """The default ``send``: one SMTP transaction per message (§11).

    Connects to :meth:`MailSettings.address`, authenticates with PLAIN only
    when the password is non-empty (and then fails if the server offers no
    AUTH), uses STARTTLS only when the server offers it and never requires
    it, makes a single attempt and gives up after ``timeout`` seconds.
    """

    def __init__(
        self,
        settings: MailSettings,
        reactor: IReactorTCP,
        clock: IReactorTime,
        timeout: float = SEND_TIMEOUT,
    ) -> None:
        self._settings = settings
        self._reactor = reactor
        self._clock = clock
        self._timeout = timeout

    async def __call__(self, subject: str, text: str) -> None:
        """Send ``text`` under ``subject``; raise on failure or after the deadline."""
        settings = self._settings
        host, port = settings.address()
        message = compose_message(settings.recipients, subject, text)
        password = settings.password.encode("utf-8") or None
        connector: IConnector | None = None

        def cancel(_: Deferred[Any]) -> None:
            factory.sendFinished = True  # no retry after the abort below
            if factory.currentProtocol is not None:
                factory.currentProtocol.transport.abortConnection()
            elif connector is not None:
                connector.disconnect()

        result: Deferred[Any] = Deferred(cancel)
        factory = _SenderFactory(
            settings.username.encode("utf-8") if password else None,
            password,
            settings.sender,
            list(settings.recipients),
            BytesIO(message),
            result,
            retries=0,
            timeout=self._timeout,
            heloFallback=True,
            requireAuthentication=password is not None,
            requireTransportSecurity=False,
            hostname=host,
        )
        connector = self._reactor.connectTCP(host, port, factory, self._timeout)
        await result.addTimeout(self._timeout, self._clock)


@attrs.define
class _Held:
    """Non-forced messages waiting for the end of the throttle window."""

    first: str
    suppressed: int = 0
    latest: str = ""

    def add(self, text: str) -> None:
        self.suppressed += 1
        self.latest = text

    def summary(self) -> str:
        if not self.suppressed:
            return self.first
        return (
            f"{self.first}\n\n({self.suppressed} more notification(s) suppressed;"
            f" latest: {self.latest})"
        )


class Notifier:
    """Sends notification e-mails, throttling the non-forced ones (§11, §13 Q26).

    ``send(subject, text)`` delivers one message; by default an
    :class:`SmtpSender`, which needs ``clock`` to be a reactor that also
    provides ``IReactorTCP``.  Call it from the reactor thread only.
    """

    def __init__(
        self,
        settings: MailSettings,
        clock: IReactorTime,
        send: Send | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._enabled = settings.enabled
        if send is None and self._enabled:
            if not IReactorTCP.providedBy(clock):
                raise TypeError("the default SMTP sender needs an IReactorTCP clock")
            send = SmtpSender(settings, IReactorTCP(clock), clock)
        self._send = send
        self._window = settings.throttle_seconds
        self._last_sent: float | None = None
        self._held: _Held | None = None
        self._timer: IDelayedCall | None = None
        self._in_flight: set[Deferred[None]] = set()
        self._stopped = False
        if not self._enabled:
            log.info(
                "e-mail notifications are disabled"
                " (MAIL_SERVER or ERROR_NOTIFICATION_RECIPIENTS is empty)"
            )

    @property
    def enabled(self) -> bool:
        """Whether notifications are sent at all."""
        return self._enabled

    def notify(self, text: str) -> None:
        """Offer a non-forced notification; never blocks and never raises.

        Sent at once unless an e-mail went out less than a throttle window
        ago; then it is held (and further ones coalesced into it) until the
        window ends.  Ignored after :meth:`stop`.
        """
        try:
            self._offer(text)
        except Exception:
            log.failure("could not queue the notification {text!r}", text=text)

    def _offer(self, text: str) -> None:
        if not self._enabled or self._stopped:
            log.debug(
                "notification not e-mailed ({why}): {text}",
                why="stopped" if self._enabled else "disabled",
                text=text,
            )
            return
        if self._held is not None:
            self._held.add(text)
            log.debug(
                "notification held by the throttle ({count} suppressed): {text}",
                count=self._held.suppressed,
                text=text,
            )
            return
        now = self._clock.seconds()
        wait = 0.0
        if self._last_sent is not None:
            # Capped at one window, should the wall clock jump backwards.
            wait = min(self._window, self._last_sent + self._window - now)
        if wait <= 0:
            self._start(text)
            return
        self._held = _Held(first=text)
        self._timer = self._clock.callLater(wait, self._window_ended)
        log.debug(
            "notification held by the throttle for {wait:.3f}s: {text}",
            wait=wait,
            text=text,
        )

    async def notify_now(self, text: str) -> None:
        """Send a forced notification at once; failures are logged, not raised.

        It restarts the throttle window.  Callers that must not wait (§13 Q11)
        run it in the background, e.g. with ``Deferred.fromCoroutine``.
        """
        if not self._enabled:
            log.debug("notification not e-mailed (disabled): {text}", text=text)
            return
        await self._start(text)

    def stop(
        self, *, flush: bool = True, timeout: float = STOP_TIMEOUT
    ) -> Deferred[None]:
        """Cancel the throttle timer, for service shutdown.

        With ``flush`` a held summary is sent now instead of being dropped.
        The result fires once the e-mails still being sent are done, or after
        ``timeout`` seconds, when they are abandoned.  Later :meth:`notify`
        calls are ignored; :meth:`notify_now` still sends.
        """
        self._stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        held, self._held = self._held, None
        if held is not None:
            if flush:
                self._start(held.summary())
            else:
                log.info(
                    "dropping {count} held notification(s) at shutdown",
                    count=held.suppressed + 1,
                )
        return Deferred.fromCoroutine(self._drain(timeout))

    async def _drain(self, timeout: float) -> None:
        pending = list(self._in_flight)
        if not pending:
            return

        def give_up() -> None:
            log.warn(
                "abandoning {count} e-mail notification(s) still being sent"
                " after {timeout}s",
                count=len(pending),
                timeout=timeout,
            )
            for d in pending:
                d.cancel()

        deadline = self._clock.callLater(timeout, give_up)
        try:
            await DeferredList(pending)
        finally:
            if deadline.active():
                deadline.cancel()

    def _window_ended(self) -> None:
        self._timer = None
        held, self._held = self._held, None
        if held is not None:
            self._start(held.summary())

    def _start(self, text: str) -> Deferred[None]:
        """Start sending ``text`` in the background; the result never fails."""
        self._last_sent = self._clock.seconds()
        d = Deferred.fromCoroutine(self._deliver(text))
        self._in_flight.add(d)
        d.addBoth(self._finished, d)
        return d

    def _finished(self, result: object, d: Deferred[None]) -> None:
        # _deliver logs its own failures; anything reaching here is a
        # cancellation by stop(), already logged there.
        self._in_flight.discard(d)

    async def _deliver(self, text: str) -> None:
        assert self._send is not None  # only enabled notifiers get here
        recipients = ", ".join(self._settings.recipients)
        try:
            await self._send(self._settings.subject, text)
        except Exception as e:
            log.warn(
                "e-mail notification to {recipients} failed: {reason!r}",
                recipients=recipients,
                reason=e,
                text=text,
            )
        else:
            log.info(
                "e-mail notification sent to {recipients}",
                recipients=recipients,
                text=text,
            )
