"""Incoming SSH bytes handed to asyncssh one packet's worth at a time.

Why: asyncssh keeps a connection's unparsed input as one ``bytes`` object and, for every packet,
slices the rest of it twice (after the header, after the packet), copying whatever follows. The
event loop reads up to 256 KiB at once (uvloop's read buffer, asyncio's ``max_size``), about
eight 32 KiB packets of a large upload, so each read's bytes were copied some seven times before
the packet was even decrypted: ``memmove`` was 19 % of the gateway's CPU samples over a 256 MiB
upload (``perf``, bench/sftp.py). Handed on in pieces of :data:`PIECE` bytes (views of the read,
not copies), at most one packet waits in that buffer, so the copies stay about one per byte;
over the same upload ``memmove`` fell to 12 % (bench/README.md has the figures). Small reads
(logins, small files) are handed on whole, as before.

How: :class:`PieceListener` is the listening side asyncssh's ``listen()`` builds its
connections on (its ``tunnel`` option takes any object with ``create_server``, the
``_TunnelListenerProtocol`` of its typing): a plain TCP listener whose every connection is a
:class:`Pieces` protocol wrapped around the asyncssh connection, forwarding every callback and
cutting ``data_received``. The transport, its peer address and its flow control are the
connection's own, unchanged.

Behind a PROXY-protocol balancer the connections are accepted by :mod:`.proxy`'s listener,
which reads each one's header before SSH starts: :class:`AcceptedSockets` is then the tunnel,
and starts asyncssh's connection on each socket handed to it, through :class:`Pieces` as well.
Both ways, every connection is one of asyncssh's ``listen()``: the same options, login timeout
and acceptor.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Protocol

PIECE = 32 * 1024
"""Bytes handed to asyncssh per call: one SSH packet's payload at most (RFC 4253 6.1)."""


class SshProtocol(Protocol):
    """The callbacks of an asyncssh connection that the event loop calls."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...

    def data_received(self, data: bytes) -> None: ...

    def eof_received(self) -> bool | None: ...

    def pause_writing(self) -> None: ...

    def resume_writing(self) -> None: ...


class Pieces(asyncio.Protocol):
    """One connection: the event loop's callbacks passed to ``inner``, each read in pieces of
    at most ``piece`` bytes, in order, until the transport is closing."""

    __slots__ = ("_inner", "_piece", "_transport")

    def __init__(self, inner: SshProtocol, piece: int = PIECE) -> None:
        if piece <= 0:
            raise ValueError("piece must be positive")
        self._inner = inner
        self._piece = piece
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        piece = self._piece
        if len(data) <= piece:
            self._inner.data_received(data)
            return
        view = memoryview(data)
        transport = self._transport
        for start in range(0, len(data), piece):
            if transport is None or transport.is_closing():
                return  # the connection ended on an earlier piece: the rest is nobody's
            # A view, not a copy: asyncssh appends it to its own buffer (bytes + buffer).
            self._inner.data_received(view[start : start + piece])  # type: ignore[arg-type]
            transport = self._transport

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


ConnectionFactory = Callable[[str, int], SshProtocol]
"""What asyncssh hands a tunnel listener: makes one connection (the origin is unused)."""


class PieceListener:
    """asyncssh's ``tunnel`` for ``listen()``: a TCP listener of the event loop whose
    connections read through :class:`Pieces`."""

    def __init__(self, piece: int = PIECE) -> None:
        self._piece = piece

    async def create_server(
        self, session_factory: ConnectionFactory, listen_host: str, listen_port: int
    ) -> asyncio.Server:
        """Listen on ``listen_host``:``listen_port``; each connection is ``session_factory``'s."""
        loop = asyncio.get_running_loop()
        return await loop.create_server(
            lambda: Pieces(session_factory("", 0), self._piece), listen_host, listen_port
        )


class Listener(Protocol):
    """What :class:`AcceptedSockets` starts and hands asyncssh as its server."""

    async def start(self, host: str, port: int) -> None: ...

    def get_port(self) -> int: ...

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


class AcceptedSockets:
    """asyncssh's ``tunnel`` for ``listen()`` when another listener accepts the connections
    (a balancer's, whose PROXY header is read first): ``create_server`` starts that listener
    and keeps asyncssh's connection factory; :meth:`connection` makes one connection and
    :meth:`run` starts it on an accepted socket, reading through :class:`Pieces`."""

    def __init__(self, listener: Listener, piece: int = PIECE) -> None:
        self._listener = listener
        self._piece = piece
        self._factory: ConnectionFactory | None = None

    async def create_server(
        self, session_factory: ConnectionFactory, listen_host: str, listen_port: int
    ) -> Listener:
        """Start the listener on ``listen_host``:``listen_port``; connections come through
        :meth:`run`."""
        self._factory = session_factory
        await self._listener.start(listen_host, listen_port)
        return self._listener

    def connection(self) -> SshProtocol:
        """A new asyncssh connection, not started yet (its owner is made when it starts)."""
        if self._factory is None:
            raise RuntimeError("not listening")
        return self._factory("", 0)

    async def run(self, connection: SshProtocol, sock: socket.socket) -> None:
        """Start ``connection`` on the connected ``sock``; returns once it has started (its
        owner's ``connection_made`` has run), as a connection accepted by a listener would."""
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: Pieces(connection, self._piece), sock=sock)
