"""PROXY protocol v2 on a listener behind a load balancer (issue 15 item 6).

Behind a balancer every connection comes from the balancer's address, so penalties (counted per
source network), the FTP network allow-lists and the logs would all see one sender. The balancer
(HAProxy ``send-proxy-v2``) sends a PROXY v2 header naming the real client before the client's
first byte; this module reads it and says which client a connection is for.

Rules:

- Off unless ``proxy_protocol_from`` lists the balancers' networks; with it off nothing here
  runs, and a header is just garbage to SSH or FTP.
- With it on, the listener is for the balancers only: a connection from any other address is
  refused before a byte is read (``proxy_not_balancer``), with or without a header. That is
  what keeps a client from naming its own address.
- From a balancer, the header must come first and whole within ``header_seconds``; exactly its
  bytes are read, never one more (the next byte is the client's SSH or FTP traffic). A missing,
  malformed or v1 header is refused (``proxy_header``, with the parser's reason); so is a
  ``PROXY`` header without a TCP client address (UNSPEC, UNIX, UDP): penalties and allow-lists
  need one.
- ``LOCAL`` is the balancer's own health check, and so is a connection closed before its first
  byte (a plain TCP check): either is closed quietly (no log line, no penalty).
- A refused connection is logged through the shared :class:`RefusalLog` (rate-bounded), under
  the connecting address's source; the balancer is never penalised for it.
- The grammar is :mod:`gateway.core.proxy` (sans-IO); here are the reads, the deadline and the
  allow-list.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import IPvAnyNetwork

from gateway.channels.penalties import SourceGuard
from gateway.core.proxy import (
    PREFIX_BYTES,
    Command,
    Endpoint,
    ProxyRefusal,
    header_length,
    parse_header,
)
from gateway.ops.metrics import Metrics

__all__ = [
    "Endpoint",
    "ProxiedListener",
    "ProxyPolicy",
    "ProxyRefusal",
    "read_from_socket",
    "read_from_stream",
]

# HAProxy sends the header with the connection's first segment: seconds are generous.
HEADER_SECONDS = 5.0
QUIET = frozenset({"local", "empty"})
"""Refusal reasons of a balancer's health checks: closed without a log line."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyPolicy:
    """Which peers are balancers (none: PROXY protocol off) and how long a header may take."""

    balancers: tuple[Network, ...] = ()
    header_seconds: float = HEADER_SECONDS

    @classmethod
    def of(cls, networks: list[IPvAnyNetwork]) -> ProxyPolicy:
        """The policy of a ``proxy_protocol_from`` setting."""
        return cls(balancers=tuple(ipaddress.ip_network(str(n)) for n in networks))

    @property
    def on(self) -> bool:
        """Whether connections come through balancers (and carry a header)."""
        return bool(self.balancers)

    def from_balancer(self, address: str) -> bool:
        """Whether ``address`` (a peer's IP, IPv4-mapped IPv6 unmapped) is a balancer's."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.balancers)


ReadExactly = Callable[[int], Awaitable[bytes]]
"""Reads exactly ``n`` bytes (raises :class:`asyncio.IncompleteReadError` or ``OSError``)."""


async def read_header(read: ReadExactly, seconds: float) -> Endpoint | ProxyRefusal:
    """The client a balancer's connection is for, or why not (``local``, ``empty``: a health
    check; ``timeout``, ``closed``; the parser's reasons; ``no_client``)."""
    try:
        async with asyncio.timeout(seconds):
            try:
                prefix = await read(PREFIX_BYTES)
            except asyncio.IncompleteReadError as exc:
                return ProxyRefusal("closed" if exc.partial else "empty")
            length = header_length(prefix)
            if isinstance(length, ProxyRefusal):
                return length
            header = parse_header(prefix + await read(length - PREFIX_BYTES))
    except TimeoutError:
        return ProxyRefusal("timeout")
    except (asyncio.IncompleteReadError, OSError):
        return ProxyRefusal("closed")
    if isinstance(header, ProxyRefusal):
        return header
    if header.command == Command.LOCAL:
        return ProxyRefusal("local")
    if header.client is None:
        return ProxyRefusal("no_client")
    return header.client


