"""The pipeline database's group commit on SQLite: writes that queue up while one runs share the
next transaction, each in its own savepoint."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway.pipeline.db import Database


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    engine: AsyncEngine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, note TEXT)"))
    db = Database(engine)
    yield db
    db.close()
    await engine.dispose()


def insert(conn: Connection, *ids: int) -> int:
    for row_id in ids:
        conn.execute(text("INSERT INTO t (id, note) VALUES (:id, 'x')"), {"id": row_id})
    return len(ids)


def rows(conn: Connection) -> list[int]:
    return [r[0] for r in conn.execute(text("SELECT id FROM t ORDER BY id"))]


def hold(conn: Connection, gate: threading.Event, started: threading.Event, row_id: int = 1) -> str:
    started.set()
    gate.wait(10)
    conn.execute(text("INSERT INTO t (id, note) VALUES (:id, 'held')"), {"id": row_id})
    return "held"


async def _queue_behind_a_held_write(
    db: Database, *writes: tuple[Any, ...]
) -> tuple[asyncio.Task[Any], list[asyncio.Task[Any]], threading.Event]:
    gate, started = threading.Event(), threading.Event()
    first = asyncio.create_task(db.write(hold, gate, started))
    assert await asyncio.to_thread(started.wait, 10)
    queued = [asyncio.create_task(db.write(*w)) for w in writes]
    await asyncio.sleep(0.05)  # every queued write is waiting for the next batch
    return first, queued, gate


async def test_a_failing_write_is_rolled_back_alone_and_the_others_commit(
    database: Database,
) -> None:
    # 5 then the duplicate 1: the savepoint must take 5 back too, not only the failed statement.
    first, queued, gate = await _queue_behind_a_held_write(
        database, (insert, 2), (insert, 5, 1), (insert, 3)
    )
    gate.set()
    assert await first == "held"
    results = await asyncio.gather(*queued, return_exceptions=True)
    assert results[0] == 1
    assert results[2] == 1
    assert isinstance(results[1], IntegrityError)
    assert await database.read(rows) == [1, 2, 3]


async def test_a_write_cancelled_while_queued_never_runs(database: Database) -> None:
    first, queued, gate = await _queue_behind_a_held_write(database, (insert, 7), (insert, 8))
    queued[0].cancel()
    gate.set()
    await first
    assert await queued[1] == 1
    with pytest.raises(asyncio.CancelledError):
        await queued[0]
    assert await database.read(rows) == [1, 8]


async def test_a_lone_write_that_raises_leaves_nothing(database: Database) -> None:
    await database.write(insert, 4)
    with pytest.raises(IntegrityError):
        await database.write(insert, 6, 4)
    assert await database.read(rows) == [4]


async def test_the_leader_cancelled_mid_batch_still_settles_its_followers(
    database: Database,
) -> None:
    gate, started = threading.Event(), threading.Event()
    # The leader and its follower queue behind a held batch, so the next batch holds both.
    first, (leader, follower), first_gate = await _queue_behind_a_held_write(
        database, (hold, gate, started, 2), (insert, 9)
    )
    first_gate.set()
    await first
    assert await asyncio.to_thread(started.wait, 10)
    leader.cancel()  # while its batch runs in the database thread
    await asyncio.sleep(0.01)
    gate.set()
    assert await asyncio.wait_for(follower, 10) == 1
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert await database.read(rows) == [1, 2, 9]  # the leader's write ran: only its answer is lost
