"""A bare asyncssh SFTP server: the ceiling the gateway's SFTP channel is built on.

``python bench/bare_sftp.py ROOT HOST_KEY AUTHORIZED_KEYS [--durable]`` serves ``ROOT`` (chroot)
on a free loopback port with ``asyncssh.SFTPServer``: no name checks, no hashing, no database,
and, without ``--durable``, no sync either. It offers the gateway's own key exchanges, ciphers
and MACs (its defaults), so a client negotiates the same transport with both and the bare
server's figures are the ceiling of the gateway's: with asyncssh's defaults OpenSSH's client
picked chacha20-poly1305 from it and AES-CTR with HMAC-SHA-256 from the gateway, which made big
uploads differ by the cipher alone. asyncssh runs with the gateway's changes to it
(``gateway.channels.ssh_logging``: debug lines formatted only when written;
``gateway.channels.ssh_ignore``: no empty ignore packet before each packet;
``gateway.channels.ssh_rekey``: a session moved to AES-GCM once it has written 4 MiB). It runs
on the gateway's default event loop (uvloop), so the two differ by the gateway's own work alone.
It prints ``port N`` and runs until killed.
``bench/sftp.py`` measures it beside the gateway and sshd, so the gateway's figures can be read
against what asyncssh itself reaches on the same machine in the same run.

``--durable`` adds the least a durable close needs, the gateway's design minus its checks: each
close is handed to one writer thread, which takes every close waiting at once, flushes their
files, fsyncs those larger than 64 KiB with their folder (their writeback started after each
MiB written, as the gateway does), commits one SQLite transaction (WAL, ``synchronous=FULL``)
of their rows, with the bytes of the small ones (the gateway's inline placement), and only then
answers them. A small file's close while its session is the only one and no batch is in hand is
committed on the event loop instead, on a connection of its own (the gateway's lone close). Its
figures are the bound of a durable SFTP close on asyncssh: a commit more than the bare server,
and a thread hop for closes that can share a batch.
"""

from __future__ import annotations

import asyncio
import os
import queue
import sqlite3
import sys
import threading
from collections.abc import Awaitable
from pathlib import Path
from typing import IO, cast

import asyncssh

from gateway.channels.sftp import KEX_ALGS, MAC_ALGS
from gateway.channels.ssh_ignore import skip_ignore_packets
from gateway.channels.ssh_logging import check_level_first
from gateway.channels.ssh_rekey import UPGRADE_AFTER, move_to_gcm
from gateway.ops.loop import EventLoop, run
from gateway.ops.settings import SSH_CIPHERS
from gateway.spool.disk import start_writeback

DEFAULT_LOOP = EventLoop.UVLOOP
"""The default of the gateway's ``event_loop`` setting."""
INLINE_MAX = 64 * 1024
"""Files up to this size have their bytes committed with their row (the gateway's default)."""
WRITEBACK_EVERY = 1024 * 1024
"""A larger file's writeback is started after each such chunk (the gateway's chunk)."""


class _Close:
    """One close handed to the writer thread."""

    __slots__ = ("data", "file", "future", "loop", "name")

    def __init__(self, file: IO[bytes], name: str, data: bytes | None) -> None:
        self.file, self.name, self.data = file, name, data
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[None] = self.loop.create_future()


class DurableCloses:
    """The writer thread: every close waiting at once in one transaction."""

    def __init__(self, database: Path) -> None:
        self._inbox: queue.SimpleQueue[_Close] = queue.SimpleQueue()
        self._database = database
        self._here: sqlite3.Connection | None = None
        self._in_hand = 0  # closes handed to the writer thread and not answered yet
        self.sessions = 0
        threading.Thread(target=self._serve, name="bare-writer", daemon=True).start()

    async def close(self, file: IO[bytes], name: str, data: bytes | None) -> None:
        job = _Close(file, name, data)
        if data is not None and self.sessions == 1 and not self._in_hand:
            if self._here is None:
                self._here = self._connect()
            self._commit(self._here, [job])
            return
        self._in_hand += 1
        try:
            self._inbox.put(job)
            await job.future
        finally:
            self._in_hand -= 1

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._database, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE IF NOT EXISTS f (id INTEGER PRIMARY KEY, name TEXT, data BLOB)")
        return conn

    def _serve(self) -> None:
        conn = self._connect()
        while True:
            batch = [self._inbox.get()]
            while not self._inbox.empty():
                batch.append(self._inbox.get())
            self._commit(conn, batch)
            for job in batch:
                job.loop.call_soon_threadsafe(job.future.set_result, None)

    @staticmethod
    def _commit(conn: sqlite3.Connection, batch: list[_Close]) -> None:
        """Make ``batch``'s files durable and commit their rows (in either thread)."""
        folders = set()
        for job in batch:
            job.file.flush()
            if job.data is None:
                os.fsync(job.file.fileno())
                folders.add(os.path.dirname(job.name))
            job.file.close()
        for folder in folders:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO f (name, data) VALUES (?, ?)", [(j.name, j.data) for j in batch]
        )
        conn.execute("COMMIT")


