"""Deliver account-activation messages: a username by e-mail, a temporary password by SMS.

An HTB without a Belgian national register number receives both through a :class:`Notifier`
(DESIGN.md, "Access management"). Implementations:

- :class:`OutboxNotifier` writes each message as a file (RFC 5322 ``.eml``, ``.sms.json``) to a
  folder: the development default, and a fallback an operator can read.
- :class:`SmtpNotifier` sends e-mail with aiosmtplib (optionally STARTTLS and SMTP AUTH).
- :class:`SmsHttpNotifier` POSTs ``{"to", "text"}`` as JSON to an HTTP(S) SMS gateway.
- :class:`CombinedNotifier` pairs an e-mail sender with an SMS sender; :func:`build_notifier`
  picks the pair from ``[notify]`` in the settings.

Rules:
- Recipients and subjects are checked before anything is written or sent: CR, LF, NUL and other
  control characters are refused (header injection), an e-mail recipient is exactly one address
  (no list), an SMS recipient is a phone number. Refusals raise :class:`NotificationError`.
- Message bodies carry credentials: they never reach a log call, an exception text or a file
  readable by others (outbox files are created 0600). Logged recipients are masked.
- Delivery failures raise :class:`NotificationError` with the peer's status where there is one;
  the caller decides whether the account action is rolled back or retried.
"""

from __future__ import annotations

import asyncio
import http.client
import itertools
import json
import os
import re
import secrets
import ssl
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Protocol, runtime_checkable

import aiosmtplib
import structlog

from gateway.ops.settings import NotifySettings, SettingsError
from gateway.registry.instant import utc_now

__all__ = [
    "CombinedNotifier",
    "EmailSender",
    "NotificationError",
    "Notifier",
    "OutboxNotifier",
    "SmsHttpNotifier",
    "SmsSender",
    "SmtpNotifier",
    "build_notifier",
]

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]

# Any C0 control, DEL, C1 control, or line/paragraph separator: never inside a header value.
_UNSAFE_HEADER = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# One plain addr-spec: no display name, no list, no comments, no quoting tricks.
_EMAIL = re.compile(r"[^\s@,;:<>()\[\]\"\\]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
# Spacing people write inside phone numbers (+32 470/12.34.56); removed before the check.
_PHONE_SPACING = re.compile(r"[ ./()-]")
_PHONE = re.compile(r"\+?[0-9]{6,15}")

_MAX_RESPONSE = 64 * 1024


class NotificationError(Exception):
    """A message was refused before sending, or its delivery failed.

    ``status`` is the peer's status code (HTTP or SMTP) when it answered, else None. The text never
    contains the message body.
    """

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason if status is None else f"{reason} (status {status})")
        self.reason = reason
        self.status = status


@runtime_checkable
class EmailSender(Protocol):
    """Something that can deliver one plain-text e-mail."""

    async def send_email(self, *, to: str, subject: str, body: str) -> None:
        """Deliver ``body`` to ``to``; raise :class:`NotificationError` when it cannot."""


@runtime_checkable
class SmsSender(Protocol):
    """Something that can deliver one SMS."""

    async def send_sms(self, *, to: str, text: str) -> None:
        """Deliver ``text`` to phone number ``to``; raise :class:`NotificationError` if not."""


@runtime_checkable
class Notifier(EmailSender, SmsSender, Protocol):
    """Delivers both kinds of activation message."""


def _check_header(field: str, value: str) -> None:
    if _UNSAFE_HEADER.search(value):
        raise NotificationError(f"{field} contains a control character")


def check_email(to: str, subject: str) -> None:
    """Refuse a recipient or subject that could inject headers or name several recipients."""
    _check_header("to", to)
    _check_header("subject", subject)
    if not _EMAIL.fullmatch(to):
        raise NotificationError("to is not exactly one e-mail address")


def normalise_phone(to: str) -> str:
    """The phone number without spacing (``+32470123456``); refuse anything else."""
    _check_header("to", to)
    number = _PHONE_SPACING.sub("", to)
    if not _PHONE.fullmatch(number):
        raise NotificationError("to is not a phone number")
    return number


def mask(recipient: str) -> str:
    """A recipient as logged: enough to recognise, not enough to harvest."""
    if "@" in recipient:
        local, _, domain = recipient.partition("@")
        return f"{local[:1]}***@{domain}"
    return f"{recipient[:3]}***{recipient[-2:]}" if len(recipient) > 5 else "***"


