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

Not here: the connections started behind a PROXY-protocol balancer (:mod:`.proxy`) go through
``asyncssh.run_server``, which takes a socket and offers no such seam; they read as before.
"""

from __future__ import annotations

import asyncio
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
