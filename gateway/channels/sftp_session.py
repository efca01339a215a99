"""One authenticated SFTP session: asyncssh's ``SFTPServer`` seam over the vfs and the spool.

Every request goes through :func:`gateway.channels.vfs.canonicalise` and
:func:`gateway.channels.vfs.permit` first; nothing here touches the real filesystem except
through the spool's layout (every method of the asyncssh base class that would is overridden,
and ``map_path`` refuses). Refusals are raised as SFTP errors whose text starts with the code
(``108: sender number 006401 is not yours``): SFTPv3 clients see newer status codes only as a
generic failure, and OpenSSH's ``sftp`` prints only "Permission denied", so every refused
upload is also recorded in ``upload_refusals`` for a negative ACRF.

Client temporary names (``NAME.filepart``...) are checked as ``NAME`` when opened; on close the
complete file is parked (fsync'ed, invisible to others) until the rename to ``NAME`` commits it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, BinaryIO, NoReturn

import asyncssh

from gateway.channels.sftp_values import (
    CHANNEL,
    MAX_OPEN_FILES,
    MAX_PARKED,
    MAX_RECORDED_REFUSALS,
    NamePolicy,
    Session,
    dir_attrs,
    file_attrs,
    no_such_file,
    raise_refusal,
)
from gateway.channels.vfs import (
    ROOT_FOLDERS,
    Folder,
    Operation,
    VPath,
    canonicalise,
    check_rename,
    final_name,
    permit,
)
from gateway.core.codes import Code, Rejection, reject
from gateway.core.names import check_upload_name
from gateway.spool import Spool, StoredUpload, UploadTarget, UploadWriter
from gateway.spool.out import list_return_files


class _Upload:
    __slots__ = ("refusal_recorded", "temp_name", "vpath", "writer")

    def __init__(self, writer: UploadWriter, vpath: VPath, temp_name: str | None) -> None:
        self.writer = writer
        self.vpath = vpath
        self.temp_name = temp_name
        self.refusal_recorded = False


class _Download:
    __slots__ = ("file", "size")

    def __init__(self, file: BinaryIO, size: int) -> None:
        self.file = file
        self.size = size


def _client_closed(chan: asyncssh.SSHServerChannel[bytes], caller: str) -> bool:
    """True when this close() answers the client's own close request.

    asyncssh also calls close() on still-open handles from its session clean-up, when the client
    vanished or dropped the channel mid-transfer: that close must abort, never commit a partial
    file. The caller's name tells the two apart (asyncssh's ``_process_close`` or ``_cleanup``);
    should asyncssh rename them, a channel that still receives is required instead, which errs
    on the side of aborting.
    """
    if caller == "_process_close":
        return True
    if caller == "_cleanup":
        return False
    return not chan.is_closing() and getattr(chan, "_recv_state", "open") == "open"


class GatewaySFTPServer(asyncssh.SFTPServer):
    """The SFTP request handlers of one session."""

    def __init__(
        self,
        chan: asyncssh.SSHServerChannel[bytes],
        *,
        session: Session,
        spool: Spool,
        names: NamePolicy,
    ) -> None:
        super().__init__(chan)
        self._session = session
        self._spool = spool
        self._names = names

    # -- helpers -------------------------------------------------------------------------------

    def _path(self, raw: bytes) -> VPath:
        self._session.touch()
        result = canonicalise(raw)
        if isinstance(result, Rejection):
            self._session.log.info("path.refused", code=int(result.code), reason=result.reason)
            raise_refusal(result)
        return result

    def _permit(self, operation: Operation, path: VPath) -> None:
        problem = permit(operation, path)
        if problem is not None:
            raise_refusal(problem)

    async def _refuse_upload(self, folder: Folder, name: str, rejection: Rejection) -> NoReturn:
        session = self._session
        session.refused += 1
        session.log.info("upload.refused", folder=folder.value, name=name, code=int(rejection.code))
        if session.refused <= MAX_RECORDED_REFUSALS:
            await self._spool.record_refusal(
                sender=session.sender,
                folder=folder,
                name=name,
                rejection=rejection,
                session_id=session.id,
            )
        raise_refusal(rejection)

    def _stored(self, stored: StoredUpload) -> None:
        session = self._session
        session.stored += 1
        session.bytes_stored += stored.size
        session.log.info(
            "upload.stored",
            folder=stored.folder.value,
            name=stored.name,
            bytes=stored.size,
            sha256=stored.sha256,
            duration=round(stored.duration_seconds, 6),
            upload_id=stored.id,
        )

    def map_path(self, path: bytes) -> bytes:
        """Never used: every operation works on virtual paths (safety net)."""
        raise asyncssh.SFTPPermissionDenied("923: no real paths here")

    # -- names and attributes ------------------------------------------------------------------

    def realpath(self, path: bytes) -> bytes:
        """The canonical form of ``path`` (``.`` is the root)."""
        return str(self._path(path)).encode()

    async def stat(self, path: bytes) -> asyncssh.SFTPAttrs:
        """Attributes of the root, a folder, a pending upload or a return file."""
        vpath = self._path(path)
        self._permit(Operation.STAT, vpath)
        if vpath.folder is None or vpath.name is None:
            return dir_attrs()
        if vpath.folder.inbound:
            parked = self._session.parked.get((vpath.folder, vpath.name))
            if parked is not None:
                return file_attrs(parked.size, time.time())
            # From the committed file, not the database: clients stat every target before a
            # put, and the listing (from ``uploads``) stays the authority on what is pending.
            real = self._spool.layout.committed(self._session.sender, vpath.folder, vpath.name)
        else:
            real = self._spool.layout.out_file(self._session.sender, vpath.folder, vpath.name)
        try:
            info = os.lstat(real)
        except FileNotFoundError:
            raise no_such_file(vpath) from None
        if not stat.S_ISREG(info.st_mode):
            raise no_such_file(vpath)
        return file_attrs(info.st_size, info.st_mtime)

    async def lstat(self, path: bytes) -> asyncssh.SFTPAttrs:
        """Same as :meth:`stat`: there are no links."""
        return await self.stat(path)

    def fstat(self, file_obj: object) -> asyncssh.SFTPAttrs:
        """Attributes of an open upload or download."""
        self._session.touch()
        if isinstance(file_obj, _Upload):
            return file_attrs(file_obj.writer.size, time.time())
        if isinstance(file_obj, _Download):
            return file_attrs(file_obj.size, time.time())
        raise asyncssh.SFTPInvalidHandle("invalid handle")

    async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        """List the root (the six folders), a sender's pending uploads, or its return files."""
        vpath = self._path(path)
        self._permit(Operation.LIST, vpath)
        if vpath.is_file:
            raise asyncssh.SFTPNoSuchFile(f"not a folder: {vpath}")
        yield asyncssh.SFTPName(b".", attrs=dir_attrs())
        yield asyncssh.SFTPName(b"..", attrs=dir_attrs())
        if vpath.folder is None:
            for folder in ROOT_FOLDERS:
                yield asyncssh.SFTPName(folder.value.encode(), attrs=dir_attrs())
            return
        sender = self._session.sender
        if vpath.folder.inbound:
            for (folder, name), parked in sorted(self._session.parked.items()):
                if folder is vpath.folder:
                    attrs = file_attrs(parked.size, time.time())
                    yield asyncssh.SFTPName(name.encode(), attrs=attrs)
            for pending in await self._spool.pending_files(sender, vpath.folder):
                attrs = file_attrs(pending.size, pending.arrived_at.timestamp())
                yield asyncssh.SFTPName(pending.name.encode(), attrs=attrs)
            return
        for item in list_return_files(self._spool.layout, sender, vpath.folder):
            yield asyncssh.SFTPName(item.name.encode(), attrs=file_attrs(item.size, item.mtime))

    def format_user(self, uid: int | None) -> str:
        """No real users are shown."""
        return "gateway"

    def format_group(self, gid: int | None) -> str:
        """No real groups are shown."""
        return "gateway"

    # -- files -----------------------------------------------------------------------------------

    async def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        """Open an upload (``IN*``, new name only) or a download (``OUT*``)."""
        vpath = self._path(path)
        if self._session.draining:
            # Not the sender's doing: refused with its code, but not recorded for an ACRF.
            raise_refusal(reject(Code.GATEWAY_STOPPING, "the gateway is stopping"))
        if self._session.open_files >= MAX_OPEN_FILES:
            raise_refusal(
                reject(Code.OPERATION_NOT_PERMITTED, f"at most {MAX_OPEN_FILES} open files")
            )
        if pflags & asyncssh.FXF_WRITE:
            if pflags & (asyncssh.FXF_READ | asyncssh.FXF_APPEND):
                raise_refusal(
                    reject(Code.OPERATION_NOT_PERMITTED, "uploads are write-only, from byte 0")
                )
            return await self._open_upload(vpath)
        if pflags & asyncssh.FXF_READ:
            return self._open_download(vpath)
        raise_refusal(reject(Code.OPERATION_NOT_PERMITTED, "open for neither reading nor writing"))

    def open56(
        self, path: bytes, desired_access: int, flags: int, attrs: asyncssh.SFTPAttrs
    ) -> Any:
        """SFTP v5/v6 open, mapped onto the v3 flags (asyncssh's default would open real files)."""
        pflags = 0
        if desired_access & (asyncssh.ACE4_WRITE_DATA | asyncssh.ACE4_APPEND_DATA):
            pflags |= asyncssh.FXF_WRITE | asyncssh.FXF_CREAT
        if desired_access & asyncssh.ACE4_READ_DATA:
            pflags |= asyncssh.FXF_READ
        if flags & asyncssh.FXF_APPEND_DATA:
            pflags |= asyncssh.FXF_APPEND
        return self.open(path, pflags, attrs)

    async def _open_upload(self, vpath: VPath) -> _Upload:
        self._permit(Operation.CREATE, vpath)
        folder, name = vpath.folder, vpath.name
        if folder is None or name is None:  # permit() allows CREATE on files only
            raise_refusal(reject(Code.OPERATION_NOT_PERMITTED))
        target_name = final_name(name)
        session = self._session
        principal = session.principal
        checked = check_upload_name(
            target_name,
            folder=folder.value,
            sender=session.sender,
            applications=principal.applications,
            today=self._names.today(),
            max_age_days=self._names.max_age_days,
            max_parts=self._names.max_parts,
            parted=self._names.parted,
        )
        if isinstance(checked, Rejection):
            await self._refuse_upload(folder, target_name, checked)
        temp_name = name if target_name != name else None
        if temp_name is not None and len(session.parked) >= MAX_PARKED:
            raise_refusal(
                reject(
                    Code.OPERATION_NOT_PERMITTED,
                    f"at most {MAX_PARKED} temporary uploads; rename them to their names first",
                )
            )
        if temp_name is not None and (folder, temp_name) in session.parked:
            await self._refuse_upload(
                folder, target_name, reject(Code.FILE_EXISTS, f"{temp_name} is already there")
            )
        target = UploadTarget(
            sender=session.sender,
            folder=folder,
            name=target_name,
            session_id=session.id,
            channel=CHANNEL,
        )
        writer = await self._spool.begin(target)
        if isinstance(writer, Rejection):
            await self._refuse_upload(folder, target_name, writer)
        session.writers.add(writer)
        session.open_files += 1
        return _Upload(writer, vpath, temp_name)

    def _open_download(self, vpath: VPath) -> _Download:
        self._permit(Operation.READ, vpath)
        if vpath.folder is None or vpath.name is None:
            raise_refusal(reject(Code.OPERATION_NOT_PERMITTED))
        out = self._spool.layout.out_file(self._session.sender, vpath.folder, vpath.name)
        try:
            fd = os.open(out, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, OSError):
            raise no_such_file(vpath) from None
        file = os.fdopen(fd, "rb", buffering=0)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            file.close()
            raise no_such_file(vpath)
        self._session.open_files += 1
        return _Download(file, info.st_size)

    async def write(self, file_obj: object, offset: int, data: bytes) -> int:
        """Stream upload bytes into the spool (sequential writes only)."""
        self._session.touch()
        if not isinstance(file_obj, _Upload):
            raise_refusal(reject(Code.OPERATION_NOT_PERMITTED, "this file is open for reading"))
        problem = await file_obj.writer.write(offset, data)
        if problem is not None:
            if not file_obj.refusal_recorded:
                file_obj.refusal_recorded = True
                self._session.writers.discard(file_obj.writer)
                folder = file_obj.vpath.folder
                if folder is not None:
                    await self._refuse_upload(folder, file_obj.writer.target.name, problem)
            raise_refusal(problem)
        return len(data)

    def read(self, file_obj: object, offset: int, size: int) -> bytes:
        """Read a return file."""
        self._session.touch()
        if not isinstance(file_obj, _Download):
            raise_refusal(reject(Code.OPERATION_NOT_PERMITTED, "uploads cannot be read back"))
        return os.pread(file_obj.file.fileno(), size, offset)

    @contextlib.contextmanager
    def _answering(self) -> Iterator[None]:
        """A request that commits or removes something is in progress: a drain waits until it
        is answered (the answer is sent right after the handler returns)."""
        self._session.working += 1
        try:
            yield
        finally:
            self._session.working -= 1

    async def close(self, file_obj: object) -> None:
        """Finish a download; commit an upload (or park it under its temporary name)."""
        caller = sys._getframe(1).f_code.co_name  # asyncssh's: see _client_closed
        with self._answering():
            await self._close(file_obj, caller)

    async def _close(self, file_obj: object, caller: str) -> None:
        self._session.touch()
        if isinstance(file_obj, _Download):
            self._session.open_files -= 1
            file_obj.file.close()
            return
        if not isinstance(file_obj, _Upload):
            return
        self._session.open_files -= 1
        writer = file_obj.writer
        self._session.writers.discard(writer)
        if not _client_closed(self.channel, caller):
            writer.abort()
            self._session.log.info("upload.aborted", name=writer.target.name, bytes=writer.size)
            return
        if writer.failed is not None:
            writer.abort()
            raise_refusal(writer.failed)
        folder = writer.target.folder
        if file_obj.temp_name is not None:
            done = await writer.finish()
            if isinstance(done, Rejection):
                raise_refusal(done)
            self._session.parked[(folder, file_obj.temp_name)] = done
            return
        stored = await self._spool.store(writer)
        if isinstance(stored, Rejection):
            await self._refuse_upload(folder, writer.target.name, stored)
        self._stored(stored)

    async def rename(self, oldpath: bytes, newpath: bytes) -> None:
        """Commit a parked upload: only ``NAME.<temp suffix>`` to ``NAME`` in one folder."""
        with self._answering():
            await self._rename(oldpath, newpath)

    async def _rename(self, oldpath: bytes, newpath: bytes) -> None:
        source, target = self._path(oldpath), self._path(newpath)
        problem = check_rename(source, target)
        if problem is not None:
            raise_refusal(problem)
        if source.folder is None or source.name is None or target.name is None:
            raise_refusal(reject(Code.OPERATION_NOT_PERMITTED))
        done = self._session.parked.pop((source.folder, source.name), None)
        if done is None:
            raise no_such_file(source)
        stored = await self._spool.commit(done, name=target.name)
        if isinstance(stored, Rejection):
            await self._refuse_upload(source.folder, target.name, stored)
        self._stored(stored)

    async def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        """Same rule as :meth:`rename` (the target never exists: there is no overwrite)."""
        await self.rename(oldpath, newpath)

    async def remove(self, path: bytes) -> None:
        """Remove an own pending upload (IN*) or a return file (OUT*)."""
        with self._answering():
            await self._remove(path)

    async def _remove(self, path: bytes) -> None:
        vpath = self._path(path)
        self._permit(Operation.REMOVE, vpath)
        folder, name = vpath.folder, vpath.name
        if folder is None or name is None:
            raise_refusal(reject(Code.OPERATION_NOT_PERMITTED))
        session = self._session
        if folder.inbound:
            parked = session.parked.pop((folder, name), None)
            if parked is not None:
                os.unlink(parked.tmp_path)
            elif not await self._spool.remove_pending(session.sender, folder, name):
                raise no_such_file(vpath)
        else:
            out = self._spool.layout.out_file(session.sender, folder, name)
            try:
                if not stat.S_ISREG(os.lstat(out).st_mode):
                    raise no_such_file(vpath)
                os.unlink(out)
            except FileNotFoundError:
                raise no_such_file(vpath) from None
        session.log.info("file.removed", folder=folder.value, name=name)

    # -- attribute changes: ignored on own files, refused elsewhere -----------------------------

    async def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        """Accepted and ignored on an own IN* file (clients set times after upload), else 923."""
        vpath = self._path(path)
        if not (vpath.is_file and vpath.folder is not None and vpath.folder.inbound):
            self._permit(Operation.SETSTAT, vpath)
        await self.stat(path)

    async def lsetstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        """Same as :meth:`setstat`."""
        await self.setstat(path, attrs)

    def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs) -> None:
        """Ignored: attributes of an upload are the gateway's (no truncation, no mode)."""
        self._session.touch()

    def fsync(self, file_obj: object) -> None:
        """Ignored: every upload is fsync'ed when it is closed."""
        self._session.touch()

    # -- never allowed ---------------------------------------------------------------------------

    def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        """No folders can be made."""
        self._permit(Operation.MKDIR, self._path(path))

    def rmdir(self, path: bytes) -> None:
        """No folders can be removed."""
        self._permit(Operation.RMDIR, self._path(path))

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        """No links."""
        self._permit(Operation.LINK, self._path(newpath))

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        """No links."""
        self._permit(Operation.LINK, self._path(newpath))

    def readlink(self, path: bytes) -> bytes:
        """There are no links to read."""
        raise no_such_file(self._path(path))

    def statvfs(self, path: bytes) -> NoReturn:
        """Not offered (it would describe the real filesystem)."""
        raise asyncssh.SFTPOpUnsupported("923: statvfs is not offered")

    def fstatvfs(self, file_obj: object) -> NoReturn:
        """Not offered."""
        raise asyncssh.SFTPOpUnsupported("923: statvfs is not offered")

    def lock(self, file_obj: object, offset: int, length: int, flags: int) -> NoReturn:
        """Not offered."""
        raise asyncssh.SFTPOpUnsupported("923: locks are not offered")

    def unlock(self, file_obj: object, offset: int, length: int) -> NoReturn:
        """Not offered."""
        raise asyncssh.SFTPOpUnsupported("923: locks are not offered")

    def exit(self) -> None:
        """The session ended: drop whatever was not committed (nothing becomes visible)."""
        session = self._session
        for writer in list(session.writers):
            writer.abort()
        session.writers.clear()
        for done in session.parked.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(done.tmp_path)
        if session.parked:
            session.log.info("upload.abandoned", names=[name for _, name in session.parked])
        session.parked.clear()
        if session.on_end is not None:
            session.on_end()
