"""One upload in progress: sequential writes into a temp file, hashed and size-checked.

:class:`UploadWriter` is made by :meth:`gateway.spool.Spool.begin`. It accepts only sequential
writes (so the SHA-256 is of the exact bytes stored) and holds the limits: the file size (184),
and the sender's quota (920), reserving each write's bytes before taking them
(:mod:`.quota`); the reservation goes with the upload to its commit, or back when it ends
without one. A full disk (ENOSPC, EDQUOT) ends the upload with 929, never its error text.

Each write is hashed on the event loop as it is taken (SHA-256 costs about 0.6 ms per MiB here,
and hashlib releases the GIL for it), then gathered into 1 MiB chunks that a worker thread writes
with one gathered write each, starting their writeback at once (:attr:`.disk.Disk.writeback`),
while the event loop goes on decrypting the next ones. Joining the writes and hashing them in
the worker cost more: a fresh buffer per chunk, and the worker's every return from a GIL-free
call took the GIL from the decrypting event loop (256 MiB over SFTP with AES-GCM, runs taken in
turn: 3.2-3.7 ms of CPU per MiB against 2.9-3.4).

Up to ``MAX_IN_FLIGHT`` chunks may wait for the disk per upload, so a short stall of the disk
(writeback) does not stop the client at once; past it, the upload's next write waits, so memory
stays bounded (at most ``MAX_IN_FLIGHT + 1`` chunks per upload) and the disk paces the client.
One job runs at a time per upload, in byte order (one file position); a job takes every chunk
waiting when it starts, so a slow disk gets fewer, bigger thread hops. The temp file is created
with the first chunk: an upload smaller than a chunk never has one, it is written at close by
the one worker thread that commits it (no file system call on the loop).

An upload ends in one of three ways: :meth:`UploadWriter.finish` (fsync'ed, still invisible),
:meth:`UploadWriter.take` (handed to :meth:`Spool.store`), or :meth:`UploadWriter.abort`. Every
byte is written through the spool's :class:`~gateway.spool.disk.Disk` (the storage boundary).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from concurrent.futures import Executor
from dataclasses import dataclass

from gateway.core.codes import Code, Rejection, reject
from gateway.core.folders import Folder
from gateway.core.types import SenderNumber
from gateway.ops.faults import short_of_space
from gateway.spool.disk import REAL_DISK, Disk
from gateway.spool.limits import SpoolLimits, check_size
from gateway.spool.quota import Quota

WRITE_BUFFER = 1024 * 1024
# Chunks of one upload handed to the worker and not yet written (issue 14: 2-4).
MAX_IN_FLIGHT = 3

StrPath = str | os.PathLike[str]


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
    sha256: str
    """Of every byte, the tail's included (each write is hashed as it is taken)."""
    target: UploadTarget
    tmp_path: str
    size: int
    started: float
    disk: Disk = REAL_DISK

    def write_tail(self) -> int:
        """Write the last bytes (hashed already) to the temp file, in the worker thread; returns
        the file's descriptor."""
        fd = open_temp(self.tmp_path) if self.fd is None else self.fd
        self.disk.write_all(fd, [self.tail])
        return fd

    def finished(self) -> FinishedUpload:
        """The figures once the tail is written."""
        return FinishedUpload(
            target=self.target,
            tmp_path=self.tmp_path,
            size=self.size,
            sha256=self.sha256,
            started=self.started,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class FinishedUpload:
    """A complete, fsync'ed upload still under its temporary path; ``size`` bytes of its
    sender's quota stay reserved for it until it is committed or discarded."""

    target: UploadTarget
    tmp_path: str
    size: int
    sha256: str
    started: float


def fsync_dir(path: StrPath) -> None:
    """Make a rename, link or creation in the folder ``path`` durable."""
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
        "_disk",
        "_executor",
        "_failed",
        "_fd",
        "_hash",
        "_in_flight",
        "_job",
        "_job_bytes",
        "_limits",
        "_open",
        "_queue",
        "_quota",
        "_reserved",
        "_size",
        "_started",
        "target",
        "tmp_path",
    )

    def __init__(
        self,
        *,
        target: UploadTarget,
        tmp_path: str,
        limits: SpoolLimits,
        quota: Quota,
        disk: Disk = REAL_DISK,
        executor: Executor | None = None,
    ) -> None:
        self.target = target
        self.tmp_path = tmp_path
        self._fd: int | None = None  # the temp file, once a chunk is written
        self._open = True
        self._executor = executor
        self._hash = hashlib.sha256()
        self._chunks: list[bytes | memoryview] = []  # being gathered into the next chunk
        self._buffered = 0
        self._queue: list[bytes | memoryview] = []  # gathered, waiting for the running job to end
        self._in_flight = 0  # bytes queued or being written by the running job
        self._job: asyncio.Future[None] | None = None  # the running job (a failed one stays)
        self._job_bytes = 0
        self._limits = limits
        self._quota = quota
        self._disk = disk
        self._reserved = 0  # bytes of the sender's quota this upload holds
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

    async def write(self, offset: int, data: bytes | memoryview) -> Rejection | None:
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
        problem = check_size(self._limits, size=self._size + len(data))
        if problem is None:
            # Reserved before the bytes are taken; a refusal reserves nothing.
            problem = await self._quota.reserve(self.target.sender, len(data))
            if problem is None:
                self._reserved += len(data)
                if not self._open:  # aborted while the quota was read: give it back
                    self._release()
                    return self._failed or reject(Code.OPERATION_NOT_PERMITTED, "closed")
        if problem is not None:
            return self._fail(problem)
        self._hash.update(data)
        self._chunks.append(data)
        self._buffered += len(data)
        self._size += len(data)
        if self._buffered >= WRITE_BUFFER:
            try:
                await self._submit()
            except OSError as exc:
                if not short_of_space(exc):
                    self.abort()
                    raise
                return self._fail(disk_full())
        return None

    async def _submit(self) -> None:
        """Queue the gathered chunk; wait while more than ``MAX_IN_FLIGHT`` chunks are."""
        chunks, self._chunks, self._buffered = self._chunks, [], 0
        if self._fd is None:
            # A large upload: one file creation on the loop per upload, amortised over a chunk.
            self._fd = open_temp(self.tmp_path)
        self._queue.extend(chunks)
        self._in_flight += sum(len(chunk) for chunk in chunks)
        if self._job is None:
            self._start()
        await self._drain((MAX_IN_FLIGHT - 1) * WRITE_BUFFER)

    def _start(self) -> None:
        """Hand every queued chunk to a worker as one job (none is running)."""
        fd = self._fd
        if fd is None:  # pragma: no cover  (a chunk is queued only once the file exists)
            raise RuntimeError("no temp file")
        chunks, self._queue = self._queue, []
        self._job_bytes = sum(len(chunk) for chunk in chunks)
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(self._executor, self._disk.write_chunk, fd, chunks)
        self._job = job
        job.add_done_callback(self._job_done)

    def _job_done(self, job: asyncio.Future[None]) -> None:
        """A job ended (on the loop): start the next one, unless it failed or the upload ended
        (a failed job stays as ``_job``: the next wait raises its error)."""
        if job is not self._job or job.cancelled() or job.exception() is not None:
            return
        self._job = None
        self._in_flight -= self._job_bytes
        if self._queue and self._open:
            self._start()

    async def _drain(self, limit: int) -> None:
        """Wait until at most ``limit`` bytes are still to be written; a job's error is raised."""
        while self._in_flight > limit and self._job is not None:
            job = self._job
            await job
            if self._job is job:  # its callback has not run yet
                self._job_done(job)

    def fail(self, problem: Rejection) -> Rejection:
        """End the upload with ``problem`` (a fault the caller answered); returns it."""
        return self._fail(problem)

    def _fail(self, problem: Rejection) -> Rejection:
        self._failed = problem
        self.abort()
        return problem

    def _release(self) -> None:
        reserved, self._reserved = self._reserved, 0
        if reserved:
            self._quota.release(self.target.sender, reserved)

    async def take(self) -> Handoff | Rejection:
        """Hand the descriptor and the unwritten tail over (to finish or to :meth:`Spool.store`)."""
        if self._failed is not None:
            return self._failed
        if not self._open:
            return reject(Code.OPERATION_NOT_PERMITTED, "the upload is already closed")
        try:
            await self._drain(0)
        except OSError as exc:
            if short_of_space(exc):
                return self._fail(disk_full())
            self.abort()
            raise
        if not self._open:
            return reject(Code.OPERATION_NOT_PERMITTED, "the upload is already closed")
        self._open = False
        fd, self._fd = self._fd, None
        tail, self._chunks, self._buffered = b"".join(self._chunks), [], 0
        self._reserved = 0  # the handoff holds the reservation now (its size: every byte)
        return Handoff(
            fd=fd,
            tail=tail,
            sha256=self._hash.hexdigest(),
            target=self.target,
            tmp_path=self.tmp_path,
            size=self._size,
            started=self._started,
            disk=self._disk,
        )

    async def finish(self) -> FinishedUpload | Rejection:
        """Write the tail, fsync and close (off the event loop); the file keeps its temp name."""
        handoff = await self.take()
        if isinstance(handoff, Rejection):
            return handoff
        try:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, finish_sync, handoff)
        except BaseException as exc:
            unlink_quietly(self.tmp_path)
            self._quota.release(self.target.sender, handoff.size)
            if short_of_space(exc):
                self._failed = disk_full()
                return self._failed
            raise
        return handoff.finished()

    def abort(self) -> None:
        """Drop the upload: close and remove the temp file; nothing was ever visible."""
        was_open, self._open = self._open, False
        fd, self._fd = self._fd, None
        job, self._job = self._job, None
        self._chunks, self._buffered, self._queue, self._in_flight = [], 0, [], 0
        self._release()
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


def _discard(job: asyncio.Future[None], fd: int | None, path: str) -> None:
    if not job.cancelled():
        job.exception()  # retrieved: a failed write of an aborted upload is of no interest
    if fd is not None:
        os.close(fd)
    unlink_quietly(path)


def disk_full() -> Rejection:
    """929 for an upload the disk could not take (the error's text stays out of it)."""
    return reject(
        Code.SHORT_OF_SPACE,
        "the gateway is short of space; send the file again later (nothing was kept)",
    )


def finish_sync(handoff: Handoff) -> None:
    """Write the tail to the temp file, fsync and close it (in a worker thread)."""
    fd = handoff.fd
    try:
        fd = handoff.write_tail()
        os.fsync(fd)
    finally:
        if fd is not None:
            os.close(fd)


def unlink_quietly(path: StrPath) -> None:
    """Remove ``path`` if it is there."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def open_temp(path: StrPath) -> int:
    """Create ``path`` (exclusive, mode 0600) for writing; return its descriptor."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
