"""One upload in progress: sequential writes into a temp file, hashed and size-checked.

:class:`UploadWriter` is made by :meth:`gateway.spool.Spool.begin`. It accepts only sequential
writes (so the SHA-256 is of the exact bytes stored) and holds the limits (184, 920). Bytes are
gathered into 1 MiB chunks; each chunk is hashed and written by a worker thread while the event
loop goes on decrypting the next one (hashlib and file writes release the GIL), with at most one
chunk in flight per upload, so memory stays bounded and the disk paces the client. The temp
file is created with the first chunk: an upload smaller than a chunk never has one, it is
written at close by the one worker thread that commits it (no file system call on the loop).

An upload ends in one of three ways: :meth:`UploadWriter.finish` (fsync'ed, still invisible),
:meth:`UploadWriter.take` (handed to :meth:`Spool.store`), or :meth:`UploadWriter.abort`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.core.codes import Code, Rejection, reject
from gateway.core.folders import Folder
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
class Handoff:
    """An upload's open descriptor (None: nothing written yet) and last bytes, for the one
    thread hop that commits it."""

    fd: int | None
    tail: bytes
    hasher: Any
    target: UploadTarget
    tmp_path: Path
    size: int
    started: float

    def write_tail(self) -> int:
        """Hash and write the last bytes to the temp file (in the worker thread); its fd."""
        fd = open_temp(self.tmp_path) if self.fd is None else self.fd
        self.hasher.update(self.tail)
        write_all(fd, self.tail)
        return fd

    def finished(self) -> FinishedUpload:
        """The figures once the tail is written."""
        return FinishedUpload(
            target=self.target,
            tmp_path=self.tmp_path,
            size=self.size,
            sha256=self.hasher.hexdigest(),
            started=self.started,
        )


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
        "_buffered",
        "_chunks",
        "_executor",
        "_failed",
        "_fd",
        "_hash",
        "_job",
        "_limits",
        "_open",
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
        limits: SpoolLimits,
        pending_bytes: int,
        executor: Executor | None = None,
    ) -> None:
        self.target = target
        self.tmp_path = tmp_path
        self._fd: int | None = None  # the temp file, once a chunk is written
        self._open = True
        self._executor = executor
        self._hash = hashlib.sha256()
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._job: asyncio.Future[None] | None = None
        self._limits = limits
        self._pending = pending_bytes
        self._size = 0
        self._started = time.monotonic()
        self._failed: Rejection | None = None

    @property
    def size(self) -> int:
        """Bytes received so far."""
        return self._size

    @property
    def failed(self) -> Rejection | None:
        """The refusal that ended this upload, if any."""
        return self._failed

    async def write(self, offset: int, data: bytes) -> Rejection | None:
        """Append ``data`` at ``offset``; a refusal ends the upload and removes its temp file."""
        if self._failed is not None:
            return self._failed
        if not self._open:
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
        self._chunks.append(data)
        self._buffered += len(data)
        self._size += len(data)
        if self._buffered >= WRITE_BUFFER:
            await self._submit()
        return None

    async def _submit(self) -> None:
        chunks, self._chunks, self._buffered = self._chunks, [], 0
        await self._wait_job()
        if not self._open:
            return
        fd = self._fd
        if fd is None:
            # A large upload: one file creation on the loop per upload, amortised over a chunk.
            fd = self._fd = open_temp(self.tmp_path)
        loop = asyncio.get_running_loop()
        self._job = loop.run_in_executor(self._executor, _hash_and_write, self._hash, fd, chunks)

    async def _wait_job(self) -> None:
        job, self._job = self._job, None
        if job is not None:
            await job

    def _fail(self, problem: Rejection) -> Rejection:
        self._failed = problem
        self.abort()
        return problem

    async def take(self) -> Handoff | Rejection:
        """Hand the descriptor and the unwritten tail over (to finish or to :meth:`Spool.store`)."""
        if self._failed is not None:
            return self._failed
        if not self._open:
            return reject(Code.OPERATION_NOT_PERMITTED, "the upload is already closed")
        try:
            await self._wait_job()
        except OSError:
            self.abort()
            raise
        if not self._open:
            return reject(Code.OPERATION_NOT_PERMITTED, "the upload is already closed")
        self._open = False
        fd, self._fd = self._fd, None
        tail, self._chunks, self._buffered = b"".join(self._chunks), [], 0
        return Handoff(
            fd=fd,
            tail=tail,
            hasher=self._hash,
            target=self.target,
            tmp_path=self.tmp_path,
            size=self._size,
            started=self._started,
        )

    async def finish(self) -> FinishedUpload | Rejection:
        """Write the tail, fsync and close (off the event loop); the file keeps its temp name."""
        handoff = await self.take()
        if isinstance(handoff, Rejection):
            return handoff
        try:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, finish_sync, handoff)
        except OSError:
            unlink_quietly(self.tmp_path)
            raise
        return handoff.finished()

    def abort(self) -> None:
        """Drop the upload: close and remove the temp file; nothing was ever visible."""
        was_open, self._open = self._open, False
        fd, self._fd = self._fd, None
        job, self._job = self._job, None
        self._chunks, self._buffered = [], 0
        if not was_open or (fd is None and job is None):
            return  # handed over already, or no temp file was ever made
        if job is not None and not job.done():
            # A worker is still writing to fd: close it only afterwards, or the number could be
            # reused by another file while the worker writes.
            job.add_done_callback(lambda done: _discard(done, fd, self.tmp_path))
            return
        if job is not None:
            _discard(job, None, self.tmp_path)
        if fd is not None:
            os.close(fd)
        unlink_quietly(self.tmp_path)


def _discard(job: asyncio.Future[None], fd: int | None, path: Path) -> None:
    if not job.cancelled():
        job.exception()  # retrieved: a failed write of an aborted upload is of no interest
    if fd is not None:
        os.close(fd)
    unlink_quietly(path)


def _hash_and_write(hasher: Any, fd: int, chunks: list[bytes]) -> None:
    for chunk in chunks:
        hasher.update(chunk)
    write_all(fd, b"".join(chunks))


def finish_sync(handoff: Handoff) -> None:
    """Write the tail to the temp file, fsync and close it (in a worker thread)."""
    fd = handoff.fd
    try:
        fd = handoff.write_tail()
        os.fsync(fd)
    finally:
        if fd is not None:
            os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd``."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def unlink_quietly(path: Path) -> None:
    """Remove ``path`` if it is there."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def open_temp(path: Path) -> int:
    """Create ``path`` (exclusive, mode 0600) for writing; return its descriptor."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
