"""SFTP version 3 on the wire: request framing, field reading and reply building (no I/O).

draft-ietf-secsh-filexfer-02 (the version OpenSSH, WinSCP, FileZilla, lftp and asyncssh's client
speak): every packet is ``uint32 length, byte type, body``; every request after INIT carries a
``uint32`` id that its reply repeats. :class:`Framer` cuts a channel's byte stream into packets
and refuses one longer than :data:`MAX_PACKET` before buffering it; :class:`Fields` reads a
request's fields and raises :class:`BadMessage` (answered ``SSH_FX_BAD_MESSAGE``) on a truncated
or overlong one. The channel's session (:mod:`gateway.channels.sftp_layer`) decides what each
request means.
"""

from __future__ import annotations

import struct
from typing import Final

# Packet types (filexfer-02 section 3) and the extended requests answered.
FXP_INIT: Final = 1
FXP_VERSION: Final = 2
FXP_OPEN: Final = 3
FXP_CLOSE: Final = 4
FXP_READ: Final = 5
FXP_WRITE: Final = 6
FXP_LSTAT: Final = 7
FXP_FSTAT: Final = 8
FXP_SETSTAT: Final = 9
FXP_FSETSTAT: Final = 10
FXP_OPENDIR: Final = 11
FXP_READDIR: Final = 12
FXP_REMOVE: Final = 13
FXP_MKDIR: Final = 14
FXP_RMDIR: Final = 15
FXP_REALPATH: Final = 16
FXP_STAT: Final = 17
FXP_RENAME: Final = 18
FXP_READLINK: Final = 19
FXP_SYMLINK: Final = 20
FXP_STATUS: Final = 101
FXP_HANDLE: Final = 102
FXP_DATA: Final = 103
FXP_NAME: Final = 104
FXP_ATTRS: Final = 105
FXP_EXTENDED: Final = 200
FXP_EXTENDED_REPLY: Final = 201

FX_OK: Final = 0
FX_EOF: Final = 1
FX_BAD_MESSAGE: Final = 5
FX_OP_UNSUPPORTED: Final = 8

VERSION: Final = 3
MAX_WRITE: Final = 4 * 1024 * 1024
"""The longest write (and read) a client is told it may send (``limits@openssh.com``)."""
MAX_PACKET: Final = MAX_WRITE + 1024
"""The longest packet accepted: a longer one ends the session before it is buffered."""

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
u32 = _U32.pack
u64 = _U64.pack


def string(value: bytes) -> bytes:
    """An SSH ``string``: its length, then its bytes."""
    return _U32.pack(len(value)) + value


def packet(kind: int, request: int, body: bytes) -> bytes:
    """A reply: length, type, the request's id, then ``body``."""
    return _U32.pack(len(body) + 5) + bytes((kind,)) + _U32.pack(request) + body


def status(request: int, code: int, text: str = "") -> bytes:
    """An ``SSH_FXP_STATUS`` reply (language tag empty)."""
    return packet(FXP_STATUS, request, _U32.pack(code) + string(text.encode()) + string(b""))


_OK_HEAD = _U32.pack(17) + bytes((FXP_STATUS,))
_OK_TAIL = _U32.pack(FX_OK) + string(b"") + string(b"")


def ok(request: int) -> bytes:
    """``SSH_FX_OK`` for ``request`` (the most frequent reply, built without a format)."""
    return _OK_HEAD + _U32.pack(request) + _OK_TAIL


class BadMessage(Exception):
    """A request whose fields do not match its type (``SSH_FX_BAD_MESSAGE``)."""


class FrameTooLong(Exception):
    """A packet announced longer than :data:`MAX_PACKET`: the stream cannot be trusted."""


