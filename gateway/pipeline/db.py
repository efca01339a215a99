"""How the set store reaches the database: each operation is one sync function of a connection.

Why: through ``aiosqlite`` every statement costs four or five thread round trips (cursor,
execute, fetch, close, and a rollback when the connection goes back to the pool), each waking
the event loop; a set took about 85 of them. Here a whole operation (a read, or a write
transaction with all its statements) is one sync function that runs in one hop:

- SQLite file database: through a synchronous ``pysqlite`` engine with the registry's pragmas
  (WAL, synchronous=FULL), on one thread: the process's one writer when one is given
  (:class:`gateway.registry.db.SqliteWriter`: the spool's batches run on the same thread and
  connection), else the store's own; writes in the process's write turn
  (:func:`gateway.spool.commit.write_turn`);
- anything else (PostgreSQL): ``AsyncConnection.run_sync`` on the async engine, the same
  function, in one transaction.

Writes that arrive while one is running share the next transaction (group commit: one disk wait
for all of them, and one wake-up of the loop that answers every waiter). A *stepped* write
(:meth:`Database.step`) names a function that takes every queued item of its kind at once
(``fn(conn, items) -> results``): the set transitions of a whole batch are then a few
``executemany`` statements, validated before they are written, with no savepoint. Any other
write runs in its own savepoint when it shares the transaction, so one that raises (a taken
key, a lost claim) is rolled back alone; a stepped function that raises fails its batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.expression import Executable

from gateway.registry.db import SqliteWriter, sqlite_sync_engine
from gateway.spool.commit import write_turn

T = TypeVar("T")
Item = TypeVar("Item")
Params = Mapping[str, Any] | None


@dataclass(slots=True)
class _Write:
    """One queued write: its operation and the future its caller awaits."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: asyncio.Future[Any]
    stepped: bool = False
    """``fn(conn, items)`` runs once for every queued write of the same ``fn``."""


def _driver_autocommit(dbapi_connection: Any, _record: object) -> None:
    # pysqlite's own transaction handling (a BEGIN slipped in before the first write, none for
    # SAVEPOINT) breaks savepoints; the connection emits its own BEGIN instead (SQLAlchemy's
    # documented recipe for pysqlite), which also gives each read one snapshot.
    dbapi_connection.isolation_level = None


READ_ONLY = "gateway_read_only"
"""Execution option of the store's reads: no BEGIN (see :func:`_read`)."""
PIPELINE = "gateway_pipeline"
"""Execution option of the store's connections (what :attr:`Database.statements` counts)."""
_READING: dict[str, Any] = {READ_ONLY: True, PIPELINE: True}


def _emit_begin(conn: Connection) -> None:
    if conn.get_execution_options().get(READ_ONLY):
        return
    driver: Any = conn.connection.driver_connection  # a sqlite3.Connection
    driver.execute("BEGIN")


