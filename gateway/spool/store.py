"""The durable spool: stream an upload to a temp file, then commit it atomically and record it.

An upload goes through three steps, each owned by one object:

1. :meth:`Spool.begin` refuses a new upload while the spool's filesystem is below its
   free-space floor (929) or the sender's quota is full (920), and returns an
   :class:`~gateway.spool.writer.UploadWriter`, which hashes (SHA-256) and writes in one pass
   (into ``spool/.tmp/<random>``, ``O_EXCL``, mode 0600), holds the limits (184; 920 reserved
   as written, :mod:`.quota`) and accepts only sequential writes.
2. :meth:`Spool.store` (a final name) hands the upload to the spool's writer thread as one job
   of a group commit (``gateway.spool.commit``): in one batch with the uploads that close at the
   same time, it writes the last bytes, creates ``spool/<sender>/<folder>/<name>`` exclusively
   (or hard-links the temp file there: either fails if the name exists, never an overwrite),
   fsyncs the file and, once per batch, the folder, and inserts the batch's ``uploads`` rows in
   one transaction; then ``on_stored`` is called. One thread hop per batch, none per step; the
   folders known to exist are not made again (:class:`KnownFolders`). For a client temporary
   name, :meth:`UploadWriter.finish` fsyncs and parks the upload (invisible) and
   :meth:`Spool.commit` does the rest at rename, in the same way.
3. :meth:`UploadWriter.abort` removes the temp file: nothing was ever visible.

Local faults: a full disk (ENOSPC, EDQUOT) while writing, linking or fsyncing is answered
929 with the upload dropped, never its error text; any other fault is raised to the folder
service, which answers it 999 with a ticket. Every way out gives the upload's quota reservation
back, or turns it into pending bytes at the commit. The first fault for space gives up the space
reserve (:mod:`.reserve`), and a removal refused for space is tried once more after it.

Crash safety: before the row is committed the upload is invisible (listings of IN* come from
the ``uploads`` table). A crash between link and insert leaves an unrecorded file, which
:meth:`Spool.recover` (at start-up) and :meth:`Spool.commit` (when the name is wanted again)
remove; a crash before the link leaves only a temp file, removed by :meth:`Spool.recover`.

Small uploads on SQLite (at most ``INLINE_MAX_BYTES``), with ``state_sync = "files"``, are placed
inline (:func:`gateway.spool.commit.inline_uploads`): the file is written
but not synced, and its bytes are committed with its row in ``upload_contents``, so the close
waits for one sync (the commit's) instead of three (file, folder, commit). The row is then the
upload's durable copy: the pipeline's intake syncs the file before the transaction that takes
the upload and deletes that row, and :meth:`Spool.recover` writes again (and syncs) the file of
every pending upload whose bytes are still recorded, before anything else runs.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Delete, Integer, bindparam, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.core.codes import Code, Rejection, reject
from gateway.core.folders import Folder
from gateway.core.types import SenderNumber
from gateway.ops.faults import short_of_space
from gateway.ops.private import private_dirs
from gateway.registry.db import SqliteWriter, sqlite_sync_engine
from gateway.registry.instant import utc_now
from gateway.spool.commit import (
    DROP_CONTENTS,
    GroupCommit,
    Job,
    Placed,
    Placement,
    Row,
    Unplaced,
)
from gateway.spool.disk import REAL_DISK, Disk, FreeSpace
from gateway.spool.durable import StateSync, make_durable, resolved
from gateway.spool.layout import SpoolLayout
from gateway.spool.limits import SpoolLimits, check_space
from gateway.spool.quota import Quota
from gateway.spool.reserve import SpaceReserve
from gateway.spool.tables import UploadContentRow, UploadRefusalRow, UploadRow, UploadState
from gateway.spool.writer import (
    FinishedUpload,
    Handoff,
    UploadTarget,
    UploadWriter,
    disk_full,
    finish_sync,
    open_temp,
    unlink_quietly,
)

# An unrecorded file in the spool younger than this may be another session's commit in flight.
ORPHAN_GRACE_SECONDS = 30.0
# Folders remembered as made (KnownFolders); past it, the set starts again.
MAX_KNOWN_FOLDERS = 100_000
# Threads for the spool's blocking work (hashing, writes, fsync, SQLite inserts).
SPOOL_THREADS = 16
# Uploads up to this size are placed inline on SQLite (their bytes committed with their rows,
# their files synced by the pipeline's intake). The bound keeps the database's copy small: a
# few pages of the WAL per upload, deleted at intake; a larger upload's file is synced at once.
INLINE_MAX_BYTES = 64 * 1024
# Inline uploads recovery reads at once (at most this many times INLINE_MAX_BYTES in memory).
INLINE_PAGE = 256

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
    location: str
    """The file's path, as a string (a pathlib object per upload costs more than its uses)."""
    duration_seconds: float

    @property
    def path(self) -> Path:
        """The committed file."""
        return Path(self.location)


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingFile:
    """A committed upload not yet taken by the pipeline, as listed in IN*."""

    name: str
    size: int
    arrived_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Recovery:
    """What :meth:`Spool.recover` removed, and the inline uploads' files it wrote again."""

    temp_files: int
    orphans: int
    restored: int = 0


