"""The durable spool: stream an upload to a temp file, then commit it atomically and record it.

An upload goes through three steps, each owned by one object:

1. :meth:`Spool.begin` refuses a new upload while the spool's filesystem is below its
   free-space floor (929) or the sender's quota is full (920), and returns an
   :class:`~gateway.spool.writer.UploadWriter`, which hashes (SHA-256) and writes in one pass
   (into ``spool/.tmp/<random>``, ``O_EXCL``, mode 0600), holds the limits (184; 920 reserved
   as written, :mod:`.quota`) and accepts only sequential writes.
2. :meth:`Spool.store` (a final name) flushes, hard-links the temp file to
   ``spool/<sender>/<folder>/<name>`` (the link fails if the name exists: never an overwrite),
   fsyncs file and directory off the event loop, inserts the ``uploads`` row (on SQLite in a
   group commit shared with the uploads that close at the same time: ``gateway.spool.commit``),
   removes the temp name and calls ``on_stored``. For a client temporary name,
   :meth:`UploadWriter.finish` fsyncs and parks the upload (invisible) and :meth:`Spool.commit`
   does the rest at rename.
3. :meth:`UploadWriter.abort` removes the temp file: nothing was ever visible.

Local faults: a full disk (ENOSPC, EDQUOT) while writing, linking or fsyncing is answered
929 with the upload dropped, never its error text; any other fault is raised to the folder
service, which answers it 999 with a ticket. Every way out gives the upload's quota reservation
back, or turns it into pending bytes at the commit.

Crash safety: before the row is committed the upload is invisible (listings of IN* come from
the ``uploads`` table). A crash between link and insert leaves an unrecorded file, which
:meth:`Spool.recover` (at start-up) and :meth:`Spool.commit` (when the name is wanted again)
remove; a crash before the link leaves only a temp file, removed by :meth:`Spool.recover`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.core.codes import Code, Rejection, reject
from gateway.core.folders import Folder
from gateway.core.types import SenderNumber
from gateway.ops.faults import short_of_space
from gateway.ops.private import private_dirs
from gateway.registry.db import sqlite_sync_engine
from gateway.spool.commit import GroupCommit
from gateway.spool.disk import REAL_DISK, Disk, FreeSpace
from gateway.spool.layout import SpoolLayout
from gateway.spool.limits import SpoolLimits, check_space
from gateway.spool.quota import Quota
from gateway.spool.tables import UPLOAD_PENDING, UploadRefusalRow, UploadRow
from gateway.spool.writer import (
    FinishedUpload,
    Handoff,
    UploadTarget,
    UploadWriter,
    disk_full,
    finish_sync,
    fsync_dir,
    open_temp,
    unlink_quietly,
)

# An unrecorded file in the spool younger than this may be another session's commit in flight.
ORPHAN_GRACE_SECONDS = 30.0
# PostgreSQL advisory locks taken per (class, sender) while a commit checks the quota.
QUOTA_LOCK_CLASS = 0x5150  # "QP"
# Threads for the spool's blocking work (hashing, writes, fsync, SQLite inserts).
SPOOL_THREADS = 16

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredUpload:
    """A committed upload: its file is at ``path`` and its ``uploads`` row is ``id``."""

    id: int
    sender: SenderNumber
    folder: Folder
    name: str
    size: int
    sha256: str
    arrived_at: datetime
    session_id: str
    channel: str
    path: Path
    duration_seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingFile:
    """A committed upload not yet taken by the pipeline, as listed in IN*."""

    name: str
    size: int
    arrived_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Recovery:
    """What :meth:`Spool.recover` removed."""

    temp_files: int
    orphans: int


OnStored = Callable[[StoredUpload], Awaitable[None]]
Admit = Callable[[str], Awaitable[None]]
"""Awaited with a file's final name before it is committed (the pipeline's admission)."""
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _link_into_place(tmp: Path, final: Path) -> bool:
    """Link ``tmp`` to ``final`` unless it exists (then False); fsync the directory."""
    private_dirs(final.parent)
    try:
        os.link(tmp, final)
    except FileExistsError:
        return False
    fsync_dir(final.parent)
    return True


def _store_sync(handoff: Handoff, final: Path) -> bool:
    """Write the tail, put the file in place, fsync file and directory. False if ``final``
    exists (the upload is then complete and fsync'ed under its temp name).

    An upload that never needed a temp file (smaller than a chunk) is written straight under
    its final name, created exclusively (never an overwrite). A larger one is linked from its
    temp file, whose name is then dropped. Either way the name exists before the fsync, so one
    journal commit carries both on most filesystems; it is safe because a name without an
    ``uploads`` row is never listed, and recovery removes it.
    """
    private_dirs(final.parent)
    if handoff.fd is None:
        try:
            fd = open_temp(final)
        except FileExistsError:
            finish_sync(handoff)
            return False
        try:
            handoff.hasher.update(handoff.tail)
            handoff.disk.write_all(fd, handoff.tail)
            os.fsync(fd)
        except BaseException:
            unlink_quietly(final)
            raise
        finally:
            os.close(fd)
        fsync_dir(final.parent)
        return True
    fd = handoff.fd
    try:
        handoff.write_tail()
        try:
            os.link(handoff.tmp_path, final)
        except FileExistsError:
            os.fsync(fd)
            return False
        try:
            os.fsync(fd)
        except BaseException:
            unlink_quietly(final)  # never leave a name whose bytes may not be on disk
            raise
    finally:
        os.close(fd)
    fsync_dir(final.parent)
    unlink_quietly(handoff.tmp_path)  # the final name holds the file now
    return True


def _row(done: FinishedUpload, name: str, arrived_at: datetime) -> dict[str, object]:
    target = done.target
    return {
        "sender": target.sender,
        "folder": target.folder.value,
        "name": name,
        "size": done.size,
        "sha256": done.sha256,
        "arrived_at": arrived_at,
        "session_id": target.session_id,
        "channel": target.channel,
        "state": UPLOAD_PENDING,
    }


def _exists(path: Path) -> bool:
    # One lstat: cheaper inline than a thread hop, like the temp file's creation after it.
    return os.path.lexists(path)


def _is_stale(path: Path, grace: float) -> bool:
    try:
        return time.time() - path.stat().st_ctime >= grace
    except FileNotFoundError:
        return False


class Spool:
    """Uploads in, committed files and rows out; see the module docstring for the protocol."""

    def __init__(
        self,
        *,
        state_dir: Path,
        engine: AsyncEngine,
        limits: SpoolLimits,
        on_stored: OnStored | None = None,
        admit: Admit | None = None,
        clock: Clock = _utcnow,
        disk: Disk = REAL_DISK,
    ) -> None:
        self.layout = SpoolLayout(state_dir)
        self.limits = limits
        self.disk = disk
        self.quota = Quota(limit=limits.sender_pending_quota_bytes, read_pending=self.pending_bytes)
        self._engine = engine
        self._on_stored = on_stored
        self._admit = admit
        self._clock = clock
        private_dirs(self.layout.tmp_dir)
        # SQLite: rows of uploads that close together share one commit, inserted through the
        # spool's own connection in the process's write turn (gateway.spool.commit).
        writer = sqlite_sync_engine(engine)
        self._group = None if writer is None else GroupCommit(engine=engine, writer=writer)
        # The spool's blocking file work has its own threads so that a burst of uploads
        # waiting on the disk never starves the default executor.
        self._executor = ThreadPoolExecutor(max_workers=SPOOL_THREADS, thread_name_prefix="spool")

    def close(self) -> None:
        """Release the spool's threads and SQLite writer (the async engine is the caller's)."""
        self._executor.shutdown(wait=True)
        if self._group is not None:
            self._group.close()

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Run blocking ``function(*args)`` in the spool's threads (off the event loop)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    # -- reading -------------------------------------------------------------------------------

    async def pending_bytes(self, sender: SenderNumber) -> int:
        """Bytes of the sender's committed uploads not yet taken by the pipeline."""
        query = select(func.coalesce(func.sum(UploadRow.size), 0)).where(
            UploadRow.sender == sender, UploadRow.state == UPLOAD_PENDING
        )
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def pending_files(self, sender: SenderNumber, folder: Folder) -> list[PendingFile]:
        """The sender's pending uploads in ``folder``, by name."""
        query = (
            select(UploadRow.name, UploadRow.size, UploadRow.arrived_at)
            .where(
                UploadRow.sender == sender,
                UploadRow.folder == folder.value,
                UploadRow.state == UPLOAD_PENDING,
            )
            .order_by(UploadRow.name)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [PendingFile(name=r.name, size=r.size, arrived_at=r.arrived_at) for r in rows]

    async def pending_file(
        self, sender: SenderNumber, folder: Folder, name: str
    ) -> PendingFile | None:
        """One pending upload by name, or None."""
        query = select(UploadRow.name, UploadRow.size, UploadRow.arrived_at).where(
            UploadRow.sender == sender,
            UploadRow.folder == folder.value,
            UploadRow.name == name,
            UploadRow.state == UPLOAD_PENDING,
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return PendingFile(name=row.name, size=row.size, arrived_at=row.arrived_at)

    # -- writing -------------------------------------------------------------------------------

    def free_space(self) -> FreeSpace:
        """The free space of the spool's filesystem (one ``statvfs``, cheap as an ``lstat``)."""
        return self.disk.free_space(self.layout.spool_dir)

    def space_problem(self) -> Rejection | None:
        """929 while the spool's filesystem is below its floor (``[limits] min_free_*``)."""
        space = self.free_space()
        return check_space(self.limits, free=space.free, total=space.total)

    def readiness(self) -> str | None:
        """A ``/readyz`` check: the spool short of space, or None."""
        return "spool short of space" if self.space_problem() is not None else None

    async def begin(self, target: UploadTarget) -> UploadWriter | Rejection:
        """Start an upload: refuse at once a spool short of space (929), an existing name (924)
        or a full quota (920)."""
        # The floor and the name are looked at inline (one statvfs, one lstat: cheaper than a
        # thread hop); the link at commit decides races on the name. The quota's figure is kept
        # by this node and read from the database when old or before a refusal (.quota).
        problem = self.space_problem()
        if problem is not None:
            return problem
        if _exists(self.layout.committed(target.sender, target.folder, target.name)):
            return reject(Code.FILE_EXISTS, f"{target.name} is already in {target.folder.value}")
        problem = await self.quota.admit(target.sender)
        if problem is not None:
            return problem
        return UploadWriter(
            target=target,
            tmp_path=self.layout.tmp_dir / os.urandom(16).hex(),
            executor=self._executor,
            limits=self.limits,
            quota=self.quota,
            disk=self.disk,
        )

    def discard(self, done: FinishedUpload) -> None:
        """Drop a finished upload that will not be committed (its temp file, its reservation)."""
        unlink_quietly(done.tmp_path)
        self.quota.release(done.target.sender, done.size)

    async def store(self, writer: UploadWriter) -> StoredUpload | Rejection:
        """Finish and commit ``writer`` under its target name (the common, one-step path)."""
        handoff = await writer.take()
        if isinstance(handoff, Rejection):
            writer.abort()
            return handoff
        target = handoff.target
        final = self.layout.committed(target.sender, target.folder, target.name)
        try:
            await self._admission(target.name, handoff.tmp_path)
            # One thread hop: write the tail, link, fsync file and directory.
            linked = await self.run(_store_sync, handoff, final)
        except BaseException as exc:
            unlink_quietly(handoff.tmp_path)
            self.quota.release(target.sender, handoff.size)
            if short_of_space(exc):
                return disk_full()
            raise
        done = handoff.finished()
        if not linked:
            return await self._link_and_record(done, target.name)  # admitted above
        return await self._record(done, target.name, final, temp=False)

    async def commit(
        self, done: FinishedUpload, *, name: str | None = None
    ) -> StoredUpload | Rejection:
        """Make ``done`` (already fsync'ed) visible under ``name`` (default: its target name)."""
        final_name = name if name is not None else done.target.name
        try:
            await self._admission(final_name, done.tmp_path)
        except BaseException:
            self.quota.release(done.target.sender, done.size)
            raise
        return await self._link_and_record(done, final_name)

    async def _admission(self, name: str, tmp_path: Path) -> None:
        """Wait for the ``admit`` hook (once per upload, before its commit); a wait that ends
        in an exception (the session went away) drops the temp file."""
        if self._admit is None:
            return
        try:
            await self._admit(name)
        except BaseException:
            unlink_quietly(tmp_path)
            raise

    async def _link_and_record(
        self, done: FinishedUpload, final_name: str
    ) -> StoredUpload | Rejection:
        """Link the fsync'ed temp file to ``final_name`` (unless it exists) and record it."""
        target = done.target
        final = self.layout.committed(target.sender, target.folder, final_name)
        try:
            linked = await self.run(_link_into_place, done.tmp_path, final)
            if not linked and await self._remove_orphan(target, final_name, final):
                linked = await self.run(_link_into_place, done.tmp_path, final)
        except BaseException as exc:
            self.discard(done)
            if short_of_space(exc):
                return disk_full()
            raise
        if not linked:
            self.discard(done)
            return reject(Code.FILE_EXISTS, f"{final_name} is already in {target.folder.value}")
        return await self._record(done, final_name, final)

    async def _record(
        self, done: FinishedUpload, final_name: str, final: Path, *, temp: bool = True
    ) -> StoredUpload | Rejection:
        """Insert the ``uploads`` row (the commit point), drop the temp name (if ``temp``: the
        one-step path has none left), tell the pipeline."""
        arrived_at = self._clock()
        values = _row(done, final_name, arrived_at)
        sender = done.target.sender
        try:
            if self._group is not None:
                upload_id: int | None = await self._group.insert(values)
            else:
                async with self._engine.begin() as conn:
                    upload_id = await self._insert_within_quota(conn, values, sender, done.size)
        except asyncio.CancelledError:
            # In a group commit the row may be committed already: the file stays, and is either
            # recorded or removed by recovery as an orphan. The session is gone either way.
            if self._group is None:
                unlink_quietly(final)
            self.quota.release(sender, done.size, uncertain=self._group is not None)
            raise
        except BaseException:
            unlink_quietly(final)
            self.quota.release(sender, done.size)
            raise
        finally:
            if temp:
                unlink_quietly(done.tmp_path)
        if upload_id is None:
            unlink_quietly(final)
            self.quota.release(sender, done.size, uncertain=True)
            return reject(
                Code.QUOTA_EXCEEDED,
                f"pending files would exceed the quota of {self.quota.limit} bytes",
            )
        self.quota.committed(sender, done.size)
        return await self._stored(done, final_name, final, upload_id, arrived_at)

    async def _insert_within_quota(
        self, conn: AsyncConnection, values: dict[str, object], sender: SenderNumber, size: int
    ) -> int | None:
        """Insert the row; on PostgreSQL (several nodes) only if the sender's committed pending
        bytes stay within the quota, checked under a per-sender lock (None: refused)."""
        if conn.dialect.name == "postgresql":
            await conn.execute(select(func.pg_advisory_xact_lock(QUOTA_LOCK_CLASS, int(sender))))
            pending = select(func.coalesce(func.sum(UploadRow.size), 0)).where(
                UploadRow.sender == sender, UploadRow.state == UPLOAD_PENDING
            )
            if int((await conn.execute(pending)).scalar_one()) + size > self.quota.limit:
                return None
        statement = insert(UploadRow).values(**values).returning(UploadRow.id)
        return int((await conn.execute(statement)).scalar_one())

    async def _stored(
        self,
        done: FinishedUpload,
        final_name: str,
        final: Path,
        upload_id: int,
        arrived_at: datetime,
    ) -> StoredUpload:
        target = done.target
        stored = StoredUpload(
            id=upload_id,
            sender=target.sender,
            folder=target.folder,
            name=final_name,
            size=done.size,
            sha256=done.sha256,
            arrived_at=arrived_at,
            session_id=target.session_id,
            channel=target.channel,
            path=final,
            duration_seconds=time.monotonic() - done.started,
        )
        if self._on_stored is not None:
            await self._on_stored(stored)
        return stored

    async def _remove_orphan(self, target: UploadTarget, name: str, final: Path) -> bool:
        """Remove ``final`` if no row records it and it is not a commit in flight."""
        if await self.pending_file(target.sender, target.folder, name) is not None:
            return False
        if not _is_stale(final, ORPHAN_GRACE_SECONDS):
            return False
        unlink_quietly(final)
        return True

    async def remove_pending(self, sender: SenderNumber, folder: Folder, name: str) -> bool:
        """Remove one of the sender's pending uploads (row, then file); False if not pending."""
        statement = delete(UploadRow).where(
            UploadRow.sender == sender,
            UploadRow.folder == folder.value,
            UploadRow.name == name,
            UploadRow.state == UPLOAD_PENDING,
        )
        async with self._engine.begin() as conn:
            removed = (await conn.execute(statement)).rowcount
        if not removed:
            return False
        self.quota.changed(sender)
        unlink_quietly(self.layout.committed(sender, folder, name))
        return True

    async def record_refusal(
        self,
        *,
        sender: SenderNumber,
        folder: Folder,
        name: str,
        rejection: Rejection,
        session_id: str,
    ) -> None:
        """Record a refused upload so the pipeline can answer it with a negative ACRF."""
        values = {
            "sender": sender,
            "folder": folder.value,
            "name": name,
            "code": int(rejection.code),
            "reason": rejection.reason[:500],
            "at": self._clock(),
            "session_id": session_id,
            "answered_at": None,
        }
        async with self._engine.begin() as conn:
            await conn.execute(insert(UploadRefusalRow).values(**values))

    # -- start-up ------------------------------------------------------------------------------

    async def recover(self, *, grace_seconds: float = 0.0) -> Recovery:
        """Remove what a crash left: temp files and unrecorded files older than the grace time.

        A single node calls this at start-up with no grace; with several nodes on one spool,
        pass a grace longer than an upload can stay idle so another node's uploads survive.
        """
        query = select(UploadRow.sender, UploadRow.folder, UploadRow.name).where(
            UploadRow.state == UPLOAD_PENDING
        )
        async with self._engine.connect() as conn:
            recorded = {(r.sender, r.folder, r.name) for r in (await conn.execute(query)).all()}
        return await self.run(self._sweep, recorded, grace_seconds)

    def _sweep(self, recorded: set[tuple[str, str, str]], grace: float) -> Recovery:
        now = time.time()
        temp_files = 0
        for entry in os.scandir(self.layout.tmp_dir):
            if entry.is_file(follow_symlinks=False) and now - entry.stat().st_mtime >= grace:
                unlink_quietly(Path(entry.path))
                temp_files += 1
        orphans = 0
        for sender_dir in os.scandir(self.layout.spool_dir):
            if sender_dir.name == self.layout.tmp_dir.name or not sender_dir.is_dir():
                continue
            for folder_dir in os.scandir(sender_dir.path):
                if not folder_dir.is_dir():
                    continue
                for entry in os.scandir(folder_dir.path):
                    key = (sender_dir.name, folder_dir.name, entry.name)
                    if key in recorded or not entry.is_file(follow_symlinks=False):
                        continue
                    if now - entry.stat().st_ctime >= grace:
                        unlink_quietly(Path(entry.path))
                        orphans += 1
        return Recovery(temp_files=temp_files, orphans=orphans)
