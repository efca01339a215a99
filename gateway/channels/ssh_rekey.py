"""Bulk transfers move to AES-GCM: one key re-exchange once a session has carried enough bytes.

An SSH client takes the first cipher of its *own* list that the server offers (RFC 4253 section
7.1). OpenSSH's list puts AES-CTR before AES-GCM, so against the gateway's offer it takes
``aes128-ctr`` with ``hmac-sha2-256-etm``: an HMAC over every packet on top of the decryption,
where AES-GCM does both in one call. For a large upload that is most of the transport's CPU
(bench/README.md, "SFTP transfers": GCM-only 1.43-1.69x OpenSSH's rate against 0.96-1.42x).
Offering AES-GCM alone would shut out the clients that lack it (JSch 0.1.x, SSH.NET before
2024, PuTTY before 0.76), and waiting for the client's KEXINIT before sending ours would hang
the clients that wait for the server's.

So the listener offers its whole list at the first key exchange, and once a session has
received :data:`UPGRADE_AFTER` bytes on a connection whose client-to-server cipher is not
AES-GCM, while that client's first KEXINIT listed an AES-GCM cipher the gateway offers, it
starts a key re-exchange (RFC 4253 section 9: either side may, at any time) offering only those
AES-GCM ciphers. The client then picks one of them; the rest of the connection runs on it.
Small-file sessions never reach the threshold and pay no second key exchange.

asyncssh has no public call for a re-key with other algorithms: this module sets the
connection's offered ciphers and starts the exchange the way asyncssh's own byte-count re-key
does (``_send_kexinit``), and reads the client's KEXINIT as asyncssh kept it. Tests
(tests/channels/test_ssh_rekey.py) check both against the installed asyncssh with OpenSSH's
client.
"""

from __future__ import annotations

from typing import Any, Final

from asyncssh.packet import PacketDecodeError, SSHPacket

UPGRADE_AFTER: Final = 4 * 1024 * 1024
"""Bytes a session receives before its connection moves to AES-GCM."""
_MSG_KEXINIT: Final = 20


def is_gcm(cipher: str | bytes) -> bool:
    """True for the AES-GCM ciphers (an AEAD: no MAC beside it)."""
    name = cipher.decode() if isinstance(cipher, bytes) else cipher
    return name.endswith("-gcm@openssh.com")


def client_ciphers(kexinit: bytes) -> list[bytes]:
    """The client-to-server ciphers a client's KEXINIT lists (empty when it cannot be read)."""
    try:
        packet = SSHPacket(kexinit)
        if packet.get_byte() != _MSG_KEXINIT:
            return []
        packet.get_bytes(16)  # cookie
        packet.get_namelist()  # key exchanges
        packet.get_namelist()  # host keys
        return list(packet.get_namelist())
    except PacketDecodeError:
        return []


def move_to_gcm(conn: Any, offered: list[str]) -> str | None:
    """Start a re-key offering only the AES-GCM ciphers both sides list; the cipher list offered,
    or None when nothing was started (already on AES-GCM, a client without it, a key exchange
    already running, or the connection not yet logged in)."""
    current = conn.get_extra_info("recv_cipher") or ""
    if is_gcm(current) or not getattr(conn, "_auth_complete", False):
        return None
    if not getattr(conn, "_kex_complete", False):
        return None  # one in progress: asyncssh's own, or ours
    theirs = set(client_ciphers(getattr(conn, "_client_kexinit", b"") or b""))
    gcm = [name.encode() for name in offered if is_gcm(name) and name.encode() in theirs]
    if not gcm:
        return None
    conn._enc_algs = gcm  # what this connection offers from now on, re-keys included
    conn._send_kexinit()
    conn._kexinit_sent = True
    return ",".join(name.decode() for name in gcm)
