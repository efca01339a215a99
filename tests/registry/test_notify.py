"""Notifiers against real peers: an outbox folder, an aiosmtpd server, a local HTTP SMS gateway."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ipaddress
import json
import ssl
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from gateway.ops.settings import NotifySettings, SettingsError
from gateway.registry.notify import (
    CombinedNotifier,
    NotificationError,
    Notifier,
    OutboxNotifier,
    SmsHttpNotifier,
    SmtpNotifier,
    build_notifier,
)

PASSWORD_TEXT = "Your temporary password: Xq7$-secret-9!"

# ---------------------------------------------------------------------------------------------
# TLS material, generated per test session (never committed)


@dataclass(frozen=True)
class Tls:
    """A self-signed certificate for 127.0.0.1 and the contexts that serve and trust it."""

    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A fresh EC key and self-signed certificate for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (directory / "cert.pem").write_bytes(cert_pem)
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return Tls(server=server, client=client)


# ---------------------------------------------------------------------------------------------
# Outbox


def names(directory: Path) -> list[str]:
    """The sorted file names in ``directory``."""
    return sorted(p.name for p in directory.iterdir())


def fixed_clock(*instants: datetime) -> Any:
    """A clock returning ``instants`` in order."""
    it = iter(instants)
    return lambda: next(it)


async def test_outbox_writes_eml_and_sms_files(tmp_path: Path) -> None:
    """An e-mail becomes a parseable .eml file and an SMS a .sms.json file, both 0600."""
    t0 = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
    outbox = OutboxNotifier(
        tmp_path / "outbox",
        sender="noreply@gateway.example",
        clock=fixed_clock(t0, t0 + timedelta(seconds=1)),
    )
    await outbox.send_email(to="htb@example.be", subject="Your username", body="Username: htb42\n")
    await outbox.send_sms(to="+32 470/12.34.56", text=PASSWORD_TEXT)

    files = names(tmp_path / "outbox")
    assert len(files) == 2
    assert files[0].startswith("20260115T093000.000000Z-")
    assert files[0].endswith(".eml")
    assert files[1].startswith("20260115T093001.000000Z-")
    assert files[1].endswith(".sms.json")

    raw = (tmp_path / "outbox" / files[0]).read_bytes()
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["From"] == "noreply@gateway.example"
    assert message["To"] == "htb@example.be"
    assert message["Subject"] == "Your username"
    assert message["Message-ID"]
    assert message["Date"] == "Thu, 15 Jan 2026 09:30:00 +0000"
    # RFC 5322 lines end in CRLF, the body's included.
    content = message.get_content()
    assert content.replace("\r\n", "\n") == "Username: htb42\n"

    sms = json.loads((tmp_path / "outbox" / files[1]).read_text())
    t1 = t0 + timedelta(seconds=1)
    assert sms == {"to": "+32470123456", "text": PASSWORD_TEXT, "created": t1.isoformat()}
    for name in files:
        assert stat.S_IMODE((tmp_path / "outbox" / name).stat().st_mode) == 0o600


async def test_outbox_names_sort_in_production_order(tmp_path: Path) -> None:
    """Messages produced in the same microsecond still sort in the order they were made."""
    t0 = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
    outbox = OutboxNotifier(tmp_path, clock=lambda: t0)
    for i in range(12):
        await outbox.send_sms(to="0470123456", text=f"message {i}")
    texts = [json.loads((tmp_path / n).read_text())["text"] for n in names(tmp_path)]
    assert texts == [f"message {i}" for i in range(12)]


async def test_outbox_leaves_no_temporary_file(tmp_path: Path) -> None:
    """Only finished messages are in the folder: the temporary name is gone."""
    outbox = OutboxNotifier(tmp_path)
    await outbox.send_email(to="a@example.be", subject="s", body="b")
    assert [n for n in names(tmp_path) if n.startswith(".")] == []


@pytest.mark.parametrize(
    ("to", "subject"),
    [
        ("htb@example.be\r\nBcc: evil@example.com", "Your username"),
        ("htb@example.be", "Hello\nBcc: evil@example.com"),
        ("htb@example.be", "Hello\rX: y"),
        ("htb@example.be\x00", "Hello"),
        ("htb@example.be", "Hello\x00"),
        ("htb@example.be, evil@example.com", "Hello"),
        ("HTB <htb@example.be>", "Hello"),
        ("not-an-address", "Hello"),
    ],
)
async def test_header_injection_is_refused(tmp_path: Path, to: str, subject: str) -> None:
    """CR/LF/NUL in a header, or more than one recipient, is refused and nothing is written."""
    outbox = OutboxNotifier(tmp_path)
    with pytest.raises(NotificationError):
        await outbox.send_email(to=to, subject=subject, body="x")
    assert names(tmp_path) == []


@pytest.mark.parametrize("to", ["+32 470\n12", "0470123456\x00", "call me", "12", ""])
async def test_bad_phone_number_is_refused(tmp_path: Path, to: str) -> None:
    """An SMS recipient must be a phone number; nothing is written otherwise."""
    with pytest.raises(NotificationError, match="to "):
        await OutboxNotifier(tmp_path).send_sms(to=to, text="x")
    assert names(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# SMTP against a real aiosmtpd server


@dataclass
class Mailbox:
    """What an aiosmtpd handler received."""

    envelopes: list[Envelope] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Store the envelope and accept it."""
        self.envelopes.append(envelope)
        return "250 OK"