OnStored = Callable[[StoredUpload], Awaitable[None]]
Admit = Callable[[str], Awaitable[None]]
"""Awaited with a file's final name before it is committed (the pipeline's admission)."""
Clock = Callable[[], datetime]


class KnownFolders:
    """The spool's folders this process knows exist, so that a commit makes its folder once,
    not once per file (a ``mkdir`` that fails with EEXIST, or a ``stat``, per upload). Used
    from the writer thread; a folder removed by hand since is made again at its next commit."""

    __slots__ = ("_known",)

    def __init__(self) -> None:
        self._known: set[str] = set()

    def ensure(self, folder: str) -> None:
        """Make ``folder`` (0700, with its parents) unless known."""
        if folder not in self._known:
            private_dirs(Path(folder))
            if len(self._known) >= MAX_KNOWN_FOLDERS:
                self._known.clear()
            self._known.add(folder)

    def retry(self, folder: str, call: Callable[[], T]) -> T:
        """``call()`` in ``folder``, made first; made again if it went away meanwhile."""
        self.ensure(folder)
        try:
            return call()
        except FileNotFoundError:
            self._known.discard(folder)
            self.ensure(folder)
            return call()


def _row(target: UploadTarget, name: str, size: int, sha256: str, arrived: datetime) -> Row:
    return {
        "sender": target.sender,
        "folder": target.folder.value,
        "name": name,
        "size": size,
        "sha256": sha256,
        "arrived_at": arrived,
        "session_id": target.session_id,
        "channel": target.channel,
        "state": UploadState.PENDING,
    }


def _placed_inline(handoff: Handoff, inline_max: int) -> bool:
    """Whether :func:`_place_handoff` places ``handoff`` inline: it never needed a temp file and
    holds at most ``inline_max`` bytes (0: nothing is placed inline)."""
    return handoff.fd is None and inline_max > 0 and len(handoff.tail) <= inline_max