def _email_message(*, sender: str, to: str, subject: str, body: str, now: datetime) -> EmailMessage:
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(now)
    # make_msgid() would look up the host's FQDN (a DNS query); the sender's domain is enough.
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "localhost")
    message.set_content(body, subtype="plain", charset="utf-8")
    return message


def _write_atomically(directory: Path, name: str, data: bytes) -> Path:
    """Write ``data`` to ``directory/name``: temp file, fsync, rename, fsync of the folder."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    final = directory / name
    temp = directory / f".{name}.tmp"
    # 0600 and O_EXCL: the message holds a credential, and a pre-planted file is not reused.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return final


class OutboxNotifier:
    """Writes every message to a folder: ``<utc-time>-<seq>-<random>.eml`` or ``.sms.json``.

    Names sort by creation time (then by order within this process), so ``ls`` shows the
    outbox in the order messages were produced.
    """

    def __init__(
        self, directory: Path, *, sender: str = "gateway@localhost", clock: Clock = utc_now
    ) -> None:
        self._directory = directory
        self._sender = sender
        self._clock = clock
        self._sequence = itertools.count(1)

    @property
    def directory(self) -> Path:
        """The folder messages are written to."""
        return self._directory

    def _name(self, now: datetime, suffix: str) -> str:
        stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        return f"{stamp}-{next(self._sequence):06d}-{secrets.token_hex(4)}{suffix}"

    async def send_email(self, *, to: str, subject: str, body: str) -> None:
        """Write the e-mail as an RFC 5322 ``.eml`` file."""
        check_email(to, subject)
        now = self._clock()
        message = _email_message(sender=self._sender, to=to, subject=subject, body=body, now=now)
        path = await asyncio.to_thread(
            _write_atomically, self._directory, self._name(now, ".eml"), bytes(message)
        )
        log.info("notification.written", kind="email", to=mask(to), file=path.name)

    async def send_sms(self, *, to: str, text: str) -> None:
        """Write the SMS as a ``.sms.json`` file: ``{"to", "text", "created"}``."""
        number = normalise_phone(to)
        now = self._clock()
        data = json.dumps(
            {"to": number, "text": text, "created": now.astimezone(UTC).isoformat()},
            ensure_ascii=False,
        ).encode()
        path = await asyncio.to_thread(
            _write_atomically, self._directory, self._name(now, ".sms.json"), data + b"\n"
        )
        log.info("notification.written", kind="sms", to=mask(number), file=path.name)


class SmtpNotifier:
    """Sends e-mail through an SMTP relay with aiosmtplib.

    ``starttls=True`` upgrades the connection before anything else and verifies the server's
    certificate (``tls_context`` may name a private CA). SMTP AUTH credentials are refused without
    STARTTLS, so a password never crosses the network in clear.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        starttls: bool,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
        clock: Clock = utc_now,
    ) -> None:
        if (username is None) != (password is None):
            raise ValueError("SMTP username and password go together")
        if username is not None and not starttls:
            raise ValueError("SMTP AUTH needs STARTTLS: the password would travel in clear")
        _check_header("sender", sender)
        self._host = host
        self._port = port
        self._sender = sender
        self._starttls = starttls
        self._username = username
        self._password = password
        self._timeout = timeout
        self._tls_context = tls_context
        self._clock = clock

    def __repr__(self) -> str:
        # No password here: reprs end up in tracebacks and debug logs.
        return f"SmtpNotifier(host={self._host!r}, port={self._port}, starttls={self._starttls})"

    async def send_email(self, *, to: str, subject: str, body: str) -> None:
        """Send one e-mail; raise :class:`NotificationError` on refusal or failure."""
        check_email(to, subject)
        message = _email_message(
            sender=self._sender, to=to, subject=subject, body=body, now=self._clock()
        )
        try:
            await aiosmtplib.send(
                message,
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                start_tls=self._starttls,
                use_tls=False,
                validate_certs=True,
                tls_context=self._tls_context,
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPResponseException as exc:
            log.warning("notification.failed", kind="email", to=mask(to), status=exc.code)
            raise NotificationError("SMTP server refused the message", status=exc.code) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            reason = type(exc).__name__
            log.warning("notification.failed", kind="email", to=mask(to), reason=reason)
            raise NotificationError(f"SMTP delivery failed: {reason}") from None
        log.info("notification.sent", kind="email", to=mask(to), via="smtp")


class SmsHttpNotifier:
    """POSTs ``{"to": …, "text": …}`` (JSON) to an HTTP(S) SMS gateway.

    The request goes through ``http.client`` in a worker thread: no extra dependency, no proxy
    taken from the environment and no redirect followed (the text holds a password and must go to
    the configured endpoint only). A status outside 2xx raises :class:`NotificationError`.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the SMS gateway URL must be http:// or https:// with a host")
        if parts.username or parts.password:
            raise ValueError("put SMS gateway credentials in the token, not in the URL")
        if token is not None:
            _check_header("token", token)
        self._parts = parts
        self._token = token
        self._timeout = timeout
        self._ssl_context = ssl_context

    def __repr__(self) -> str:
        return f"SmsHttpNotifier(url={urllib.parse.urlunsplit(self._parts)!r})"

    def _post(self, payload: bytes) -> int:
        parts = self._parts
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                parts.hostname or "",
                parts.port,
                timeout=self._timeout,
                context=self._ssl_context or ssl.create_default_context(),
            )
        else:
            connection = http.client.HTTPConnection(
                parts.hostname or "", parts.port, timeout=self._timeout
            )
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Accept": "application/json, text/plain;q=0.5",
            "User-Agent": "batch-gateway",
        }
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        try:
            connection.request("POST", target, body=payload, headers=headers)
            response = connection.getresponse()
            response.read(_MAX_RESPONSE)  # drained, never logged: it may echo the text
            return response.status
        finally:
            connection.close()

    async def send_sms(self, *, to: str, text: str) -> None:
        """Send one SMS; raise :class:`NotificationError` on refusal or failure."""
        number = normalise_phone(to)
        payload = json.dumps({"to": number, "text": text}, ensure_ascii=False).encode()
        try:
            status = await asyncio.to_thread(self._post, payload)
        except (OSError, http.client.HTTPException) as exc:
            reason = type(exc).__name__
            log.warning("notification.failed", kind="sms", to=mask(number), reason=reason)
            raise NotificationError(f"SMS gateway unreachable: {reason}") from None
        if not 200 <= status < 300:
            log.warning("notification.failed", kind="sms", to=mask(number), status=status)
            raise NotificationError("SMS gateway refused the message", status=status)
        log.info("notification.sent", kind="sms", to=mask(number), via="http", status=status)


class CombinedNotifier:
    """A :class:`Notifier` made of one e-mail sender and one SMS sender."""

    def __init__(self, *, email: EmailSender, sms: SmsSender) -> None:
        self.email = email
        self.sms = sms

    async def send_email(self, *, to: str, subject: str, body: str) -> None:
        """Deliver through the e-mail sender."""
        await self.email.send_email(to=to, subject=subject, body=body)

    async def send_sms(self, *, to: str, text: str) -> None:
        """Deliver through the SMS sender."""
        await self.sms.send_sms(to=to, text=text)


def build_notifier(settings: NotifySettings, state_dir: Path) -> Notifier:
    """The notifier ``[notify]`` asks for.

    ``kind = "outbox"``: both messages to the outbox folder. ``"smtp"``: e-mail by SMTP, SMS to the
    outbox. ``"sms-http"``: e-mail by SMTP and SMS to the HTTP gateway. The outbox folder is
    ``outbox_dir``, by default ``state_dir/outbox``. Raises :class:`SettingsError` naming the key
    when the combination cannot work.
    """
    outbox = OutboxNotifier(settings.outbox_dir or state_dir / "outbox", sender=settings.smtp_from)
    if settings.kind == "outbox":
        return outbox
    try:
        smtp = SmtpNotifier(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.smtp_from,
            starttls=settings.smtp_starttls,
            username=settings.smtp_username,
            password=(
                settings.smtp_password.get_secret_value()
                if settings.smtp_password is not None
                else None
            ),
            timeout=settings.timeout_seconds,
        )
    except (ValueError, NotificationError) as exc:
        raise SettingsError(f"invalid configuration:\n  notify.smtp_*: {exc}") from None
    if settings.kind == "smtp":
        return CombinedNotifier(email=smtp, sms=outbox)
    if not settings.sms_url:
        raise SettingsError("invalid configuration:\n  notify.sms_url: required by sms-http")
    try:
        sms = SmsHttpNotifier(
            settings.sms_url,
            settings.sms_token.get_secret_value() if settings.sms_token is not None else None,
            timeout=settings.timeout_seconds,
        )
    except (ValueError, NotificationError) as exc:
        raise SettingsError(f"invalid configuration:\n  notify.sms_url: {exc}") from None
    return CombinedNotifier(email=smtp, sms=sms)
