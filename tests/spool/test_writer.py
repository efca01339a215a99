"""The upload writer's chunks in flight (issue 14): bounded, in byte order, batched hops.

A disk whose writes wait on a gate (a ``threading.Event``) stands for a stalled disk. While it is
held, nothing can be written, so what the writer does meanwhile is decided, not timed: it keeps
taking bytes until ``MAX_IN_FLIGHT`` chunks wait, then the upload's next write waits too.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from gateway.core.codes import Code, Rejection
from gateway.registry.db import create_engine
from gateway.registry.migrate import migrate
from gateway.spool import Spool, SpoolLimits, StoredUpload, UploadWriter
from gateway.spool.disk import Disk
from gateway.spool.writer import MAX_IN_FLIGHT, WRITE_BUFFER
from tests.spool.test_store import target

PIECE = 32 * 1024  # an SFTP write


class GatedDisk:
    """os.write behind a gate; records the size of each write call."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.sizes: list[int] = []
        self.fail: OSError | None = None

    def __call__(self, fd: int, buffers: Sequence[memoryview]) -> int:
        self.gate.wait(timeout=60)
        if self.fail is not None:
            raise self.fail
        self.sizes.append(sum(len(buffer) for buffer in buffers))
        return os.writev(fd, buffers)


@pytest.fixture
async def gated(tmp_path: Path) -> AsyncIterator[tuple[Spool, GatedDisk]]:
    """A spool on SQLite whose disk writes wait for the test's gate."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.sqlite3'}"
    await migrate(url)
    engine = create_engine(url)
    disk = GatedDisk()
    limits = SpoolLimits(max_file_bytes=1 << 30, sender_pending_quota_bytes=1 << 40)
    spool = Spool(state_dir=tmp_path / "state", engine=engine, limits=limits, disk=Disk(write=disk))
    yield spool, disk
    disk.gate.set()
    spool.close()
    await engine.dispose()


async def write_pieces(writer: UploadWriter, body: bytes, start: int, end: int) -> None:
    """Write ``body[start:end]`` in SFTP-sized pieces, each accepted."""
    for offset in range(start, end, PIECE):
        assert await writer.write(offset, body[offset : min(offset + PIECE, end)]) is None


async def test_a_stalled_disk_holds_at_most_max_in_flight_chunks(
    gated: tuple[Spool, GatedDisk],
) -> None:
    """With the disk stalled, MAX_IN_FLIGHT - 1 chunks are taken without waiting, the write that
    fills one more waits; released, the waiting chunks go in one bigger write, and the stored
    file is byte-exact with its SHA-256."""
    spool, disk = gated
    body = os.urandom((MAX_IN_FLIGHT + 2) * WRITE_BUFFER + 12345)
    writer = await spool.begin(target())
    assert isinstance(writer, UploadWriter)
    free = (MAX_IN_FLIGHT - 1) * WRITE_BUFFER
    await write_pieces(writer, body, 0, free)  # never waits: the disk writes nothing yet
    last = asyncio.ensure_future(write_pieces(writer, body, free, free + WRITE_BUFFER))
    for _ in range(100):  # the loop runs; the write cannot end while the disk is held
        await asyncio.sleep(0)
    assert not last.done()
    assert disk.sizes == []
    disk.gate.set()
    await last
    await write_pieces(writer, body, free + WRITE_BUFFER, len(body))
    stored = await spool.store(writer)
    assert isinstance(stored, StoredUpload)
    assert stored.sha256 == hashlib.sha256(body).hexdigest()
    assert stored.path.read_bytes() == body
    # The first job had one chunk; the chunks queued behind it went in one hop.
    assert disk.sizes[0] == WRITE_BUFFER
    assert disk.sizes[1] == (MAX_IN_FLIGHT - 1) * WRITE_BUFFER


async def test_each_chunk_starts_its_writeback_once_written(tmp_path: Path) -> None:
    """A large upload's every chunk is followed by the start of the file's writeback, so its
    fsync at close waits for the last chunks only: the writeback sees the file grown by each
    chunk, in order, and the stored file is byte-exact."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.sqlite3'}"
    await migrate(url)
    engine = create_engine(url)
    sizes: list[int] = []
    limits = SpoolLimits(max_file_bytes=1 << 30, sender_pending_quota_bytes=1 << 40)
    disk = Disk(writeback=lambda fd: sizes.append(os.fstat(fd).st_size))
    spool = Spool(state_dir=tmp_path / "state", engine=engine, limits=limits, disk=disk)
    try:
        body = os.urandom(3 * WRITE_BUFFER + 777)
        writer = await spool.begin(target())
        assert isinstance(writer, UploadWriter)
        await write_pieces(writer, body, 0, len(body))
        stored = await spool.store(writer)
        assert isinstance(stored, StoredUpload)
        assert stored.path.read_bytes() == body
    finally:
        spool.close()
        await engine.dispose()
    assert len(sizes) >= 2  # one job per chunk at most; queued chunks may share one
    assert sizes == sorted(sizes)
    assert sizes[-1] == 3 * WRITE_BUFFER  # the tail (777 bytes) is written at close


async def test_a_failed_chunk_write_ends_the_upload_with_929(
    gated: tuple[Spool, GatedDisk],
) -> None:
    """ENOSPC in a queued chunk's write is answered 929 at a later write, the temp file goes and
    the quota reservation is given back."""
    spool, disk = gated
    body = os.urandom((MAX_IN_FLIGHT + 1) * WRITE_BUFFER)
    writer = await spool.begin(target())
    assert isinstance(writer, UploadWriter)
    disk.fail = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    disk.gate.set()
    answers = [
        await writer.write(offset, body[offset : offset + PIECE])
        for offset in range(0, len(body), PIECE)
    ]
    refusals = [a for a in answers if isinstance(a, Rejection)]
    assert refusals
    assert {r.code for r in refusals} == {Code.SHORT_OF_SPACE}
    assert not os.path.lexists(writer.tmp_path)  # noqa: ASYNC240 - a test's local check
    assert spool.quota._figures(target().sender).reserved == 0
