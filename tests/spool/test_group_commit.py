"""Group commit of uploads on SQLite: closes that meet share one batch and one transaction, each
gets its own row, and a cancelled close neither loses nor blocks the rows of the others."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.registry.db import sqlite_sync_engine
from gateway.spool.commit import GroupCommit, Job, Outcome, Placed, write_lock
from gateway.spool.tables import UploadContentRow, UploadRow


@pytest.fixture
async def group(engine: AsyncEngine) -> AsyncIterator[GroupCommit]:
    """The spool's group commit on that registry."""
    writer = sqlite_sync_engine(engine)
    assert writer is not None
    group = GroupCommit(engine=engine, writer=writer, quota_limit=1 << 40)
    yield group
    await asyncio.to_thread(group.close)


def _row(name: str) -> dict[str, object]:
    return {
        "sender": "006400",
        "folder": "IN",
        "name": name,
        "size": 1,
        "sha256": "0" * 64,
        "arrived_at": datetime(2026, 1, 15, tzinfo=UTC),
        "session_id": "s1",
        "channel": "sftp",
        "state": "pending",
    }


def _insert(
    group: GroupCommit, tmp_path: Path, name: str, *, inline: bool = False
) -> Coroutine[Any, Any, Outcome]:
    """Commit one file ``name`` (placed by the writer thread, inline or not) and its row."""
    final = tmp_path / name

    def place() -> Placed:
        final.write_bytes(b"x")
        return Placed(_row(name), b"x" if inline else None)

    job = Job(
        place=place,
        final=str(final),
        folder=str(tmp_path),
        future=asyncio.get_running_loop().create_future(),
    )
    return group.commit(job)


async def _names_by_id(engine: AsyncEngine) -> dict[int, str]:
    async with engine.connect() as conn:
        return {r.id: r.name for r in await conn.execute(select(UploadRow.id, UploadRow.name))}


async def test_closes_waiting_for_the_turn_share_one_commit(
    engine: AsyncEngine, group: GroupCommit, tmp_path: Path
) -> None:
    """Ten closes that queue while another writer holds the turn are committed together."""
    turn = write_lock(engine)
    assert turn is not None
    async with turn:
        tasks = [asyncio.create_task(_insert(group, tmp_path, f"F{i}")) for i in range(10)]
        await asyncio.sleep(0)  # one loop turn: every close has queued its row (no timing)
    ids = await asyncio.gather(*tasks)
    assert (group.batches, group.rows) == (1, 10)
    assert {i: f"F{n}" for n, i in enumerate(ids)} == await _names_by_id(engine)


async def test_cancelled_closes_neither_block_nor_lose_rows(
    engine: AsyncEngine, group: GroupCommit, tmp_path: Path
) -> None:
    """Cancelling the leader before its commit and a follower after queuing: the others commit."""
    turn = write_lock(engine)
    assert turn is not None
    async with turn:
        tasks = [asyncio.create_task(_insert(group, tmp_path, f"F{i}")) for i in range(4)]
        await asyncio.sleep(0)
        tasks[0].cancel()  # the leader, waiting for the turn
        tasks[2].cancel()  # a follower
        await asyncio.sleep(0)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert isinstance(results[2], asyncio.CancelledError)
    stored = await _names_by_id(engine)
    assert [stored[r] for r in results if isinstance(r, int)] == ["F1", "F3"]
    # A cancelled close's row may still be committed (its file then stays recorded): never lost
    # for the others, never twice.
    assert sorted(stored.values()) == ["F0", "F1", "F2", "F3"]
    again = await _insert(group, tmp_path, "F4")
    assert isinstance(again, int)
    assert (await _names_by_id(engine))[again] == "F4"


async def test_inline_bytes_are_committed_with_their_rows(
    engine: AsyncEngine, group: GroupCommit, tmp_path: Path
) -> None:
    """A batch of inline and synced files: the inline ones' bytes are recorded under their own
    rows' ids, in the batch's transaction; the others have none."""
    assert group.inline
    turn = write_lock(engine)
    assert turn is not None
    async with turn:  # the three queue while the turn is held: one batch
        tasks = [
            asyncio.create_task(_insert(group, tmp_path, name, inline=name != "F1"))
            for name in ("F0", "F1", "F2")
        ]
        await asyncio.sleep(0)
    ids = await asyncio.gather(*tasks)
    assert group.batches == 1
    async with engine.connect() as conn:
        contents = dict(
            (await conn.execute(select(UploadContentRow.upload_id, UploadContentRow.content))).all()
        )
    names = await _names_by_id(engine)
    assert {names[i]: data for i, data in contents.items()} == {"F0": b"x", "F2": b"x"}
    row_ids = [i for i in ids if isinstance(i, int)]
    assert row_ids == ids, ids  # every job placed its row
    assert sorted(row_ids) == sorted(names)