def _read(engine: Engine, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    """Run the read ``fn(conn, *args)`` in autocommit mode: no BEGIN and no ROLLBACK around
    it. Each statement reads its own snapshot, which is all a store read needs: the reads
    that decide (claims, keys) run inside write transactions."""
    with engine.connect() as conn:
        return fn(conn.execution_options(**_READING), *args)


class Database:
    """Runs store operations (``fn(conn, *args)``) as reads or write transactions."""

    def __init__(self, engine: AsyncEngine, writer: SqliteWriter | None = None) -> None:
        self.engine = engine
        self._writer = writer
        self._sync: Engine | None = (
            writer.engine if writer is not None else sqlite_sync_engine(engine)
        )
        if self._sync is not None:
            event.listen(self._sync, "connect", _driver_autocommit)
            event.listen(self._sync, "begin", _emit_begin)
        self.statements = 0
        """Statements sent so far: each cursor execution (an ``executemany`` is one), and a
        BEGIN and a COMMIT per write transaction (reported at stop, for the benches)."""
        event.listen(self._sync or engine.sync_engine, "before_cursor_execute", self._count)
        self._thread: ThreadPoolExecutor | None = None
        self._queued: list[_Write] = []
        self._batch: asyncio.Lock | None = None

    @property
    def sync_engine(self) -> Engine | None:
        """The synchronous engine of a SQLite file database (None otherwise)."""
        return self._sync

    def close(self) -> None:
        """Release the thread and the connection (the async engine is the caller's, and a
        shared writer its maker's); the next operation makes them again."""
        if self._writer is not None:
            return
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.shutdown(wait=True)
        if self._sync is not None:
            self._sync.dispose()

    def _count(self, conn: Connection, *_: Any) -> None:
        # On PostgreSQL the engine is shared with the spool and the registry: only ours count.
        if self._sync is not None or conn.get_execution_options().get(PIPELINE):
            self.statements += 1

    def _executor(self) -> ThreadPoolExecutor:
        # One thread: the connection stays on it, and this process's operations keep their order.
        if self._writer is not None:
            return self._writer.executor
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pipeline-db")
        return self._thread

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on a connection without a write transaction."""
        if self._sync is None:
            async with self.engine.connect() as conn:
                # Autocommit: no BEGIN and no ROLLBACK around a read (see _read).
                reading = await conn.execution_options(isolation_level="AUTOCOMMIT", **_READING)
                return await reading.run_sync(fn, *args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(), _read, self._sync, fn, args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in a write transaction: committed, or rolled back if it
        raises (possibly with other writes that came together: see the module)."""
        result: T = await self._queue(_Write(fn, args, asyncio.get_running_loop().create_future()))
        return result

    async def step(self, fn: Callable[[Connection, list[Item]], list[T]], item: Item) -> T:
        """Queue ``item`` for ``fn``, which runs once per transaction with every queued item of
        its kind and returns one result per item, in order (see the module)."""
        loop = asyncio.get_running_loop()
        result: T = await self._queue(_Write(fn, (item,), loop.create_future(), stepped=True))
        return result

    async def _queue(self, mine: _Write) -> Any:
        self._queued.append(mine)
        if self._batch is None:
            self._batch = asyncio.Lock()
        try:
            async with self._batch:
                if not mine.future.done():  # no batch took it yet: lead one with all queued
                    # One turn of the loop first: writers woken together (sets released by
                    # their barrier, uploads closed at once) queue into this batch.
                    await asyncio.sleep(0)
                    await self._run_batch()
        except asyncio.CancelledError:
            mine.future.cancel()  # not run if still queued; its outcome unread otherwise
            raise
        return mine.future.result()

    async def _run_batch(self) -> None:
        batch = [w for w in self._queued if not w.future.done()]
        self._queued = []
        self.statements += 2  # BEGIN, COMMIT
        async with write_turn(self.engine):
            if self._sync is None:
                job: asyncio.Future[list[tuple[bool, Any]]] = asyncio.ensure_future(
                    self._run_async(batch)
                )
            else:
                job = asyncio.get_running_loop().run_in_executor(
                    self._executor(), _write_batch, self._sync, batch
                )
            # The outcomes reach every waiter even when this leader is cancelled meanwhile.
            job.add_done_callback(lambda done: _settle(batch, done))
            await asyncio.shield(job)

    async def _run_async(self, batch: list[_Write]) -> list[tuple[bool, Any]]:
        try:
            async with self.engine.begin() as conn:
                ours = await conn.execution_options(**{PIPELINE: True})
                return await ours.run_sync(_run_writes, batch)
        except Exception as exc:
            return [(False, exc)] * len(batch)


def _settle(batch: list[_Write], job: asyncio.Future[list[tuple[bool, Any]]]) -> None:
    if job.cancelled():  # not expected (the job is shielded): cancel its waiters too
        for write in batch:
            write.future.cancel()
        return
    if (error := job.exception()) is not None:
        outcomes: list[tuple[bool, Any]] = [(False, error)] * len(batch)
    else:
        outcomes = job.result()
    for write, (ok, value) in zip(batch, outcomes, strict=True):
        if write.future.done():
            continue  # its caller was cancelled (the write itself may have committed)
        if ok:
            write.future.set_result(value)
        else:
            write.future.set_exception(value)


def _write_batch(engine: Engine, writes: Sequence[_Write]) -> list[tuple[bool, Any]]:
    """Run ``writes`` in one transaction of ``engine`` (in the store's thread); a failed
    commit fails them all."""
    try:
        with engine.begin() as conn:
            return _run_writes(conn, writes)
    except Exception as exc:
        return [(False, exc)] * len(writes)


def _run_writes(conn: Connection, writes: Sequence[_Write]) -> list[tuple[bool, Any]]:
    """Each stepped function once with all its items, then each other write (in a savepoint
    when there are several). Returns (True, result) or (False, exception) per write; a stepped
    function that raises raises for all (the caller's transaction is rolled back)."""
    outcomes: list[tuple[bool, Any] | None] = [None] * len(writes)
    stepped: dict[Callable[..., Any], list[int]] = {}
    for index, write in enumerate(writes):
        if write.stepped:
            stepped.setdefault(write.fn, []).append(index)
    for fn, indexes in stepped.items():
        results = fn(conn, [writes[i].args[0] for i in indexes])
        for index, result in zip(indexes, results, strict=True):
            outcomes[index] = (True, result)
    alone = len(writes) == 1
    for index, write in enumerate(writes):
        if write.stepped:
            continue
        try:
            if alone:
                outcomes[index] = (True, write.fn(conn, *write.args))
            else:
                with conn.begin_nested():
                    outcomes[index] = (True, write.fn(conn, *write.args))
        except Exception as exc:
            if alone:
                raise
            outcomes[index] = (False, exc)
    return [o for o in outcomes if o is not None]


# Operations of one statement each (with its bound parameters, if any), for Database.read /
# Database.write.


def q_all(conn: Connection, query: Executable, params: Params = None) -> list[Any]:
    """Every row."""
    return list(conn.execute(query, params).all())


def q_one(conn: Connection, query: Executable, params: Params = None) -> Any:
    """Exactly one row."""
    return conn.execute(query, params).one()


def q_first(conn: Connection, query: Executable, params: Params = None) -> Any | None:
    """The first row, or None."""
    return conn.execute(query, params).first()


def q_scalar(conn: Connection, query: Executable, params: Params = None) -> Any:
    """One value, or None."""
    return conn.execute(query, params).scalar_one_or_none()


def q_rowcount(conn: Connection, statement: Executable, params: Params = None) -> int:
    """Rows a write statement touched."""
    return int(conn.execute(statement, params).rowcount)
