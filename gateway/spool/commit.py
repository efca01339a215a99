"""Group commit of uploads: one writer thread puts a batch of files in place, makes them durable
and records them in one transaction; and the one write turn a process's SQLite writers share.

Why: with ``synchronous=FULL`` every SQLite commit waits for the disk (1.3-7 ms here), and every
hand-off between the event loop and a thread costs a wake-up on each side. Uploads that close
together therefore share one trip to the spool's writer thread and one transaction:

- a close queues a :class:`Job`: its placement (a function that writes the file's last bytes
  and puts it under its final name, fsync'ed, and returns its row; or None when the name is
  taken) and the folder it lands in. The first waiter leads: it takes every job queued so far,
  takes the process's write turn (:func:`write_lock`, SQLite) and hands the batch to the writer
  thread through a queue. Jobs that arrive meanwhile form the next batch, led by the first of
  them once the current batch is answered.
- the writer thread runs each placement, fsyncs each folder of the batch once, then inserts the
  batch's rows with one ``executemany`` in one transaction on its own DB-API connection
  (SQLite: compiled once from the table, values bound by the column types), and answers every
  close at once on the event loop (``call_soon_threadsafe``). On PostgreSQL (no blocking
  driver) the leader inserts the batch on the event loop instead, through SQLAlchemy Core's
  ``executemany`` in one transaction, and checks there each sender's committed bytes against
  the quota under a per-sender advisory lock (several nodes share the database).
- a close is answered only once its file is fsync'ed, in place, its folder fsync'ed and its row
  committed: exactly the durability of one commit per upload, for one thread hop per batch.
  With ``state_sync = "filesystem"`` (:mod:`.durable`) the placements skip their fsync and the
  batch makes its files and folders durable with one ``syncfs`` before the insert.
- a *lone* close commits where it is, on the event loop, in one transaction of its own: a
  small upload placed inline (below) whose session is the only one open in the process, with
  no batch in hand and the write turn free. Nobody could share its batch, so the hand-off would
  only cost two thread wake-ups and their GIL hand-offs on the path the client waits on, about
  0.1-0.2 ms of a 4 KiB upload's 1.2-1.6 (``bench/sftp.py``, one session). Its connection is
  the loop's own and never waits: if another connection holds SQLite's write lock, the close
  goes to the writer thread like any other. What it blocks the loop for is one WAL sync, with
  no other session to delay.
- with ``state_sync = "files"``, a small upload on SQLite is placed *inline* instead
  (:class:`Placed`; :func:`inline_uploads` says why not with ``filesystem``): its file is written
  but not synced, and its bytes go into ``upload_contents`` in the batch's transaction, so the
  commit's one WAL sync makes the upload durable (a file and folder sync fewer on the path a
  client waits on: one session sending small files one by one waits for every close). Until
  the pipeline's intake syncs the file and deletes that row, recovery rewrites the file from it
  (:meth:`gateway.spool.store.Spool.recover`).

What a failure leaves: the batch undoes what it did for a job it cannot finish (the final name
removed once placed, the temporary file removed by a placement that fails), so the caller only
gives the quota back and answers. A close cancelled after queuing does not take its job back: it
may already be in a batch (committed or undone by the batch; recovery removes a temporary file
left by a cancelled close whose name was taken).

The writer thread: given an executor (``gateway serve`` hands it the process's one SQLite
writer, :class:`gateway.registry.db.SqliteWriter`), the batches run there, on the connection
the pipeline's store uses too; otherwise on a thread and connection of the spool's own.

The write turn: SQLite has one writer per database. The spool's batches and the pipeline's
transactions take turns on one ``asyncio.Lock`` per engine and event loop, so they never
collide in SQLite's busy handler, which sleeps in steps of up to 100 ms (on one shared writer
thread they are in order anyway; the turn also orders them with a writer of the spool's own).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import queue
import sqlite3
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Integer, bindparam, delete, func, insert, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.registry.db import sqlite_sync_engine
from gateway.spool.durable import StateSync, make_durable, resolved
from gateway.spool.tables import UploadContentRow, UploadRow, UploadState
from gateway.spool.writer import unlink_quietly

_TURNS: weakref.WeakKeyDictionary[Engine, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)

# PostgreSQL advisory locks taken per (class, sender) while a batch checks the quota.
QUOTA_LOCK_CLASS = 0x5150  # "QP"

# The quota check's statements, built once (a statement built per call cost SQLAlchemy a
# coercion of every element and a new cache key, ~3 % of the event loop on PostgreSQL).
_LOCK_SENDERS = text(
    # One statement for every sender of the batch, the locks taken in sender order (the sorted
    # subquery), so two nodes' batches never wait on each other in a cycle.
    "SELECT pg_advisory_xact_lock(:lock_class, sender) "
    "FROM (SELECT unnest(CAST(:senders AS integer[])) AS sender ORDER BY 1) AS ordered"
).bindparams(bindparam("lock_class", type_=Integer), bindparam("senders", type_=ARRAY(Integer)))
_PENDING_BYTES = (
    select(UploadRow.sender, func.sum(UploadRow.size))
    .where(
        UploadRow.sender.in_(bindparam("senders", expanding=True)),
        UploadRow.state == UploadState.PENDING,
    )
    .group_by(UploadRow.sender)
)
_INSERT_UPLOADS = insert(UploadRow).returning(UploadRow.id, sort_by_parameter_order=True)
_INSERT_CONTENT = "INSERT INTO upload_contents (upload_id, content) VALUES (?, ?)"
DROP_CONTENTS = delete(UploadContentRow).where(
    UploadContentRow.upload_id.in_(bindparam("b_ids", expanding=True))
)
"""The recorded bytes of uploads placed inline, by upload id (``b_ids``): dropped once their
files are synced (the pipeline's intake, the spool's recovery)."""


def write_lock(engine: AsyncEngine) -> asyncio.Lock | None:
    """The write turn of a SQLite engine in this event loop; None for other databases.

    Call it from the event loop (the lock belongs to the running loop; a test's new loop gets a
    new lock).
    """
    key = engine.sync_engine  # its dialect directly: the async engine's is a proxied property
    if key.dialect.name != "sqlite":
        return None
    loop = asyncio.get_running_loop()
    entry = _TURNS.get(key)
    if entry is None or entry[0] is not loop:
        entry = (loop, asyncio.Lock())
        _TURNS[key] = entry
    return entry[1]


@contextlib.asynccontextmanager
async def write_turn(engine: AsyncEngine) -> AsyncIterator[None]:
    """Hold the engine's write turn (nothing to hold on PostgreSQL: row locks decide there)."""
    lock = write_lock(engine)
    if lock is None:
        yield
        return
    async with lock:
        yield


