"""Admission and login of an FTP control connection: ``AUTH TLS``, ``PBSZ``, ``PROT``, ``USER``,
``PASS``.

Rules (issue 11 §2, SECURITY.md 13, 15, 21):

- A new connection is admitted unless its source is penalised or holds too many unauthenticated
  connections (the :class:`SourceGuard` shared with SFTP), or the listener has ``max_startups``
  of them; it then has ``login_grace_seconds`` to log in.
- The public listener speaks explicit FTPS only: ``USER`` before ``AUTH TLS`` gets ``530 TLS
  required``. A plain listener also accepts a clear login, but only from an address that
  ``plain_network`` places in one of its secondary networks.
- ``PBSZ 0`` and ``PROT P`` come after ``AUTH``; ``PROT C`` on a TLS connection is ``534``.
- ``PASS`` asks the registry (``peer`` is the client's address, for the networks allow-list).
  Every failure is the same ``530 Login incorrect.``; the reason is logged (``auth.failed``) and
  counted, never sent. After ``max_login_attempts`` failures the connection is closed (``421``).
  Each failure charges the source at once (issue 15 item 4), not when the connection ends; a
  failed ``PASS`` is answered only ``pacing`` seconds after it arrived
  (:mod:`gateway.ops.pacing`: a sleep, after the logins-in-flight limit is released), so a
  guesser cannot spin; the registry checks passwords in its bounded pool and under the account
  lockout shared with SFTP and the console.
  A principal without a sender number is refused like a wrong password.
- A login opens one folder session (sessions per sender capped: 921 closes the connection).
"""

from __future__ import annotations

import asyncio
import secrets
import time
import unicodedata

from gateway.channels.ftp_control import CHANNEL, Channel, Control, log
from gateway.channels.proxy import Endpoint
from gateway.core.codes import Rejection
from gateway.core.types import SenderNumber
from gateway.registry.types import (
    AuthFailure,
    ChannelKind,
    PasswordCredential,
    Principal,
)

AUTH_MECHANISMS = frozenset({"TLS", "TLS-C", "SSL", "TLS-P"})
LOGIN_FAILED = "Login incorrect."
TLS_REQUIRED = "TLS required: send AUTH TLS first"


def admit(
    channel: Channel,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    listener: str | None,
    client: Endpoint | None = None,
    via: str | None = None,
) -> Control | None:
    """A :class:`Control` for a new connection, or None when it is refused (and closed).
    ``client``: the client a balancer's PROXY header named (``via``: the balancer), which is
    then the peer of penalties, the networks allow-list, passive data and the log."""
    if client is not None:
        peer_ip, peer_port = client.ip, client.port
    else:
        peername = writer.get_extra_info("peername") or ("?", 0)
        peer_ip, peer_port = str(peername[0]), peername[1]
    peer = f"{peer_ip}:{peer_port}"
    sockname = writer.get_extra_info("sockname") or ("?", 0)
    bound = log.bind(peer=peer, listener=listener or "public")
    guard = channel.sources
    source = guard.source(peer_ip)
    control = Control(
        channel=channel,
        listener=listener,
        reader=reader,
        writer=writer,
        peer_ip=peer_ip,
        peer=peer,
        via=via,
        local_ip=str(sockname[0]),
        source=source,
        log=bound.bind(via=via) if via is not None else bound,
    )
    refused = guard.admit(source, time.monotonic())
    if refused is None:
        control.source_counted = True
        control.admitted = channel.limits.admit_connection()
        if not control.admitted:
            refused = "max_startups"
    if refused is None and channel.stopping:
        refused = "stopping"
    channel.controls.add(control)
    if refused is not None:
        guard.refusals.refused(
            channel=CHANNEL,
            source=source,
            peer=peer,
            reason=refused,
            metrics=channel.metrics,
            listener=listener or "public",
            **({"via": via} if via is not None else {}),
        )
        control.end("Service not available, closing control connection", abort=False)
        return control
    control.readable.set()
    control.arm(channel.config.login_grace_seconds)
    return control


def _printable(text: str) -> bool:
    return all(unicodedata.category(ch) not in {"Cc", "Cf", "Zl", "Zp"} for ch in text)


def _auth_failed(control: Control, login: str, reason: str, **fields: object) -> None:
    control.tried = True
    # A login with control or bidi characters is not written to the log (SECURITY.md 5).
    shown = login if _printable(login) and len(login) <= 200 else None
    control.log.info("auth.failed", login=shown, reason=reason, **fields)
    metrics = control.channel.metrics
    if metrics is not None:
        metrics.auth_failures_total.labels(channel=CHANNEL, reason=reason).inc()


def _charge(control: Control) -> None:
    """Charge the source for a failed attempt, at once."""
    now = time.monotonic()
    control.penalized(control.channel.sources.charge_attempt(control.source, now), now, "authfail")


def _failed_attempt(control: Control, text: str = LOGIN_FAILED) -> bool:
    """Charge a failed attempt and reply 530 ``text`` at once; False (close) once the attempts
    are used up."""
    _charge(control)
    return _answer_failure(control, text)


async def _failed_password(control: Control, arrived: float) -> bool:
    """Charge a failed ``PASS`` at once, and answer it as :func:`_failed_attempt` does once the
    pacing delay since ``arrived`` has passed (nothing is held meanwhile)."""
    _charge(control)
    await control.channel.config.pacing.answer_failure(arrived)
    if control.closing:  # the login grace ran out meanwhile: nothing left to answer
        return False
    return _answer_failure(control)


