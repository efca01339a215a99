"""One authenticated SFTP session: the SFTP requests' handlers over the folder service.

This module only translates: each SFTP request becomes one call of the session's
:class:`~gateway.spool.folders.FolderSession` (which canonicalises the path, checks the
operation, checks upload names, runs the file system calls off the event loop and records
refusals for negative ACRFs), and each answer becomes an SFTP reply. The protocol layer
(:mod:`gateway.channels.sftp_layer`) calls them; they keep asyncssh's ``SFTPServer`` shape (its
attribute and name types, its long-name format), every method of that base class that would
touch the real filesystem is overridden, and ``map_path`` refuses. Refusals are raised as SFTP
errors whose text starts with the code (``108: sender number 006401 is not yours``): SFTPv3
clients see newer status codes only as a generic failure, and OpenSSH's ``sftp`` prints only
"Permission denied".

What is SFTP's own: a client's close commits an upload (:meth:`GatewaySFTPServer.close`); a
handle left open when the session ends is abandoned (:meth:`GatewaySFTPServer.abandon`).

The per-request boundary (SECURITY.md 22) is the protocol layer's: it calls every handler here,
and answers any fault but an SFTP error ``999: internal error, ticket T`` (T logged once with the
traceback, :meth:`GatewaySFTPServer.fault`), never an exception's text.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import NoReturn, TypeVar

import asyncssh

from gateway.channels.sftp_values import (
    Session,
    dir_attrs,
    file_attrs,
    raise_refusal,
    sftp_error,
)
from gateway.core.codes import Code, Rejection, reject
from gateway.core.folders import Operation
from gateway.spool.folders import Download, Entry, Upload

T = TypeVar("T")
# Requests answered by a read of at most this many bytes from an offset below 2^63: asyncssh
# reads a uint64 offset, and os.pread takes a C long.
MAX_OFFSET = (1 << 63) - 1


def _answer(result: T | Rejection) -> T:
    """The value of a folder-service answer; a refusal is raised as its SFTP error."""
    if isinstance(result, Rejection):
        raise_refusal(result)
    return result


def _attrs(entry: Entry) -> asyncssh.SFTPAttrs:
    return dir_attrs() if entry.is_folder else file_attrs(entry.size, entry.mtime)


class GatewaySFTPServer(asyncssh.SFTPServer):
    """The SFTP request handlers of one session."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], *, session: Session) -> None:
        super().__init__(chan)
        self._session = session
        self._files = session.files

    def map_path(self, path: bytes) -> bytes:
        """Never used: every operation works on virtual paths (safety net)."""
        raise asyncssh.SFTPPermissionDenied("923: no real paths here")

    # -- names and attributes ------------------------------------------------------------------

    def realpath(self, path: bytes) -> bytes:
        """The canonical form of ``path`` (``.`` is the root)."""
        self._session.touch()
        return str(_answer(self._files.resolve(path))).encode()

    async def stat(self, path: bytes) -> asyncssh.SFTPAttrs:
        """Attributes of the root, a folder, a pending upload or a return file."""
        self._session.touch()
        return _attrs(_answer(await self._files.stat(path)))

    async def lstat(self, path: bytes) -> asyncssh.SFTPAttrs:
        """Same as :meth:`stat`: there are no links."""
        return await self.stat(path)

    def fstat(self, file_obj: object) -> asyncssh.SFTPAttrs:
        """Attributes of an open upload or download."""
        self._session.touch()
        if isinstance(file_obj, Upload):
            return file_attrs(file_obj.size, time.time())
        if isinstance(file_obj, Download):
            return file_attrs(file_obj.size, file_obj.mtime)
        raise asyncssh.SFTPInvalidHandle("invalid handle")

    async def scandir(self, path: bytes) -> AsyncGenerator[asyncssh.SFTPName, None]:
        """List the root (the six folders), a sender's pending uploads, or its return files.

        Streamed: asyncssh takes names from here as READDIR requests come (a batch of names per
        reply), and the folder service reads the folder a chunk at a time, so a folder of any
        size is listed whole in bounded memory. asyncssh drops the iterator when the client
        closes the handle (or the session ends): its finalisation closes the listing."""
        self._session.touch()
        listing = _answer(self._files.listing(path))
        try:
            yield asyncssh.SFTPName(b".", attrs=dir_attrs())
            yield asyncssh.SFTPName(b"..", attrs=dir_attrs())
            while entries := await listing.read():
                self._session.touch()
                for entry in entries:
                    yield asyncssh.SFTPName(entry.name.encode(), attrs=_attrs(entry))
        finally:
            listing.close()

    def format_user(self, uid: int | None) -> str:
        """No real users are shown."""
        return "gateway"

    def format_group(self, gid: int | None) -> str:
        """No real groups are shown."""
        return "gateway"

    # -- files -----------------------------------------------------------------------------------

    async def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        """Open an upload (``IN*``, new name only) or a download (``OUT*``)."""
        self._session.touch()
        if pflags & asyncssh.FXF_WRITE:
            if pflags & (asyncssh.FXF_READ | asyncssh.FXF_APPEND):
                raise_refusal(
                    reject(Code.OPERATION_NOT_PERMITTED, "uploads are write-only, from byte 0")
                )
            return _answer(await self._files.open_upload(path))
        if pflags & asyncssh.FXF_READ:
            return _answer(await self._files.open_return(path))
        raise_refusal(reject(Code.OPERATION_NOT_PERMITTED, "open for neither reading nor writing"))

    async def write(self, file_obj: object, offset: int, data: bytes | memoryview) -> int:
        """Stream upload bytes into the spool (sequential writes only)."""
        self._session.touch()
        if not isinstance(file_obj, Upload):
            raise_refusal(reject(Code.OPERATION_NOT_PERMITTED, "this file is open for reading"))
        problem = await file_obj.write(data, offset)
        if problem is not None:
            raise_refusal(problem)
        return len(data)

    async def read(self, file_obj: object, offset: int, size: int) -> bytes:
        """Read a return file."""
        self._session.touch()
        if not isinstance(file_obj, Download):
            raise_refusal(reject(Code.OPERATION_NOT_PERMITTED, "uploads cannot be read back"))
        if offset > MAX_OFFSET:
            raise asyncssh.SFTPEOFError()  # past the end of any file
        return await file_obj.read(offset, size)

    async def close(self, file_obj: object) -> None:
        """The client's close: finish a download; commit an upload (or park it under its
        temporary name)."""
        self._session.touch()
        if isinstance(file_obj, Download):
            file_obj.close()
            return
        if not isinstance(file_obj, Upload):
            return
        problem = await file_obj.close()
        if problem is not None:
            raise_refusal(problem)

    def abandon(self, file_obj: object) -> None:
        """A handle still open when the session ended (the client vanished or dropped the
        channel mid-transfer): an upload is aborted, never committed partial."""
        if isinstance(file_obj, Download):
            file_obj.close()
        elif isinstance(file_obj, Upload):
            file_obj.abort()

    def fault(self, request: str) -> asyncssh.SFTPError:
        """999 for the exception being handled, logged once with its ticket (SECURITY.md 22)."""
        return sftp_error(self._files.fault("request.failed", request=request))

    async def rename(self, oldpath: bytes, newpath: bytes) -> None:
        """Commit a parked upload: only ``NAME.<temp suffix>`` to ``NAME`` in one folder."""
        self._session.touch()
        problem = await self._files.rename_temp(oldpath, newpath)
        if problem is not None:
            raise_refusal(problem)

    async def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        """Same rule as :meth:`rename` (the target never exists: there is no overwrite)."""
        await self.rename(oldpath, newpath)

    async def remove(self, path: bytes) -> None:
        """Remove an own pending upload (IN*) or a return file (OUT*)."""
        self._session.touch()
        problem = await self._files.remove(path)
        if problem is not None:
            raise_refusal(problem)

    def _permit(self, operation: Operation, path: bytes) -> None:
        _answer(self._files.resolve(path, operation))

    # -- attribute changes: ignored on own files, refused elsewhere -----------------------------

    async def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        """Accepted and ignored on an own IN* file (clients set times after upload), else 923."""
        vpath = _answer(self._files.resolve(path))
        if not (vpath.is_file and vpath.folder is not None and vpath.folder.inbound):
            self._permit(Operation.SETSTAT, path)
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
        self._permit(Operation.MKDIR, path)

    def rmdir(self, path: bytes) -> None:
        """No folders can be removed."""
        self._permit(Operation.RMDIR, path)

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        """No links."""
        self._permit(Operation.LINK, newpath)

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        """No links."""
        self._permit(Operation.LINK, newpath)

    def readlink(self, path: bytes) -> bytes:
        """There are no links to read."""
        self._session.touch()
        vpath = _answer(self._files.resolve(path))
        raise_refusal(reject(Code.NO_SUCH_FILE, f"no such link: {vpath}"))

    def statvfs(self, path: bytes) -> NoReturn:
        """Not offered (it would describe the real filesystem)."""
        raise asyncssh.SFTPOpUnsupported("923: statvfs is not offered")

    def fstatvfs(self, file_obj: object) -> NoReturn:
        """Not offered."""
        raise asyncssh.SFTPOpUnsupported("923: statvfs is not offered")

    def exit(self) -> None:
        """The session ended: drop whatever was not committed (nothing becomes visible)."""
        self._files.end()
        if self._session.on_end is not None:
            self._session.on_end()
