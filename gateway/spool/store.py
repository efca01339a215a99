"""The durable spool: stream an upload to a temp file, then commit it atomically and record it.

An upload goes through three steps, each owned by one object:

1. :meth:`Spool.begin` opens ``spool/.tmp/<random>`` (``O_EXCL``, mode 0600) and returns an
   :class:`~gateway.spool.writer.UploadWriter`, which hashes (SHA-256) and writes in one pass,
   holds the limits (184, 920) and accepts only sequential writes.
2. :meth:`Spool.store` (a final name) flushes, hard-links the temp file to
   ``spool/<sender>/<folder>/<name>`` (the link fails if the name exists: never an overwrite),
   fsyncs file and directory off the event loop, inserts the ``uploads`` row, removes the temp
   name and calls ``on_stored``. For a client temporary name, :meth:`UploadWriter.finish`
   fsyncs and parks the upload (invisible) and :meth:`Spool.commit` does the rest at rename.
3. :meth:`UploadWriter.abort` removes the temp file: nothing was ever visible.

Crash safety: before the row is committed the upload is invisible (listings of IN* come from
the ``uploads`` table). A crash between link and insert leaves an unrecorded file, which
:meth:`Spool.recover` (at start-up) and :meth:`Spool.commit` (when the name is wanted again)
remove; a crash before the link leaves only a temp file, removed by :meth:`Spool.recover`.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import delete, event, func, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.channels.vfs import Folder
from gateway.core.codes import Code, Rejection, reject
from gateway.core.types import SenderNumber
from gateway.spool.layout import SpoolLayout
from gateway.spool.limits import SpoolLimits, check_open
from gateway.spool.tables import UPLOAD_PENDING, UploadRefusalRow, UploadRow
from gateway.spool.writer import (
    FinishedUpload,
    Handoff,
    UploadTarget,
    UploadWriter,
    fsync_dir,
    open_temp,
    unlink_quietly,
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
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _link_into_place(tmp: Path, final: Path) -> bool:
    """Link ``tmp`` to ``final`` unless it exists (then False); fsync the directory."""
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(tmp, final)
    except FileExistsError:
        return False
    fsync_dir(final.parent)
    return True


def _store_sync(handoff: Handoff, final: Path) -> bool:
    """Write the tail, link into place, then fsync file and directory. False if ``final`` exists.

    Linking before the fsync lets one journal commit carry both on most filesystems; it is
    safe because a name without an ``uploads`` row is never listed, and recovery removes it.
    """
    try:
        handoff.write_tail()
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(handoff.tmp_path, final)
        except FileExistsError:
            os.fsync(handoff.fd)
            return False
        os.fsync(handoff.fd)
    finally:
        os.close(handoff.fd)
    fsync_dir(final.parent)
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


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    # The same durability as the registry's engine (gateway.registry.db): WAL, synchronous=FULL.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def sqlite_writer(engine: AsyncEngine) -> Engine | None:
    """For a SQLite file database, a synchronous engine the store's worker thread inserts
    through; None for other databases."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in {None, "", ":memory:"}:
        return None
    writer = create_sync_engine(url.set(drivername="sqlite+pysqlite"), connect_args={"timeout": 30})
    event.listen(writer, "connect", _sqlite_pragmas)
    return writer


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
        clock: Clock = _utcnow,
    ) -> None:
        self.layout = SpoolLayout(state_dir)
        self.limits = limits
        self._engine = engine
        self._on_stored = on_stored
        self._clock = clock
        self.layout.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._pending_cache: dict[str, tuple[int, float]] = {}
        self._sqlite_writer = sqlite_writer(engine)
        # SQLite has one writer: this process's inserts queue on a lock rather than in SQLite's
        # busy handler (which sleeps). The spool's blocking work has its own threads so that a
        # burst of uploads waiting on the disk never starves the default executor.
        self._sqlite_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=SPOOL_THREADS, thread_name_prefix="spool")

    def close(self) -> None:
        """Release the SQLite writer and the spool's threads (the async engine is the caller's)."""
        self._executor.shutdown(wait=True)
        if self._sqlite_writer is not None:
            self._sqlite_writer.dispose()

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
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
        tmp_path = self.layout.tmp_dir / os.urandom(16).hex()
        fd = open_temp(tmp_path)
        return UploadWriter(
            target=target,
            tmp_path=tmp_path,
            fd=fd,
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
        try:
            recorded = await self._run(self._store_sync, handoff, final)
        except BaseException:
            unlink_quietly(handoff.tmp_path)
            raise
        done = handoff.finished()
        if recorded is None:
            return await self.commit(done)
        if isinstance(recorded, bool):
            return await self._record(done, target.name, final)
        upload_id, arrived_at = recorded
        unlink_quietly(done.tmp_path)
        return await self._stored(done, target.name, final, upload_id, arrived_at)

    def _store_sync(self, handoff: Handoff, final: Path) -> tuple[int, datetime] | bool | None:
        """In the worker thread: write, link, fsync; on SQLite also insert the row right here
        (one thread hop per upload instead of several). None when ``final`` exists, True when
        the row is still to be inserted (PostgreSQL: asyncpg needs no thread)."""
        if not _store_sync(handoff, final):
            return None
        if self._sqlite_writer is None:
            return True
        done = handoff.finished()
        arrived_at = self._clock()
        try:
            with self._sqlite_lock, self._sqlite_writer.begin() as conn:
                statement = (
                    insert(UploadRow)
                    .values(**_row(done, final.name, arrived_at))
                    .returning(UploadRow.id)
                )
                upload_id = int(conn.execute(statement).scalar_one())
        except BaseException:
            unlink_quietly(final)
            raise
        return upload_id, arrived_at

    async def commit(
        self, done: FinishedUpload, *, name: str | None = None
    ) -> StoredUpload | Rejection:
        """Make ``done`` (already fsync'ed) visible under ``name`` (default: its target name)."""
        target = done.target
        final_name = name if name is not None else target.name
        final = self.layout.committed(target.sender, target.folder, final_name)
        try:
            linked = await self._run(_link_into_place, done.tmp_path, final)
            if not linked and await self._remove_orphan(target, final_name, final):
                linked = await self._run(_link_into_place, done.tmp_path, final)
        except BaseException:
            unlink_quietly(done.tmp_path)
            raise
        if not linked:
            unlink_quietly(done.tmp_path)
            return reject(Code.FILE_EXISTS, f"{final_name} is already in {target.folder.value}")
        return await self._record(done, final_name, final)

    async def _record(self, done: FinishedUpload, final_name: str, final: Path) -> StoredUpload:
        """Insert the ``uploads`` row (the commit point), drop the temp name, tell the pipeline."""
        arrived_at = self._clock()
        try:
            async with self._engine.begin() as conn:
                statement = (
                    insert(UploadRow)
                    .values(**_row(done, final_name, arrived_at))
                    .returning(UploadRow.id)
                )
                upload_id = int((await conn.execute(statement)).scalar_one())
        except BaseException:
            unlink_quietly(final)
            raise
        finally:
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
        return await self._run(self._sweep, recorded, grace_seconds)

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
