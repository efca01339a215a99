"""FTP data connections: passive listeners, the same-peer rule, TLS, blocks, a clean close.

Rules (issue 11 §2, SECURITY.md 15):

- Passive mode only. Each ``PASV``/``EPSV`` opens one listening socket (a port of
  ``[ftp] passive_ports``, or any free port) on the control connection's local address; it hands
  over exactly one data connection and is closed.
- A data connection is accepted only from the control connection's peer address
  (:func:`same_peer`): anyone else who connects first is dropped and logged, so nobody can steal
  a transfer by racing to the advertised port. Without TLS 1.3 session tickets (see
  :mod:`gateway.ops.tls`) the data connection cannot prove it is the same client by resuming the
  control connection's session, so the address is the tie.
- Behind a balancer (``[ftp] proxy_protocol_from``) a data connection comes from the balancer
  with a PROXY v2 header, like the control connection: only a balancer may connect, and the
  client its header names must be the control connection's (proxied) peer.
- After ``PROT P`` the data connection is TLS (server side, the control connection's context),
  handshaken here with a deadline, and closed with a TLS close (``close_notify``) before the
  transfer's final reply.
- Every failure of a data connection (reset, TLS error, timeout) is a :class:`DataError`: the
  caller fails that one transfer with a 4xx reply and the control connection goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
import ssl
from typing import Any

from gateway.channels.proxy import ProxyPolicy, ProxyRefusal, read_from_socket

# Errors of a peer's connection (never of our own code): a transfer fails, nothing else.
_LINK_ERRORS = (OSError, ssl.SSLError, EOFError, TimeoutError)


class DataError(Exception):
    """A data connection failed (the reason is a short word for the log, never for the peer)."""


class NoPassivePort(Exception):
    """Every port of the passive range is taken."""


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def ipv4_of(address: str) -> str | None:
    """``address`` as dotted IPv4 (an IPv4-mapped IPv6 address unmapped), or None."""
    ip = _ip(address)
    return str(ip) if isinstance(ip, ipaddress.IPv4Address) else None


def same_peer(control_peer: str, data_peer: str) -> bool:
    """Whether a data connection from ``data_peer`` comes from the control connection's peer
    (IPv4-mapped IPv6 and IPv4 forms of one address are the same peer)."""
    control, data = _ip(control_peer), _ip(data_peer)
    return control is not None and control == data


class PassivePorts:
    """Hands out listening sockets on the passive port range (round robin), or on any port."""

    def __init__(self, ports: tuple[int, int] | None) -> None:
        self._range = ports
        self._next = ports[0] if ports is not None else 0

    def _candidates(self) -> list[int]:
        if self._range is None:
            return [0]
        first, last = self._range
        start = self._next
        return list(range(start, last + 1)) + list(range(first, start))

    def listen(self, host: str) -> socket.socket:
        """A non-blocking socket listening on ``host`` (raises :class:`NoPassivePort`)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for port in self._candidates():
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host, port))
                sock.listen(1)
                sock.setblocking(False)
            except OSError as exc:
                sock.close()
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            if self._range is not None:
                self._next = port + 1 if port < self._range[1] else self._range[0]
            return sock
        raise NoPassivePort


class PassiveListener:
    """One ``PASV``/``EPSV``: waits for the one data connection of its control connection."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        control_peer: str,
        log: Any,
        proxy: ProxyPolicy | None = None,
    ) -> None:
        self._sock: socket.socket | None = sock
        self._control_peer = control_peer
        self._proxy = proxy if proxy is not None and proxy.on else None
        self._log = log
        self.port: int = sock.getsockname()[1]

    async def accept(
        self, *, tls: ssl.SSLContext | None, stall_seconds: float, limit: int
    ) -> DataConnection:
        """The data connection (TLS handshaken when ``tls`` is given); closes the listener."""
        sock = self._sock
        if sock is None:
            raise DataError("closed")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(stall_seconds):
                while True:
                    conn, address = await loop.sock_accept(sock)
                    conn.setblocking(False)
                    client = await self._client(conn, str(address[0]))
                    if isinstance(client, str) and same_peer(self._control_peer, client):
                        break
                    self._log.warning(
                        "data.refused",
                        data_peer=f"{address[0]}:{address[1]}",
                        reason="not_control_peer" if isinstance(client, str) else client.reason,
                        **({"client": client} if isinstance(client, str) else {}),
                    )
                    conn.close()
        except _LINK_ERRORS as exc:
            raise DataError(
                "accept_timeout" if isinstance(exc, TimeoutError) else "accept"
            ) from exc
        finally:
            self.close()
        conn.setblocking(False)
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol,
                conn,
                ssl=tls,
                ssl_handshake_timeout=stall_seconds if tls is not None else None,
                ssl_shutdown_timeout=stall_seconds if tls is not None else None,
            )
        except _LINK_ERRORS as exc:
            conn.close()
            raise DataError("tls_handshake") from exc
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        return DataConnection(reader, writer, stall_seconds=stall_seconds)

    async def _client(self, conn: socket.socket, ip: str) -> str | ProxyRefusal:
        """The data connection's client: its peer, or behind a balancer the header's client."""
        proxy = self._proxy
        if proxy is None:
            return ip
        if not proxy.from_balancer(ip):
            return ProxyRefusal("proxy_not_balancer")
        client = await read_from_socket(conn, proxy.header_seconds)
        if isinstance(client, ProxyRefusal):
            return ProxyRefusal(f"proxy_header_{client.reason}")
        return client.ip

    def close(self) -> None:
        """Stop listening (once)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


class DataConnection:
    """An open data connection: block reads and writes under a stall deadline, a clean close."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        stall_seconds: float,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._timeout = stall_seconds

    @property
    def tls(self) -> bool:
        """Whether the connection is TLS."""
        return self._writer.get_extra_info("ssl_object") is not None

    async def read_block(self, size: int) -> bytes:
        """Up to ``size`` bytes, fewer only at the end of the data (empty: the end)."""
        block = bytearray()
        try:
            while len(block) < size:
                async with asyncio.timeout(self._timeout):
                    data = await self._reader.read(size - len(block))
                if not data:
                    break
                block += data
        except _LINK_ERRORS as exc:
            raise DataError("read") from exc
        return bytes(block)

    async def write(self, data: bytes) -> None:
        """Send ``data`` (waits while the peer is slow, up to the stall deadline)."""
        try:
            self._writer.write(data)
            async with asyncio.timeout(self._timeout):
                await self._writer.drain()
        except _LINK_ERRORS as exc:
            raise DataError("write") from exc

    async def close(self) -> None:
        """Close cleanly: TLS ``close_notify`` (asyncio's shutdown), then the socket. A peer that
        does not answer the close in time is cut; that is not the transfer's failure."""
        self._writer.close()
        with contextlib.suppress(*_LINK_ERRORS):
            async with asyncio.timeout(self._timeout):
                await self._writer.wait_closed()
        self.abort()

    def abort(self) -> None:
        """Drop the connection at once (a failed or cancelled transfer)."""
        self._writer.transport.abort()