class Unplaced(enum.Enum):
    """A job that ended with no row, and why."""

    TAKEN = "taken"
    """The final name exists: nothing placed (a temporary file is kept for the caller)."""
    OVER_QUOTA = "over_quota"
    """PostgreSQL: the sender's committed bytes would pass the quota; the file was removed."""


Row = dict[str, object]


@dataclass(frozen=True, slots=True)
class Placed:
    """A file put under its final name, and its ``uploads`` row. ``inline``: the file's bytes,
    when the file was not synced (they are recorded with the row, its durable copy)."""

    row: Row
    inline: bytes | None = None


Placement = Callable[[], Placed | None]
"""Run in the writer thread: put the file under its final name (fsync'ed unless placed inline)
and return it; None when the name is taken. On failure it removes what it created, then raises."""
Outcome = int | Unplaced


def inline_uploads(engine: AsyncEngine, state_sync: StateSync) -> bool:
    """Whether small uploads may be placed inline (their bytes in ``upload_contents`` until the
    pipeline's intake syncs their files): on SQLite, a single node's database, when files are
    synced one by one (``state_sync`` resolved to ``files``). On PostgreSQL another node may
    read a file as soon as its row is committed, so it is synced first. With ``filesystem``
    the batch's one ``syncfs`` makes its files durable anyway, and recording their bytes would
    only cost WAL pages, the intake's sync and the rows' removal (``bench/pipeline.py --rate
    150``: 3.7-4.0 ms of CPU per set without, 4.3-4.7 with)."""
    return engine.dialect.name == "sqlite" and resolved(state_sync) is StateSync.FILES


