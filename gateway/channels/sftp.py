"""The SFTP channel: an asyncssh listener that authenticates through the registry.

Rules (SECURITY.md 6, 9, 13, 15; issue 4):

- Host keys (Ed25519, RSA) come from ``<state_dir>/hostkeys`` and are created on first start.
- Modern algorithms only (ML-KEM/curve25519 KEX, AES-GCM or AES-CTR with ETM MACs, no SHA-1
  signatures, no compression); strict KEX (Terrapin) is negotiated by asyncssh, and
  chacha20-poly1305 is left out so that even a client without strict KEX is not exposed.
- A session that has carried 4 MiB moves its connection to AES-GCM by one key re-exchange when
  its client listed AES-GCM (:mod:`gateway.channels.ssh_rekey`): a large upload does not pay an
  HMAC per packet because the client's own order put AES-CTR first.
- The banner says ``SSH-2.0-BatchGateway``: no product version.
- Public-key login through :class:`Authenticator` (the registry); password login only when
  ``allow_password`` is on, and then the registry still decides (channel, enterprise switch).
- Only the ``sftp`` subsystem (SFTP v3, spoken by :mod:`gateway.channels.sftp_layer`): no shell,
  exec, scp, forwarding, agent or X11.
- Limits: ``max_startups`` unauthenticated connections, a login grace time, sessions per
  sender (921, sent as the disconnect text), and an idle timeout.
- Password guessing (issue 15 item 4): at most ``max_password_attempts`` password attempts per
  connection, then it is disconnected; each failed one charges the source at once (the
  :class:`SourceGuard`) and is answered (or disconnected) only ``pacing`` seconds after it
  arrived (:mod:`gateway.ops.pacing`), so a guesser cannot spin; the registry checks them in
  its bounded pool and under the shared account lockout.
- Session channels per connection (issue 15 item 9): at most ``max_sessions_per_connection``
  open at once; one more is refused at its open (OpenSSH's ``MaxSessions``), before anything
  is allocated for it.
- Refused connections are logged per source at a bounded rate (``gateway.channels.refusals``).
- Behind a load balancer (``proxy_protocol_from``, issue 15 item 6) the listener accepts only
  the balancers, reads each connection's PROXY v2 header (:mod:`gateway.channels.proxy`) and
  starts SSH on the socket with the client the header names: that address is the peer of the
  penalties, the limits per source and every log line (``via``: the balancer).
- Events: ``session.opened``/``session.closed`` (peer, login, sender, algorithms),
  ``auth.failed`` (a reason code, never a secret), ``upload.refused``, ``upload.stored``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import asyncssh
import structlog

from gateway.channels.hostkeys import load_host_keys
from gateway.channels.limits import SessionLimits
from gateway.channels.penalties import PenaltyPolicy, SourceGuard
from gateway.channels.proxy import Endpoint, ProxiedListener, ProxyPolicy
from gateway.channels.revocation import REVOKED_TEXT, StillAllowed, revoked
from gateway.channels.sftp_layer import SftpSession
from gateway.channels.sftp_session import GatewaySFTPServer
from gateway.channels.sftp_values import CHANNEL, Session
from gateway.channels.ssh_ignore import skip_ignore_packets
from gateway.channels.ssh_logging import check_level_first
from gateway.channels.ssh_reads import AcceptedSockets, PieceListener
from gateway.channels.ssh_rekey import move_to_gcm
from gateway.core.types import SenderNumber
from gateway.ops.metrics import Metrics
from gateway.ops.pacing import FailurePacing
from gateway.ops.settings import SSH_CIPHERS, GatewaySettings
from gateway.registry.types import (
    AuthFailure,
    ChannelKind,
    PasswordCredential,
    Principal,
    PublicKeyCredential,
)
from gateway.spool.folders import Folders

log = structlog.get_logger("gateway.channels.sftp")

BANNER = "BatchGateway"
# Distinct (login, key) pairs one connection may try; each costs a registry look-up.
MAX_KEYS_PER_CONNECTION = 10
# Stopping: how often the drain looks for transfers that ended, and how long it then gives the
# ended connections' clean-up (uploads aborted, session.closed logged).
DRAIN_POLL_SECONDS = 0.05
DRAIN_LOST_SECONDS = 5.0
KEX_ALGS = (
    "mlkem768x25519-sha256",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
)
MAC_ALGS = ("hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com")
SIGNATURE_ALGS = ("ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256")


class Authenticator(Protocol):
    """What the channel needs from the registry (``Registry`` satisfies it structurally)."""

    async def authenticate(
        self,
        login: str,
        credential: PublicKeyCredential | PasswordCredential,
        *,
        channel: ChannelKind,
    ) -> Principal | AuthFailure:
        """Who ``login`` is when it proves ``credential``, or why not."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SftpConfig:
    """The SFTP listener's settings, in one narrow piece."""

    host: str = "127.0.0.1"
    port: int = 8022
    host_key_dir: Path
    login_grace_seconds: float = 30.0
    idle_timeout_seconds: float = 600.0
    max_startups: int = 100
    sender_max_sessions: int = 20
    allow_password: bool = False
    max_password_attempts: int = 3
    max_sessions_per_connection: int = 8
    ciphers: tuple[str, ...] = SSH_CIPHERS
    penalties: PenaltyPolicy = field(default_factory=PenaltyPolicy)
    pacing: FailurePacing = field(default_factory=FailurePacing)
    proxy: ProxyPolicy = field(default_factory=ProxyPolicy)

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> SftpConfig:
        """The configuration of ``[sftp]`` and ``[limits]``."""
        return cls(
            host=settings.sftp.host,
            port=settings.sftp.port,
            host_key_dir=settings.state_dir / "hostkeys",
            login_grace_seconds=settings.sftp.login_grace_seconds,
            idle_timeout_seconds=settings.sftp.idle_timeout_seconds,
            max_startups=settings.sftp.max_startups,
            sender_max_sessions=settings.limits.sender_max_sessions,
            allow_password=settings.sftp.password_login,
            max_password_attempts=settings.sftp.max_password_attempts,
            max_sessions_per_connection=settings.sftp.max_sessions_per_connection,
            ciphers=settings.sftp.ciphers,
            penalties=PenaltyPolicy.from_settings(settings),
            pacing=FailurePacing.from_settings(settings),
            proxy=ProxyPolicy.of(settings.sftp.proxy_protocol_from),
        )


