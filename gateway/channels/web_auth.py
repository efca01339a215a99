"""Who is on a TLS connection of the web channel: the client certificate, checked once.

A session of the web channel is one authenticated TLS connection: the first request of a
connection authenticates its client certificate through the registry; the following requests
of a keep-alive connection reuse the answer (the certificate cannot change on a connection, and
a login per request would cost a database read per file). That is what ``sessions`` counts and
what ``session.opened``/``session.closed`` log, as on SFTP and FTP. A technical user blocked
while its connection is open keeps it until the keep-alive timeout; a new connection is
refused.

Rules (issue 12 §2; SECURITY.md 7):

- The credential is the certificate the TLS handshake proved (``getpeercert(binary_form=True)``
  of the connection's ``ssl_object``); no header is ever read for identity.
- No certificate, a certificate registered on no channel, an expired or not yet valid one, or
  one revoked by its CA's CRL: 401.
  A blocked or deleted technical user, or an enterprise not active: 403. The problem carries a
  gateway code so that a sender's software can branch on it: 153 (certificate not registered),
  902 (expired), 903 (not yet valid), 904 (revoked), 923 (not permitted). The reason stays in
  the log only.
- A certificate that ``config/services.toml`` declares for an online service
  (:class:`ServiceLookup`) opens a service session instead, for the service API only
  (:mod:`gateway.channels.web_services`); the same date and revocation checks come first.
- Sessions per sender are bounded as on SFTP and FTP (``[limits] sender_max_sessions``): a
  connection over the limit is answered 429 with 921 and closed.
- Penalties per source are the ones SFTP and FTP share (:class:`SourceGuard`): a failed
  authentication charges its source, and a source under penalty is answered 429 before any
  registry call. A refused connection is closed after its answer. That 429 carries no gateway
  code, on purpose: the one code near it, 921, is "too many sessions" for a sender, a limit on
  an authenticated sender's own sessions, while a penalty is charged to a source network for
  failed authentications, before any certificate is looked at (the sender is not known, and may
  be someone else's on the same network). Answering 921 would tell a sender's software to close
  its other sessions, which changes nothing; no code in the catalogue says "your network is
  penalised", and SFTP and FTP refuse a penalised source without a code too.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from aiohttp import web

from gateway.channels.limits import SessionLimits
from gateway.channels.penalties import SourceGuard
from gateway.channels.revocation import StillAllowed, revoked
from gateway.channels.web_config import CertificateAuthenticator, WebTls
from gateway.channels.web_problems import problem, refusal
from gateway.core.codes import Code
from gateway.core.trust import load_certificate
from gateway.core.types import SenderNumber
from gateway.ops.metrics import Metrics
from gateway.registry.types import AuthFailure, ChannelKind, Principal, ServiceClient

CHANNEL = "web"
log = structlog.get_logger("gateway.channels.web")

# An authentication failure's answer: (HTTP status, gateway code). A pending or blocked account
# is known to hold the certificate: 403; anything else is not authenticated: 401.
_FORBIDDEN = frozenset({"blocked", "deleted", "enterprise_pending", "channel_not_allowed"})
_DATED = {
    "revoked": (Code.CERTIFICATE_REVOKED, "the client certificate is revoked"),
    "expired": (Code.CERTIFICATE_EXPIRED, "the client certificate has expired"),
    "not_yet_valid": (Code.CERTIFICATE_NOT_YET_VALID, "the client certificate is not valid yet"),
}


class ServiceLookup(Protocol):
    """The online services' client certificates (``config/services.toml``)."""

    def client(self, der: bytes) -> ServiceClient | None:
        """The online service whose declared certificate is ``der``, or None."""
        ...

    def certificates(self) -> list[bytes]:
        """Every declared service certificate (DER): anchors of the handshake."""
        ...


@dataclass(slots=True)
class Session:
    """One authenticated TLS connection: a sender's technical user, or an online service."""

    id: str
    principal: Principal | ServiceClient
    peer: str
    log: Any
    transport: asyncio.BaseTransport | None = None
    ended: Callable[[], object] | None = None
    """Ends the session once (its count, its ``session.closed`` line, its gauge)."""


