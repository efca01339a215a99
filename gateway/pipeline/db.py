"""How the set store reaches the database: each operation is one sync function of a connection.

Why: through ``aiosqlite`` every statement costs four or five thread round trips (cursor,
execute, fetch, close, and a rollback when the connection goes back to the pool), each waking
the event loop; a set took about 85 of them. Here a whole operation (a read, or a write
transaction with all its statements) is one sync function that runs in one hop:

- SQLite file database: on the store's own thread, through a synchronous ``pysqlite`` engine
  with the registry's pragmas (WAL, synchronous=FULL), writes in the process's write turn
  (:func:`gateway.spool.commit.write_turn`), so they never meet the spool's in SQLite's busy
  handler. Writes that arrive while one is running share the next transaction (group commit:
  one disk wait for all of them, as the spool does for uploads), each in its own savepoint, so
  one that raises (a taken key, a lost claim) is rolled back alone and the others commit;
- anything else (PostgreSQL): ``AsyncConnection.run_sync`` on the async engine, the same
  function, in one transaction.
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

from gateway.registry.db import read_sync, sqlite_sync_engine
from gateway.spool.commit import write_turn

T = TypeVar("T")
Params = Mapping[str, Any] | None


@dataclass(slots=True)
class _Write:
    """One queued write: its operation and the future its caller awaits."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: asyncio.Future[Any]


def _driver_autocommit(dbapi_connection: Any, _record: object) -> None:
    # pysqlite's own transaction handling (a BEGIN slipped in before the first write, none for
    # SAVEPOINT) breaks savepoints; the connection emits its own BEGIN instead (SQLAlchemy's
    # documented recipe for pysqlite), which also gives each read one snapshot.
    dbapi_connection.isolation_level = None


def _emit_begin(conn: Connection) -> None:
    driver: Any = conn.connection.driver_connection  # a sqlite3.Connection
    driver.execute("BEGIN")


class Database:
    """Runs store operations (``fn(conn, *args)``) as reads or write transactions."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sync: Engine | None = sqlite_sync_engine(engine)
        if self._sync is not None:
            event.listen(self._sync, "connect", _driver_autocommit)
            event.listen(self._sync, "begin", _emit_begin)
        self._thread: ThreadPoolExecutor | None = None
        self._queued: list[_Write] = []
        self._batch: asyncio.Lock | None = None

    @property
    def sync_engine(self) -> Engine | None:
        """The synchronous engine of a SQLite file database (None otherwise)."""
        return self._sync

    def close(self) -> None:
        """Release the thread and the connection (the async engine is the caller's); the next
        operation makes them again."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.shutdown(wait=True)
        if self._sync is not None:
            self._sync.dispose()

    def _executor(self) -> ThreadPoolExecutor:
        # One thread: the connection stays on it, and this process's operations keep their order.
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pipeline-db")
        return self._thread

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on a connection without a write transaction."""
        if self._sync is None:
            async with self.engine.connect() as conn:
                return await conn.run_sync(fn, *args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(), read_sync, self._sync, fn, args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in a write transaction: committed, or rolled back if it
        raises (on SQLite possibly with other writes that came together: see the module)."""
        if self._sync is None:
            async with write_turn(self.engine), self.engine.begin() as conn:
                return await conn.run_sync(fn, *args)
        loop = asyncio.get_running_loop()
        mine = _Write(fn, args, loop.create_future())
        self._queued.append(mine)
        if self._batch is None:
            self._batch = asyncio.Lock()
        try:
            async with self._batch:
                if not mine.future.done():  # no batch took it yet: lead one with all queued
                    await self._run_batch(loop, self._sync)
        except asyncio.CancelledError:
            mine.future.cancel()  # not run if still queued; its outcome unread otherwise
            raise
        result: T = mine.future.result()
        return result

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, engine: Engine) -> None:
        batch = [w for w in self._queued if not w.future.done()]
        self._queued = []
        async with write_turn(self.engine):
            job = loop.run_in_executor(
                self._executor(), _write_batch, engine, [(w.fn, w.args) for w in batch]
            )
            # The outcomes reach every waiter even when this leader is cancelled meanwhile.
            job.add_done_callback(lambda done: _settle(batch, done))
            await asyncio.shield(job)


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


def _write_batch(
    engine: Engine, writes: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]]
) -> list[tuple[bool, Any]]:
    """Run each write in one transaction; each in a savepoint when there are several. Returns
    (True, result) or (False, exception) per write; a failed commit raises for all."""
    if len(writes) == 1:
        fn, args = writes[0]
        try:
            with engine.begin() as conn:
                return [(True, fn(conn, *args))]
        except Exception as exc:
            return [(False, exc)]
    outcomes: list[tuple[bool, Any]] = []
    with engine.begin() as conn:
        for fn, args in writes:
            try:
                with conn.begin_nested():
                    outcomes.append((True, fn(conn, *args)))
            except Exception as exc:
                outcomes.append((False, exc))
    return outcomes


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
