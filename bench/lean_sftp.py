"""A prototype: asyncssh's SSH transport with a lean SFTP layer, the durable server's closes.

``python bench/lean_sftp.py ROOT HOST_KEY AUTHORIZED_KEYS`` serves ``ROOT`` on a free loopback
port. asyncssh does the transport as it does for the gateway (its key exchanges, ciphers and
MACs; debug lines formatted only when written; no ignore packet ahead of each packet), but not
the SFTP layer: each session's channel bytes go straight to ``bench/sshd_subsystem.py``'s
``Subsystem`` (SFTP version 3, what OpenSSH's ``sftp`` needs to upload), fed from the channel's
``data_received`` callback and answering with ``write``, with no stream reader, no task per
request and no ``await`` per packet. Its closes are the durable ones of that subsystem (a file
of at most 64 KiB: its bytes committed with its row, one SQLite FULL commit, on the event loop;
a larger one fsync'ed with its folder first). It prints ``port N`` and runs until killed.

``bench/sftp.py --lean`` measures it beside the others: what the gateway's durable closes would
cost on asyncssh's transport with an SFTP layer of its own instead of asyncssh's
(``bench/bare_sftp.py --durable``). No names are checked and nothing is hashed: a bound, not a
product; it serves uploads only.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import asyncssh

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bare_sftp import serve_as_gateway
from bench.sshd_subsystem import (
    _U32,
    _U64,
    FAILURE,
    FXP_WRITE,
    OK,
    Subsystem,
)
from gateway.ops.loop import EventLoop, run


class _Write:
    """A write request whose data is still arriving."""

    __slots__ = ("handle", "ok", "position", "remaining", "request")

    def __init__(self, request: int, handle: bytes, position: int, remaining: int) -> None:
        self.request, self.handle, self.position, self.remaining = (
            request,
            handle,
            position,
            remaining,
        )
        self.ok = True


class ChannelSubsystem(Subsystem):
    """The subsystem's protocol on an asyncssh channel, its paths under ``root``."""

    def __init__(self, database: str, root: Path) -> None:
        super().__init__(database, fd_in=-1, fd_out=-1)
        self._root = str(root)
        self._rest = b""
        self._writing: _Write | None = None
        self._chan: asyncssh.SSHServerChannel[bytes] | None = None

    def attach(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._chan = chan

    def feed(self, data: bytes) -> None:
        """Answer every whole request in the bytes received so far. A write's data goes to
        its file as it arrives, from views of the received bytes (never joined or copied
        first), and is answered once all of it is written; other requests are parsed whole,
        and only what is left of one at the end of a read is kept for the next."""
        view = memoryview(data)
        start = self._stream(view, 0) if self._writing is not None else 0
        if self._writing is not None:
            return
        if self._rest:
            view = memoryview(self._rest + bytes(view[start:]))
            start, self._rest = 0, b""
        size = len(view)
        while size - start >= 4:
            if size - start > 4 and view[start + 4] == FXP_WRITE:
                header = self._write_header(view, start)
                if header is None:
                    break
                start = self._stream(view, header)
                if self._writing is not None:
                    return
                continue
            (length,) = _U32.unpack_from(view, start)
            end = start + 4 + length
            if size < end:
                break
            packet = view[start + 4 : end]
            start = end
            self._dispatch(packet)
        self._rest = bytes(view[start:])

    def _write_header(self, view: memoryview, start: int) -> int | None:
        """Take in a write request's header at ``start``; where its data begins (None: the
        header is not all here yet)."""
        if len(view) - start < 13:
            return None
        (request,) = _U32.unpack_from(view, start + 5)
        (handle_length,) = _U32.unpack_from(view, start + 9)
        data_start = start + 13 + int(handle_length) + 12
        if len(view) < data_start:
            return None
        handle = bytes(view[start + 13 : start + 13 + handle_length])
        (position,) = _U64.unpack_from(view, data_start - 12)
        (count,) = _U32.unpack_from(view, data_start - 4)
        self._writing = _Write(request, handle, position, count)
        return data_start

    def _stream(self, view: memoryview, start: int) -> int:
        """Write what ``view`` holds of the write in hand from ``start``; answer it once it is
        all written. Where the rest of ``view`` begins."""
        write = self._writing
        assert write is not None
        part = min(write.remaining, len(view) - start)
        if write.ok:
            write.ok = self._write_part(write.handle, write.position, view[start : start + part])
        write.position += part
        write.remaining -= part
        if write.remaining == 0:
            self._writing = None
            self._status(write.request, OK if write.ok else FAILURE)
        return start + part

    def _send(self, kind: int, body: bytes) -> None:
        assert self._chan is not None
        self._chan.write(_U32.pack(len(body) + 1) + bytes((kind,)) + body)

    def _open(self, request: int, path: str) -> None:
        super()._open(request, self._root + "/" + path.lstrip("/"))


class LeanSession(asyncssh.SSHServerSession[bytes]):
    """One session: the ``sftp`` subsystem only."""

    def __init__(self, subsystem: ChannelSubsystem) -> None:
        self._subsystem = subsystem
        self._chan: asyncssh.SSHServerChannel[bytes] | None = None

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._chan = chan
        self._subsystem.attach(chan)

    def eof_received(self) -> bool:
        assert self._chan is not None
        self._chan.exit(0)
        return False

    def subsystem_requested(self, subsystem: str) -> bool:
        return subsystem == "sftp"

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._subsystem.feed(data)


async def main(root: Path, host_key: Path, authorized_keys: Path) -> None:
    """Listen, print the port, serve until cancelled."""
    (root / "IN").mkdir(parents=True, exist_ok=True)
    database = str(root.parent / f"{root.name}.sqlite3")

    class Server(asyncssh.SSHServer):
        def session_requested(self) -> LeanSession:
            return LeanSession(ChannelSubsystem(database, root))

    await serve_as_gateway(
        host_key,
        authorized_keys,
        server_factory=Server,
        encoding=None,
        line_editor=False,
        allow_pty=False,
    )


if __name__ == "__main__":
    paths = [Path(a) for a in sys.argv[1:4]]
    os.umask(0o077)
    run(lambda: main(paths[0], paths[1], paths[2]), EventLoop.UVLOOP)
