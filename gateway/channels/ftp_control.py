"""One FTP control connection's state, and what every connection of the channel shares.

:class:`Channel` is built once per :class:`~gateway.channels.ftp.FtpGateway`: the settings, the
registry, the folder service, the shared per-source penalties, the session limits, the passive
ports. :class:`Control` is one control connection, typed and owned by the listener's dispatcher:
its TLS state, its login attempts, its folder session, its current folder, its one passive
listener and its one transfer task. aioftp's own per-connection bag (``Connection``) is used
only for what its dispatcher needs (the reply queue).

Rules:

- Replies never carry exception text (SECURITY.md 22) and are cleaned of control characters.
- The transfer task is owned here: cancelled and awaited when the connection ends or ``ABOR``
  arrives, so nothing outlives its connection.
- The timer is the login grace until login, then the idle timeout (a transfer in progress is
  activity: its blocks touch the clock).
- Ending a connection from outside (a timer, a drain) writes one ``421`` line, stops reading,
  and closes; the dispatcher then sees the end of input and cleans up like any other end.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway.channels.ftp_config import Authenticator, FtpConfig, PlainNetwork
from gateway.channels.ftp_data import PassiveListener, PassivePorts
from gateway.channels.ftp_replies import clean_text, refusal
from gateway.channels.limits import SessionLimits
from gateway.channels.penalties import SourceGuard
from gateway.core.codes import Rejection
from gateway.core.types import SenderNumber
from gateway.ops.metrics import Metrics
from gateway.spool.folders import Folders, FolderSession

CHANNEL = "ftp"
# Registry password checks in flight at once over all connections (argon2 is deliberately slow:
# SECURITY.md 21); the attempts per connection are capped by ``max_login_attempts``.
MAX_LOGINS_IN_FLIGHT = 8
# A connection ended from outside that does not take its 421 and close within this is cut.
END_GRACE_SECONDS = 5.0

log = structlog.get_logger("gateway.channels.ftp")


@dataclass(slots=True, kw_only=True, eq=False)
class Channel:
    """What every FTP connection of one gateway shares."""

    config: FtpConfig
    authenticator: Authenticator
    folders: Folders
    sources: SourceGuard
    limits: SessionLimits
    plain_network: PlainNetwork
    metrics: Metrics | None
    ports: PassivePorts
    logins: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(MAX_LOGINS_IN_FLIGHT)
    )
    controls: set[Control] = field(default_factory=set)
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: bool = False


@dataclass(slots=True, kw_only=True, eq=False)
class Control:
    """One control connection."""

    channel: Channel
    listener: str | None
    """The plain listener it arrived on (None: the public FTPS listener)."""
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer_ip: str
    peer: str
    """The client (behind a balancer: the one its PROXY header named)."""
    via: str | None = None
    """The balancer the connection came through (None: straight from the client)."""
    local_ip: str
    source: str | None
    log: Any
    connection: Any = None
    """aioftp's per-connection bag, for its reply queue (set by the command wrapper)."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    readable: asyncio.Event = field(default_factory=asyncio.Event)
    """Cleared from ``AUTH`` until the TLS upgrade: no command is read in between."""
    # -- TLS
    tls_pending: bool = False
    pbsz: bool = False
    protected: bool = False
    # -- login
    login: str | None = None
    network: str | None = None
    attempts: int = 0
    tried: bool = False
    admitted: bool = False
    """Counted in ``limits.unauthenticated``."""
    source_counted: bool = False
    """Counted in the source's unauthenticated connections (charged if it ends so)."""
    # -- session
    session: FolderSession | None = None
    sender: SenderNumber | None = None
    cwd: str = "/"
    rename_from: str | None = None
    passive: PassiveListener | None = None
    transfer: asyncio.Task[None] | None = None
    opened_at: float = field(default_factory=time.monotonic)
    last_activity: float = field(default_factory=time.monotonic)
    timer: asyncio.TimerHandle | None = None
    closing: bool = False

    # -- replies -----------------------------------------------------------------------------

    def reply(self, code: int | str, text: str | list[str], multiline: bool = False) -> None:
        """Queue a reply (in order with every other reply of this connection)."""
        if isinstance(text, list):
            cleaned: str | list[str] = [clean_text(line) for line in text]
        else:
            cleaned = clean_text(text)
        if self.connection is not None:
            self.connection.response(str(code), cleaned, multiline)

    def refuse(self, rejection: Rejection) -> None:
        """Reply with the FTP form of a gateway refusal (``553 108: ...``)."""
        code, text = refusal(rejection)
        self.reply(code, text)

    # -- state -------------------------------------------------------------------------------

    @property
    def tls(self) -> ssl.SSLObject | None:
        """The control connection's TLS session, once ``AUTH TLS`` is done."""
        ssl_object = self.writer.get_extra_info("ssl_object")
        return ssl_object if isinstance(ssl_object, ssl.SSLObject) else None

    @property
    def transferring(self) -> bool:
        """A data transfer is in progress."""
        return self.transfer is not None and not self.transfer.done()

    @property
    def busy(self) -> bool:
        """A transfer, a commit or a rename the client waits for (a drain lets it finish)."""
        return self.transferring or (self.session is not None and self.session.busy)

    def touch(self) -> None:
        """Note activity (the idle timeout counts from the last command or data block)."""
        self.last_activity = time.monotonic()

    def path(self, argument: str) -> str:
        """The virtual path of a command's argument: absolute as given, else joined to the
        current folder as text. Never cleaned here: the folder service canonicalises (and
        refuses ``..``, ``%2e``, backslashes...) identically for every channel."""
        if argument.startswith("/"):
            return argument
        if argument == "":
            return self.cwd
        return self.cwd.rstrip("/") + "/" + argument

    def buffered_input(self) -> int:
        """Bytes received but not yet read as commands.

        After ``AUTH TLS`` nothing may be waiting: bytes sent in clear behind the ``AUTH`` line
        would otherwise be read as if they came over TLS (STARTTLS command injection,
        CVE-2011-0411). asyncio has no public accessor for a reader's buffer, hence the
        attribute read; an asyncio without it reports 0, and the TLS handshake then fails on
        the stray bytes instead.
        """
        return len(getattr(self.reader, "_buffer", b""))

    def pause_reading(self) -> None:
        """Stop reading from the peer (before a TLS upgrade, or when ending)."""
        transport = self.writer.transport
        # A TLS transport the peer already closed has dropped its protocol: pausing it would
        # raise AttributeError (asyncio's sslproto), and there is nothing left to read anyway.
        if isinstance(transport, asyncio.ReadTransport) and not transport.is_closing():
            transport.pause_reading()

    # -- timers ------------------------------------------------------------------------------

    def arm(self, delay: float) -> None:
        """(Re)arm the one timer: the login grace before login, the idle check after."""
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(delay, self._expired)

    def _expired(self) -> None:
        self.timer = None
        config = self.channel.config
        if self.session is None:
            self.log.info("login.timeout", seconds=config.login_grace_seconds)
            self.end("Login timeout: closing control connection")
            return
        if self.transferring:
            self.arm(config.idle_timeout_seconds)
            return
        idle = time.monotonic() - self.last_activity
        if idle < config.idle_timeout_seconds:
            self.arm(config.idle_timeout_seconds - idle)
            return
        self.session.log.info("session.idle", idle_seconds=round(idle, 1))
        self.end("Idle timeout: closing control connection")

    # -- ending --------------------------------------------------------------------------------

    def end(self, text: str, *, abort: bool = False) -> None:
        """End the connection from outside: one ``421`` line, no more reading, close (``abort``:
        at once, dropping what is unsent). The dispatcher then reads the end of input."""
        if self.closing:
            return
        self.closing = True
        transport = self.writer.transport
        # A transport already closing (the peer left first) takes no more bytes: asyncio's TLS
        # transport has then dropped its protocol, and a write would raise AttributeError.
        if not transport.is_closing():
            with contextlib.suppress(RuntimeError, OSError):
                self.pause_reading()
                self.writer.write(f"421 {clean_text(text)}\r\n".encode())
        if abort:
            transport.abort()
        else:
            self.writer.close()
            asyncio.get_running_loop().call_later(END_GRACE_SECONDS, transport.abort)
        self.reader.feed_eof()
        self.readable.set()

    async def stop_transfer(self) -> bool:
        """Cancel the transfer in progress and wait for its clean-up; whether there was one."""
        task, self.transfer = self.transfer, None
        if task is None:
            return False
        running = not task.done()
        task.cancel()
        await asyncio.wait([task])
        return running

    def close_passive(self) -> None:
        """Close the passive listener nobody connected to."""
        passive, self.passive = self.passive, None
        if passive is not None:
            passive.close()

    def penalized(self, left: float, now: float, reason: str) -> None:
        """Log ``source.penalized`` when the source's charge now refuses it."""
        if self.channel.sources.penalized(self.source, now):
            self.log.warning("source.penalized", reason=reason, seconds=round(left, 1))

    async def finish(self) -> None:
        """The connection is gone: stop its work, release its counts, charge an unauthenticated
        end to its source, log the session's end."""
        channel = self.channel
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        await self.stop_transfer()
        self.close_passive()
        if self.admitted:
            channel.limits.connection_authenticated_or_gone()
            self.admitted = False
        if self.source_counted:
            # Ended without logging in: charge the source (shared with the other channels),
            # unless its failed attempts were charged one by one already (ftp_login).
            self.source_counted = False
            guard, now = channel.sources, time.monotonic()
            guard.left_unauthenticated(self.source)
            if not self.attempts:
                left = guard.charge(self.source, tried=self.tried, now=now)
                self.penalized(left, now, "authfail" if self.tried else "noauth")
        session = self.session
        if session is not None and self.sender is not None:
            session.end()
            channel.limits.close_session(self.sender)
            if channel.metrics is not None:
                channel.metrics.sessions_active.labels(channel=CHANNEL).dec()
            session.log.info(
                "session.closed",
                duration=round(time.monotonic() - self.opened_at, 3),
                stored=session.stored,
                refused=session.refused,
                bytes_stored=session.bytes_stored,
            )
        channel.controls.discard(self)
        channel.lost.set()