@dataclass
class SmtpPeer:
    """A running aiosmtpd server."""

    port: int
    mailbox: Mailbox


def authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    """Accept exactly gateway / s3cret."""
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"gateway", b"s3cret")
    # handled=False: aiosmtpd answers 535 itself when the login fails.
    return AuthResult(success=ok, handled=False)


@pytest.fixture
async def smtp_peer(request: pytest.FixtureRequest, tls: Tls) -> AsyncIterator[SmtpPeer]:
    """aiosmtpd on a free port; with STARTTLS and AUTH when the test is parametrised so."""
    secure = getattr(request, "param", False)
    mailbox = Mailbox()
    loop = asyncio.get_running_loop()

    def factory() -> SMTP:
        if secure:
            return SMTP(
                mailbox,
                hostname="127.0.0.1",
                tls_context=tls.server,
                require_starttls=True,
                authenticator=authenticator,
                auth_required=True,
            )
        return SMTP(mailbox, hostname="127.0.0.1")

    server = await loop.create_server(factory, "127.0.0.1", 0)
    try:
        yield SmtpPeer(port=server.sockets[0].getsockname()[1], mailbox=mailbox)
    finally:
        server.close()
        await server.wait_closed()


async def test_smtp_delivers_the_message(smtp_peer: SmtpPeer) -> None:
    """The SMTP server receives the e-mail with its envelope, headers and body."""
    notifier = SmtpNotifier(
        host="127.0.0.1", port=smtp_peer.port, sender="gw@example.be", starttls=False
    )
    async with asyncio.timeout(30):
        await notifier.send_email(to="htb@example.be", subject="Username", body="Username: htb42")
    (envelope,) = smtp_peer.mailbox.envelopes
    assert envelope.mail_from == "gw@example.be"
    assert envelope.rcpt_tos == ["htb@example.be"]
    assert isinstance(envelope.content, bytes)
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert (message["From"], message["To"], message["Subject"]) == (
        "gw@example.be",
        "htb@example.be",
        "Username",
    )
    content = message.get_content()
    assert content.replace("\r\n", "\n") == "Username: htb42\n"


@pytest.mark.parametrize("smtp_peer", [True], indirect=True)
async def test_smtp_starttls_and_auth(smtp_peer: SmtpPeer, tls: Tls) -> None:
    """With STARTTLS (certificate verified) and AUTH the server accepts the message."""
    notifier = SmtpNotifier(
        host="127.0.0.1",
        port=smtp_peer.port,
        sender="gw@example.be",
        starttls=True,
        username="gateway",
        password="s3cret",
        tls_context=tls.client,
    )
    async with asyncio.timeout(30):
        await notifier.send_email(to="htb@example.be", subject="Username", body="hello")
    assert [e.rcpt_tos for e in smtp_peer.mailbox.envelopes] == [["htb@example.be"]]
    assert "s3cret" not in repr(notifier)


@pytest.mark.parametrize("smtp_peer", [True], indirect=True)
async def test_smtp_wrong_password_is_a_notification_error(smtp_peer: SmtpPeer, tls: Tls) -> None:
    """A refused login surfaces as NotificationError with the SMTP status."""
    notifier = SmtpNotifier(
        host="127.0.0.1",
        port=smtp_peer.port,
        sender="gw@example.be",
        starttls=True,
        username="gateway",
        password="wrong",
        tls_context=tls.client,
    )
    async with asyncio.timeout(30):
        with pytest.raises(NotificationError) as caught:
            await notifier.send_email(to="htb@example.be", subject="Username", body="hello")
    assert caught.value.status == 535
    assert smtp_peer.mailbox.envelopes == []


