"""The web channel's settings in one narrow piece, its TLS context, and what it needs from outside.

How client certificates are verified (issue 12 §2; shared/notes/mtls-http.md). Python's ``ssl``
has no per-certificate verification callback, so the work is split:

- **The handshake proves possession.** The listener requests a client certificate
  (``CERT_OPTIONAL``: a client without one still gets an HTTP answer, a 401 problem). OpenSSL
  checks the client's CertificateVerify signature with the certificate's key, so the
  certificate the application reads is one whose private key the peer holds.
- **The chain is verified against three kinds of anchors**: the CA certificates of the
  signature trust folders (``[signature] trust_dir``), every certificate registered on a
  web-service channel (``Registry.client_certificates()``), and the online services'
  certificates that ``config/services.toml`` declares (``certificates`` of the lookup), with
  ``VERIFY_X509_PARTIAL_CHAIN`` so that a registered certificate is its own anchor: most
  integrators register a self-signed certificate, which no CA vouches for. A certificate that
  chains to none fails the handshake (OpenSSL's "unknown CA" alert: Python's ``ssl`` cannot
  let it through to an HTTP 401). A certificate issued by a trusted CA but registered on no
  channel passes the handshake and gets 401 from the application.
- **Dates are the application's**: the handshake does not check validity dates
  (``X509_V_FLAG_NO_CHECK_TIME``), so that an expired or not-yet-valid certificate gets a 401
  with its code (902, 903) instead of a bare TLS alert. This loosens nothing: a certificate
  authenticates only when it is registered, and a registered certificate is its own anchor, so
  the CA's dates never decided a login; the leaf's dates are checked by
  :mod:`gateway.channels.web_auth` before the registry is asked.
- **The application decides who it is**: the leaf's SHA-256 must be the one registered on a
  web-service channel (:meth:`CertificateAuthenticator.authenticate_certificate`), and a leaf
  issued by a trust-folder CA is checked against that CA's CRLs (revoked: 401). A self-signed
  registered certificate has no CRL; withdrawing it is removing the channel.
- **Anchors change without a restart**: :meth:`WebTls.reload` builds a new context, and the
  listening context's ``sni_callback`` hands each new handshake the current one (connections
  already open keep theirs). The anchors are read at start and at each reload only: a
  self-signed certificate registered since then fails the handshake until the daemon reloads
  (SIGHUP), while one issued by a trust-folder CA is accepted at once.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from gateway.core.trust import TrustStore, load_certificate, pem_blocks, sort_blobs
from gateway.ops.settings import GatewaySettings
from gateway.ops.tls import listener_identity, server_context
from gateway.registry.types import AuthFailure, Principal

# One block of a streamed upload or download.
BLOCK_SIZE = 256 * 1024
# OpenSSL's X509_V_FLAG_NO_CHECK_TIME (x509_vfy.h), which the ssl module does not name.
NO_CHECK_TIME = 0x200000
VERIFY_FLAGS = ssl.VERIFY_X509_PARTIAL_CHAIN | NO_CHECK_TIME


class CertificateAuthenticator(Protocol):
    """What the web channel needs from the registry (``Registry`` satisfies it structurally)."""

    async def authenticate_certificate(
        self, der: bytes, *, peer: str | None = None
    ) -> Principal | AuthFailure:
        """Who holds the web-service channel of client certificate ``der``, or why not."""
        ...

    async def client_certificates(self) -> list[bytes]:
        """Every client certificate registered on a web-service channel (DER)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class WebConfig:
    """The HTTPS listener's settings."""

    tls_cert: Path
    tls_key: Path
    trust_dirs: tuple[Path, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8443
    max_body: int = 200 * 1024 * 1024
    max_notification: int = 16 * 1024 * 1024
    sender_max_sessions: int = 20
    keepalive_seconds: float = 75.0
    list_limit: int = 1000
    block_size: int = BLOCK_SIZE

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> WebConfig:
        """The configuration of ``[web]``, ``[limits]`` and ``[signature]``; without
        ``tls_cert``/``tls_key`` the development identity under ``<state_dir>/web/`` is made
        (once) and used."""
        web = settings.web
        cert, key = listener_identity("web", web.tls_cert, web.tls_key, settings.state_dir / "web")
        return cls(
            tls_cert=cert,
            tls_key=key,
            trust_dirs=(settings.signature.trust_dir,),
            host=web.host,
            port=web.port,
            max_body=settings.limits.max_file_bytes,
            max_notification=web.max_notification_bytes,
            sender_max_sessions=settings.limits.sender_max_sessions,
            keepalive_seconds=web.keepalive_seconds,
            list_limit=web.list_limit,
        )


def _read_trust(folders: Iterable[Path]) -> tuple[list[bytes], list[bytes]]:
    """Certificates and CRLs of the trust folders (blocking; missing folders are skipped).

    The same walk as the registry's ``read_trust_files``, which a channel may not import (a
    channel sees the registry's types only: tests/test_layering.py)."""
    blobs = [
        path.read_bytes()
        for folder in folders
        if folder.is_dir()
        for path in sorted(folder.iterdir())
        if path.is_file()
    ]
    return sort_blobs(blobs)


def client_context(config: WebConfig, anchors: Iterable[bytes]) -> ssl.SSLContext:
    """The server context (TLS 1.2+, the FTPS listener's suites) asking for a client
    certificate verified against ``anchors`` (DER or PEM certificates)."""
    context = server_context(config.tls_cert, config.tls_key)
    context.verify_mode = ssl.CERT_OPTIONAL
    context.verify_flags |= VERIFY_FLAGS
    for blob in anchors:
        pems = [d for label, d in pem_blocks(blob) if label == "CERTIFICATE"]
        for der in pems if b"-----BEGIN" in blob else [blob]:
            context.load_verify_locations(cadata=der)
    return context


class WebTls:
    """The listener's TLS context and the trust store its revocation checks read; both rebuilt
    by :meth:`reload`."""

    def __init__(
        self,
        config: WebConfig,
        authenticator: CertificateAuthenticator,
        services: Callable[[], list[bytes]] | None = None,
    ) -> None:
        self._config = config
        self._authenticator = authenticator
        self._services = services
        self.trust = TrustStore.from_blobs([])
        self._current: ssl.SSLContext | None = None
        self.listening = server_context(config.tls_cert, config.tls_key)
        # The handshake keeps the first context's verify mode and flags (OpenSSL's
        # SSL_set_SSL_CTX swaps the certificate store, not the parameters): set them here too.
        self.listening.verify_mode = ssl.CERT_OPTIONAL
        self.listening.verify_flags |= VERIFY_FLAGS
        self.listening.sni_callback = self._pick

    def _pick(self, sslobj: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        # Every handshake (with or without SNI) runs this: it gets the current anchors.
        if self._current is not None:
            sslobj.context = self._current

    async def reload(self) -> int:
        """Read the trust folders and the registered certificates again; returns how many
        anchors the new context holds."""
        registered = await self._authenticator.client_certificates()
        if self._services is not None:
            registered = [*registered, *self._services()]
        certs, crls = await asyncio.to_thread(_read_trust, self._config.trust_dirs)
        trust = TrustStore.from_blobs(certs, crls)
        context = await asyncio.to_thread(client_context, self._config, [*certs, *registered])
        self.trust, self._current = trust, context
        return len(certs) + len(registered)

    def revoked(self, der: bytes, now: datetime) -> str | None:
        """Why the client certificate ``der`` is revoked by a trust-folder CA's CRL, or None
        (not revoked, or not issued by a trust-folder CA: a registered anchor of its own)."""
        leaf = load_certificate(der)
        if leaf is None:
            return None
        chain = self.trust.chain_for(leaf, (), now)
        if not isinstance(chain, tuple):
            return None
        rejection = self.trust.revocation(leaf, chain, now, require_crl=False)
        return None if rejection is None else rejection.reason
