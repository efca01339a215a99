"""The PROXY protocol version 2 header a load balancer puts before a client's first byte.

The header (HAProxy's "The PROXY protocol", versions 1 & 2, §2.2), in network byte order::

    header    = signature ver-cmd fam-proto length addresses [tlvs]
    signature = %x0D.0A.0D.0A.00.0D.0A.51.55.49.54.0A    ; 12 bytes: "\\r\\n\\r\\n\\0\\r\\nQUIT\\n"
    ver-cmd   = OCTET   ; high nibble: version, 2; low nibble: 0 LOCAL, 1 PROXY
    fam-proto = OCTET   ; high nibble: 0 UNSPEC, 1 INET, 2 INET6, 3 UNIX;
                        ; low nibble: 0 UNSPEC, 1 STREAM, 2 DGRAM
    length    = 2OCTET  ; bytes that follow (addresses and TLVs)
    addresses = INET:  src-addr(4)  dst-addr(4)  src-port(2) dst-port(2)    ; 12 bytes
              / INET6: src-addr(16) dst-addr(16) src-port(2) dst-port(2)    ; 36 bytes
              / UNIX:  src-path(108) dst-path(108)                          ; 216 bytes

Reading is in two steps, so that an adapter never reads a byte past the header (what follows
is the client's SSH or FTP traffic): :func:`header_length` reads the fixed 16-byte prefix and
says how many bytes the whole header has; :func:`parse_header` reads the whole header.

Rules, and why:

- Version 2 only. The text form of version 1 (``PROXY TCP4 ...\\r\\n``) is refused (``v1``):
  a balancer that can send either is configured for v2 (HAProxy ``send-proxy-v2``), and one
  binary grammar of fixed lengths is less to get wrong than a second, text one.
- A header is at most ``MAX_HEADER_BYTES`` (536): the addresses take at most 216 bytes, the
  rest leaves room for a balancer's TLVs (ALPN, authority, unique id). A longer length is refused
  before anything past the prefix is read, so a peer cannot make us buffer 64 KiB.
- ``LOCAL`` (the balancer's own health check) carries no client: its addresses are ignored, as
  §2.2 requires. ``PROXY`` gives the client's address only for TCP over IPv4 or IPv6; any other
  family or transport (UNSPEC, UNIX, UDP) is parsed but has no client (``client`` is None): the
  adapter decides what that means (the gateway refuses it, since penalties and network
  allow-lists need an address).
- The TLVs are skipped, not interpreted.
- Every malformed header is a :class:`ProxyRefusal` with a stable reason; nothing here raises on
  any ``bytes`` input.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import IntEnum

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
PREFIX_BYTES = 16
MAX_HEADER_BYTES = 536
VERSION = 2

_ADDRESS_BYTES = {1: 12, 2: 36, 3: 216}  # by family (§2.2)
_STREAM = 1
_V1_START = b"PROXY "


class Command(IntEnum):
    """The header's command (low nibble of its 13th byte)."""

    LOCAL = 0
    PROXY = 1


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An IP address and TCP port the header names."""

    ip: str
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyHeader:
    """A parsed header: ``client`` is the balancer's client (None: LOCAL, or not TCP over IP);
    ``server`` is the address the client connected to on the balancer."""

    command: Command
    client: Endpoint | None = None
    server: Endpoint | None = None
    length: int
    """The whole header's length in bytes (prefix included)."""


@dataclass(frozen=True, slots=True)
class ProxyRefusal:
    """Why bytes are not a PROXY v2 header. ``reason`` is stable (logs, metrics): ``truncated``,
    ``v1``, ``signature``, ``version``, ``command``, ``family``, ``too_long``, ``too_short``."""

    reason: str


def header_length(prefix: bytes) -> int | ProxyRefusal:
    """The whole header's length in bytes, given its first ``PREFIX_BYTES`` bytes."""
    if prefix[: len(_V1_START)] == _V1_START:
        return ProxyRefusal("v1")
    if len(prefix) < PREFIX_BYTES:
        return ProxyRefusal("truncated")
    if prefix[:12] != SIGNATURE:
        return ProxyRefusal("signature")
    version, command = prefix[12] >> 4, prefix[12] & 0x0F
    if version != VERSION:
        return ProxyRefusal("version")
    if command not in (Command.LOCAL, Command.PROXY):
        return ProxyRefusal("command")
    family, transport = prefix[13] >> 4, prefix[13] & 0x0F
    if family > 3 or transport > 2:
        return ProxyRefusal("family")
    length = PREFIX_BYTES + int.from_bytes(prefix[14:16], "big")
    if length > MAX_HEADER_BYTES:
        return ProxyRefusal("too_long")
    if command == Command.PROXY and length - PREFIX_BYTES < _ADDRESS_BYTES.get(family, 0):
        return ProxyRefusal("too_short")
    return length


def parse_header(data: bytes) -> ProxyHeader | ProxyRefusal:
    """The header at the start of ``data`` (bytes after it are not looked at)."""
    length = header_length(data[:PREFIX_BYTES])
    if isinstance(length, ProxyRefusal):
        return length
    if len(data) < length:
        return ProxyRefusal("truncated")
    command = Command(data[12] & 0x0F)
    family, transport = data[13] >> 4, data[13] & 0x0F
    if command == Command.LOCAL or transport != _STREAM or family not in (1, 2):
        return ProxyHeader(command=command, length=length)
    size = 4 if family == 1 else 16
    body = data[PREFIX_BYTES:]
    src, dst = body[:size], body[size : 2 * size]
    ports = body[2 * size : 2 * size + 4]
    make = ipaddress.IPv4Address if family == 1 else ipaddress.IPv6Address
    return ProxyHeader(
        command=command,
        client=Endpoint(str(make(src)), int.from_bytes(ports[:2], "big")),
        server=Endpoint(str(make(dst)), int.from_bytes(ports[2:], "big")),
        length=length,
    )


def build_header(
    client: Endpoint | None, server: Endpoint | None = None, *, tlvs: bytes = b""
) -> bytes:
    """A header as a balancer sends it: PROXY for ``client`` (TCP), LOCAL when it is None
    (tests, and the relay that stands in for a balancer)."""
    if client is None:
        return (
            SIGNATURE
            + bytes([VERSION << 4 | Command.LOCAL, 0])
            + len(tlvs).to_bytes(2, "big")
            + tlvs
        )
    src = ipaddress.ip_address(client.ip)
    dst = ipaddress.ip_address(server.ip) if server is not None else type(src)(0)
    if src.version != dst.version:
        raise ValueError("client and server addresses of different families")
    family = 1 if src.version == 4 else 2
    body = (
        src.packed
        + dst.packed
        + client.port.to_bytes(2, "big")
        + (server.port if server is not None else 0).to_bytes(2, "big")
        + tlvs
    )
    return (
        SIGNATURE
        + bytes([VERSION << 4 | Command.PROXY, family << 4 | _STREAM])
        + len(body).to_bytes(2, "big")
        + body
    )
