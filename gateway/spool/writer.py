"""One upload in progress: sequential writes into a temp file, hashed and size-checked.

:class:`UploadWriter` is made by :meth:`gateway.spool.Spool.begin`. It accepts only sequential
writes (so the SHA-256 is of the exact bytes stored), holds the limits (184, 920) and ends in
one of three ways: :meth:`UploadWriter.finish` (fsync'ed, still invisible),
:meth:`UploadWriter.take` (handed to :meth:`Spool.store`), or :meth:`UploadWriter.abort`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from gateway.channels.vfs import Folder
from gateway.core.codes import Code, Rejection, reject
from gateway.core.types import SenderNumber
from gateway.spool.limits import SpoolLimits, check_size

WRITE_BUFFER = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadTarget:
    """Where an upload will be committed, and who sent it."""

    sender: SenderNumber
    folder: Folder
    name: str
    session_id: str
    channel: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FinishedUpload:
    """A complete, fsync'ed upload still under its temporary path."""

    target: UploadTarget
    tmp_path: Path
    size: int
    sha256: str
    started: float


def fsync_dir(path: Path) -> None:
    """Make a rename or link in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class UploadWriter:
    """One upload in progress: sequential writes, hashed and size-checked as they come."""

    __slots__ = (
        "_failed",
        "_file",
        "_hash",
        "_limits",
        "_pending",
        "_size",
        "_started",
        "target",
        "tmp_path",
    )

    def __init__(
        self,
        *,
        target: UploadTarget,
        tmp_path: Path,
        file: BinaryIO,
        limits: SpoolLimits,
        pending_bytes: int,
    ) -> None:
        self.target = target
        self.tmp_path = tmp_path
        self._file: BinaryIO | None = file
        self._hash = hashlib.sha256()
        self._limits = limits
        self._pending = pending_bytes
        self._size = 0
        self._started = time.monotonic()
        self._failed: Rejection | None = None

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    @property
    def failed(self) -> Rejection | None:
        """The refusal that ended this upload, if any."""
        return self._failed

    def write(self, offset: int, data: bytes) -> Rejection | None:
        """Append ``data`` at ``offset``; a refusal ends the upload and removes its temp file."""
        if self._failed is not None:
            return self._failed
        if self._file is None:
            return reject(Code.OPERATION_NOT_PERMITTED, "the upload is already closed")
        if offset != self._size:
            # Out-of-order or resumed writes would make the digest lie; clients write in order.
            return self._fail(
                reject(
                    Code.OPERATION_NOT_PERMITTED,
                    f"writes must be sequential (expected offset {self._size}, got {offset})",
                )
            )
        problem = check_size(self._limits, size=self._size + len(data), pending_bytes=self._pending)
        if problem is not None:
            return self._fail(problem)
        self._hash.update(data)
        self._file.write(data)
        self._size += len(data)
        return None

    def _fail(self, problem: Rejection) -> Rejection:
        self._failed = problem
        self.abort()
        return problem

    async def finish(self) -> FinishedUpload | Rejection:
        """Flush and fsync (off the event loop); the file stays under its temp name."""
        if self._failed is not None:
            return self._failed
        file = self._file
        if file is None:
            return reject(Code.OPERATION_NOT_PERMITTED, "the upload is already closed")
        self._file = None
        try:
            await asyncio.to_thread(_flush_and_close, file)
        except OSError:
            unlink_quietly(self.tmp_path)
            raise
        return FinishedUpload(
            target=self.target,
            tmp_path=self.tmp_path,
            size=self._size,
            sha256=self._hash.hexdigest(),
            started=self._started,
        )

    def take(self) -> tuple[BinaryIO, FinishedUpload] | Rejection:
        """Hand the open file and the upload's figures to :meth:`Spool.store` (one thread hop)."""
        if self._failed is not None:
            return self._failed
        file = self._file
        if file is None:
            return reject(Code.OPERATION_NOT_PERMITTED, "the upload is already closed")
        self._file = None
        done = FinishedUpload(
            target=self.target,
            tmp_path=self.tmp_path,
            size=self._size,
            sha256=self._hash.hexdigest(),
            started=self._started,
        )
        return file, done

    def abort(self) -> None:
        """Drop the upload: close and remove the temp file; nothing was ever visible."""
        file, self._file = self._file, None
        if file is not None:
            file.close()
        unlink_quietly(self.tmp_path)


def _flush_and_close(file: BinaryIO) -> None:
    try:
        file.flush()
        os.fsync(file.fileno())
    finally:
        file.close()


def unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def open_temp(path: Path) -> BinaryIO:
    """Create ``path`` (exclusive, mode 0600) for writing with a large buffer."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    return open(fd, "wb", buffering=WRITE_BUFFER)