@pytest.mark.parametrize("smtp_peer", [True], indirect=True)
async def test_smtp_untrusted_certificate_is_refused(smtp_peer: SmtpPeer) -> None:
    """STARTTLS verifies the certificate: a self-signed one not in the trust store fails."""
    notifier = SmtpNotifier(
        host="127.0.0.1",
        port=smtp_peer.port,
        sender="gw@example.be",
        starttls=True,
        username="gateway",
        password="s3cret",
    )
    async with asyncio.timeout(30):
        with pytest.raises(NotificationError, match="SMTP"):
            await notifier.send_email(to="htb@example.be", subject="Username", body="hello")
    assert smtp_peer.mailbox.envelopes == []


async def test_smtp_unreachable_is_a_notification_error(smtp_peer: SmtpPeer) -> None:
    """Nobody listening: NotificationError, no status."""
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    notifier = SmtpNotifier(host="127.0.0.1", port=port, sender="gw@example.be", starttls=False)
    async with asyncio.timeout(30):
        with pytest.raises(NotificationError) as caught:
            await notifier.send_email(to="htb@example.be", subject="s", body="b")
    assert caught.value.status is None


def test_smtp_password_without_starttls_is_refused() -> None:
    """Credentials are never sent over a clear connection."""
    with pytest.raises(ValueError, match="STARTTLS"):
        SmtpNotifier(
            host="127.0.0.1",
            port=25,
            sender="gw@example.be",
            starttls=False,
            username="u",
            password="p",
        )


# ---------------------------------------------------------------------------------------------
# SMS over HTTP against a tiny local HTTP/1.1 server


@dataclass
class HttpRequest:
    """One request as the SMS gateway saw it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class SmsGateway:
    """A tiny HTTP/1.1 server that records requests and answers with ``status``."""

    status: int = 200
    requests: list[HttpRequest] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read one request, record it, answer and close."""
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")[:-2]
        method, target, _ = request_line.split(" ")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append(HttpRequest(method, target, headers, body))
        answer = b'{"error": "echo: ' + body[:40] + b'"}'
        writer.write(
            f"HTTP/1.1 {self.status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(answer)}\r\nConnection: close\r\n\r\n".encode()
            + answer
        )
        await writer.drain()
        writer.close()


@pytest.fixture
async def sms_gateway() -> AsyncIterator[SmsGateway]:
    """A plain-HTTP SMS gateway on a free loopback port."""
    gateway = SmsGateway()
    server = await asyncio.start_server(gateway.handle, "127.0.0.1", 0)
    gateway.port = server.sockets[0].getsockname()[1]
    async with server:
        yield gateway


async def test_sms_is_posted_as_json(sms_gateway: SmsGateway) -> None:
    """The SMS gateway receives POST {"to", "text"} as JSON with the bearer token."""
    notifier = SmsHttpNotifier(
        f"http://127.0.0.1:{sms_gateway.port}/api/sms?account=7", "tok-123", timeout=10
    )
    async with asyncio.timeout(30):
        await notifier.send_sms(to="+32 470 12 34 56", text=PASSWORD_TEXT)
    (request,) = sms_gateway.requests
    assert (request.method, request.target) == ("POST", "/api/sms?account=7")
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    assert request.headers["authorization"] == "Bearer tok-123"
    assert json.loads(request.body) == {"to": "+32470123456", "text": PASSWORD_TEXT}


@pytest.mark.parametrize("status", [400, 401, 500, 503, 302])
async def test_sms_refusal_raises_with_status_and_never_logs_the_text(
    sms_gateway: SmsGateway, status: int
) -> None:
    """A non-2xx answer raises NotificationError(status); the text is in no log and no message."""
    sms_gateway.status = status
    notifier = SmsHttpNotifier(f"http://127.0.0.1:{sms_gateway.port}/sms")
    with structlog.testing.capture_logs() as logs:
        async with asyncio.timeout(30):
            with pytest.raises(NotificationError) as caught:
                await notifier.send_sms(to="0470123456", text=PASSWORD_TEXT)
    assert caught.value.status == status
    assert "secret" not in str(caught.value)
    assert logs
    assert all("secret" not in repr(entry) for entry in logs)
    assert [entry["event"] for entry in logs] == ["notification.failed"]