@dataclass(slots=True, eq=False)
class Job:
    """One upload's commit: ``place`` puts ``final`` (in ``folder``) on disk, then its row is
    inserted. ``future`` gives its outcome, or :data:`_LEAD`: "lead the next batch"."""

    place: Placement
    final: str
    folder: str
    future: asyncio.Future[Outcome | _Lead] = field(repr=False)
    waiting: bool = True
    """False once its close was cancelled (it can no longer lead)."""
    row: Row | None = None
    """Set by the writer thread once the file is in place."""
    inline: bytes | None = None
    """Set by the writer thread: the bytes of a file placed inline (not synced)."""
    lone: bool = False
    """Its file is placed inline and its session is the only one open: it may commit on the
    event loop (see the module)."""


class _Lead(enum.Enum):
    LEAD = "lead"


_LEAD = _Lead.LEAD
_Answer = list[Outcome | BaseException | None]
"""Per job of a batch: its outcome, the exception that ended it, or None (placed, row due)."""


class _SqliteRows:
    """The ``uploads`` insert on the writer thread's own ``pysqlite`` connection."""

    def __init__(self, engine: Engine, *, wait: bool = True) -> None:
        self._engine = engine
        self._wait = wait
        columns = [c for c in UploadRow.__table__.columns if not c.primary_key]
        dialect = engine.dialect
        compiled = insert(UploadRow).compile(dialect=dialect, column_keys=[c.key for c in columns])
        self.sql = str(compiled)
        order = compiled.positiontup or []
        by_key = {c.key: c for c in columns}
        self._bind: list[tuple[str, Callable[[Any], Any] | None]] = [
            (key, by_key[key].type.bind_processor(dialect)) for key in order
        ]
        self._connection: Any = None
        self._dbapi: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection:
        if self._dbapi is None:
            # Made in the writer thread (pysqlite connections stay on their thread), through the
            # engine so that its pragmas (WAL, synchronous=FULL, busy timeout) apply.
            self._connection = self._engine.raw_connection()
            dbapi = self._connection.driver_connection
            if not isinstance(dbapi, sqlite3.Connection):  # pragma: no cover - a pysqlite engine
                raise TypeError("the spool's writer needs a pysqlite connection")
            dbapi.isolation_level = None  # transactions opened and closed below, explicitly
            if not self._wait:
                dbapi.execute("PRAGMA busy_timeout=0")
            self._dbapi = dbapi
        return self._dbapi

    def begin_now(self) -> bool:
        """Open a write transaction at once: False (nothing opened) when another connection
        holds the write lock (a connection made with ``wait=False`` never sleeps on it)."""
        try:
            self._open().execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            # The extended code's low byte is the primary one (SQLITE_BUSY_RECOVERY is BUSY).
            if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                return False
            raise
        return True

    def rollback(self) -> None:
        """End the transaction :meth:`begin_now` opened, writing nothing."""
        if self._dbapi is not None:
            self._dbapi.execute("ROLLBACK")

    def close(self) -> None:
        """Give the connection back (to the pool: a shared writer's stays open)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = self._dbapi = None

    def insert(
        self, rows: list[Row], inline: list[bytes | None], *, begun: bool = False
    ) -> list[int]:
        """Insert ``rows``, and the bytes of those placed inline (``inline``, by position), in
        one transaction (``begun``: the one :meth:`begin_now` opened); the rows' ids, in order."""
        params = [
            tuple(row[key] if bind is None else bind(row[key]) for key, bind in self._bind)
            for row in rows
        ]
        db = self._open()
        if not begun:
            db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(self.sql, params)
            (last,) = db.execute("SELECT last_insert_rowid()").fetchone()
            # The table has no AUTOINCREMENT: each row gets max(id) + 1, and this transaction is
            # the only writer (BEGIN IMMEDIATE), so the batch's ids are the len(params) up to the
            # last.
            ids = list(range(last - len(params) + 1, last + 1))
            contents = [(i, data) for i, data in zip(ids, inline, strict=True) if data is not None]
            if contents:
                db.executemany(_INSERT_CONTENT, contents)
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        return ids


