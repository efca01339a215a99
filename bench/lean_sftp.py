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

``--contract SENDER`` adds, at their leanest, what the gateway does per file for one sender:
each path canonicalised and permitted by ``gateway.core.folders``; an upload's name checked by
``gateway.core.names`` (the default policy); the spool's free-space floor (one ``statvfs``)
and the final name (one ``lstat``) looked at when it opens; its SHA-256; at its close the
gateway's own insert (``gateway.spool.commit``: its ``uploads`` row and ``upload_contents``
bytes, one transaction on a database migrated by the gateway's Alembic); and once answered its
``upload.stored`` line through the gateway's logging. ``bench/sftp.py --lean-contract``
measures it: the fastest the gateway's per-file contract can run on this transport, so the
gateway's own figure reads against it.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncssh
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bare_sftp import serve_as_gateway
from bench.sshd_subsystem import (
    _U32,
    _U64,
    FAILURE,
    FXP_ATTRS,
    FXP_HANDLE,
    FXP_LSTAT,
    FXP_STAT,
    FXP_WRITE,
    INLINE_MAX,
    NO_SUCH_FILE,
    OK,
    Subsystem,
    _attrs,
    _bytes,
    _string,
)
from gateway.core.codes import Rejection
from gateway.core.folders import Folder, Operation, VPath, canonicalise, final_name, permit
from gateway.core.names import check_upload_name
from gateway.core.types import SenderNumber
from gateway.ops.logging import configure_logging
from gateway.ops.loop import EventLoop, run
from gateway.ops.settings import load_settings
from gateway.registry.db import create_engine, sqlite_sync_engine
from gateway.registry.migrate import migrate
from gateway.spool.commit import _SqliteRows
from gateway.spool.folders import NamePolicy
from gateway.spool.limits import SpoolLimits, check_space
from gateway.spool.store import _row
from gateway.spool.writer import UploadTarget


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


class _Contracted:
    """An upload of the contract server: its target, bytes so far and running digest."""

    __slots__ = ("data", "digest", "final", "target")

    def __init__(self, target: UploadTarget, final: str) -> None:
        self.target, self.final = target, final
        self.data = bytearray()
        self.digest = hashlib.sha256()