class BareServer(asyncssh.SFTPServer):
    """``asyncssh.SFTPServer`` in ``root``, with the gateway's move to AES-GCM once a session
    has written ``UPGRADE_AFTER`` bytes (``gateway.channels.ssh_rekey``)."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], root: Path):
        super().__init__(chan, chroot=str(root).encode())
        self._received = 0

    def write(self, file_obj: object, offset: int, data: bytes) -> int | Awaitable[int]:
        if self._received < UPGRADE_AFTER:
            self._received += len(data)
            if self._received >= UPGRADE_AFTER:
                move_to_gcm(self.channel.get_connection(), list(SSH_CIPHERS))
        return super().write(file_obj, offset, data)


class DurableServer(BareServer):
    """:class:`BareServer` whose close waits for :class:`DurableCloses`."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], root: Path, closes: DurableCloses):
        super().__init__(chan, root)
        self._closes = closes
        closes.sessions += 1
        self._small: dict[int, bytearray | None] = {}
        self._names: dict[int, str] = {}

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        file = super().open(path, pflags, attrs)
        self._names[id(file)] = os.fsdecode(self.map_path(path))
        self._small[id(file)] = bytearray()
        return file

    def write(self, file_obj: object, offset: int, data: bytes) -> int | Awaitable[int]:
        small = self._small.get(id(file_obj))
        if small is not None:
            small.extend(data)
            if len(small) > INLINE_MAX:
                self._small[id(file_obj)] = None
        written = super().write(file_obj, offset, data)
        if small is None and (offset + len(data)) // WRITEBACK_EVERY > offset // WRITEBACK_EVERY:
            # As the gateway does after each 1 MiB chunk: start the writeback, so the close's
            # fsync does not wait for the whole file.
            file = cast(IO[bytes], file_obj)
            file.flush()
            start_writeback(file.fileno())
        return written

    def exit(self) -> None:
        self._closes.sessions -= 1
        super().exit()

    async def close(self, file_obj: object) -> None:
        small = self._small.pop(id(file_obj), None)
        name = self._names.pop(id(file_obj), "")
        file = cast(IO[bytes], file_obj)  # what SFTPServer.open returned
        await self._closes.close(file, name, None if small is None else bytes(small))


async def serve_as_gateway(host_key: Path, authorized_keys: Path, **options: object) -> None:
    """Listen on a free loopback port with the gateway's algorithms and its two changes to
    asyncssh, print ``port N``, serve until cancelled (``options``: the server's own)."""
    check_level_first()
    skip_ignore_packets()
    server = await asyncssh.listen(
        "127.0.0.1",
        0,
        server_host_keys=[str(host_key)],
        authorized_client_keys=str(authorized_keys),
        kex_algs=list(KEX_ALGS),
        encryption_algs=list(SSH_CIPHERS),
        mac_algs=list(MAC_ALGS),
        **options,
    )
    print("port", server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


async def main(root: Path, host_key: Path, authorized_keys: Path, durable: bool) -> None:
    """Listen, print the port, serve until cancelled."""
    (root / "IN").mkdir(parents=True, exist_ok=True)
    closes = DurableCloses(root.parent / f"{root.name}.sqlite3") if durable else None

    def factory(chan: asyncssh.SSHServerChannel[bytes]) -> asyncssh.SFTPServer:
        if closes is not None:
            return DurableServer(chan, root, closes)
        return BareServer(chan, root)

    await serve_as_gateway(host_key, authorized_keys, sftp_factory=factory, allow_scp=False)


if __name__ == "__main__":
    args = sys.argv[1:]
    durable = "--durable" in args
    paths = [Path(a) for a in args if a != "--durable"]
    run(lambda: main(paths[0], paths[1], paths[2], durable), DEFAULT_LOOP)
