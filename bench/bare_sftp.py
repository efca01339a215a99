"""A bare asyncssh SFTP server: the ceiling the gateway's SFTP channel is built on.

``python bench/bare_sftp.py ROOT HOST_KEY AUTHORIZED_KEYS`` serves ``ROOT`` (chroot) on a free
loopback port with ``asyncssh.SFTPServer``: no name checks, no hashing, no fsync, no database.
It offers the gateway's own key exchanges, ciphers and MACs (its defaults), so a client
negotiates the same transport with both and the bare server's figures are the ceiling of the
gateway's: with asyncssh's defaults OpenSSH's client picked chacha20-poly1305 from it and
AES-CTR with HMAC-SHA-256 from the gateway, which made big uploads differ by the cipher alone.
It runs on the gateway's default event loop (uvloop), so the two differ by the gateway's own
work alone. It prints ``port N`` and runs until killed. ``bench/sftp.py`` measures it beside the
gateway and sshd, so the gateway's figures can be read against what asyncssh itself reaches on
the same machine in the same run.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import asyncssh

from gateway.channels.sftp import KEX_ALGS, MAC_ALGS
from gateway.ops.loop import EventLoop, run
from gateway.ops.settings import SSH_CIPHERS

DEFAULT_LOOP = EventLoop.UVLOOP
"""The default of the gateway's ``event_loop`` setting."""


async def main(root: Path, host_key: Path, authorized_keys: Path) -> None:
    """Listen, print the port, serve until cancelled."""
    (root / "IN").mkdir(parents=True, exist_ok=True)
    server = await asyncssh.listen(
        "127.0.0.1",
        0,
        server_host_keys=[str(host_key)],
        authorized_client_keys=str(authorized_keys),
        sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(root).encode()),
        allow_scp=False,
        kex_algs=list(KEX_ALGS),
        encryption_algs=list(SSH_CIPHERS),
        mac_algs=list(MAC_ALGS),
    )
    print("port", server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    run(lambda: main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])), DEFAULT_LOOP)