async def test_sms_over_https_verifies_the_certificate(tls: Tls) -> None:
    """Over HTTPS the message arrives when the CA is trusted and fails when it is not."""
    gateway = SmsGateway()
    server = await asyncio.start_server(gateway.handle, "127.0.0.1", 0, ssl=tls.server)
    port = server.sockets[0].getsockname()[1]
    async with server, asyncio.timeout(30):
        trusted = SmsHttpNotifier(f"https://127.0.0.1:{port}/sms", ssl_context=tls.client)
        await trusted.send_sms(to="0470123456", text="hello")
        untrusted = SmsHttpNotifier(f"https://127.0.0.1:{port}/sms")
        with pytest.raises(NotificationError, match="unreachable"):
            await untrusted.send_sms(to="0470123456", text="hello")
    assert [json.loads(r.body)["text"] for r in gateway.requests] == ["hello"]


@pytest.mark.parametrize(
    "url", ["ftp://sms.example/x", "file:///etc/passwd", "http:///nohost", "https://u:p@h/x"]
)
def test_sms_url_must_be_plain_http_or_https(url: str) -> None:
    """Only http(s) URLs with a host and without inline credentials are accepted."""
    with pytest.raises(ValueError, match="URL"):
        SmsHttpNotifier(url)


# ---------------------------------------------------------------------------------------------
# build_notifier


def test_default_settings_build_the_outbox(tmp_path: Path) -> None:
    """The default [notify] writes to state_dir/outbox."""
    notifier = build_notifier(NotifySettings(), tmp_path)
    assert isinstance(notifier, OutboxNotifier)
    assert notifier.directory == tmp_path / "outbox"
    assert isinstance(notifier, Notifier)


def test_smtp_kind_sends_sms_to_the_outbox(tmp_path: Path) -> None:
    """kind = smtp: e-mail by SMTP, SMS to the outbox."""
    notifier = build_notifier(NotifySettings(kind="smtp"), tmp_path)
    assert isinstance(notifier, CombinedNotifier)
    assert isinstance(notifier.email, SmtpNotifier)
    assert isinstance(notifier.sms, OutboxNotifier)


def test_sms_http_kind_needs_a_url(tmp_path: Path) -> None:
    """kind = sms-http without sms_url is a configuration error naming the key."""
    with pytest.raises(SettingsError, match=r"notify\.sms_url"):
        build_notifier(NotifySettings(kind="sms-http"), tmp_path)


def test_sms_http_kind_builds_both(tmp_path: Path) -> None:
    """kind = sms-http: SMTP for e-mail, the HTTP gateway for SMS; secrets stay out of reprs."""
    settings = NotifySettings(
        kind="sms-http",
        sms_url="https://sms.example/api",
        sms_token=SecretStr("tok"),
        smtp_starttls=True,
        smtp_username="u",
        smtp_password=SecretStr("pw-xyz"),
    )
    notifier = build_notifier(settings, tmp_path)
    assert isinstance(notifier, CombinedNotifier)
    assert isinstance(notifier.sms, SmsHttpNotifier)
    assert "pw-xyz" not in repr(notifier.email)
    assert "tok" not in repr(notifier.sms)
    assert "pw-xyz" not in repr(settings)


def test_smtp_auth_without_starttls_is_a_settings_error(tmp_path: Path) -> None:
    """A password configured without STARTTLS stops start-up with the key named."""
    settings = NotifySettings(kind="smtp", smtp_username="u", smtp_password=SecretStr("p"))
    with pytest.raises(SettingsError, match=r"notify\.smtp"):
        build_notifier(settings, tmp_path)


async def test_combined_notifier_routes_each_kind(tmp_path: Path) -> None:
    """CombinedNotifier hands e-mail and SMS to their own senders."""
    mails, texts = OutboxNotifier(tmp_path / "mail"), OutboxNotifier(tmp_path / "sms")
    notifier = CombinedNotifier(email=mails, sms=texts)
    await notifier.send_email(to="a@example.be", subject="s", body="b")
    await notifier.send_sms(to="0470123456", text="t")
    assert [p.suffix for p in (tmp_path / "mail").iterdir()] == [".eml"]
    assert [p.name.endswith(".sms.json") for p in (tmp_path / "sms").iterdir()] == [True]