class _Connection(asyncssh.SSHServer):
    """One SSH connection: authentication, session limits and the idle timer."""

    def __init__(self, gateway: SftpGateway) -> None:
        self._gateway = gateway
        self._client: Endpoint | None = None
        """The client a balancer's PROXY header named (None: the TCP peer is the client)."""
        self._via: str | None = None
        """That balancer (``ip:port``), for the log."""
        self._conn: asyncssh.SSHServerConnection | None = None
        self._peer = "?"
        self._source: str | None = None
        self._admitted = False
        self._source_counted = False
        self._tried = False
        self._password_attempts = 0
        self._channels = 0
        self._principals: dict[str, Principal] = {}
        self._key_verdicts: dict[tuple[str, str], bool] = {}
        self.session: Session | None = None
        self._opened_at = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None

    # -- connection lifecycle --------------------------------------------------------------------

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._gateway.connections.add(self)
        origin = self._gateway.origins.pop(conn, None)
        if origin is not None:
            self._client, self._via = origin
        client = self._client
        peer = (client.ip, client.port) if client else conn.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        guard = self._gateway.sources
        self._source = guard.source(str(peer[0])) if peer else None
        refused = guard.admit(self._source, time.monotonic())
        if refused is None:
            self._source_counted = True
            self._admitted = self._gateway.limits.admit_connection()
            if not self._admitted:
                refused = "max_startups"
        if refused is not None:
            guard.refusals.refused(
                channel=CHANNEL,
                source=self._source,
                peer=self._peer,
                reason=refused,
                metrics=self._gateway.metrics,
                **({"via": self._via} if self._via else {}),
            )
            conn.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._gateway.connection_lost(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._admitted and self.session is None:
            self._gateway.limits.connection_authenticated_or_gone()
            self._admitted = False
        if self._source_counted:
            # Ended without logging in: charge the source (OpenSSH's PerSourcePenalties),
            # unless its failed passwords were charged one by one already.
            self._left_unauthenticated()
            if not self._password_attempts:
                now = time.monotonic()
                left = self._gateway.sources.charge(self._source, tried=self._tried, now=now)
                self._penalized(left, now, "authfail" if self._tried else "noauth")
        session = self.session
        if session is not None:
            # Ended here too: a login that never started the sftp subsystem has no server whose
            # exit() would (a second end() finds nothing to do).
            session.files.end()
            self._gateway.limits.close_session(session.sender)
            self._gateway.session_closed(self)
            files = session.files
            session.log.info(
                "session.closed",
                duration=round(time.monotonic() - self._opened_at, 3),
                stored=files.stored,
                refused=files.refused,
                bytes_stored=files.bytes_stored,
                error=type(exc).__name__ if exc else None,
            )
        self._principals.clear()
        self._key_verdicts.clear()

    @property
    def busy(self) -> bool:
        """A transfer is in progress: a file is open, a commit or removal is not answered yet,
        or an upload waits for the rename from its client temporary name (``.filepart``), which
        clients send right after the close."""
        session = self.session
        return session is not None and session.files.busy

    def stop_opening(self) -> None:
        """The gateway is stopping: the session may finish its transfers, not start new ones."""
        if self.session is not None:
            self.session.files.draining = True

    def end(self, reason: str = "the gateway is stopping") -> None:
        """Disconnect (once): the clean-up aborts any upload still open, as a lost link does."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.disconnect(asyncssh.DISC_BY_APPLICATION, reason)

    def _penalized(self, left: float, now: float, reason: str) -> None:
        if self._gateway.sources.penalized(self._source, now):
            log.warning(
                "source.penalized",
                peer=self._peer,
                source=self._source,
                reason=reason,
                seconds=round(left, 1),
            )

    def _left_unauthenticated(self) -> None:
        if self._source_counted:
            self._gateway.sources.left_unauthenticated(self._source)
            self._source_counted = False

    # -- authentication --------------------------------------------------------------------------

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return self._gateway.config.allow_password

    def public_key_auth_supported(self) -> bool:
        return True

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        text = key.export_public_key("openssh").decode("ascii").strip()
        # asyncssh asks twice per key (the "would you accept" probe, then the signed request):
        # the registry is asked once per (login, key) and connection.
        cached = self._key_verdicts.get((username, text))
        if cached is None and len(self._key_verdicts) >= MAX_KEYS_PER_CONNECTION:
            log.info("auth.failed", peer=self._peer, login=username, reason="too_many_keys")
            return False
        if cached is None:
            credential = PublicKeyCredential(openssh_public_key=text)
            cached = await self._check(username, credential, "publickey")
            self._key_verdicts[(username, text)] = cached
        return cached

    async def validate_password(self, username: str, password: str) -> bool:
        config = self._gateway.config
        limit = config.max_password_attempts
        if self._password_attempts >= limit:  # pragma: no cover  (disconnected at the limit)
            return False
        self._password_attempts += 1
        arrived = config.pacing.arrived()
        try:
            ok = await self._check(username, PasswordCredential(password=password), "password")
        except asyncio.CancelledError:
            # The client went away, or sent its next request, before this one was answered
            # (asyncssh then cancels it): a guess all the same, and the end of the connection
            # charges nothing once passwords were tried.
            self._charge_attempt()
            raise
        if ok:
            return True
        # Charged now, not when the connection ends: guesses cannot outrun their penalty.
        self._charge_attempt()
        # Answered (or cut) only after the pacing delay, a sleep holding no pool slot: a busy
        # refusal must not turn into an instant reconnect.
        await config.pacing.answer_failure(arrived)
        if self._password_attempts >= limit and self._conn is not None:
            log.info("login.attempts_exhausted", peer=self._peer, attempts=limit)
            self._conn.disconnect(
                asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE, "too many authentication failures"
            )
        return False

    def _charge_attempt(self) -> None:
        """Charge the source for one failed password attempt, now."""
        now = time.monotonic()
        self._penalized(self._gateway.sources.charge_attempt(self._source, now), now, "authfail")

    async def _check(
        self, username: str, credential: PublicKeyCredential | PasswordCredential, method: str
    ) -> bool:
        result = await self._gateway.authenticator.authenticate(
            username, credential, channel=ChannelKind.sftp
        )
        if isinstance(result, AuthFailure):
            self._tried = True
            self._gateway.auth_failed(result.reason)
            log.info(
                "auth.failed", peer=self._peer, login=username, method=method, reason=result.reason
            )
            return False
        if result.sender is None:
            self._tried = True
            self._gateway.auth_failed("no_sender")
            log.info(
                "auth.failed", peer=self._peer, login=username, method=method, reason="no_sender"
            )
            return False
        self._principals[username] = result
        return True

    def auth_completed(self) -> None:
        conn = self._conn
        if conn is None:
            return
        if self._admitted:
            self._gateway.limits.connection_authenticated_or_gone()
            self._admitted = False
        login = str(conn.get_extra_info("username"))
        if login in self._principals:
            self._left_unauthenticated()  # logged in: no charge when it ends
        principal = self._principals.get(login)
        self._principals.clear()
        self._key_verdicts.clear()
        if principal is None or principal.sender is None:
            conn.disconnect(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE, "authentication failed")
            return
        sender = SenderNumber(principal.sender)
        refusal = self._gateway.limits.open_session(sender)
        if refusal is not None:
            log.info(
                "session.refused",
                peer=self._peer,
                login=login,
                sender=sender,
                code=int(refusal.code),
            )
            conn.disconnect(asyncssh.DISC_TOO_MANY_CONNECTIONS, str(refusal))
            return
        session_id = os.urandom(8).hex()
        # Bound to every line of the session: its id and sender. Who and where from (peer,
        # login, a balancer) are said once, in session.opened (issue 14: cheaper logs).
        bound = log.bind(session_id=session_id, sender=sender)
        files = self._gateway.folders.open_session(
            principal=principal, sender=sender, session_id=session_id, channel=CHANNEL, log=bound
        )
        self.session = Session(
            principal=principal,
            sender=sender,
            peer=self._peer,
            files=files,
            on_end=self._gateway.sftp_ended,
        )
        self._gateway.session_opened(self)
        if self._gateway.stopping:
            files.draining = True
        self._opened_at = time.monotonic()
        bound.info(
            "session.opened",
            peer=self._peer,
            login=login,
            **({"via": self._via} if self._via is not None else {}),
            cipher=conn.get_extra_info("send_cipher"),
            mac=conn.get_extra_info("send_mac"),
            client_version=conn.get_extra_info("client_version"),
        )
        self._arm_idle_timer(self._gateway.config.idle_timeout_seconds)

    # -- idle timeout ----------------------------------------------------------------------------

    def _arm_idle_timer(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self._idle_timer = loop.call_later(delay, self._idle_check)

    def _idle_check(self) -> None:
        session, conn = self.session, self._conn
        if session is None or conn is None:
            return
        timeout = self._gateway.config.idle_timeout_seconds
        idle = time.monotonic() - session.last_activity
        if idle < timeout:
            self._arm_idle_timer(timeout - idle)
            return
        self._idle_timer = None
        session.log.info("session.idle", idle_seconds=round(idle, 1))
        conn.disconnect(asyncssh.DISC_BY_APPLICATION, "idle timeout")

    # -- the SFTP subsystem ----------------------------------------------------------------------

    def session_requested(self) -> SftpSession:
        """A session channel: at most ``max_sessions_per_connection`` at once on a connection
        (each holds buffers and an SFTP server); its only use is the sftp subsystem."""
        session = self.session
        if session is None:  # asyncssh opens channels only after auth_completed
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "no session")
        limit = self._gateway.config.max_sessions_per_connection
        if self._channels >= limit:
            session.log.info("channel.refused", reason="max_sessions_per_connection", limit=limit)
            self._gateway.channels_refused += 1
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                f"at most {limit} sessions per connection",
            )
        self._channels += 1
        return SftpSession(self)

    def channel_closed(self) -> None:
        """A session channel of this connection closed."""
        self._channels = max(0, self._channels - 1)

    def bulk_transfer(self) -> None:
        """A session of this connection has carried enough bytes to move it to AES-GCM
        (:mod:`gateway.channels.ssh_rekey`); logged as ``transport.rekey`` when it starts."""
        conn, session = self._conn, self.session
        if conn is None or session is None:
            return
        offered = move_to_gcm(conn, list(self._gateway.config.ciphers))
        if offered is not None:
            session.log.info("transport.rekey", reason="bulk_transfer", ciphers=offered)

    def sftp_server(self, chan: asyncssh.SSHServerChannel[bytes]) -> GatewaySFTPServer:
        session = self.session
        if session is None:  # asyncssh opens channels only after auth_completed
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "no session")
        return GatewaySFTPServer(chan, session=session)


class SftpGateway:
    """The SFTP listener: ``await start()``; to stop, ``await drain(seconds)`` (or ``close()``
    and ``await wait_closed()``, which leave the open connections to the caller)."""

    def __init__(
        self,
        *,
        config: SftpConfig,
        authenticator: Authenticator,
        folders: Folders,
        sources: SourceGuard | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.authenticator = authenticator
        self.folders = folders
        self.metrics = metrics
        self.limits = SessionLimits(
            max_per_sender=config.sender_max_sessions, max_startups=config.max_startups
        )
        # Shared with the other channels when given: a source penalised on one is on all.
        self.sources = sources if sources is not None else SourceGuard(config.penalties)
        self.sessions: set[_Connection] = set()
        self.connections: set[_Connection] = set()
        self._lost = asyncio.Event()
        self.stopping = False
        self.sftp_sessions_ended = 0
        self.channels_refused = 0
        """Session channels refused by ``max_sessions_per_connection`` (tests, statistics)."""
        self._end_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._server: asyncssh.SSHAcceptor | None = None
        self._accepted: AcceptedSockets | None = None
        self.origins: dict[object, tuple[Endpoint, str]] = {}
        """Connections from a balancer, not started yet: the client its header named, and the
        balancer (taken by the connection's owner when it starts)."""

    def auth_failed(self, reason: str) -> None:
        """Count a failed login attempt (the password-spraying alert reads this)."""
        if self.metrics is not None:
            self.metrics.auth_failures_total.labels(channel=CHANNEL, reason=reason).inc()

    def session_opened(self, connection: _Connection) -> None:
        """A login became a session."""
        self.sessions.add(connection)
        if self.metrics is not None:
            self.metrics.sessions_total.labels(channel=CHANNEL).inc()
            self.metrics.sessions_active.labels(channel=CHANNEL).inc()

    def session_closed(self, connection: _Connection) -> None:
        """A session ended."""
        self.sessions.discard(connection)
        if self.metrics is not None:
            self.metrics.sessions_active.labels(channel=CHANNEL).dec()

    def connection_lost(self, connection: _Connection) -> None:
        """A connection is gone (its clean-up runs next, in the same callback)."""
        self.connections.discard(connection)
        self._lost.set()

    def sftp_ended(self) -> None:
        """An SFTP session finished its clean-up (its uncommitted uploads are gone)."""
        self.sftp_sessions_ended += 1
        waiting = []
        for count, future in self._end_waiters:
            if count <= self.sftp_sessions_ended:
                if not future.done():
                    future.set_result(None)
            else:
                waiting.append((count, future))
        self._end_waiters = waiting

    async def wait_sftp_ended(self, count: int) -> None:
        """Wait until ``count`` SFTP sessions have finished their clean-up (tests, drains)."""
        if self.sftp_sessions_ended >= count:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._end_waiters.append((count, future))
        await future

    async def start(self) -> None:
        """Load (or create) the host keys and start listening."""
        check_level_first()
        skip_ignore_packets()
        keys = await asyncio.to_thread(load_host_keys, self.config.host_key_dir)
        keypairs = asyncssh.load_keypairs(keys)
        for keypair in keypairs:
            # asyncssh offers every signature an RSA key can make, SHA-1 ``ssh-rsa`` included.
            keypair.host_key_algorithms = [
                alg for alg in keypair.host_key_algorithms if alg.decode() in SIGNATURE_ALGS
            ]
        options = dict(
            server_host_keys=keypairs,
            # No sftp_factory here: _Connection.session_requested counts each session channel
            # and hands it the gateway's own SFTP layer (gateway.channels.sftp_layer).
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            # No terminal: a PTY request is refused, and no session is wrapped in asyncssh's
            # line editor (its default), whose layer every SFTP write went through.
            allow_pty=False,
            line_editor=False,
            login_timeout=self.config.login_grace_seconds,
            server_version=BANNER,
            kex_algs=list(KEX_ALGS),
            encryption_algs=list(self.config.ciphers),
            mac_algs=list(MAC_ALGS),
            compression_algs=["none"],
            signature_algs=list(SIGNATURE_ALGS),
            keepalive_interval=0,
        )
        # Each connection reads in pieces (gateway.channels.ssh_reads). The listening socket
        # is the event loop's, or, behind balancers, the PROXY listener's, which reads each
        # connection's header before it hands the socket on (_handoff).
        tunnel: PieceListener | AcceptedSockets = PieceListener()
        if self.config.proxy.on:
            tunnel = self._accepted = AcceptedSockets(
                ProxiedListener(
                    policy=self.config.proxy,
                    channel=CHANNEL,
                    sources=self.sources,
                    handoff=self._handoff,
                    metrics=self.metrics,
                )
            )
        self._server = await asyncssh.listen(
            self.config.host,
            self.config.port,
            server_factory=lambda: _Connection(self),
            tunnel=tunnel,
            **options,
        )

    async def _handoff(self, sock: socket.socket, client: Endpoint, balancer: str) -> None:
        """Start SSH on a balancer's connection whose header named ``client``; from then on it
        is a connection like any other (its failures are its own, logged there)."""
        if self._accepted is None:  # pragma: no cover - handed only by the PROXY listener
            raise RuntimeError("no PROXY listener")
        connection = self._accepted.connection()
        self.origins[connection] = (client, balancer)
        try:
            await self._accepted.run(connection, sock)
        except OSError:  # the balancer's connection went away before SSH started
            sock.close()
        finally:
            self.origins.pop(connection, None)  # taken when it started, else nobody's

    @property
    def port(self) -> int:
        """The port listened on (useful with port 0)."""
        if self._server is None:
            raise RuntimeError("the SFTP listener is not started")
        return int(self._server.get_port())

    async def revalidate(self, check: StillAllowed) -> int:
        """End the sessions whose credential the registry no longer admits (a removed key, a
        replaced or blocked technical user); returns how many."""
        live = [(c, c.session.principal) for c in self.sessions if c.session is not None]
        ended = await revoked(live, ChannelKind.sftp, check)
        for connection in ended:
            if connection.session is not None:
                connection.session.files.log.warning("session.revoked")
            connection.end(REVOKED_TEXT)
        return len(ended)

    def close(self) -> None:
        """Stop accepting connections and opening files; :meth:`drain` ends the open ones."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        self.sources.refusals.close()
        for connection in self.connections:
            connection.stop_opening()

    async def drain(self, seconds: float) -> int:
        """End every connection: idle ones at once, one with a transfer in progress when the
        transfer ends, any left at ``seconds``. Returns how many were cut at the deadline
        (their uploads are aborted: nothing visible, nothing recorded)."""
        self.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            for connection in list(self.connections):
                if not connection.busy:
                    connection.end()
            if not any(c.busy for c in self.connections) or loop.time() >= deadline:
                break
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        cut = [c for c in self.connections if c.busy]
        for connection in cut:
            connection.end()
        # The clean-up of each connection (uploads aborted, session.closed) runs as it is lost.
        lost_by = loop.time() + DRAIN_LOST_SECONDS
        while self.connections:
            self._lost.clear()
            try:
                await asyncio.wait_for(self._lost.wait(), timeout=max(0.0, lost_by - loop.time()))
            except TimeoutError:
                break
        await self.wait_closed()
        return len(cut)

    async def wait_closed(self) -> None:
        """Wait until the listener is closed (connections: :meth:`drain`)."""
        if self._server is not None:
            await self._server.wait_closed()
