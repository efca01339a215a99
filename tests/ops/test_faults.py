"""A full disk under the database is told apart from a bug (issue 15 item 3): SQLite's real
"database or disk is full", raw and through SQLAlchemy (sync and aiosqlite), counts as short of
space, like ENOSPC; other database errors do not."""

from __future__ import annotations

import asyncio
import errno
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.ops.faults import local_failure, short_of_space

FILL = "INSERT INTO t VALUES (randomblob(65536))"  # more than 8 pages of 4 KiB


def _full_sqlite(path: Path) -> sqlite3.Error:
    """The error SQLite itself raises when its file may not grow (max_page_count)."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA max_page_count = 8")
        conn.execute("CREATE TABLE t (b BLOB)")
        with pytest.raises(sqlite3.OperationalError) as raised:
            conn.execute(FILL)
        return raised.value
    finally:
        conn.close()


def test_sqlites_own_full_error_is_short_of_space(tmp_path: Path) -> None:
    """The raw sqlite3 error (SQLITE_FULL) counts; another sqlite3 error does not."""
    full = _full_sqlite(tmp_path / "raw.sqlite3")
    assert "full" in str(full)
    assert short_of_space(full)
    assert local_failure(full) == "disk_full"
    other = sqlite3.connect(":memory:")
    with pytest.raises(sqlite3.OperationalError) as raised:
        other.execute("SELECT * FROM missing")
    other.close()
    assert not short_of_space(raised.value)


def test_through_sqlalchemy_sync_and_async(tmp_path: Path) -> None:
    """Wrapped by SQLAlchemy (its ``orig`` is the driver's error), on both engines."""
    engine = create_engine(f"sqlite:///{tmp_path / 'sync.sqlite3'}")
    with engine.connect() as conn:
        conn.execute(text("PRAGMA max_page_count = 8"))
        conn.execute(text("CREATE TABLE t (b BLOB)"))
        with pytest.raises(OperationalError) as raised:
            conn.execute(text(FILL))
    engine.dispose()
    assert short_of_space(raised.value)

    async def fill_async() -> BaseException:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'async.sqlite3'}")
        try:
            async with engine.connect() as conn:
                await conn.execute(text("PRAGMA max_page_count = 8"))
                await conn.execute(text("CREATE TABLE t (b BLOB)"))
                try:
                    await conn.execute(text(FILL))
                except OperationalError as exc:
                    return exc
            raise AssertionError("the database never filled up")
        finally:
            await engine.dispose()

    assert short_of_space(asyncio.run(fill_async()))


class _DriverError(Exception):
    """Stands for an asyncpg error (a library boundary): it carries a SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def test_errnos_and_postgres_disk_full() -> None:
    """ENOSPC and EDQUOT count, EIO does not; PostgreSQL's SQLSTATE 53100 counts, another state
    does not."""
    assert short_of_space(OSError(errno.ENOSPC, "No space left on device"))
    assert short_of_space(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not short_of_space(OSError(errno.EIO, "Input/output error"))
    assert short_of_space(_DriverError("53100"))
    assert not short_of_space(_DriverError("40001"))
    assert not short_of_space(ValueError("a bug"))
