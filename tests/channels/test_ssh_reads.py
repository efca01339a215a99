"""Reads handed to the SSH connection in pieces (:mod:`gateway.channels.ssh_reads`), over real
sockets of the event loop; the SFTP tests run every upload through the same listeners (the
PROXY ones in tests/channels/test_proxy_protocol.py)."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import cast

import pytest

from gateway.channels.ssh_reads import PIECE, AcceptedSockets, PieceListener, Pieces

pytestmark = pytest.mark.timeout(30)


class Recorder(asyncio.Protocol):
    """Stands for asyncssh's connection: keeps what the event loop hands it."""

    def __init__(self, *, close_on_first: bool = False) -> None:
        self.transport: asyncio.Transport | None = None
        self.reads: list[bytes] = []
        self.events: list[str] = []
        self.close_on_first = close_on_first
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        self.reads.append(bytes(data))
        if self.close_on_first and self.transport is not None:
            self.transport.abort()  # as asyncssh does on a bad packet

    def eof_received(self) -> bool | None:
        self.events.append("eof")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")
        if not self.done.done():
            self.done.set_result(None)


async def serve(recorder: Recorder, body: bytes) -> None:
    """Send ``body`` to a PieceListener whose connection is ``recorder``, then close."""
    origins: list[tuple[str, int]] = []

    def factory(host: str, port: int) -> Recorder:
        origins.append((host, port))
        return recorder

    server = await PieceListener().create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(body)
        await writer.drain()
        writer.write_eof()
        await asyncio.wait_for(recorder.done, 10)
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
    assert origins == [("", 0)]


async def test_every_byte_arrives_in_order_and_no_piece_is_larger_than_one_packet() -> None:
    """4 MiB through the listener: the connection sees the same bytes, in order, never more
    than PIECE at a time, and the loop's other callbacks (made, eof, lost) as they came."""
    body = os.urandom(4 * 1024 * 1024)
    recorder = Recorder()
    await serve(recorder, body)
    assert b"".join(recorder.reads) == body
    assert max(len(r) for r in recorder.reads) <= PIECE
    # Reads of the loop larger than a piece were cut (the loop reads up to 256 KiB at once).
    assert len(recorder.reads) >= len(body) // PIECE
    assert recorder.events == ["made", "eof", "lost"]


async def test_a_connection_closed_on_a_piece_is_handed_nothing_more() -> None:
    """The connection aborts its transport on the first piece (a bad packet): the rest of that
    read is not handed to it."""
    recorder = Recorder(close_on_first=True)
    await serve(recorder, os.urandom(1024 * 1024))
    assert len(recorder.reads) == 1
    assert len(recorder.reads[0]) <= PIECE
    assert recorder.events == ["made", "lost"]


def test_a_read_no_larger_than_a_piece_is_handed_on_whole() -> None:
    """Logins and small files: the loop's own object, no view and no extra call."""

    class Keep(asyncio.Protocol):
        def __init__(self) -> None:
            self.got: list[bytes] = []

        def data_received(self, data: bytes) -> None:
            self.got.append(data)

    inner = Keep()
    data = os.urandom(PIECE)
    Pieces(inner).data_received(data)
    assert len(inner.got) == 1
    assert inner.got[0] is data


def test_a_piece_must_hold_a_byte() -> None:
    """A piece of no bytes is a programming error, refused at once."""
    with pytest.raises(ValueError, match="positive"):
        Pieces(asyncio.Protocol(), 0)


class Started:
    """The PROXY listener's part for :class:`AcceptedSockets`: started once, with the address
    asyncssh's ``listen()`` was given; its connections are handed in by the test."""

    def __init__(self) -> None:
        self.started: list[tuple[str, int]] = []

    async def start(self, host: str, port: int) -> None:
        self.started.append((host, port))

    def get_port(self) -> int:
        return 2222

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


async def test_a_socket_handed_in_starts_a_connection_that_reads_in_pieces() -> None:
    """Behind a balancer: the listener is started with asyncssh's address, each accepted socket
    starts a connection of asyncssh's factory (started once ``run`` returns), and 4 MiB reach
    it in order, never more than PIECE at a time."""
    listener = Started()
    tunnel = AcceptedSockets(listener)
    with pytest.raises(RuntimeError, match="not listening"):
        tunnel.connection()
    recorder = Recorder()
    server = await tunnel.create_server(lambda host, port: recorder, "127.0.0.1", 2222)
    assert server is listener
    assert listener.started == [("127.0.0.1", 2222)]
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        peer = socket.create_connection(lsock.getsockname()[:2])
        accepted, _ = lsock.accept()
    accepted.setblocking(False)
    connection = tunnel.connection()
    assert connection is recorder
    body = os.urandom(4 * 1024 * 1024)
    try:
        await tunnel.run(connection, accepted)
        assert recorder.events == ["made"]
        await asyncio.to_thread(peer.sendall, body)
        peer.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(recorder.done, 10)
    finally:
        peer.close()
    assert b"".join(recorder.reads) == body
    assert max(len(r) for r in recorder.reads) <= PIECE
    assert len(recorder.reads) >= len(body) // PIECE
    assert recorder.events == ["made", "eof", "lost"]
