"""The registry database: one declarative base and one async engine factory for every table.

SQLite (file under the state directory, the embedded default) and PostgreSQL (scale-out) run the
same models and the same Alembic migrations. Every table of the product (registry, spool, set
state) hangs off :class:`Base`, so one migration history covers the whole schema.

SQL is only ever built by SQLAlchemy with bound parameters; ``tests/test_sql_safety.py`` fails on
SQL assembled from strings.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import MetaData, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import SingletonThreadPool

T = TypeVar("T")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every gateway table."""

    metadata = MetaData(naming_convention=NAMING)


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    # WAL lets readers run beside the single writer; foreign keys are off by default in SQLite;
    # synchronous=FULL because an acknowledged set must survive a power cut.
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    """Create the async engine for ``url`` (``sqlite+aiosqlite://`` or ``postgresql+asyncpg://``)."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        sync_engine: Engine = engine.sync_engine
        event.listen(sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def sqlite_sync_engine(engine: AsyncEngine) -> Engine | None:
    """For a SQLite file database, a synchronous ``pysqlite`` engine on the same file with the
    same pragmas; None for other databases (and in-memory ones).

    Why: through ``aiosqlite`` every statement costs four or five thread round trips; a whole
    operation run on a sync connection in a worker thread costs one. The spool's group commit,
    the pipeline's store and the registry's hot reads use it. It is disposed with ``engine``.
    """
    if not _sqlite_file(engine):
        return None
    sync = _pysqlite_engine(engine)
    event.listen(engine.sync_engine, "engine_disposed", lambda _engine: sync.dispose())
    return sync


def _sqlite_file(engine: AsyncEngine) -> bool:
    """Whether ``engine`` is on a SQLite file database (not another database, not in memory)."""
    url = engine.url
    return url.get_backend_name() == "sqlite" and url.database not in {None, "", ":memory:"}


def _pysqlite_engine(engine: AsyncEngine, **options: Any) -> Engine:
    """A synchronous ``pysqlite`` engine on ``engine``'s file, with the registry's pragmas."""
    url = engine.url.set(drivername="sqlite+pysqlite")
    sync = create_sync_engine(url, connect_args={"timeout": 30}, **options)
    event.listen(sync, "connect", _sqlite_pragmas)
    return sync


class SqliteWriter:
    """The one writer of a SQLite file database in a process: one thread and, on it, one
    ``pysqlite`` connection, which the spool's group commit and the pipeline's store share.

    Why: with two writers (the spool's thread and connection, the pipeline's), each commit of
    one made the other's connection drop its whole page cache (WAL mode does so whenever
    another connection has committed), and every batch woke a thread of its own. Measured: a
    micro-benchmark of a set's commits, 0.53-0.59 ms of CPU per set with one connection against
    0.64-0.66 with two (``pread64`` 1.8 per set against 30); ``bench/e2e.py`` paced at 150
    sets/s, 6.3 against 6.4 ms per set. Work handed to :attr:`executor` runs in order, one
    operation at a time, so the two never meet in SQLite's busy handler.

    Made by :func:`sqlite_writer` (``gateway serve``); closed with its async engine.
    """

    def __init__(
        self, engine: AsyncEngine, *, initializer: Callable[[], object] | None = None
    ) -> None:
        # One thread uses it: the pool keeps that thread's one connection for every checkout.
        self.engine = _pysqlite_engine(engine, poolclass=SingletonThreadPool)
        self.executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="db-writer", initializer=initializer
        )
        self._closed = False

    def close(self) -> None:
        """Finish the work handed over, close the connection on its own thread, stop."""
        if self._closed:
            return
        self._closed = True
        self.executor.submit(self.engine.dispose)
        self.executor.shutdown(wait=True)


def sqlite_writer(
    engine: AsyncEngine, *, initializer: Callable[[], object] | None = None
) -> SqliteWriter | None:
    """The process's writer of ``engine``'s SQLite file database (None for other databases and
    in-memory ones); closed when ``engine`` is disposed. ``initializer`` runs first on its
    thread (``gateway serve``: :class:`gateway.ops.priority.ThreadBoost`)."""
    if not _sqlite_file(engine):
        return None
    writer = SqliteWriter(engine, initializer=initializer)
    event.listen(engine.sync_engine, "engine_disposed", lambda _engine: writer.close())
    return writer


def read_sync(engine: Engine, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    """Run the read ``fn(conn, *args)`` on a connection of ``engine`` (in a worker thread)."""
    with engine.connect() as conn:
        return fn(conn, *args)