def _answer_failure(control: Control, text: str = LOGIN_FAILED) -> bool:
    control.reply(530, text)
    if control.attempts >= control.channel.config.max_login_attempts:
        control.log.info("login.attempts_exhausted", attempts=control.attempts)
        control.reply(421, "Too many login attempts: closing control connection")
        # Commands the client sent before reading the 421 are queued already: none is answered
        # (or run) after it.
        control.closing = True
        return False
    return True


async def auth(control: Control, argument: str) -> bool:
    """``AUTH TLS``: reply 234, then the TLS handshake (run by the server's reply writer right
    after the 234 is written; reading stays stopped until it is done)."""
    mechanism = argument.strip().upper()
    if control.tls is not None:
        control.readable.set()
        control.reply(503, "Already using TLS")
        return True
    if mechanism not in AUTH_MECHANISMS:
        control.readable.set()
        control.reply(504, "Only AUTH TLS is supported")
        return True
    control.pause_reading()
    if control.buffered_input():
        control.log.warning("tls.refused", reason="input_after_auth")
        control.reply(421, "Commands after AUTH must wait for its reply: closing")
        return False
    control.tls_pending = True
    control.reply(234, f"AUTH {mechanism} OK: start the TLS handshake")
    return True


async def pbsz(control: Control, argument: str) -> bool:
    """``PBSZ 0`` (RFC 4217 §8): required before ``PROT``."""
    if control.tls is None:
        control.reply(503, "Send AUTH TLS first")
    elif not argument.strip().isdigit():
        control.reply(501, "PBSZ takes a number")
    else:
        control.pbsz = True
        control.reply(200, "PBSZ=0")
    return True


async def prot(control: Control, argument: str) -> bool:
    """``PROT P``: data connections use TLS. ``C`` is refused on a TLS connection."""
    level = argument.strip().upper()
    if control.tls is None or not control.pbsz:
        control.reply(503, "Send AUTH TLS and PBSZ 0 first")
    elif level == "P":
        control.protected = True
        control.reply(200, "Data connections will be protected")
    elif level == "C":
        control.reply(534, "Data connections must be protected: PROT P")
    elif level in {"S", "E"}:
        control.reply(536, "Only PROT P is supported")
    else:
        control.reply(504, "Unknown protection level")
    return True


async def user(control: Control, argument: str) -> bool:
    """``USER``: remember the login (always 331: no hint whether it exists)."""
    if control.session is not None:
        control.reply(503, "Already logged in")
        return True
    if control.tls is None:
        listener = control.listener
        network = (
            control.channel.plain_network(listener, control.peer_ip)
            if listener is not None
            else None
        )
        if network is None:
            control.attempts += 1
            _auth_failed(control, argument, "tls_required")
            return _failed_attempt(control, TLS_REQUIRED)
        control.network = network
    control.login = argument
    control.reply(331, "Password required")
    return True


async def pass_(control: Control, argument: str) -> bool:
    """``PASS``: the registry decides; a session opens or the attempt counts."""
    if control.session is not None:
        control.reply(503, "Already logged in")
        return True
    login = control.login
    if login is None:
        control.reply(503, "Send USER first")
        return True
    control.login = None  # one password per USER
    control.attempts += 1
    channel = control.channel
    arrived = channel.config.pacing.arrived()
    async with channel.logins:
        result = await channel.authenticator.authenticate(
            login,
            PasswordCredential(password=argument),
            channel=ChannelKind.ftp,
            peer=control.peer_ip,
        )
    if isinstance(result, AuthFailure):
        fields: dict[str, object] = {}
        if result.reason == "network_not_allowed":
            fields["networks"] = list(result.networks)
        _auth_failed(control, login, result.reason, **fields)
        return await _failed_password(control, arrived)
    if result.sender is None:
        _auth_failed(control, login, "no_sender")
        return await _failed_password(control, arrived)
    return _open_session(control, login, result, SenderNumber(result.sender))


def _open_session(control: Control, login: str, principal: Principal, sender: SenderNumber) -> bool:
    channel = control.channel
    if control.admitted:
        channel.limits.connection_authenticated_or_gone()
        control.admitted = False
    if control.source_counted:
        channel.sources.left_unauthenticated(control.source)
        control.source_counted = False  # logged in: no charge when it ends
    refusal: Rejection | None = channel.limits.open_session(sender)
    if refusal is not None:
        control.log.info("session.refused", login=login, sender=sender, code=int(refusal.code))
        control.refuse(refusal)
        return False
    session_id = secrets.token_hex(8)
    bound = log.bind(
        session_id=session_id,
        peer=control.peer,
        login=login,
        sender=sender,
        listener=control.listener or "public",
        **({"via": control.via} if control.via is not None else {}),
    )
    session = channel.folders.open_session(
        principal=principal, sender=sender, session_id=session_id, channel=CHANNEL, log=bound
    )
    if channel.stopping:
        session.draining = True
    control.session = session
    control.sender = sender
    control.log = bound
    control.opened_at = time.monotonic()
    if channel.metrics is not None:
        channel.metrics.sessions_total.labels(channel=CHANNEL).inc()
        channel.metrics.sessions_active.labels(channel=CHANNEL).inc()
    tls = control.tls
    cipher = tls.cipher() if tls is not None else None
    bound.info(
        "session.opened",
        tls_version=tls.version() if tls is not None else None,
        cipher=cipher[0] if cipher is not None else None,
        network=control.network,
    )
    control.arm(channel.config.idle_timeout_seconds)
    control.reply(230, "Logged in")
    return True
