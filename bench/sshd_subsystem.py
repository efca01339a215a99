"""A prototype SFTP subsystem for OpenSSH's sshd, with the durable close of the gateway's design.

``Subsystem sftp python bench/sshd_subsystem.py DATABASE`` in an sshd_config: sshd does the
transport (key exchange, login, encryption and MACs in C, in its own process), and this program
speaks SFTP version 3 over its standard input and output, one process per session. It measures
what a gateway built on sshd's transport would pay, beside the one built on asyncssh
(``bench/bare_sftp.py --durable``), for ``bench/sftp.py --subsystem``.

It serves what OpenSSH's ``sftp`` needs to upload: INIT, REALPATH, STAT/LSTAT/FSTAT, OPEN (write
only), WRITE (in order), CLOSE, SETSTAT/FSETSTAT (ignored); anything else is answered
"unsupported". A close is durable before it is answered, as in the durable asyncssh server: a
file of at most 64 KiB is written under its name, not synced, and its bytes are committed with
its row in one SQLite transaction (WAL, ``synchronous=FULL``); a larger one is written as it
comes, its writeback started after each MiB, then fsync'ed with its folder before its row is
committed. No names are checked and nothing is hashed: the figures are a bound, not a product.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.spool.disk import start_writeback

INLINE_MAX = 64 * 1024
WRITEBACK_EVERY = 1024 * 1024

FXP_INIT, FXP_VERSION = 1, 2
FXP_OPEN, FXP_CLOSE, FXP_WRITE = 3, 4, 6
FXP_LSTAT, FXP_FSTAT, FXP_SETSTAT, FXP_FSETSTAT = 7, 8, 9, 10
FXP_REALPATH, FXP_STAT = 16, 17
FXP_STATUS, FXP_HANDLE, FXP_NAME, FXP_ATTRS = 101, 102, 104, 105
OK, EOF, NO_SUCH_FILE, FAILURE, UNSUPPORTED = 0, 1, 2, 4, 8
ATTR_SIZE, ATTR_PERMISSIONS = 1, 4

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class _Upload:
    __slots__ = ("fd", "name", "size", "small", "synced_to")

    def __init__(self, name: str) -> None:
        self.name = name
        self.fd: int | None = None
        self.small: bytearray | None = bytearray()
        self.size = 0
        self.synced_to = 0


class Subsystem:
    """One session: read requests from ``fd_in``, answer on ``fd_out``."""

    def __init__(self, database: str, fd_in: int = 0, fd_out: int = 1) -> None:
        self._in, self._out = fd_in, fd_out
        self._buffer = bytearray()
        self._start = 0  # where the next packet begins in _buffer
        self._handles: dict[bytes, _Upload] = {}
        self._next = 0
        self._db = sqlite3.connect(database, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS f (id INTEGER PRIMARY KEY, name TEXT, data BLOB)"
        )

    def run(self) -> None:
        """Serve requests until the channel closes."""
        while (packet := self._packet()) is not None:
            self._dispatch(packet)

    def _packet(self) -> memoryview | None:
        """The next request (a copy of it), reading more input as needed. The buffer is read
        from an offset and compacted only once that offset passes half of it, so a stream of
        32 KiB writes is not moved in memory at each packet."""
        while True:
            buffer, start = self._buffer, self._start
            if len(buffer) - start >= 4:
                (length,) = _U32.unpack_from(buffer, start)
                end = start + 4 + length
                if len(buffer) >= end:
                    packet = bytes(buffer[start + 4 : end])
                    self._start = end
                    if end * 2 > len(buffer):
                        del buffer[:end]
                        self._start = 0
                    return memoryview(packet)
            chunk = os.read(self._in, 262144)
            if not chunk:
                return None
            buffer += chunk

    def _send(self, kind: int, body: bytes) -> None:
        data = _U32.pack(len(body) + 1) + bytes((kind,)) + body
        while data:
            data = data[os.write(self._out, data) :]

    def _status(self, request: int, code: int, text: str = "") -> None:
        message = text.encode()
        self._send(
            FXP_STATUS,
            _U32.pack(request) + _U32.pack(code) + _U32.pack(len(message)) + message + b"\0\0\0\0",
        )

    def _dispatch(self, packet: memoryview) -> None:
        kind = packet[0]
        if kind == FXP_INIT:
            self._send(FXP_VERSION, _U32.pack(3))
            return
        (request,) = _U32.unpack_from(packet, 1)
        offset = 5
        if kind == FXP_WRITE:
            handle, offset = _string(packet, offset)
            (position,) = _U64.unpack_from(packet, offset)
            data, _ = _string(packet, offset + 8)
            self._write(request, handle, position, data)
        elif kind == FXP_OPEN:
            path, offset = _string(packet, offset)
            self._open(request, os.fsdecode(path))
        elif kind == FXP_CLOSE:
            handle, _ = _string(packet, offset)
            self._close(request, handle)
        elif kind in (FXP_STAT, FXP_LSTAT):
            path, _ = _string(packet, offset)
            try:
                info = os.stat(path)
            except OSError:
                self._status(request, NO_SUCH_FILE, "no such file")
                return
            self._send(FXP_ATTRS, _U32.pack(request) + _attrs(info.st_size, info.st_mode))
        elif kind == FXP_FSTAT:
            handle, _ = _string(packet, offset)
            upload = self._handles.get(handle)
            size = upload.size if upload is not None else 0
            self._send(FXP_ATTRS, _U32.pack(request) + _attrs(size, 0o100600))
        elif kind == FXP_REALPATH:
            path, _ = _string(packet, offset)
            real = os.path.realpath(os.fsdecode(path) or ".").encode()
            self._send(
                FXP_NAME,
                _U32.pack(request) + _U32.pack(1) + _bytes(real) + _bytes(real) + _U32.pack(0),
            )
        elif kind in (FXP_SETSTAT, FXP_FSETSTAT):
            self._status(request, OK)
        else:
            self._status(request, UNSUPPORTED, "unsupported")

    def _open(self, request: int, path: str) -> None:
        if os.path.lexists(path):
            self._status(request, FAILURE, "exists")
            return
        self._next += 1
        handle = _U32.pack(self._next)
        self._handles[handle] = _Upload(path)
        self._send(FXP_HANDLE, _U32.pack(request) + _bytes(handle))

    def _write(self, request: int, handle: bytes, position: int, data: bytes | memoryview) -> None:
        if not self._write_part(handle, position, data):
            self._status(request, FAILURE, "bad handle or offset")
            return
        self._status(request, OK)

    def _write_part(self, handle: bytes, position: int, data: bytes | memoryview) -> bool:
        """Write ``data`` at ``position`` of an upload, without answering; False for an unknown
        handle or a position other than the upload's end."""
        upload = self._handles.get(handle)
        if upload is None or position != upload.size:
            return False
        upload.size += len(data)
        if upload.small is not None:
            upload.small += data
            if len(upload.small) <= INLINE_MAX:
                return True
            data, upload.small = bytes(upload.small), None
            upload.fd = os.open(upload.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        assert upload.fd is not None
        os.write(upload.fd, data)
        if upload.size - upload.synced_to >= WRITEBACK_EVERY:
            start_writeback(upload.fd)
            upload.synced_to = upload.size
        return True

    def _close(self, request: int, handle: bytes) -> None:
        upload = self._handles.pop(handle, None)
        if upload is None:
            self._status(request, FAILURE, "bad handle")
            return
        inline = None
        if upload.small is not None:
            inline = bytes(upload.small)
            fd = os.open(upload.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, inline)
            os.close(fd)
        else:
            assert upload.fd is not None
            os.fsync(upload.fd)
            os.close(upload.fd)
            folder = os.open(os.path.dirname(upload.name), os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(folder)
            os.close(folder)
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute("INSERT INTO f (name, data) VALUES (?, ?)", (upload.name, inline))
        self._db.execute("COMMIT")
        self._status(request, OK)


def _string(packet: memoryview, offset: int) -> tuple[bytes, int]:
    (length,) = _U32.unpack_from(packet, offset)
    start = offset + 4
    return bytes(packet[start : start + length]), start + length


def _bytes(value: bytes) -> bytes:
    return _U32.pack(len(value)) + value


def _attrs(size: int, mode: int) -> bytes:
    return _U32.pack(ATTR_SIZE | ATTR_PERMISSIONS) + _U64.pack(size) + _U32.pack(mode)


if __name__ == "__main__":
    Subsystem(sys.argv[1]).run()