async def test_an_inline_job_without_a_sqlite_writer_is_refused(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """Where nothing records inline bytes (PostgreSQL's path), a job placed inline fails and its
    unsynced file is removed: never a row whose bytes are nowhere durable."""
    group = GroupCommit(engine=engine, writer=None, quota_limit=1 << 40)
    try:
        assert not group.inline
        with pytest.raises(RuntimeError, match="placed inline"):
            await _insert(group, tmp_path, "F0", inline=True)
        assert not (tmp_path / "F0").exists()
        assert await _names_by_id(engine) == {}
    finally:
        await asyncio.to_thread(group.close)


def _lone(
    group: GroupCommit, tmp_path: Path, name: str, threads: list[int]
) -> Coroutine[Any, Any, Outcome]:
    """Commit one small file ``name`` as a lone close (placed inline), noting the thread that
    placed it in ``threads``."""
    final = tmp_path / name

    def place() -> Placed:
        threads.append(threading.get_ident())
        final.write_bytes(b"x")
        return Placed(_row(name), b"x")

    job = Job(
        place=place,
        final=str(final),
        folder=str(tmp_path),
        future=asyncio.get_running_loop().create_future(),
        lone=True,
    )
    return group.commit(job)


async def _contents(engine: AsyncEngine) -> dict[str, bytes]:
    names = await _names_by_id(engine)
    async with engine.connect() as conn:
        query = select(UploadContentRow.upload_id, UploadContentRow.content)
        return {names[i]: data for i, data in (await conn.execute(query)).all()}


async def test_a_lone_close_commits_on_the_event_loop(
    engine: AsyncEngine, group: GroupCommit, tmp_path: Path
) -> None:
    """A lone close with nothing else in hand is placed and committed on the event loop's own
    thread, its bytes with its row; one that is not lone goes to the writer thread."""
    threads: list[int] = []
    row_id = await _lone(group, tmp_path, "F0", threads)
    assert threads == [threading.get_ident()]
    assert isinstance(row_id, int)
    assert (await _names_by_id(engine))[row_id] == "F0"
    assert await _contents(engine) == {"F0": b"x"}
    assert (group.batches, group.rows) == (1, 1)
    other: list[int] = []

    def place() -> Placed:
        other.append(threading.get_ident())
        (tmp_path / "F1").write_bytes(b"x")
        return Placed(_row("F1"), b"x")

    loop = asyncio.get_running_loop()
    job = Job(
        place=place, final=str(tmp_path / "F1"), folder=str(tmp_path), future=loop.create_future()
    )
    assert isinstance(await group.commit(job), int)
    assert len(other) == 1
    assert other[0] != threading.get_ident()
    assert await _contents(engine) == {"F0": b"x", "F1": b"x"}


async def test_a_lone_close_queues_while_the_write_turn_is_held(
    engine: AsyncEngine, group: GroupCommit, tmp_path: Path
) -> None:
    """The pipeline writing (the turn held): a lone close waits in line for the writer thread,
    as any close does, and is committed once the turn is free."""
    turn = write_lock(engine)
    assert turn is not None
    threads: list[int] = []
    async with turn:
        task = asyncio.create_task(_lone(group, tmp_path, "F0", threads))
        await asyncio.sleep(0)
        assert threads == []  # not placed while the turn is held
    row_id = await task
    assert len(threads) == 1
    assert threads[0] != threading.get_ident()
    assert isinstance(row_id, int)
    assert (await _names_by_id(engine))[row_id] == "F0"


async def test_a_lone_close_never_waits_on_the_loop_for_another_writer(
    engine: AsyncEngine, group: GroupCommit, tmp_path: Path
) -> None:
    """Another connection holds SQLite's write lock (the registry writing): the lone close does
    not wait for it on the event loop, nor fail with "database is locked"; it goes to the
    writer thread, which waits, and it is committed once the lock is released."""
    database = engine.url.database
    assert database is not None
    other = sqlite3.connect(database, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        threads: list[int] = []
        task = asyncio.create_task(_lone(group, tmp_path, "F0", threads))
        for _ in range(1000):  # the writer thread places it, then waits for the lock
            if threads:
                break
            await asyncio.sleep(0.01)
        assert len(threads) == 1
        assert threads[0] != threading.get_ident()
        assert not task.done()
        other.execute("COMMIT")
        row_id = await task
    finally:
        other.close()
    assert isinstance(row_id, int)
    assert (await _names_by_id(engine))[row_id] == "F0"
    assert await _contents(engine) == {"F0": b"x"}