async def read_from_socket(sock: socket.socket, seconds: float) -> Endpoint | ProxyRefusal:
    """:func:`read_header` from a non-blocking socket (``recv`` of at most what is missing)."""
    loop = asyncio.get_running_loop()

    async def read(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = await loop.sock_recv(sock, n - len(data))
            if not chunk:
                raise asyncio.IncompleteReadError(data, n)
            data += chunk
        return data

    return await read_header(read, seconds)


async def read_from_stream(reader: asyncio.StreamReader, seconds: float) -> Endpoint | ProxyRefusal:
    """:func:`read_header` from a stream (``readexactly``: the reader's buffer keeps the rest)."""
    return await read_header(reader.readexactly, seconds)


Handoff = Callable[[socket.socket, Endpoint, str], Awaitable[None]]
"""``handoff(sock, client, balancer)``: run the protocol on a connection whose header was read
(``balancer``: the connecting peer's ``ip:port``, for the log)."""


class ProxiedListener:
    """A TCP listener for balancers: accepts each connection itself, reads its header, and hands
    the socket on with the client it is for (SFTP: to asyncssh's listener, through
    :class:`~gateway.channels.ssh_reads.AcceptedSockets`).

    Every task is owned: the accept loop and one task per connection until its handoff returns;
    :meth:`close` cancels them (a connection still in its header or handoff is aborted)."""

    def __init__(
        self,
        *,
        policy: ProxyPolicy,
        channel: str,
        sources: SourceGuard,
        handoff: Handoff,
        metrics: Metrics | None = None,
    ) -> None:
        self._policy = policy
        self._channel = channel
        self._sources = sources
        self._handoff = handoff
        self._metrics = metrics
        self._sock: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host``:``port`` (``""``: every IPv4 address)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=100)
        sock.setblocking(False)
        self._sock = sock
        self._accepting = asyncio.create_task(self._accept(sock))

    @property
    def port(self) -> int:
        """The port listened on."""
        if self._sock is None:
            raise RuntimeError("not listening")
        return int(self._sock.getsockname()[1])

    def get_port(self) -> int:
        """The port listened on (asyncssh's acceptor asks so)."""
        return self.port

    @property
    def pending(self) -> int:
        """Connections between accept and the end of their handoff (tests, statistics)."""
        return len(self._tasks)

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, address = await loop.sock_accept(sock)
            except OSError:  # EMFILE and the like: the next accept may succeed
                await asyncio.sleep(0.1)
                continue
            conn.setblocking(False)
            task = asyncio.create_task(self._connection(conn, str(address[0]), int(address[1])))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _connection(self, conn: socket.socket, ip: str, port: int) -> None:
        balancer = f"{ip}:{port}"
        handed = False
        try:
            if not self._policy.from_balancer(ip):
                refuse(self._sources, self._channel, ip, balancer, "not_balancer", self._metrics)
                return
            client = await read_from_socket(conn, self._policy.header_seconds)
            if isinstance(client, ProxyRefusal):
                if client.reason not in QUIET:
                    refuse(self._sources, self._channel, ip, balancer, "header", self._metrics,
                           detail=client.reason)  # fmt: skip
                return
            handed = True
            await self._handoff(conn, client, balancer)
        finally:
            if not handed:
                conn.close()

    def close(self) -> None:
        """Stop accepting and cancel the connections not handed off yet."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        if self._accepting is not None:
            self._accepting.cancel()
        for task in self._tasks:
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait until the accept loop and every connection's task have ended."""
        tasks = [t for t in (self._accepting, *self._tasks) if t is not None]
        await asyncio.gather(*tasks, return_exceptions=True)


def refuse(
    sources: SourceGuard,
    channel: str,
    ip: str,
    peer: str,
    reason: str,
    metrics: Metrics | None,
    **fields: object,
) -> None:
    """Log (rate-bounded) and count one connection refused by the PROXY rules."""
    sources.refusals.refused(
        channel=channel,
        source=sources.source(ip),
        peer=peer,
        reason=f"proxy_{reason}",
        metrics=metrics,
        **fields,
    )