async def insert_within_quota(
    conn: AsyncConnection, rows: list[Row], limit: int
) -> list[int | None]:
    """Insert ``rows`` (PostgreSQL, several nodes): each only if its sender's committed pending
    bytes stay within ``limit``, checked under a per-sender lock. Ids in order; None: refused."""
    senders = sorted({str(row["sender"]) for row in rows})
    numbers = [int(sender) for sender in senders]
    await conn.execute(_LOCK_SENDERS, {"lock_class": QUOTA_LOCK_CLASS, "senders": numbers})
    pending = {sender: 0 for sender in senders}
    for sender, total in await conn.execute(_PENDING_BYTES, {"senders": senders}):
        pending[sender] = int(total)
    accepted: list[int] = []
    for index, row in enumerate(rows):
        sender, size = str(row["sender"]), int(str(row["size"]))
        if pending[sender] + size <= limit:
            pending[sender] += size
            accepted.append(index)
    ids: list[int | None] = [None] * len(rows)
    if accepted:
        result = await conn.execute(_INSERT_UPLOADS, [rows[i] for i in accepted])
        for index, row_id in zip(accepted, result.scalars().all(), strict=True):
            ids[index] = int(row_id)
    return ids


class GroupCommit:
    """Place and record uploads in batches: one writer thread, one transaction per batch."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        writer: Engine | None,
        quota_limit: int,
        state_sync: StateSync = StateSync.FILES,
        executor: Executor | None = None,
    ) -> None:
        self._engine = engine
        self._state_sync = resolved(state_sync)
        self._rows = None if writer is None else _SqliteRows(writer)
        self._writer = writer
        self._quota_limit = quota_limit
        self._inbox: queue.SimpleQueue[tuple[list[Job], asyncio.AbstractEventLoop] | None] = (
            queue.SimpleQueue()
        )
        self._shared = executor
        """The process's writer thread, when given: the batches run there (see the module)."""
        self._thread: threading.Thread | None = None
        if executor is None:
            self._thread = threading.Thread(target=self._serve, name="spool-writer", daemon=True)
            self._thread.start()
        self._queue: list[Job] = []
        self._leading = False
        self._inserts: set[asyncio.Task[None]] = set()
        self._here: _SqliteRows | None = None
        """The event loop's own connection, for lone closes (made at the first)."""
        self.batches = 0
        self.rows = 0

    @property
    def inline(self) -> bool:
        """Whether jobs may be placed inline: the writer thread records their bytes (SQLite),
        and files are synced one by one (see :func:`inline_uploads`)."""
        return self._rows is not None and self._state_sync is StateSync.FILES

    def close(self) -> None:
        """Finish the batch in hand, then release the thread and its connection (a shared
        writer is its maker's to close)."""
        if self._here is not None:
            self._here.close()
            self._here = None
        if self._thread is None:  # the shared writer's
            return
        self._inbox.put(None)
        self._thread.join()
        if self._writer is not None:
            self._writer.dispose()

    async def commit(self, job: Job) -> Outcome:
        """Place and record ``job``; returns its row id once committed, or why it has none.

        Raises what ended the job (its file then removed by the batch).
        """
        if job.lone and not self._leading and not self._queue:
            outcome = self._commit_here(job)
            if outcome is not None:
                return outcome
        loop = asyncio.get_running_loop()
        self._queue.append(job)
        if self._leading:
            # A batch is in hand: this job goes into the next one. A cancelled close cancels
            # its own future only (the batch skips it), so no shield (and no extra loop turn).
            try:
                answer = await job.future
            except asyncio.CancelledError:
                job.waiting = False
                if _handed_lead(job.future):
                    self._hand_over()
                raise
            if answer is not _LEAD:
                return answer
            job.future = loop.create_future()  # handed the lead; the job is still queued
        self._leading = True
        turn = write_lock(self._engine)
        try:
            async with turn if turn is not None else contextlib.nullcontext():
                # Taken once we hold the turn: the jobs that queued while the pipeline wrote
                # join this batch.
                batch, self._queue = self._queue, []
                if self._shared is not None:
                    self._shared.submit(self._run, batch, loop)
                else:
                    self._inbox.put((batch, loop))
                answer = await job.future
        except asyncio.CancelledError:
            job.waiting = False
            if any(q is job for q in self._queue):  # cancelled before its batch: pass the lead
                self._hand_over()
            raise
        if answer is _LEAD:  # pragma: no cover - a batch answers each of its jobs
            raise RuntimeError("a job led twice")
        return answer

    def _commit_here(self, job: Job) -> Outcome | None:
        """Place and record a lone job on the event loop (see the module); None when it must
        queue instead: the write turn is taken, or another connection is writing."""
        turn = write_lock(self._engine)
        if not self.inline or (turn is not None and turn.locked()):
            return None
        here = self._here
        if here is None:
            sync = sqlite_sync_engine(self._engine)
            if sync is None:  # pragma: no cover - inline implies a SQLite file database
                return None
            here = self._here = _SqliteRows(sync, wait=False)
        if not here.begin_now():
            return None
        outcome = self._work([job], here)[0]
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome is None:  # pragma: no cover - a SQLite batch answers each of its jobs
            raise RuntimeError("job without an outcome")
        if isinstance(outcome, int):
            self.batches += 1
            self.rows += 1
        return outcome

    # -- the writer thread ----------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            while (item := self._inbox.get()) is not None:
                self._run(*item)
        finally:
            if self._rows is not None:
                self._rows.close()

    def _run(self, batch: list[Job], loop: asyncio.AbstractEventLoop) -> None:
        """One batch, then its answers handed to the event loop."""
        answer: _Answer
        try:
            answer = self._work(batch)
        except Exception as exc:  # a bug: answered, the thread lives on
            answer = [exc] * len(batch)
        if self._shared is not None and self._rows is not None:
            self._rows.close()  # the shared connection goes back between batches
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(self._answered, batch, answer)

    def _work(self, batch: list[Job], begun: _SqliteRows | None = None) -> _Answer:
        """Place, sync and record ``batch``: on the writer thread, or on ``begun`` (the loop's
        connection, its transaction open already: committed, or rolled back if no row is due)."""
        rows = begun if begun is not None else self._rows
        answer: _Answer = [None] * len(batch)
        folders: dict[str, list[int]] = {}
        for index, job in enumerate(batch):
            try:
                placed = job.place()
            except Exception as exc:  # the job's close answers it
                answer[index] = exc
                continue
            if placed is None:
                answer[index] = Unplaced.TAKEN
                continue
            job.row, job.inline = placed.row, placed.inline
            if placed.inline is None:
                folders.setdefault(job.folder, []).append(index)
            elif rows is None:  # a bug: nothing here records inline bytes
                self._undo(job)
                answer[index] = RuntimeError("an upload placed inline without a SQLite writer")
        # The folders' entries made durable, each folder's jobs failing with it; with
        # state_sync = "filesystem" the placements skipped their fsync and one syncfs of every
        # folder at once makes files and names durable. Files placed inline need neither: their
        # bytes are committed with their rows.
        if self._state_sync is StateSync.FILESYSTEM:
            groups = [(list(folders), [i for members in folders.values() for i in members])]
        else:
            groups = [([folder], members) for folder, members in folders.items()]
        for paths, members in groups:
            try:
                make_durable([], paths, mode=self._state_sync)
            except Exception as exc:
                for index in members:
                    self._undo(batch[index])
                    answer[index] = exc
        if rows is not None:
            due = [i for i, outcome in enumerate(answer) if outcome is None]
            if not due and begun is not None:
                rows.rollback()
            if due:
                try:
                    ids = rows.insert(
                        [_row_of(batch[i]) for i in due],
                        [batch[i].inline for i in due],
                        begun=begun is not None,
                    )
                except Exception as exc:
                    for index in due:
                        self._undo(batch[index])
                        answer[index] = exc
                else:
                    for index, row_id in zip(due, ids, strict=True):
                        answer[index] = row_id
        return answer

    @staticmethod
    def _undo(job: Job) -> None:
        """The job will have no row: its final name goes (never listed, so never seen)."""
        if job.row is not None:
            unlink_quietly(job.final)
            job.row = job.inline = None

    # -- back on the event loop ------------------------------------------------------------------

    def _answered(self, batch: list[Job], answer: _Answer) -> None:
        due = [i for i, outcome in enumerate(answer) if outcome is None]
        if not due:
            self._settle(batch, answer)
            return
        # PostgreSQL: the rows go in on the event loop; the task answers the batch.
        task = asyncio.get_running_loop().create_task(self._insert_async(batch, answer, due))
        self._inserts.add(task)
        task.add_done_callback(self._inserts.discard)

    async def _insert_async(self, batch: list[Job], answer: _Answer, due: list[int]) -> None:
        try:
            async with self._engine.begin() as conn:
                ids = await insert_within_quota(
                    conn, [_row_of(batch[i]) for i in due], self._quota_limit
                )
        except BaseException as exc:
            for index in due:
                self._undo(batch[index])
                answer[index] = exc
        else:
            for index, row_id in zip(due, ids, strict=True):
                if row_id is None:
                    self._undo(batch[index])
                    answer[index] = Unplaced.OVER_QUOTA
                else:
                    answer[index] = row_id
        self._settle(batch, answer)

    def _settle(self, batch: list[Job], answer: _Answer) -> None:
        committed = 0
        for job, outcome in zip(batch, answer, strict=True):
            if isinstance(outcome, int) and not isinstance(outcome, bool):
                committed += 1
            if job.future.done():
                continue
            if not job.waiting:
                job.future.cancel()  # nobody waits: an exception would go unretrieved
            elif isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            elif outcome is None:  # pragma: no cover - every job is answered above
                job.future.set_exception(RuntimeError("job without an outcome"))
            else:
                job.future.set_result(outcome)
        if committed:
            self.batches += 1
            self.rows += committed
        self._hand_over()

    def _hand_over(self) -> None:
        """Wake the first close still waiting in the queue to lead the next batch."""
        for job in self._queue:
            if job.waiting and not job.future.done():
                job.future.set_result(_LEAD)
                return
        # Nobody waits (or only cancelled closes): the next commit leads and takes their jobs.
        self._leading = False


def _row_of(job: Job) -> Row:
    if job.row is None:  # pragma: no cover - only placed jobs are inserted
        raise RuntimeError("no row")
    return job.row


def _handed_lead(future: asyncio.Future[Outcome | _Lead]) -> bool:
    return (
        future.done()
        and not future.cancelled()
        and future.exception() is None
        and future.result() is _LEAD
    )