def _place_handoff(
    handoff: Handoff,
    final: str,
    folder: str,
    known: KnownFolders,
    arrived: datetime,
    *,
    fsync_file: bool = True,
    inline_max: int = 0,
) -> Placed | None:
    """Write the tail and put the file at ``final``, fsync'ed (its folder is the batch's to
    sync); its row. None if ``final`` exists: the upload is then complete and fsync'ed under its
    temp name, for :meth:`Spool._link_and_record`. With ``fsync_file`` False
    (``state_sync = "filesystem"``) the placed file is left for the batch's ``syncfs``.

    An upload that never needed a temp file (smaller than a chunk) is written straight under
    its final name, created exclusively (never an overwrite). One of at most ``inline_max``
    bytes is placed inline: not synced, its bytes returned to be committed with its row. A
    larger one is linked from its temp file, whose name is then dropped. Either way the name
    exists before the fsync, so one journal commit carries both on most filesystems; it is safe
    because a name without an ``uploads`` row is never listed, and recovery removes it.
    """
    target = handoff.target
    inline = None
    if handoff.fd is None:
        try:
            fd = known.retry(folder, lambda: open_temp(final))
        except FileExistsError:
            try:
                finish_sync(handoff)
            except BaseException:
                unlink_quietly(handoff.tmp_path)
                raise
            return None
        if _placed_inline(handoff, inline_max):
            inline = handoff.tail
        try:
            handoff.disk.write_all(fd, [handoff.tail])
            if fsync_file and inline is None:
                os.fsync(fd)
        except BaseException:
            unlink_quietly(final)
            raise
        finally:
            os.close(fd)
    else:
        fd = handoff.fd
        try:
            try:
                handoff.write_tail()
                known.retry(folder, lambda: os.link(handoff.tmp_path, final))
            except FileExistsError:
                os.fsync(fd)
                return None
            except BaseException:
                unlink_quietly(handoff.tmp_path)
                raise
            try:
                if fsync_file:
                    os.fsync(fd)
            except BaseException:
                unlink_quietly(final)  # never leave a name whose bytes may not be on disk
                unlink_quietly(handoff.tmp_path)
                raise
        finally:
            os.close(fd)
        unlink_quietly(handoff.tmp_path)  # the final name holds the file now
    row = _row(target, target.name, handoff.size, handoff.sha256, arrived)
    return Placed(row, inline)


def _place_finished(
    done: FinishedUpload, final: str, folder: str, known: KnownFolders, row: Row
) -> Placed | None:
    """Link the fsync'ed temp file of ``done`` to ``final`` unless it exists (None), and drop
    the temp name; ``row``."""
    try:
        known.retry(folder, lambda: os.link(done.tmp_path, final))
    except FileExistsError:
        return None
    unlink_quietly(done.tmp_path)
    return Placed(row)


@dataclass(frozen=True, slots=True)
class _Inline:
    """A pending upload placed inline, as recovery reads it."""

    sender: str
    folder: str
    name: str
    sha256: str
    content: bytes


_INLINE_UPLOADS = (
    select(
        UploadContentRow.upload_id,
        UploadContentRow.content,
        UploadRow.sender,
        UploadRow.folder,
        UploadRow.name,
        UploadRow.sha256,
        UploadRow.state,
    )
    .join(UploadRow, UploadRow.id == UploadContentRow.upload_id)
    .where(UploadContentRow.upload_id > bindparam("after"))
    .order_by(UploadContentRow.upload_id)
    .limit(bindparam("page", type_=Integer))
)
"""A page of the bytes of uploads placed inline whose files the pipeline has not synced yet,
by upload id after ``after``."""


def _holds(path: str, sha256: str) -> bool:
    """Whether the file at ``path`` holds bytes of this SHA-256 (a small file: read whole)."""
    try:
        with open(path, "rb") as file:
            return hashlib.sha256(file.read()).hexdigest() == sha256
    except FileNotFoundError:
        return False


