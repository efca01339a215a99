"""The durable spool: stream an upload to a temp file, then commit it atomically and record it.

An upload goes through three steps, each owned by one object:

1. :meth:`Spool.begin` opens ``spool/.tmp/<random>`` (``O_EXCL``, mode 0600) and returns an
   :class:`~gateway.spool.writer.UploadWriter`, which hashes (SHA-256) and writes in one pass,
   holds the limits (184, 920) and accepts only sequential writes.
2. :meth:`Spool.store` (a final name) flushes, hard-links the temp file to
   ``spool/<sender>/<folder>/<name>`` (the link fails if the name exists: never an overwrite),
   fsyncs file and directory off the event loop, inserts the ``uploads`` row (on SQLite in a
   group commit shared with the uploads that close at the same time: ``gateway.spool.commit``),
   removes the temp name and calls ``on_stored``. For a client temporary name,
   :meth:`UploadWriter.finish` fsyncs and parks the upload (invisible) and :meth:`Spool.commit`
   does the rest at rename.
3. :meth:`UploadWriter.abort` removes the temp file: nothing was ever visible.

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
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.core.codes import Code, Rejection, reject
from gateway.core.folders import Folder
from gateway.core.types import SenderNumber
from gateway.ops.private import private_dirs
from gateway.registry.db import sqlite_sync_engine
from gateway.spool.commit import GroupCommit
from gateway.spool.layout import SpoolLayout
from gateway.spool.limits import SpoolLimits, check_open
from gateway.spool.tables import UPLOAD_PENDING, UploadRefusalRow, UploadRow
from gateway.spool.writer import (
    FinishedUpload,
    Handoff,
    UploadTarget,
    UploadWriter,
    finish_sync,
    fsync_dir,
    open_temp,
    unlink_quietly,
    write_all,
)

# An unrecorded file in the spool younger than this may be another session's commit in flight.
ORPHAN_GRACE_SECONDS = 30.0
# A sender's pending bytes are re-read from the database at most this often (other nodes and
# the pipeline change them), and always when an upload could take them to the quota.
PENDING_CACHE_SECONDS = 5.0
PENDING_CACHE_SENDERS = 10_000
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
            write_all(fd, handoff.tail)
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
        os.fsync(fd)
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
    ) -> None:
        self.layout = SpoolLayout(state_dir)
        self.limits = limits
        self._engine = engine
        self._on_stored = on_stored
        self._admit = admit
        self._clock = clock
        private_dirs(self.layout.tmp_dir)
        self._pending_cache: dict[str, tuple[int, float]] = {}
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

    async def begin(self, target: UploadTarget) -> UploadWriter | Rejection:
        """Start an upload: refuse at once an existing name (924) or a full quota (920)."""
        # The name check looks at the committed file (the link at commit decides races); the
        # quota uses a per-sender figure kept current by this node and re-read from the
        # database when it is old or close to the limit, so most uploads cost no query here.
        if _exists(self.layout.committed(target.sender, target.folder, target.name)):
            return reject(Code.FILE_EXISTS, f"{target.name} is already in {target.folder.value}")
        pending = await self._pending_estimate(target.sender)
        problem = check_open(self.limits, pending_bytes=pending)
        if problem is not None:
            return problem
        return UploadWriter(
            target=target,
            tmp_path=self.layout.tmp_dir / os.urandom(16).hex(),
            executor=self._executor,
            limits=self.limits,
            pending_bytes=pending,
        )

    async def _pending_estimate(self, sender: SenderNumber) -> int:
        """The sender's pending bytes: cached for PENDING_CACHE_SECONDS unless near the quota."""
        now = time.monotonic()
        cached = self._pending_cache.get(sender)
        if cached is not None:
            value, read_at = cached
            near = value + self.limits.max_file_bytes >= self.limits.sender_pending_quota_bytes
            if not near and now - read_at < PENDING_CACHE_SECONDS:
                return value
        value = await self.pending_bytes(sender)
        if len(self._pending_cache) >= PENDING_CACHE_SENDERS:
            self._pending_cache.clear()
        self._pending_cache[sender] = (value, now)
        return value

    async def store(self, writer: UploadWriter) -> StoredUpload | Rejection:
        """Finish and commit ``writer`` under its target name (the common, one-step path)."""
        handoff = await writer.take()
        if isinstance(handoff, Rejection):
            writer.abort()
            return handoff
        target = handoff.target
        final = self.layout.committed(target.sender, target.folder, target.name)
        await self._admission(target.name, handoff.tmp_path)
        try:
            # One thread hop: write the tail, link, fsync file and directory.
            linked = await self.run(_store_sync, handoff, final)
        except BaseException:
            unlink_quietly(handoff.tmp_path)
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
        await self._admission(final_name, done.tmp_path)
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
        except BaseException:
            unlink_quietly(done.tmp_path)
            raise
        if not linked:
            unlink_quietly(done.tmp_path)
            return reject(Code.FILE_EXISTS, f"{final_name} is already in {target.folder.value}")
        return await self._record(done, final_name, final)

    async def _record(
        self, done: FinishedUpload, final_name: str, final: Path, *, temp: bool = True
    ) -> StoredUpload:
        """Insert the ``uploads`` row (the commit point), drop the temp name (if ``temp``: the
        one-step path has none left), tell the pipeline."""
        arrived_at = self._clock()
        values = _row(done, final_name, arrived_at)
        try:
            if self._group is not None:
                upload_id = await self._group.insert(values)
            else:
                async with self._engine.begin() as conn:
                    statement = insert(UploadRow).values(**values).returning(UploadRow.id)
                    upload_id = int((await conn.execute(statement)).scalar_one())
        except asyncio.CancelledError:
            # In a group commit the row may be committed already: the file stays, and is either
            # recorded or removed by recovery as an orphan. The session is gone either way.
            if self._group is None:
                unlink_quietly(final)
            raise
        except BaseException:
            unlink_quietly(final)
            raise
        finally:
            if temp:
                unlink_quietly(done.tmp_path)
        return await self._stored(done, final_name, final, upload_id, arrived_at)

    async def _stored(
        self,
        done: FinishedUpload,
        final_name: str,
        final: Path,
        upload_id: int,
        arrived_at: datetime,
    ) -> StoredUpload:
        target = done.target
        cached = self._pending_cache.get(target.sender)
        if cached is not None:
            self._pending_cache[target.sender] = (cached[0] + done.size, cached[1])
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
        self._pending_cache.pop(sender, None)
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
