"""The FTP channel's settings in one narrow piece, and what it needs from outside.

:class:`FtpConfig` is built from ``[ftp]`` and ``[limits]`` (:meth:`FtpConfig.from_settings`)
with the TLS server context made once from ``tls_cert``/``tls_key`` or the development identity
(:mod:`gateway.ops.tls`). The registry is reached through :class:`Authenticator`; the secondary
networks through a :data:`PlainNetwork` callable (the networks file's owner injects it; the
default refuses every address, so plain FTP is off until networks are configured).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from gateway.channels.proxy import ProxyPolicy
from gateway.ops.pacing import FailurePacing
from gateway.ops.settings import GatewaySettings
from gateway.ops.tls import listener_identity, server_context
from gateway.registry.types import AuthFailure, ChannelKind, PasswordCredential, Principal

PlainNetwork = Callable[[str, str], str | None]
"""``plain_network(listener_name, address)``: the secondary network that ``address`` belongs to
among those arriving on plain listener ``listener_name``, or None (plain FTP refused)."""

# How long a data connection may stall (accept, TLS handshake, each block, the TLS close), and
# how long a control connection's TLS handshake may take. Not settings (yet): vsftpd's
# equivalents (accept_timeout, data_connection_timeout) are rarely changed.
DATA_TIMEOUT_SECONDS = 60.0
TLS_HANDSHAKE_SECONDS = 30.0


def refuse_plain(listener: str, address: str) -> str | None:
    """The default :data:`PlainNetwork`: no address may use plain FTP."""
    return None


class Authenticator(Protocol):
    """What the FTP channel needs from the registry (``Registry`` satisfies it structurally)."""

    async def authenticate(
        self,
        login: str,
        credential: PasswordCredential,
        *,
        channel: ChannelKind,
        peer: str | None = None,
    ) -> Principal | AuthFailure:
        """Who ``login`` is when it proves ``credential`` from ``peer`` (an IP), or why not."""
        ...


@dataclass(frozen=True, slots=True)
class Listener:
    """A plain listener of the secondary networks: its name (as the networks file names it) and
    its address."""

    name: str
    host: str
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FtpConfig:
    """The FTP(S) listeners' settings."""

    tls: ssl.SSLContext
    host: str = "127.0.0.1"
    port: int = 8021
    plain_listeners: tuple[Listener, ...] = ()
    passive_ports: tuple[int, int] | None = None
    passive_address: str | None = None
    login_grace_seconds: float = 30.0
    idle_timeout_seconds: float = 600.0
    max_startups: int = 100
    max_login_attempts: int = 3
    sender_max_sessions: int = 20
    block_size: int = 256 * 1024
    data_timeout_seconds: float = DATA_TIMEOUT_SECONDS
    tls_handshake_seconds: float = TLS_HANDSHAKE_SECONDS
    pacing: FailurePacing = field(default_factory=FailurePacing)
    """How long after its arrival a failed ``PASS`` is answered."""
    proxy: ProxyPolicy = field(default_factory=ProxyPolicy)
    """Balancers whose control and data connections carry a PROXY v2 header (none: off)."""

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> FtpConfig:
        """The configuration of ``[ftp]`` and ``[limits]``; without ``tls_cert``/``tls_key`` the
        development identity under ``<state_dir>/ftps/`` is made (once) and used."""
        ftp = settings.ftp
        cert, key = listener_identity("ftp", ftp.tls_cert, ftp.tls_key, settings.state_dir / "ftps")
        return cls(
            tls=server_context(cert, key),
            host=ftp.host,
            port=ftp.port,
            plain_listeners=tuple(
                Listener(name, listener.host, listener.port)
                for name, listener in sorted(ftp.plain_listeners.items())
            ),
            passive_ports=ftp.passive_ports,
            passive_address=ftp.passive_address,
            login_grace_seconds=ftp.login_grace_seconds,
            idle_timeout_seconds=ftp.idle_timeout_seconds,
            max_startups=ftp.max_startups,
            max_login_attempts=ftp.max_login_attempts,
            sender_max_sessions=settings.limits.sender_max_sessions,
            block_size=ftp.block_size,
            pacing=FailurePacing.from_settings(settings),
            proxy=ProxyPolicy.of(ftp.proxy_protocol_from),
        )
