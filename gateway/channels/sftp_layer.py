"""The SFTP protocol layer of the SFTP channel: one session channel's requests, answered in order.

asyncssh carries the SSH transport, the authentication and the channels; this module replaces
its SFTP server layer (``SFTPServerHandler`` behind an ``SSHReader``), which cost the gateway
about a tenth of its CPU per set (issue 14: bench/README.md, "SFTP transfers"). The channel's
``data_received`` callback cuts the bytes into requests
(:class:`~gateway.channels.sftp_wire.Framer`: no stream reader, no awaited read per field); they
are answered one after another through
:class:`~gateway.channels.sftp_session.GatewaySFTPServer`, whose handlers hold every rule; each
reply is one channel write. One task per session answers them; while it is idle, requests are
begun in the callback itself as steps of that task (:mod:`gateway.channels.eager`), and one that
has to wait is handed to the task with every request after it, so the order holds.

What it speaks: SFTP version 3 (a client asking for more is answered 3, as before), with the
extensions the gateway answers: ``posix-rename``, ``hardlink`` (refused), ``fsync``,
``lsetstat``, ``statvfs``/``fstatvfs`` (refused) and ``limits`` (OpenSSH's). Reads and writes
are capped at :data:`~gateway.channels.sftp_wire.MAX_WRITE`; a packet announced longer ends the
session before it is buffered. Requests waiting beyond the channel's receive window pause the
channel (so the client's window closes) until they are answered.

Faults: an SFTP error is answered with its code and text (its code downgraded for a v3 client,
as asyncssh did); a request whose fields do not fit is answered ``SSH_FX_BAD_MESSAGE``; any
other exception is logged once with a ticket and answered ``999: internal error, ticket T``
(SECURITY.md 22), never with its text. When the client ends the channel or the connection
drops, the requests already received are answered, then every upload still open is aborted
(nothing partial becomes visible), the listings are closed and the session ends.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol

import asyncssh

from gateway.channels import eager
from gateway.channels import sftp_wire as wire
from gateway.channels.sftp_session import GatewaySFTPServer
from gateway.channels.sftp_wire import BadMessage, Fields
from gateway.channels.ssh_rekey import UPGRADE_AFTER

READDIR_NAMES = 128
"""Names per READDIR reply (asyncssh's figure)."""
EXTENSIONS = (
    (b"posix-rename@openssh.com", b"1"),
    (b"statvfs@openssh.com", b"2"),
    (b"fstatvfs@openssh.com", b"2"),
    (b"hardlink@openssh.com", b"1"),
    (b"fsync@openssh.com", b"1"),
    (b"lsetstat@openssh.com", b"1"),
    (b"limits@openssh.com", b"1"),
)
"""Announced in the VERSION reply: every one is answered below."""
_NONSTANDARD_SYMLINK = ("OpenSSH", "paramiko")
"""Clients that send SYMLINK's two paths in the reverse order (as asyncssh adjusts for)."""
_ENDED = object()

Reply = tuple[int, bytes]
"""A reply's packet type and its body after the request id."""
_NO_ATTRS = asyncssh.SFTPAttrs()
"""The attributes handed to handlers that ignore them (made once: an ``SFTPAttrs`` sets 24
fields)."""


class Owner(Protocol):
    """The connection a session channel belongs to."""

    def sftp_server(self, chan: asyncssh.SSHServerChannel[bytes]) -> GatewaySFTPServer: ...

    def channel_closed(self) -> None: ...

    def bulk_transfer(self) -> None: ...


class SftpSession(asyncssh.SSHServerSession[bytes]):
    """One session channel: the ``sftp`` subsystem and nothing else."""

    def __init__(self, owner: Owner) -> None:
        self._owner: Owner | None = owner
        self._chan: asyncssh.SSHServerChannel[bytes] | None = None
        self._server: GatewaySFTPServer | None = None
        self._framer = wire.Framer()
        self._requests: deque[memoryview | eager.Started[bytes] | object] = deque()
        self._queued = 0
        self._window = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._files: dict[bytes, object] = {}
        self._listings: dict[bytes, _Listing] = {}
        self._next_handle = 0
        self._swap_symlink = False
        self._ended = False
        self._received = 0  # until UPGRADE_AFTER, then the connection is told once
        self._task: asyncio.Task[None] | None = None
        """The session's task; its loop is asked of it (``get_running_loop`` is a system call on
        3.11)."""
        self._context = contextvars.copy_context()
        """The task's context, in which requests begun in the callback run too."""
        self._idle = False
        """The task waits for a request: one arriving may be begun in the callback."""
        self._ready = False
        """VERSION is sent: from then on requests may be begun in the callback."""

    # -- asyncssh's session callbacks ------------------------------------------------------------

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._chan = chan
        self._window = chan.get_recv_window()

    def subsystem_requested(self, subsystem: str) -> bool:
        """Only ``sftp``; its server is made now (the connection's session and checks)."""
        if subsystem != "sftp" or self._chan is None or self._owner is None:
            return False
        self._chan.set_encoding(None)
        self._server = self._owner.sftp_server(self._chan)
        return True

    def session_started(self) -> None:
        chan, server = self._chan, self._server
        if chan is None or server is None:  # pragma: no cover - asyncssh starts no other
            return
        version = str(chan.get_extra_info("client_version", ""))
        self._swap_symlink = any(name in version for name in _NONSTANDARD_SYMLINK)
        self._task = asyncio.get_running_loop().create_task(
            self._run(chan, server), context=self._context
        )

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype is not None or self._ended:
            return  # extended data means nothing to an SFTP server
        if self._received < UPGRADE_AFTER:
            self._received += len(data)
            if self._received >= UPGRADE_AFTER and self._owner is not None:
                self._owner.bulk_transfer()
        try:
            received = self._framer.feed(data)
        except wire.FrameTooLong:
            self._end()
            return
        packets: Sequence[memoryview | eager.Started[bytes]] = received
        if (
            received
            and self._idle
            and not self._requests
            and (task := self._task) is not None
            and asyncio.current_task(task.get_loop()) is None
        ):
            packets = self._context.run(self._begin, received)
        if packets:
            for item in packets:
                if isinstance(item, memoryview):
                    self._queued += len(item)
            self._requests.extend(packets)
            self._wake()
        if not self._paused and self._queued >= self._window > 0:
            self._paused = True
            if self._chan is not None:
                self._chan.pause_reading()

    def eof_received(self) -> bool:
        self._end()
        return True  # the channel stays open for the replies still due; _run closes it

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()
        owner, self._owner = self._owner, None
        if owner is not None:
            owner.channel_closed()

    # -- the request loop ------------------------------------------------------------------------

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._requests.append(_ENDED)
            self._wake()

    def _begin(self, packets: list[memoryview]) -> Sequence[memoryview | eager.Started[bytes]]:
        """Answer ``packets`` here, in order, while each is answered without waiting; the first
        that waits is returned begun, with the rest behind it, for the task to finish."""
        task, server, chan = self._task, self._server, self._chan
        if task is None or server is None or chan is None:  # pragma: no cover - set by now
            return packets
        loop = task.get_loop()
        for index, request in enumerate(packets):
            if len(request) < 5:
                return packets[index:]  # the task ends the session
            answer, started = eager.start(self._answer(server, request), task, loop)
            if started is not None:
                return [started, *packets[index + 1 :]]
            if answer is not None and not chan.is_closing():
                chan.write(answer)
        return []

    def _wake(self) -> None:
        self._idle = False  # requests wait for the task from now on, until it asks again
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _next(self) -> memoryview | eager.Started[bytes] | None:
        """The next request (or one begun already); None once the channel ended and every
        request before is taken."""
        while not self._requests:
            self._waiter = asyncio.get_running_loop().create_future()
            self._idle = self._ready
            try:
                await self._waiter
            finally:
                self._idle = False
            self._waiter = None
        item = self._requests.popleft()
        if isinstance(item, eager.Started):
            return item
        if not isinstance(item, memoryview):  # _ENDED
            return None
        self._queued -= len(item)
        if self._paused and self._queued < self._window:
            self._paused = False
            if self._chan is not None:
                self._chan.resume_reading()
        return item

    async def _run(self, chan: asyncssh.SSHServerChannel[bytes], server: GatewaySFTPServer) -> None:
        try:
            await self._serve(chan, server)
        except Exception:  # a bug: logged with its ticket (as asyncssh reaped its tasks)
            server.fault("session")
        finally:
            self._ended = True
            await self._clean_up(server)
            chan.close()

    async def _serve(
        self, chan: asyncssh.SSHServerChannel[bytes], server: GatewaySFTPServer
    ) -> None:
        first = await self._next()
        if not isinstance(first, memoryview) or first[0] != wire.FXP_INIT:
            return
        extensions = b"".join(wire.string(n) + wire.string(v) for n, v in EXTENSIONS)
        body = bytes((wire.FXP_VERSION,)) + wire.u32(wire.VERSION) + extensions
        chan.write(wire.u32(len(body)) + body)
        self._ready = True
        while (request := await self._next()) is not None:
            if isinstance(request, eager.Started):
                answer = await request
            elif len(request) < 5:
                return  # no id to answer: the stream is not SFTP, the session ends
            else:
                answer = await self._answer(server, request)
            if not chan.is_closing():
                chan.write(answer)

    async def _clean_up(self, server: GatewaySFTPServer) -> None:
        """Abort what is still open (nothing partial becomes visible), end the server."""
        files, self._files = self._files, {}
        listings, self._listings = self._listings, {}
        for opened in files.values():
            server.abandon(opened)
        try:
            for listing in listings.values():
                await listing.close()
        finally:
            server.exit()

    async def _answer(self, server: GatewaySFTPServer, request: memoryview) -> bytes:
        """The reply to one request (its type and id read)."""
        kind = request[0]
        ident = int.from_bytes(request[1:5], "big")
        fields = Fields(request)
        try:
            if kind == wire.FXP_EXTENDED:
                handler = _EXTENDED.get(fields.string())
            else:
                handler = _HANDLERS.get(kind)
            if handler is None:
                raise asyncssh.SFTPOpUnsupported(f"923: request {kind} is not offered")
            reply_kind, body = await handler(self, server, fields)
        except BadMessage as exc:
            return wire.status(ident, wire.FX_BAD_MESSAGE, str(exc))
        except asyncssh.SFTPError as exc:
            return wire.packet(wire.FXP_STATUS, ident, exc.encode(wire.VERSION))
        except Exception:
            error = server.fault(_request_name(kind))
            return wire.packet(wire.FXP_STATUS, ident, error.encode(wire.VERSION))
        if reply_kind == wire.FXP_STATUS:
            return wire.ok(ident)
        return wire.packet(reply_kind, ident, body)

    # -- handles ---------------------------------------------------------------------------------

    def _handle(self) -> bytes:
        while True:
            handle = self._next_handle.to_bytes(4, "big")
            self._next_handle = (self._next_handle + 1) & 0xFFFFFFFF
            if handle not in self._files and handle not in self._listings:
                return handle

    def _file(self, handle: bytes) -> object:
        opened = self._files.get(handle)
        if opened is None:
            raise asyncssh.SFTPInvalidHandle("invalid handle")
        return opened

    # -- requests (each returns its reply's type and body; STATUS means OK) ---------------------

    async def _open(self, server: GatewaySFTPServer, fields: Fields) -> Reply:
        path = fields.string()
        pflags = fields.u32()
        fields.attrs()
        fields.end()
        opened = await server.open(path, pflags, _NO_ATTRS)
        handle = self._handle()
        self._files[handle] = opened
        return wire.FXP_HANDLE, wire.string(handle)

    async def _close(self, server: GatewaySFTPServer, fields: Fields) -> Reply:
        handle = fields.string()
        fields.end()
        opened = self._files.pop(handle, None)
        if opened is not None:
            await server.close(opened)
        elif (listing := self._listings.pop(handle, None)) is not None:
            await listing.close()
        else:
            raise asyncssh.SFTPInvalidHandle("invalid handle")
        return _OK

    async def _read(self, server: GatewaySFTPServer, fields: Fields) -> Reply:
        handle = fields.string()
        offset = fields.u64()
        size = min(fields.u32(), wire.MAX_WRITE)
        fields.end()
        data = await server.read(self._file(handle), offset, size)
        if not data:
            raise asyncssh.SFTPEOFError()
        return wire.FXP_DATA, wire.string(data)

    async def _write(self, server: GatewaySFTPServer, fields: Fields) -> Reply:
        handle = fields.string()
        offset = fields.u64()
        data = fields.view()  # not copied: the upload keeps it until its chunk is written
        fields.end()
        await server.write(self._file(handle), offset, data)
        return _OK

    async def _stat(self, server: GatewaySFTPServer, fields: Fields) -> Reply:
        path = fields.string()
        fields.end()
        return wire.FXP_ATTRS, (await server.stat(path)).encode(wire.VERSION)

    async def _fstat(self, server: GatewaySFTPServer, fields: Fields) -> Reply:
        handle = fields.string()
        fields.end()
        return wire.FXP_ATTRS, server.fstat(self._file(handle)).encode(wire.VERSION)

    async def _setstat(self, server: GatewaySFTPServer, fields: Fields) -> Reply:
        path = fields.string()
        fields.attrs()
        fields.end()
        await server.setstat(path, _NO_ATTRS)
        return _OK

    async def _fsetstat(self, server: GatewaySFTPServer, fields: Fields) -> Reply:
        handle = fields.string()
        fields.attrs()
        fields.end()
        server.fsetstat(self._file(handle), _NO_ATTRS)
        return _OK

    async def _opendir(self, server: GatewaySFTPServer, fields: Fields) -> Reply:
        path = fields.string()
        fields.end()
        names = server.scandir(path)
        listing = _Listing(names)
        try:  # refusals (no such folder, not yours, too many listings) answer the OPENDIR
            listing.first = await anext(names)
        except BaseException:
            await listing.close()
            raise
        handle = self._handle()
        self._listings[handle] = listing
        return wire.FXP_HANDLE, wire.string(handle)

    async def _readdir(self, server: GatewaySFTPServer, fields: Fields) -> Reply:
        handle = fields.string()
        fields.end()
        listing = self._listings.get(handle)
        if listing is None:
            raise asyncssh.SFTPInvalidHandle("invalid handle")
        names: list[bytes] = []
        async for name in listing.take(READDIR_NAMES):
            if not name.longname:
                formatted = server.format_longname(name)
                if inspect.isawaitable(formatted):
                    await formatted
            names.append(name.encode(wire.VERSION))
        if not names:
            raise asyncssh.SFTPEOFError()
        return wire.FXP_NAME, wire.u32(len(names)) + b"".join(names)

    async def _remove(self, server: GatewaySFTPServer, fields: Fields) -> Reply:
        path = fields.string()
        fields.end()
        await server.remove(path)
        return _OK

    async def _mkdir(self, server: GatewaySFTPServer, fields: Fields) -> Reply:
        path = fields.string()
        fields.attrs()
        fields.end()
        server.mkdir(path, _NO_ATTRS)
        return _OK

    async def _rmdir(self, server: GatewaySFTPServer, fields: Fields) -> Reply:
        path = fields.string()
        fields.end()
        server.rmdir(path)
        return _OK

    async def _realpath(self, server: GatewaySFTPServer, fields: Fields) -> Reply:
        path = fields.string()
        fields.end()
        name = asyncssh.SFTPName(server.realpath(path), attrs=_NO_ATTRS)
        return wire.FXP_NAME, wire.u32(1) + name.encode(wire.VERSION)

    async def _rename(self, server: GatewaySFTPServer, fields: Fields) -> Reply:
        old, new = fields.string(), fields.string()
        fields.end()
        await server.rename(old, new)
        return _OK

    async def _readlink(self, server: GatewaySFTPServer, fields: Fields) -> Reply:
        path = fields.string()
        fields.end()
        name = asyncssh.SFTPName(server.readlink(path))
        return wire.FXP_NAME, wire.u32(1) + name.encode(wire.VERSION)

    async def _symlink(self, server: GatewaySFTPServer, fields: Fields) -> Reply:
        first, second = fields.string(), fields.string()
        fields.end()
        old, new = (first, second) if self._swap_symlink else (second, first)
        server.symlink(old, new)
        return _OK

    async def _hardlink(self, server: GatewaySFTPServer, fields: Fields) -> Reply:
        old, new = fields.string(), fields.string()
        fields.end()
        server.link(old, new)
        return _OK

    async def _fsync(self, server: GatewaySFTPServer, fields: Fields) -> Reply:
        handle = fields.string()
        fields.end()
        server.fsync(self._file(handle))
        return _OK

    async def _statvfs(self, server: GatewaySFTPServer, fields: Fields) -> Reply:
        path = fields.string()
        fields.end()
        server.statvfs(path)  # refused: it would describe the real filesystem

    async def _fstatvfs(self, server: GatewaySFTPServer, fields: Fields) -> Reply:
        handle = fields.string()
        fields.end()
        server.fstatvfs(self._file(handle))  # refused

    async def _limits(self, server: GatewaySFTPServer, fields: Fields) -> Reply:
        fields.end()
        limits = wire.u64(wire.MAX_PACKET) + wire.u64(wire.MAX_WRITE) + wire.u64(wire.MAX_WRITE)
        return wire.FXP_EXTENDED_REPLY, limits + wire.u64(0)  # open handles: the gateway's own


_OK: Reply = (wire.FXP_STATUS, b"")
_Handler = Callable[[SftpSession, GatewaySFTPServer, Fields], Awaitable[Reply]]
_HANDLERS: dict[int, _Handler] = {
    wire.FXP_OPEN: SftpSession._open,
    wire.FXP_CLOSE: SftpSession._close,
    wire.FXP_READ: SftpSession._read,
    wire.FXP_WRITE: SftpSession._write,
    wire.FXP_LSTAT: SftpSession._stat,  # there are no links
    wire.FXP_FSTAT: SftpSession._fstat,
    wire.FXP_SETSTAT: SftpSession._setstat,
    wire.FXP_FSETSTAT: SftpSession._fsetstat,
    wire.FXP_OPENDIR: SftpSession._opendir,
    wire.FXP_READDIR: SftpSession._readdir,
    wire.FXP_REMOVE: SftpSession._remove,
    wire.FXP_MKDIR: SftpSession._mkdir,
    wire.FXP_RMDIR: SftpSession._rmdir,
    wire.FXP_REALPATH: SftpSession._realpath,
    wire.FXP_STAT: SftpSession._stat,
    wire.FXP_RENAME: SftpSession._rename,
    wire.FXP_READLINK: SftpSession._readlink,
    wire.FXP_SYMLINK: SftpSession._symlink,
}
_EXTENDED: dict[bytes, _Handler] = {
    b"posix-rename@openssh.com": SftpSession._rename,  # the same rule: never an overwrite
    b"statvfs@openssh.com": SftpSession._statvfs,
    b"fstatvfs@openssh.com": SftpSession._fstatvfs,
    b"hardlink@openssh.com": SftpSession._hardlink,
    b"fsync@openssh.com": SftpSession._fsync,
    b"lsetstat@openssh.com": SftpSession._setstat,  # there are no links
    b"limits@openssh.com": SftpSession._limits,
}
_NAMES = {value: name[4:].lower() for name, value in vars(wire).items() if name.startswith("FXP_")}


def _request_name(kind: int) -> str:
    return _NAMES.get(kind, str(kind))


class _Listing:
    """An open directory handle: the folder service's names, the first taken at OPENDIR."""

    __slots__ = ("first", "names")

    def __init__(self, names: AsyncGenerator[asyncssh.SFTPName, None]) -> None:
        self.names = names
        self.first: asyncssh.SFTPName | None = None

    async def take(self, count: int) -> AsyncIterator[asyncssh.SFTPName]:
        """Up to ``count`` names, continuing where the last READDIR stopped."""
        if count <= 0:
            return
        if self.first is not None:
            first, self.first = self.first, None
            yield first
            count -= 1
        while count > 0:
            try:
                name = await anext(self.names)
            except StopAsyncIteration:
                return
            yield name
            count -= 1

    async def close(self) -> None:
        """Close the folder service's listing now (its slot in the session is given back)."""
        await self.names.aclose()