class Sessions:
    """The authenticated connections, by their TLS object.

    A session ends when its connection is lost (:meth:`end`, called by the connection
    handler); should that call never come, when its TLS object is collected. The count must not
    wait for the collector: uvloop's TLS transport keeps its ``SSLObject`` in a reference cycle,
    so a sender making connection after connection reached its session limit (921) with every
    connection closed.
    """

    def __init__(
        self,
        *,
        authenticator: CertificateAuthenticator,
        tls: WebTls,
        sources: SourceGuard,
        metrics: Metrics | None,
        max_per_sender: int = 20,
        services: ServiceLookup | None = None,
    ) -> None:
        self._authenticator = authenticator
        self._tls = tls
        self._sources = sources
        self._metrics = metrics
        self._services = services
        self.limits = SessionLimits(max_per_sender=max_per_sender, max_startups=0)
        self._by_connection: weakref.WeakKeyDictionary[ssl.SSLObject, Session] = (
            weakref.WeakKeyDictionary()
        )

    def __len__(self) -> int:
        return len(self._by_connection)

    async def revalidate(self, check: StillAllowed) -> int:
        """Close the connections whose client certificate the registry no longer admits (a
        removed web-service channel, a replaced or blocked technical user); returns how many."""
        live = [
            ((tls, s), s.principal)
            for tls, s in list(self._by_connection.items())
            if isinstance(s.principal, Principal)
        ]
        ended = await revoked(live, ChannelKind.webservice, check)
        for tls, session in ended:
            session.log.warning("session.revoked")
            if session.transport is not None:
                session.transport.close()
            self.end(tls)
        return len(ended)

    def end(self, tls: ssl.SSLObject) -> None:
        """The connection of ``tls`` is gone: its session, if it had one, ends now."""
        session = self._by_connection.pop(tls, None)
        if session is not None and session.ended is not None:
            session.ended()

    async def session(self, request: web.BaseRequest) -> Session | web.Response:
        """The request's session, or the problem that refuses it."""
        tls: ssl.SSLObject | None = request.get_extra_info("ssl_object")
        peername = request.get_extra_info("peername")
        peer = str(peername[0]) if isinstance(peername, tuple) and peername else ""
        if tls is None:  # pragma: no cover  (the listener is TLS only)
            return problem(401, "a TLS connection is required")
        known = self._by_connection.get(tls)
        if known is not None:
            return known
        source = self._sources.source(peer)
        if self._sources.penalized(source, time.monotonic()):
            self._sources.refusals.refused(
                channel=CHANNEL, source=source, peer=peer, reason="penalty", metrics=self._metrics
            )
            # No gateway code: 921 is a sender's session limit, not a source's penalty (above).
            return _closing(problem(429, "too many failed authentications from this network"))
        der = tls.getpeercert(binary_form=True)
        answer: Principal | ServiceClient | AuthFailure
        now = datetime.now(UTC)
        if der is None:
            answer = AuthFailure("no_certificate")
        else:
            leaf = load_certificate(der)
            if leaf is None:  # pragma: no cover  (OpenSSL parsed it in the handshake)
                answer = AuthFailure("no_certificate")
            elif now < leaf.not_before:
                answer = AuthFailure("not_yet_valid")
            elif now > leaf.not_after:
                answer = AuthFailure("expired")
            elif self._tls.revoked(der, now) is not None:
                answer = AuthFailure("revoked")
            elif self._services is not None and (service := self._services.client(der)):
                answer = service
            else:
                answer = await self._authenticator.authenticate_certificate(der, peer=peer)
        if isinstance(answer, AuthFailure):
            return self._failed(answer, peer, source)
        return self._opened(tls, answer, peer, request.transport)

    def _failed(self, failure: AuthFailure, peer: str, source: str | None) -> web.Response:
        self._sources.charge(source, tried=True, now=time.monotonic())
        log.info("auth.failed", peer=peer, reason=failure.reason)
        if self._metrics is not None:
            self._metrics.auth_failures_total.labels(channel=CHANNEL, reason=failure.reason).inc()
        if failure.reason in _FORBIDDEN:
            answer = problem(403, "this client certificate may not use the web service now",
                             code=Code.OPERATION_NOT_PERMITTED)  # fmt: skip
        elif failure.reason in _DATED:
            code, detail = _DATED[failure.reason]
            answer = problem(401, detail, code=code)
        else:
            detail = (
                "a client certificate is required"
                if failure.reason == "no_certificate"
                else "this client certificate is not registered on a web-service channel"
            )
            answer = problem(401, detail, code=Code.CERTIFICATE_NOT_REGISTERED)
        return _closing(answer)

    def _opened(
        self,
        tls: ssl.SSLObject,
        principal: Principal | ServiceClient,
        peer: str,
        transport: asyncio.BaseTransport | None,
    ) -> Session | web.Response:
        session_id = uuid.uuid4().hex[:16]
        sender = principal.sender if isinstance(principal, Principal) else None
        if sender is not None:
            over = self.limits.open_session(sender)
            if over is not None:
                log.info("connection.refused", peer=peer, sender=sender, reason="too_many_sessions")
                return _closing(refusal(over))
        if isinstance(principal, Principal):
            bound = log.bind(session=session_id, peer=peer, sender=sender)
            who: dict[str, str] = {"login": principal.login}
        else:
            bound = log.bind(session=session_id, peer=peer, service=principal.name)
            who = {"applications": ",".join(sorted(principal.applications))}
        session = Session(
            id=session_id, principal=principal, peer=peer, log=bound, transport=transport
        )
        self._by_connection[tls] = session
        cipher = tls.cipher()
        bound.info(
            "session.opened",
            **who,
            tls=tls.version(),
            cipher=cipher[0] if cipher else None,
        )
        metrics = self._metrics
        if metrics is not None:
            metrics.sessions_total.labels(channel=CHANNEL).inc()
            metrics.sessions_active.labels(channel=CHANNEL).inc()
        # Ended by end() when the connection is lost, or else when its TLS object is collected.
        session.ended = weakref.finalize(tls, _closed, bound, metrics, self.limits, sender)
        return session


def _closed(
    bound: Any, metrics: Metrics | None, limits: SessionLimits, sender: SenderNumber | None
) -> None:
    if sender is not None:
        limits.close_session(sender)
    bound.info("session.closed")
    if metrics is not None:
        metrics.sessions_active.labels(channel=CHANNEL).dec()


def _closing(response: web.Response) -> web.Response:
    response.force_close()
    return response
