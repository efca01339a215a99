"""A prototype for measuring only: the gateway's SFTP channel with a lean SFTP layer of its own.

``python bench/lean_gateway.py -m MODULE ARGS...`` runs ``python -m MODULE ARGS...`` (the
gateway's ``gateway.cli.sftp_testserver``, or ``gateway ... serve``) with one change: each SFTP
session is served by :class:`LeanSession` instead of asyncssh's ``SFTPServerHandler``. The
session's channel bytes are parsed in the channel's ``data_received`` callback. Each request
then calls the gateway's own handlers (``GatewaySFTPServer``: the same checks, spool, commits and
logs), in a task of its own, one request after another.

It serves what OpenSSH's ``sftp`` needs to upload: INIT, REALPATH, STAT/LSTAT/FSTAT, OPEN, WRITE,
CLOSE, SETSTAT/FSETSTAT (answered OK). Everything else is answered "unsupported": no listings,
downloads, renames or removals, no extensions, and none of asyncssh's limits on packet sizes
or pipelined requests. It answers "what would an SFTP layer of the gateway's own buy, with the
gateway's work behind it?" (``bench/sftp.py --lean-gateway``, ``bench/e2e.py --lean-sftp``). It
is not a design for one.
"""

from __future__ import annotations

import asyncio
import runpy
import sys
from collections import deque
from pathlib import Path
from typing import Any

import asyncssh

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.sshd_subsystem import (
    _U32,
    _U64,
    FAILURE,
    FXP_ATTRS,
    FXP_CLOSE,
    FXP_FSETSTAT,
    FXP_FSTAT,
    FXP_HANDLE,
    FXP_INIT,
    FXP_LSTAT,
    FXP_NAME,
    FXP_OPEN,
    FXP_REALPATH,
    FXP_SETSTAT,
    FXP_STAT,
    FXP_STATUS,
    FXP_VERSION,
    FXP_WRITE,
    OK,
    UNSUPPORTED,
    _bytes,
    _string,
)
from gateway.channels import sftp as channel
from gateway.channels.sftp_session import GatewaySFTPServer


class LeanSession(asyncssh.SSHServerSession[bytes]):
    """One session channel: the sftp subsystem, requests answered in order."""

    def __init__(self, owner: Any) -> None:
        self._owner = owner  # the gateway's connection (channel counting, its session)
        self._chan: asyncssh.SSHServerChannel[bytes] | None = None
        self._server: GatewaySFTPServer | None = None
        self._rest = b""
        self._requests: deque[memoryview] = deque()
        self._busy = False
        self._handles: dict[bytes, object] = {}
        self._next_handle = 0

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._chan = chan

    def subsystem_requested(self, subsystem: str) -> bool:
        if subsystem != "sftp" or self._chan is None:
            return False
        self._chan.set_encoding(None)
        self._server = self._owner.sftp_server(self._chan)
        return True

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self._rest:
            data = self._rest + data
        view = memoryview(data)
        start, size = 0, len(data)
        while size - start >= 4:
            (length,) = _U32.unpack_from(view, start)
            end = start + 4 + length
            if size < end:
                break
            self._requests.append(view[start + 4 : end])
            start = end
        self._rest = bytes(view[start:])
        self._pump()

    def _pump(self) -> None:
        """Answer the next request in a task of its own, once the one before is answered.
        (A task is needed: SQLAlchemy's pool waits under ``asyncio.timeout``, which raises
        outside a task. Stepping each request inline from this callback instead, and moving
        it to a task only when it waits, saved more CPU in bench/sftp.py's gateway, but fails
        in ``gateway serve`` as soon as an upload's quota is read from the database.)"""
        if self._requests and not self._busy:
            self._busy = True
            task = asyncio.get_running_loop().create_task(self._answer(self._requests.popleft()))
            task.add_done_callback(self._answered)

    def _answered(self, _: object) -> None:
        self._busy = False
        self._pump()

    def _send(self, kind: int, body: bytes) -> None:
        assert self._chan is not None
        self._chan.write(_U32.pack(len(body) + 1) + bytes((kind,)) + body)

    def _status(self, request: int, code: int, text: str = "") -> None:
        body = _U32.pack(request) + _U32.pack(code) + _bytes(text.encode()) + _bytes(b"")
        self._send(FXP_STATUS, body)

    async def _answer(self, packet: memoryview) -> None:
        kind = packet[0]
        if kind == FXP_INIT:
            self._send(FXP_VERSION, _U32.pack(3))
            return
        (request,) = _U32.unpack_from(packet, 1)
        server = self._server
        assert server is not None
        try:
            if kind == FXP_WRITE:
                handle, offset = _string(packet, 5)
                (position,) = _U64.unpack_from(packet, offset)
                data, _ = _string(packet, offset + 8)
                await server.write(self._handles[handle], position, data)
                self._status(request, OK)
            elif kind == FXP_OPEN:
                path, offset = _string(packet, 5)
                (pflags,) = _U32.unpack_from(packet, offset)
                opened = await server.open(path, pflags, asyncssh.SFTPAttrs())
                self._next_handle += 1
                handle = _U32.pack(self._next_handle)
                self._handles[handle] = opened
                self._send(FXP_HANDLE, _U32.pack(request) + _bytes(handle))
            elif kind == FXP_CLOSE:
                handle, _ = _string(packet, 5)
                await server.close(self._handles.pop(handle))
                self._status(request, OK)
            elif kind in (FXP_STAT, FXP_LSTAT):
                path, _ = _string(packet, 5)
                attrs = await server.stat(path)
                self._send(FXP_ATTRS, _U32.pack(request) + attrs.encode(3))
            elif kind == FXP_FSTAT:
                handle, _ = _string(packet, 5)
                attrs = server.fstat(self._handles[handle])
                self._send(FXP_ATTRS, _U32.pack(request) + attrs.encode(3))
            elif kind == FXP_REALPATH:
                path, _ = _string(packet, 5)
                real = _bytes(server.realpath(path))
                self._send(FXP_NAME, _U32.pack(request) + _U32.pack(1) + real + real + b"\0" * 4)
            elif kind in (FXP_SETSTAT, FXP_FSETSTAT):
                self._status(request, OK)
            else:
                self._status(request, UNSUPPORTED, "unsupported")
        except asyncssh.SFTPError as exc:
            self._status(request, exc.code, exc.reason)
        except Exception as exc:
            self._status(request, FAILURE, type(exc).__name__)

    def eof_received(self) -> bool:
        assert self._chan is not None
        self._chan.exit(0)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        server, self._server = self._server, None
        if server is not None:
            for opened in self._handles.values():
                abort = getattr(opened, "abort", None)
                if abort is not None:
                    abort()
            server.exit()
        owner, self._owner = self._owner, None
        if owner is not None:
            owner.channel_closed()


def install() -> None:
    """Serve the gateway's SFTP sessions with :class:`LeanSession` (this process only)."""
    counted = channel._Connection.session_requested

    def session_requested(self: Any) -> Any:
        counted(self)  # the gateway's checks, and the channel counted (LeanSession uncounts it)
        return LeanSession(self)

    channel._Connection.session_requested = session_requested  # type: ignore[method-assign]


if __name__ == "__main__":
    if sys.argv[1:2] != ["-m"] or len(sys.argv) < 3:
        raise SystemExit("usage: python bench/lean_gateway.py -m MODULE ARGS...")
    install()
    sys.argv = sys.argv[2:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
