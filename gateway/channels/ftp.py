"""The FTP(S) channel: explicit FTPS for everyone, plain FTP for the secondary networks.

Rules (issue 11 §2; SECURITY.md 4, 5, 9, 13, 15, 21, 22):

- The public listener (``[ftp] host``/``port``) speaks explicit FTPS: ``AUTH TLS``, then
  ``PBSZ 0`` and ``PROT P`` before any transfer; a client that stays in clear gets ``530 TLS
  required`` at ``USER`` and ``521`` at ``PASV``. TLS 1.2+ with AEAD suites, no session tickets
  (:mod:`gateway.ops.tls`); data connections are TLS, tied to the control connection's peer
  address, and closed with a TLS close (:mod:`gateway.channels.ftp_data`).
- Each plain listener (``[ftp.plain_listeners.NAME]``) also offers ``AUTH TLS``, and accepts a
  clear login only from an address the injected ``plain_network`` places in a secondary network
  of that listener.
- Logins go through the registry; failures are one generic ``530``, logged and counted;
  attempts per connection, unauthenticated connections, sessions per sender, the login grace
  and the idle timeout are bounded; penalties are charged per source in the :class:`SourceGuard`
  shared with SFTP (:mod:`gateway.channels.ftp_login`).
- Passive mode only; every file operation is the spool's folder service, answered through one
  code -> reply table (:mod:`gateway.channels.ftp_files`, :mod:`gateway.channels.ftp_replies`).
- Stopping (:meth:`FtpGateway.drain`): no new connection or file; idle sessions end at once, a
  transfer in progress may finish, what still runs at the deadline is cut (nothing of it
  becomes visible).

Events: ``connection.refused``, ``auth.failed``, ``session.opened`` (TLS version and cipher),
``session.closed``, ``session.idle``, ``source.penalized``, ``data.refused``,
``transfer.failed``; the folder service logs ``upload.stored``/``upload.refused``.
"""

from __future__ import annotations

import asyncio

from gateway.channels.ftp_config import (
    Authenticator,
    FtpConfig,
    Listener,
    PlainNetwork,
    refuse_plain,
)
from gateway.channels.ftp_control import Channel, Control, log
from gateway.channels.ftp_data import PassivePorts
from gateway.channels.ftp_server import MAX_LINE, FtpServer
from gateway.channels.limits import SessionLimits
from gateway.channels.penalties import SourceGuard
from gateway.channels.revocation import REVOKED_TEXT, StillAllowed, revoked
from gateway.ops.metrics import Metrics
from gateway.registry.types import ChannelKind
from gateway.spool.folders import Folders

__all__ = ["Authenticator", "FtpConfig", "FtpGateway", "Listener", "PlainNetwork"]

# Stopping: how often the drain looks for transfers that ended, and how long it then gives the
# ended connections' clean-up (uploads aborted, session.closed logged).
DRAIN_POLL_SECONDS = 0.05
DRAIN_LOST_SECONDS = 5.0
PUBLIC = "public"
"""The public listener's name in :attr:`FtpGateway.ports` (as the networks file names it)."""


class FtpGateway:
    """The FTP listeners: ``await start()``; to stop, ``await drain(seconds)`` (or ``close()``
    and ``await wait_closed()``, which leave the open connections to the caller)."""

    def __init__(
        self,
        *,
        config: FtpConfig,
        authenticator: Authenticator,
        folders: Folders,
        sources: SourceGuard,
        plain_network: PlainNetwork = refuse_plain,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.channel = Channel(
            config=config,
            authenticator=authenticator,
            folders=folders,
            sources=sources,
            limits=SessionLimits(
                max_per_sender=config.sender_max_sessions, max_startups=config.max_startups
            ),
            plain_network=plain_network,
            metrics=metrics,
            ports=PassivePorts(config.passive_ports),
        )
        self._servers: dict[str, FtpServer] = {}

    @property
    def controls(self) -> set[Control]:
        """The open control connections."""
        return self.channel.controls

    async def start(self) -> None:
        """Listen on the public address and on every plain listener."""
        listeners: list[tuple[str, str | None, str, int]] = [
            (PUBLIC, None, self.config.host, self.config.port)
        ]
        listeners += [(p.name, p.name, p.host, p.port) for p in self.config.plain_listeners]
        try:
            for name, plain, host, port in listeners:
                server = FtpServer(self.channel, listener=plain)
                await server.start(host, port, limit=MAX_LINE)
                self._servers[name] = server
                log.info("ftp.listening", listener=name, host=host, port=server.address[1])
        except BaseException:
            self.close()
            await self.wait_closed()
            raise

    @property
    def port(self) -> int:
        """The public listener's port (useful with port 0)."""
        return self.ports[PUBLIC]

    @property
    def ports(self) -> dict[str, int]:
        """Each listener's port by name (``public`` and the plain listeners' names)."""
        if PUBLIC not in self._servers:
            raise RuntimeError("the FTP listener is not started")
        return {name: int(server.address[1]) for name, server in self._servers.items()}

    async def revalidate(self, check: StillAllowed) -> int:
        """End the sessions whose credential the registry no longer admits (a removed channel,
        a new password, a replaced or blocked technical user); returns how many."""
        live = [(c, c.session.principal) for c in self.channel.controls if c.session is not None]
        ended = await revoked(live, ChannelKind.ftp, check)
        for control in ended:
            if control.session is not None:
                control.session.log.warning("session.revoked")
            control.end(REVOKED_TEXT[0].upper() + REVOKED_TEXT[1:], abort=True)
        return len(ended)

    def close(self) -> None:
        """Stop accepting connections and opening files; :meth:`drain` ends the open ones."""
        self.channel.stopping = True
        for server in self._servers.values():
            server.server.close()
        self.channel.sources.refusals.close()
        for control in self.channel.controls:
            if control.session is not None:
                control.session.draining = True

    async def drain(self, seconds: float) -> int:
        """End every connection: idle ones at once, one with a transfer in progress when the
        transfer ends, any left at ``seconds``. Returns how many were cut at the deadline
        (their uploads are aborted: nothing visible, nothing recorded)."""
        self.close()
        channel = self.channel
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            for control in list(channel.controls):
                if not control.busy:
                    control.end("The gateway is stopping: closing control connection")
            if not any(c.busy for c in channel.controls) or loop.time() >= deadline:
                break
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        cut = [c for c in channel.controls if c.busy]
        for control in cut:
            control.end("The gateway is stopping: transfer cut", abort=True)
        lost_by = loop.time() + DRAIN_LOST_SECONDS
        while channel.controls:
            channel.lost.clear()
            try:
                await asyncio.wait_for(channel.lost.wait(), timeout=max(0.0, lost_by - loop.time()))
            except TimeoutError:
                break
        await self.wait_closed()
        return len(cut)

    async def wait_closed(self) -> None:
        """Wait until the listeners are closed (connections: :meth:`drain`)."""
        for server in self._servers.values():
            await server.server.wait_closed()
