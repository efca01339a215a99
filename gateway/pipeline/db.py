"""How the set store reaches the database: each operation is one sync function of a connection.

Why: through ``aiosqlite`` every statement costs four or five thread round trips (cursor,
execute, fetch, close, and a rollback when the connection goes back to the pool), each waking
the event loop; a set took about 85 of them. Here a whole operation (a read, or a write
transaction with all its statements) is one sync function that runs in one hop:

- SQLite file database: on the store's own thread, through a synchronous ``pysqlite`` engine
  with the registry's pragmas (WAL, synchronous=FULL), writes in the process's write turn
  (:func:`gateway.spool.commit.write_turn`), so they never meet the spool's in SQLite's busy
  handler;
- anything else (PostgreSQL): ``AsyncConnection.run_sync`` on the async engine, the same
  function, in one transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.expression import Executable

from gateway.spool.commit import sqlite_writer, write_turn

T = TypeVar("T")


class Database:
    """Runs store operations (``fn(conn, *args)``) as reads or write transactions."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sync: Engine | None = sqlite_writer(engine)
        self._thread: ThreadPoolExecutor | None = None

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
        return await loop.run_in_executor(self._executor(), _read, self._sync, fn, args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in one write transaction (committed, or rolled back if it
        raises)."""
        async with write_turn(self.engine):
            if self._sync is None:
                async with self.engine.begin() as conn:
                    return await conn.run_sync(fn, *args)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor(), _write, self._sync, fn, args)


def _read(engine: Engine, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    with engine.connect() as conn:
        return fn(conn, *args)


def _write(engine: Engine, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    with engine.begin() as conn:
        return fn(conn, *args)


# Operations of one statement each, for Database.read / Database.write.


def q_all(conn: Connection, query: Executable) -> list[Any]:
    """Every row."""
    return list(conn.execute(query).all())


def q_each(conn: Connection, queries: Sequence[Executable]) -> list[list[Any]]:
    """Every row of each query, in one connection."""
    return [list(conn.execute(q).all()) for q in queries]


def q_one(conn: Connection, query: Executable) -> Any:
    """Exactly one row."""
    return conn.execute(query).one()


def q_first(conn: Connection, query: Executable) -> Any | None:
    """The first row, or None."""
    return conn.execute(query).first()


def q_scalar(conn: Connection, query: Executable) -> Any:
    """One value, or None."""
    return conn.execute(query).scalar_one_or_none()


def q_scalars(conn: Connection, query: Executable) -> list[Any]:
    """The first column of every row."""
    return list(conn.execute(query).scalars().all())


def q_rowcount(conn: Connection, statement: Executable) -> int:
    """Rows a write statement touched."""
    return int(conn.execute(statement).rowcount)