class ContractSubsystem(ChannelSubsystem):
    """The lean layer with the gateway's per-file contract (see the module), small files only."""

    def __init__(self, contract: Contract, root: Path) -> None:
        super().__init__(contract.database, root)
        self._contract = contract
        self._uploads: dict[bytes, _Contracted] = {}
        self._log = structlog.get_logger().bind(session_id="lean", sender=contract.sender)

    def _vpath(self, raw: bytes, operation: Operation) -> VPath | None:
        vpath = canonicalise(raw)
        if isinstance(vpath, Rejection) or permit(operation, vpath) is not None:
            return None
        return vpath

    def _dispatch(self, packet: memoryview) -> None:
        if packet[0] not in (FXP_STAT, FXP_LSTAT):
            super()._dispatch(packet)
            return
        (request,) = _U32.unpack_from(packet, 1)
        path, _ = _string(packet, 5)
        vpath = self._vpath(path, Operation.STAT)
        if vpath is None or vpath.folder is None or vpath.name is None:
            self._status(request, FAILURE, "refused")
            return
        try:
            info = os.lstat(self._contract.final(vpath.folder, vpath.name))
        except OSError:
            self._status(request, NO_SUCH_FILE, "no such file")
            return
        self._send(FXP_ATTRS, _U32.pack(request) + _attrs(info.st_size, info.st_mode))

    def _open(self, request: int, path: str) -> None:
        contract = self._contract
        vpath = self._vpath(os.fsencode(path), Operation.CREATE)
        if vpath is None or vpath.folder is None or vpath.name is None:
            self._status(request, FAILURE, "refused")
            return
        name = final_name(vpath.name)
        names = contract.names
        checked = check_upload_name(
            name,
            folder=vpath.folder.value,
            sender=contract.sender,
            applications=contract.applications,
            today=names.today(),
            max_age_days=names.max_age_days,
            max_parts=names.max_parts,
            parted=names.parted,
        )
        space = os.statvfs(contract.spool)
        size = space.f_frsize
        full = check_space(contract.limits, free=space.f_bavail * size, total=space.f_blocks * size)
        final = contract.final(vpath.folder, name)
        if isinstance(checked, Rejection) or full is not None or os.path.lexists(final):
            self._status(request, FAILURE, "refused")
            return
        self._next += 1
        handle = _U32.pack(self._next)
        target = UploadTarget(
            sender=contract.sender,
            folder=vpath.folder,
            name=name,
            session_id="lean",
            channel="sftp",
        )
        self._uploads[handle] = _Contracted(target, final)
        self._send(FXP_HANDLE, _U32.pack(request) + _bytes(handle))

    def _write_part(self, handle: bytes, position: int, data: bytes | memoryview) -> bool:
        upload = self._uploads.get(handle)
        if upload is None or position != len(upload.data) or position + len(data) > INLINE_MAX:
            return False
        upload.data += data
        upload.digest.update(data)
        return True

    def _close(self, request: int, handle: bytes) -> None:
        upload = self._uploads.pop(handle, None)
        if upload is None:
            self._status(request, FAILURE, "bad handle")
            return
        data = bytes(upload.data)
        sha256 = upload.digest.hexdigest()
        fd = os.open(upload.final, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        rows = self._contract.rows
        arrived = datetime.now(UTC)
        started = time.monotonic()
        if not rows.begin_now():
            raise RuntimeError("the database is locked")
        row = _row(upload.target, upload.target.name, len(data), sha256, arrived)
        rows.insert([row], [data], begun=True)
        self._status(request, OK)
        asyncio.get_running_loop().call_soon(
            functools.partial(
                self._log.info,
                "upload.stored",
                channel="sftp",
                folder=upload.target.folder.value,
                name=upload.target.name,
                bytes=len(data),
                sha256=sha256[:16],
                duration=round(time.monotonic() - started, 4),
            )
        )


class Contract:
    """What the contract server needs once: its sender, policy, database writer and paths."""

    def __init__(self, root: Path, sender: str, rows: _SqliteRows) -> None:
        settings = load_settings(state_dir=root.parent, database_url="sqlite://")
        self.sender = SenderNumber(sender)
        self.applications = frozenset({"DMFA"})
        self.names = NamePolicy.from_settings(settings)
        self.limits = SpoolLimits.from_settings(settings.limits)
        self.spool = str(root)
        self.database = ":memory:"  # the lean layer's own table, unused: rows go below
        self.rows = rows

    def final(self, folder: Folder, name: str) -> str:
        """The committed file of ``name`` in ``folder`` (a string, as the gateway's commit)."""
        return f"{self.spool}/{folder.value}/{name}"


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


async def main(
    root: Path, host_key: Path, authorized_keys: Path, sender: str | None = None
) -> None:
    """Listen, print the port, serve until cancelled (``sender``: the contract server)."""
    (root / "IN").mkdir(parents=True, exist_ok=True)
    database = str(root.parent / f"{root.name}.sqlite3")
    contract: Contract | None = None
    if sender is not None:
        configure_logging(fmt="json", level="info", stream=sys.stderr)
        url = f"sqlite+aiosqlite:///{database}"
        await migrate(url)
        sync = sqlite_sync_engine(create_engine(url))
        assert sync is not None
        contract = Contract(root, sender, _SqliteRows(sync, wait=False))

    class Server(asyncssh.SSHServer):
        def session_requested(self) -> LeanSession:
            if contract is not None:
                return LeanSession(ContractSubsystem(contract, root))
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
    contract_sender = sys.argv[5] if sys.argv[4:5] == ["--contract"] else None
    os.umask(0o077)
    run(lambda: main(paths[0], paths[1], paths[2], contract_sender), EventLoop.UVLOOP)
