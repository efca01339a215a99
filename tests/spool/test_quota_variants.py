"""SECURITY.md 19 for the quota (issue 15 item 2): the ways one sender can try to put more than
its quota in flight, at the spool (the channels' tests prove the SFTP, HTTPS and two-node paths:
tests/channels/test_space_quota.py, tests/channels/test_quota_two_nodes.py).

Each variant writes through :class:`Spool` as a channel does (begin, write, store), on SQLite:
many sessions with one file each, one session with many files, one file bigger than the quota
streamed in chunks, and writes out of order. Nothing committed may pass the quota, every refusal
is 920 (or 923 for a write out of order), and no reservation outlives its upload.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.core.codes import Code, Rejection
from gateway.core.folders import Folder
from gateway.core.types import SenderNumber
from gateway.registry.db import create_engine
from gateway.registry.migrate import migrate
from gateway.spool import Spool, SpoolLimits, StoredUpload, UploadTarget, UploadWriter

SENDER = SenderNumber("006400")
QUOTA = 10_000
SIZE = 1_000


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[Spool]:
    """A spool on a fresh SQLite database, with a 10,000-byte quota."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.sqlite3'}"
    await migrate(url)
    engine = create_engine(url)
    spool = Spool(
        state_dir=tmp_path / "state",
        engine=engine,
        limits=SpoolLimits(max_file_bytes=10 * QUOTA, sender_pending_quota_bytes=QUOTA),
    )
    yield spool
    spool.close()
    await engine.dispose()


def _target(n: int, session: str) -> UploadTarget:
    return UploadTarget(
        sender=SENDER,
        folder=Folder.IN,
        name=f"FI.DMFA.{SENDER}.20260115.{n:05d}.R.1.1",
        session_id=session,
        channel="sftp",
    )


async def _upload(spool: Spool, n: int, session: str, chunks: list[bytes]) -> int | Code:
    """One upload written in ``chunks`` and stored: its size, or the refusal's code."""
    writer = await spool.begin(_target(n, session))
    if isinstance(writer, Rejection):
        return writer.code
    offset = 0
    for chunk in chunks:
        problem = await writer.write(offset, chunk)
        if problem is not None:
            return problem.code
        offset += len(chunk)
        await asyncio.sleep(0)  # let the other uploads interleave their writes
    stored = await spool.store(writer)
    return stored.code if isinstance(stored, Rejection) else stored.size


def _committed(answers: list[int | Code]) -> int:
    return sum(a for a in answers if not isinstance(a, Code))


@pytest.mark.parametrize(
    ("sessions", "files"),
    [(30, 1), (1, 30), (5, 6)],
    ids=["many-sessions", "many-files-one-session", "sessions-times-files"],
)
async def test_concurrent_uploads_never_commit_past_the_quota(
    spool: Spool, sessions: int, files: int
) -> None:
    """Thirty 1,000-byte uploads in flight at once against 10,000 bytes, spread over thirty
    sessions, one session, or five sessions of six, each written in four interleaved chunks:
    what is committed never passes the quota (it may stay below: bytes in flight count, and
    uploads refused half-way held some), every other upload gets 920, nothing stays reserved."""
    chunk = b"x" * (SIZE // 4)
    answers = await asyncio.gather(
        *(
            _upload(spool, s * files + f + 1, f"session-{s}", [chunk] * 4)
            for s in range(sessions)
            for f in range(files)
        )
    )
    committed = _committed(answers)
    assert 0 < committed <= QUOTA
    refused = [a for a in answers if isinstance(a, Code)]
    assert refused == [Code.QUOTA_EXCEEDED] * (30 - committed // SIZE)
    assert spool.quota.statistics(SENDER).reserved == 0
    assert await spool.pending_bytes(SENDER) == committed


async def test_one_file_bigger_than_the_quota_stops_at_the_write_that_passes_it(
    spool: Spool,
) -> None:
    """A file streamed in 3,000-byte chunks toward 30,000 bytes: refused (920) at its fourth
    chunk, the one that would pass 10,000; nothing is committed or left reserved, and a small
    file goes through afterwards."""
    writer = await spool.begin(_target(1, "big"))
    assert isinstance(writer, UploadWriter)
    answers = [await writer.write(n * 3_000, b"y" * 3_000) for n in range(10)]
    assert answers[:3] == [None] * 3
    assert isinstance(answers[3], Rejection)
    assert answers[3].code is Code.QUOTA_EXCEEDED
    assert spool.quota.statistics(SENDER).reserved == 0
    assert await spool.pending_bytes(SENDER) == 0
    assert await _upload(spool, 2, "big", [b"z" * SIZE]) == SIZE


@pytest.mark.parametrize(
    "offset", [SIZE + 1, SIZE - 1, 0, 2**40], ids=["gap", "overlap", "rewind", "far"]
)
async def test_a_write_out_of_order_is_refused_and_reserves_nothing(
    spool: Spool, offset: int
) -> None:
    """After 1,000 bytes, a write at another offset than 1,000 (a hole, an overlap, a rewind, a
    write 1 TiB out): refused (923), the upload ends and its reservation is given back."""
    writer = await spool.begin(_target(1, "s"))
    assert isinstance(writer, UploadWriter)
    assert await writer.write(0, b"a" * SIZE) is None
    refused = await writer.write(offset, b"b" * SIZE)
    assert isinstance(refused, Rejection)
    assert refused.code is Code.OPERATION_NOT_PERMITTED
    assert spool.quota.statistics(SENDER).reserved == 0
    assert not isinstance(await spool.store(writer), StoredUpload)
    assert await spool.pending_bytes(SENDER) == 0
