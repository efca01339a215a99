"""Group commit of ``uploads`` rows, and the one write turn a process's SQLite writers share.

Why: with ``synchronous=FULL`` every SQLite commit waits for the disk (1.3-7 ms here), so one
commit per upload caps a node at a few hundred files per second on an idle disk and at a few
dozen under load. Uploads that close together therefore share a transaction:

- each upload's file is written, linked and fsync'ed first, in its own worker thread (the disk
  work of concurrent uploads overlaps);
- its row then joins a queue. The first waiter leads: it takes every row queued so far, takes
  the process's write turn (:func:`write_lock`), inserts them in one transaction on the
  spool's own database thread and commits. Rows that arrive meanwhile form the next batch, led
  by the first of them once the current commit is done.
- every close waits for the commit of its own batch: a close is answered only once its row is
  on disk, exactly as before (durability unchanged, only fewer and larger commits).

The write turn: SQLite has one writer per database. The spool's inserts (a synchronous
connection in its thread) and the pipeline's transactions (``aiosqlite``) take turns on one
``asyncio.Lock`` per engine and event loop, so they never collide in SQLite's busy handler,
which sleeps in steps of up to 100 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.spool.tables import UploadRow

_TURNS: weakref.WeakKeyDictionary[Engine, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def write_lock(engine: AsyncEngine) -> asyncio.Lock | None:
    """The write turn of a SQLite engine in this event loop; None for other databases.

    Call it from the event loop (the lock belongs to the running loop; a test's new loop gets a
    new lock).
    """
    if engine.dialect.name != "sqlite":
        return None
    loop = asyncio.get_running_loop()
    key = engine.sync_engine
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


@dataclass(slots=True)
class _Queued:
    """One row waiting for its batch. ``future`` gives its id, or None: "lead the next batch".
    ``waiting`` turns False when its close was cancelled (it can no longer lead)."""

    values: dict[str, object]
    future: asyncio.Future[int | None]
    waiting: bool = True


def _handed_lead(future: asyncio.Future[int | None]) -> bool:
    return (
        future.done()
        and not future.cancelled()
        and future.exception() is None
        and (future.result() is None)
    )


class GroupCommit:
    """Insert ``uploads`` rows through ``writer``, many closes per transaction (SQLite only)."""

    def __init__(self, *, engine: AsyncEngine, writer: Engine) -> None:
        self._engine = engine
        self._writer = writer
        self._statement = insert(UploadRow).returning(UploadRow.id)
        # One thread: the writer's connection stays on it, and commits never queue behind the
        # spool's file work.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-db")
        self._queue: list[_Queued] = []
        self._leading = False
        self.batches = 0
        self.rows = 0

    def close(self) -> None:
        """Wait for the last commit and release the thread and the connection."""
        self._thread.shutdown(wait=True)
        self._writer.dispose()

    async def insert(self, values: dict[str, object]) -> int:
        """Insert one row; returns its id once the transaction holding it is committed.

        Cancelling a close does not take its row back: it may already be in a commit (the
        caller then treats the upload as committed-or-orphaned, which recovery settles).
        """
        loop = asyncio.get_running_loop()
        item = _Queued(values=values, future=loop.create_future())
        self._queue.append(item)
        if self._leading:
            # Someone is committing: our row goes into the next batch. Shielded, so that a
            # cancelled close never cancels the answer a batch will give.
            try:
                row_id = await asyncio.shield(item.future)
            except asyncio.CancelledError:
                item.waiting = False
                if _handed_lead(item.future):
                    self._hand_over()
                raise
            if row_id is not None:
                return row_id
            item.future = loop.create_future()  # handed the lead; our row is still queued
        self._leading = True
        turn = write_lock(self._engine)
        if turn is None:  # pragma: no cover - GroupCommit is built for SQLite engines only
            raise RuntimeError("GroupCommit needs a SQLite engine")
        try:
            async with turn:
                # Taken once we hold the turn: the rows that queued while the pipeline wrote
                # join this batch.
                batch, self._queue = self._queue, []
                job = loop.run_in_executor(
                    self._thread, self._insert_sync, [q.values for q in batch]
                )
                job.add_done_callback(lambda done: self._settle(batch, done))
                # The commit goes on in its thread even if this close is cancelled; _settle
                # answers every row of the batch and hands the lead on either way.
                with contextlib.suppress(Exception):  # a failure reaches us through our future
                    await asyncio.shield(job)
        except asyncio.CancelledError:
            if any(q is item for q in self._queue):  # cancelled before its commit: pass the lead
                item.waiting = False
                self._hand_over()
            raise
        result = await asyncio.shield(item.future)
        if result is None:  # pragma: no cover - our own batch always answers with ids
            raise RuntimeError("row without id")
        return result

    def _settle(self, batch: list[_Queued], done: asyncio.Future[list[int]]) -> None:
        failure = asyncio.CancelledError() if done.cancelled() else done.exception()
        ids = done.result() if failure is None else []
        for index, queued in enumerate(batch):
            if queued.future.done():
                continue
            if failure is not None:
                queued.future.set_exception(failure)
            else:
                queued.future.set_result(ids[index])
        if failure is None:
            self.batches += 1
            self.rows += len(batch)
        self._hand_over()

    def _hand_over(self) -> None:
        """Wake the first close still waiting in the queue to lead the next batch."""
        for queued in self._queue:
            if queued.waiting and not queued.future.done():
                queued.future.set_result(None)
                return
        # Nobody waits (or only cancelled closes): the next insert leads and takes their rows.
        self._leading = False

    def _insert_sync(self, rows: list[dict[str, object]]) -> list[int]:
        with self._writer.begin() as conn:
            return [int(conn.execute(self._statement, row).scalar_one()) for row in rows]