def _exists(path: str) -> bool:
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
        clock: Clock = utc_now,
        disk: Disk = REAL_DISK,
        reserve: SpaceReserve | None = None,
        state_sync: StateSync = StateSync.FILES,
        writer: SqliteWriter | None = None,
    ) -> None:
        self.layout = SpoolLayout(state_dir)
        self.state_sync = resolved(state_sync)
        self.limits = limits
        # The space reserve (.reserve) is given up by the first write that meets a full disk.
        self.reserve = reserve
        self.disk = reserve.guarding(disk) if reserve is not None else disk
        self.quota = Quota(limit=limits.sender_pending_quota_bytes, read_pending=self.pending_bytes)
        self._engine = engine
        self._on_stored = on_stored
        self._admit = admit
        self._clock = clock
        private_dirs(self.layout.tmp_dir)
        self._spool_dir = str(self.layout.spool_dir)
        self._tmp_dir = str(self.layout.tmp_dir)
        self._known = KnownFolders()
        # Uploads that close together are placed and recorded in one batch by a writer thread,
        # in one transaction (gateway.spool.commit); on SQLite on the process's one writer
        # (``writer``, shared with the pipeline's store) or else a thread and connection of the
        # spool's own, in the process's write turn.
        self._group = GroupCommit(
            engine=engine,
            writer=writer.engine if writer is not None else sqlite_sync_engine(engine),
            quota_limit=self.quota.limit,
            state_sync=state_sync,
            executor=writer.executor if writer is not None else None,
        )
        # The spool's other blocking file work (large uploads' chunks, parking, reads) has its
        # own threads so that a burst of uploads waiting on the disk never starves the default
        # executor.
        self._executor = ThreadPoolExecutor(max_workers=SPOOL_THREADS, thread_name_prefix="spool")

    def close(self) -> None:
        """Release the spool's threads and SQLite writer (the async engine is the caller's)."""
        self._executor.shutdown(wait=True)
        self._group.close()

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Run blocking ``function(*args)`` in the spool's threads (off the event loop)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    # -- reading -------------------------------------------------------------------------------

    async def pending_bytes(self, sender: SenderNumber) -> int:
        """Bytes of the sender's committed uploads not yet taken by the pipeline."""
        query = select(func.coalesce(func.sum(UploadRow.size), 0)).where(
            UploadRow.sender == sender, UploadRow.state == UploadState.PENDING
        )
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def pending_files(
        self,
        sender: SenderNumber,
        folder: Folder,
        *,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[PendingFile]:
        """The sender's pending uploads in ``folder`` by name (code point order), those whose
        names come after ``after``, at most ``limit``: a keyset page (listings read a folder a
        page at a time, never whole: SECURITY.md 14). Pending names are unique in a folder."""
        name = UploadRow.name
        if self._engine.dialect.name == "postgresql":
            # The column's collation may be a locale's; pages and cursors are in code point
            # order on every database (SQLite compares bytes: the same order for UTF-8).
            name = name.collate("C")  # type: ignore[assignment]
        query = (
            select(UploadRow.name, UploadRow.size, UploadRow.arrived_at)
            .where(
                UploadRow.sender == sender,
                UploadRow.folder == folder.value,
                UploadRow.state == UploadState.PENDING,
            )
            .order_by(name)
        )
        if after is not None:
            query = query.where(name > after)
        if limit is not None:
            query = query.limit(limit)
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
            UploadRow.state == UploadState.PENDING,
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
        """929 while the spool's filesystem is below its floor (``[limits] min_free_*``), or
        while its space reserve is released and there is no room yet to take it back."""
        space = self.free_space()
        reserve = self.reserve
        if reserve is not None and reserve.short:
            if not reserve.take_back(space, self.limits.floor(space.total)):
                return reject(Code.SHORT_OF_SPACE)
            space = self.free_space()
        return check_space(self.limits, free=space.free, total=space.total)

    def _full(self, exc: BaseException, cause: str) -> bool:
        """Whether ``exc`` says the filesystem is full; if so the reserve is released."""
        if not short_of_space(exc):
            return False
        if self.reserve is not None:
            self.reserve.release(cause)
        return True

    def readiness(self) -> str | None:
        """A ``/readyz`` check: the spool short of space, or None."""
        return "spool short of space" if self.space_problem() is not None else None

    def _final(self, sender: SenderNumber, folder: Folder, name: str) -> tuple[str, str]:
        """A committed upload's path and its folder's, as strings (``layout.committed``
        without a pathlib object per upload)."""
        directory = f"{self._spool_dir}/{sender}/{folder.value}"
        return f"{directory}/{name}", directory

    def committed_path(self, sender: SenderNumber, folder: Folder, name: str) -> str:
        """A committed upload's path, as a string (``layout.committed`` without a pathlib
        object: a client stats every target before it puts it)."""
        return self._final(sender, folder, name)[0]

    async def begin(self, target: UploadTarget) -> UploadWriter | Rejection:
        """Start an upload: refuse at once a spool short of space (929), an existing name (924)
        or a full quota (920)."""
        # The floor and the name are looked at inline (one statvfs, one lstat: cheaper than a
        # thread hop); the link at commit decides races on the name. The quota's figure is kept
        # by this node and read from the database when old or before a refusal (.quota).
        problem = self.space_problem()
        if problem is not None:
            return problem
        if _exists(self.committed_path(target.sender, target.folder, target.name)):
            return reject(Code.FILE_EXISTS, f"{target.name} is already in {target.folder.value}")
        problem = await self.quota.admit(target.sender)
        if problem is not None:
            return problem
        return UploadWriter(
            target=target,
            tmp_path=f"{self._tmp_dir}/{os.urandom(16).hex()}",
            executor=self._executor,
            limits=self.limits,
            quota=self.quota,
            disk=self.disk,
        )

    def discard(self, done: FinishedUpload) -> None:
        """Drop a finished upload that will not be committed (its temp file, its reservation)."""
        unlink_quietly(done.tmp_path)
        self.quota.release(done.target.sender, done.size)

    async def store(self, writer: UploadWriter, *, lone: bool = False) -> StoredUpload | Rejection:
        """Finish and commit ``writer`` under its target name (the common, one-step path).
        ``lone``: its session is the only one open, so a small upload may commit on the event
        loop (:mod:`gateway.spool.commit`)."""
        handoff = await writer.take()
        if isinstance(handoff, Rejection):
            writer.abort()
            return handoff
        target = handoff.target
        try:
            await self._admission(target.name, handoff.tmp_path)
        except BaseException:
            if handoff.fd is not None:
                os.close(handoff.fd)
            self.quota.release(target.sender, handoff.size)
            raise
        final, folder = self._final(target.sender, target.folder, target.name)
        arrived_at = self._clock()
        # One batch of the writer thread: write the tail, put the file in place, fsync file and
        # folder, insert the row.
        inline_max = INLINE_MAX_BYTES if self._group.inline else 0
        place = functools.partial(
            _place_handoff,
            handoff,
            final,
            folder,
            self._known,
            arrived_at,
            fsync_file=self.state_sync is StateSync.FILES,
            inline_max=inline_max,
        )
        outcome = await self._commit(
            place,
            final,
            folder,
            target.sender,
            handoff.size,
            handoff.tmp_path,
            lone=lone and _placed_inline(handoff, inline_max),
        )
        if isinstance(outcome, Rejection):
            return outcome
        done = handoff.finished()
        if outcome is None:
            return await self._link_and_record(done, target.name)  # admitted above
        return await self._recorded(done, target.name, final, outcome, arrived_at)

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

    async def _admission(self, name: str, tmp_path: str) -> None:
        """Wait for the ``admit`` hook (once per upload, before its commit); a wait that ends
        in an exception (the session went away) drops the temp file."""
        if self._admit is None:
            return
        try:
            await self._admit(name)
        except BaseException:
            unlink_quietly(tmp_path)
            raise

    async def _commit(
        self,
        place: Placement,
        final: str,
        folder: str,
        sender: SenderNumber,
        size: int,
        tmp: str,
        *,
        lone: bool = False,
    ) -> int | Rejection | None:
        """One job of the group commit: its row id, or None when the name is taken. Every
        other way out gives the quota reservation back and drops the temp file ``tmp``; a full
        disk is 929, any other fault is raised (the batch has removed what it placed)."""
        job = Job(
            place=place,
            final=final,
            folder=folder,
            future=asyncio.get_running_loop().create_future(),
            lone=lone,
        )
        try:
            outcome = await self._group.commit(job)
        except asyncio.CancelledError:
            # The job may be committed all the same (its file then recorded): the session is
            # gone either way, and the next quota check reads the figure again.
            self.quota.release(sender, size, uncertain=True)
            raise
        except BaseException as exc:
            unlink_quietly(tmp)
            self.quota.release(sender, size)
            if self._full(exc, "commit"):
                return disk_full()
            raise
        if outcome is Unplaced.OVER_QUOTA:
            self.quota.release(sender, size, uncertain=True)
            return reject(
                Code.QUOTA_EXCEEDED,
                f"pending files would exceed the quota of {self.quota.limit} bytes",
            )
        return None if outcome is Unplaced.TAKEN else outcome

    async def _link_and_record(
        self, done: FinishedUpload, final_name: str
    ) -> StoredUpload | Rejection:
        """Link the fsync'ed temp file to ``final_name`` (unless it exists) and record it."""
        target = done.target
        final, folder = self._final(target.sender, target.folder, final_name)
        arrived_at = self._clock()
        row = _row(target, final_name, done.size, done.sha256, arrived_at)
        place = functools.partial(_place_finished, done, final, folder, self._known, row)
        outcome = await self._commit(place, final, folder, target.sender, done.size, done.tmp_path)
        if outcome is None:
            try:
                removed = await self._remove_orphan(target, final_name, Path(final))
            except BaseException:
                self.discard(done)
                raise
            if removed:
                outcome = await self._commit(
                    place, final, folder, target.sender, done.size, done.tmp_path
                )
        if isinstance(outcome, Rejection):
            return outcome
        if outcome is None:
            self.discard(done)
            return reject(Code.FILE_EXISTS, f"{final_name} is already in {target.folder.value}")
        return await self._recorded(done, final_name, final, outcome, arrived_at)

    async def _recorded(
        self,
        done: FinishedUpload,
        final_name: str,
        final: str,
        upload_id: int,
        arrived_at: datetime,
    ) -> StoredUpload:
        """The row is committed: count it against the quota, tell the pipeline."""
        target = done.target
        self.quota.committed(target.sender, done.size)
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
            location=final,
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
            UploadRow.state == UploadState.PENDING,
        )
        try:
            removed = await self._delete(statement)
        except Exception as exc:
            # A full disk refuses the very write that would free it: the reserve gives it room.
            if not (self._full(exc, "remove") and self.reserve is not None):
                raise
            removed = await self._delete(statement)
        if not removed:
            return False
        self.quota.changed(sender)
        unlink_quietly(self.layout.committed(sender, folder, name))
        return True

    async def _delete(self, statement: Delete) -> int:
        async with self._engine.begin() as conn:
            return (await conn.execute(statement)).rowcount

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
            UploadRow.state == UploadState.PENDING
        )
        async with self._engine.connect() as conn:
            recorded = {(r.sender, r.folder, r.name) for r in (await conn.execute(query)).all()}
        # Before anything else: a pending upload placed inline may have lost its unsynced file
        # (a power cut) or have it only in the page cache (a killed process). Its file is
        # written again where it differs from the committed bytes, synced, and the bytes
        # dropped; the rows of uploads no longer pending are dropped too. A page at a time, so
        # memory stays bounded however many there are.
        restored = 0
        after = 0
        while True:
            async with self._engine.connect() as conn:
                page = (
                    await conn.execute(_INLINE_UPLOADS, {"after": after, "page": INLINE_PAGE})
                ).all()
            if not page:
                break
            pending = [
                _Inline(r.sender, r.folder, r.name, r.sha256, r.content)
                for r in page
                if r.state == UploadState.PENDING
            ]
            restored += await self.run(self._restore, pending)
            ids = [r.upload_id for r in page]
            async with self._engine.begin() as conn:
                await conn.execute(DROP_CONTENTS, {"b_ids": ids})
            after = ids[-1]
        swept = await self.run(self._sweep, recorded, grace_seconds)
        return Recovery(temp_files=swept.temp_files, orphans=swept.orphans, restored=restored)

    def _restore(self, inline: list[_Inline]) -> int:
        """Write each inline upload's file again unless it holds the recorded bytes, then sync
        them all and their folders; how many were written."""
        written = 0
        files: list[str] = []
        folders: dict[str, None] = {}
        for row in inline:
            final, folder = self._final(SenderNumber(row.sender), Folder(row.folder), row.name)
            if not _holds(final, row.sha256):
                self._known.ensure(folder)
                fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
                try:
                    self.disk.write_all(fd, [row.content])
                finally:
                    os.close(fd)
                written += 1
            files.append(final)
            folders[folder] = None
        make_durable(files, list(folders), mode=self.state_sync)
        return written

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