class Framer:
    """Cuts a byte stream into SFTP packets (each returned without its length, as a view).

    A packet within one received chunk is a view of that chunk (no copy); one spread over
    several chunks is joined once, when its last byte arrives, and only its own bytes are
    (what follows it stays a view). The views read immutable ``bytes``, so a request's data can
    be kept (an upload's buffered chunk) without a copy.
    """

    __slots__ = ("_held", "_parts", "_want")

    def __init__(self) -> None:
        self._parts: list[memoryview] = []  # the start of a packet not yet whole
        self._held = 0
        self._want = 0  # its whole size with its length field, once that field is in

    @property
    def pending(self) -> int:
        """Bytes held for a packet not yet whole."""
        return self._held

    def feed(self, data: bytes) -> list[memoryview]:
        """The packets ``data`` completes, in order; raises :class:`FrameTooLong` at the first
        length over :data:`MAX_PACKET` (or of zero: a packet has at least its type)."""
        if type(data) is not bytes:  # a view of a buffer asyncssh could reuse
            data = bytes(data)
        view = memoryview(data)
        packets: list[memoryview] = []
        if self._parts:
            if not self._want:  # its length field is not whole yet (under 4 bytes held)
                head = b"".join(self._parts) + data[: 4 - self._held]
                if len(head) < 4:
                    self._parts.append(view)
                    self._held += len(data)
                    return packets
                self._want = _whole(head, 0)
            need = self._want - self._held
            if len(data) < need:
                self._parts.append(view)
                self._held += len(data)
                return packets
            whole = b"".join([*self._parts, view[:need]])
            packets.append(memoryview(whole)[4:])
            view = view[need:]
            self._parts, self._held, self._want = [], 0, 0
        start, size = 0, len(view)
        while size - start >= 4:
            end = start + _whole(view, start)
            if end > size:
                self._want = end - start
                break
            packets.append(view[start + 4 : end])
            start = end
        if start < size:
            self._parts, self._held = [view[start:]], size - start
        return packets


def _whole(data: bytes | memoryview, start: int) -> int:
    """The size of the packet at ``start``, its length field included (checked)."""
    (length,) = _U32.unpack_from(data, start)
    if length == 0 or length > MAX_PACKET:
        raise FrameTooLong(f"packet length {length}")
    return int(length) + 4


class Fields:
    """Reads a request's fields in order (after its type and id)."""

    __slots__ = ("_at", "_data")

    def __init__(self, data: bytes | memoryview, at: int = 5) -> None:
        self._data = data
        self._at = at

    # Each reader unpacks in place (no helper call per field): a file's requests read about
    # a dozen fields, on every small upload.

    def u32(self) -> int:
        at = self._at
        end = at + 4
        if end > len(self._data):
            raise BadMessage("truncated request")
        self._at = end
        return int(_U32.unpack_from(self._data, at)[0])

    def u64(self) -> int:
        at = self._at
        end = at + 8
        if end > len(self._data):
            raise BadMessage("truncated request")
        self._at = end
        return int(_U64.unpack_from(self._data, at)[0])

    def view(self) -> bytes | memoryview:
        """A ``string`` field, as a view of the request (a write's data: not copied)."""
        data = self._data
        at = self._at + 4
        if at > len(data):
            raise BadMessage("truncated request")
        end = at + _U32.unpack_from(data, at - 4)[0]
        if end > len(data):
            raise BadMessage("truncated request")
        self._at = end
        return data[at:end]

    def string(self) -> bytes:
        """A ``string`` field (a path, a handle)."""
        return bytes(self.view())

    def attrs(self) -> None:
        """Skip an ATTRS block (the gateway sets no attribute a client sends)."""
        flags = self.u32()
        if flags & 0x1:  # size
            self.u64()
        if flags & 0x2:  # uid, gid
            self.u32()
            self.u32()
        if flags & 0x4:  # permissions
            self.u32()
        if flags & 0x8:  # atime, mtime
            self.u32()
            self.u32()
        if flags & 0x80000000:  # extended pairs
            for _ in range(self.u32()):
                self.string()
                self.string()

    def end(self) -> None:
        """Nothing may follow the last field."""
        if self._at != len(self._data):
            raise BadMessage("unexpected data at the end of the request")
