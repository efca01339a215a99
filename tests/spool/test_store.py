"""The spool on a real database (SQLite, and PostgreSQL when GATEWAY_TEST_PG_DSN is set).

Each test drives :class:`Spool` the way a channel does (begin, write, store or finish + commit)
and checks the files under the state directory and the rows in ``uploads``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.core.codes import Code, Rejection, reject
from gateway.core.folders import Folder
from gateway.core.types import SenderNumber
from gateway.registry.db import create_engine
from gateway.registry.migrate import migrate
from gateway.spool import (
    ReturnScan,
    Spool,
    SpoolLimits,
    StoredUpload,
    UploadTarget,
    UploadWriter,
    page_return_files,
    place_return_file,
    store,
)
from gateway.spool.tables import UploadContentRow, UploadRefusalRow, UploadRow
from tests.pg import fresh_pg_database
from tests.tools import record_syncs

SENDER = SenderNumber("006400")
NAME = "FI.DMFA.006400.20260115.00001.R.1.1"
LIMITS = SpoolLimits(max_file_bytes=1000, sender_pending_quota_bytes=2500)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A freshly migrated database on each backend."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'registry.sqlite3'}"
        await migrate(url)
        yield url
        return
    async with fresh_pg_database("spool") as url:
        yield url


@pytest.fixture
async def spool(database_url: str, tmp_path: Path) -> AsyncIterator[Spool]:
    """A spool with small limits (1000-byte files, 2500-byte quota)."""
    engine = create_engine(database_url)
    spool = Spool(state_dir=tmp_path / "state", engine=engine, limits=LIMITS)
    yield spool
    spool.close()
    await engine.dispose()


def target(name: str = NAME, folder: Folder = Folder.IN) -> UploadTarget:
    """An upload target of sender 006400."""
    return UploadTarget(sender=SENDER, folder=folder, name=name, session_id="s1", channel="sftp")


async def begin(spool: Spool, name: str = NAME) -> UploadWriter:
    """Begin an upload that must be accepted."""
    writer = await spool.begin(target(name))
    assert isinstance(writer, UploadWriter), writer
    return writer


async def rows(spool: Spool) -> list[tuple[str, int, str]]:
    """(name, size, sha256) of every uploads row."""
    async with spool._engine.connect() as conn:
        result = await conn.execute(select(UploadRow).order_by(UploadRow.id))
        return [(r.name, r.size, r.sha256) for r in result]


async def test_store_commits_file_row_and_calls_back(database_url: str, tmp_path: Path) -> None:
    """A stored upload is on disk with its digest, has a row, and on_stored hears of it."""
    heard: list[StoredUpload] = []

    async def on_stored(stored: StoredUpload) -> None:
        heard.append(stored)

    engine = create_engine(database_url)
    try:
        spool = Spool(
            state_dir=tmp_path / "state", engine=engine, limits=LIMITS, on_stored=on_stored
        )
        writer = await begin(spool)
        assert await writer.write(0, b"abc") is None
        assert await writer.write(3, b"def") is None
        stored = await spool.store(writer)
        assert isinstance(stored, StoredUpload)
        digest = hashlib.sha256(b"abcdef").hexdigest()
        assert stored.path == tmp_path / "state" / "spool" / SENDER / "IN" / NAME
        assert stored.path.read_bytes() == b"abcdef"
        assert await rows(spool) == [(NAME, 6, digest)]
        assert heard == [stored]
        assert list((tmp_path / "state" / "spool" / ".tmp").iterdir()) == []
        assert await spool.pending_bytes(SENDER) == 6
        listed = await spool.pending_files(SENDER, Folder.IN)
        assert [(f.name, f.size) for f in listed] == [(NAME, 6)]
        spool.close()
    finally:
        await engine.dispose()


async def test_no_overwrite(spool: Spool) -> None:
    """A pending name is refused at begin (924), and a racing second commit loses (924)."""
    first, second = await begin(spool), await begin(spool)
    await first.write(0, b"one")
    await second.write(0, b"two")
    assert isinstance(await spool.store(first), StoredUpload)
    lost = await spool.store(second)
    assert isinstance(lost, Rejection)
    assert lost.code is Code.FILE_EXISTS
    again = await spool.begin(target())
    assert isinstance(again, Rejection)
    assert again.code is Code.FILE_EXISTS
    assert (spool.layout.committed(SENDER, Folder.IN, NAME)).read_bytes() == b"one"
    assert list(spool.layout.tmp_dir.iterdir()) == []


async def test_temp_upload_commits_under_final_name(spool: Spool) -> None:
    """finish() keeps the upload invisible; commit(name=...) makes it visible once."""
    writer = await begin(spool)
    await writer.write(0, b"payload")
    done = await writer.finish()
    assert not isinstance(done, Rejection)
    assert await spool.pending_files(SENDER, Folder.IN) == []
    stored = await spool.commit(done, name=NAME)
    assert isinstance(stored, StoredUpload)
    assert stored.path.read_bytes() == b"payload"


async def test_admit_is_awaited_once_per_upload_before_its_commit(
    database_url: str, tmp_path: Path
) -> None:
    """The ``admit`` hook runs once per upload, before the file is visible: on the one-step
    path, on a temporary name's commit, and when store() finds a file already under the name
    and falls back to the linking path (which refuses it, 924, without a second admission)."""
    admitted: list[tuple[str, bool]] = []  # (name, was it listed when admitted)
    engine = create_engine(database_url)
    spool: Spool  # made below, with admit as its hook

    async def admit(name: str) -> None:
        listed = await spool.pending_files(SENDER, Folder.IN)
        admitted.append((name, name in [f.name for f in listed]))

    spool = Spool(state_dir=tmp_path / "state", engine=engine, limits=LIMITS, admit=admit)
    try:
        names = [f"FI.DMFA.006400.20260115.0000{n}.R.1.1" for n in (1, 2, 3)]
        writer = await begin(spool, names[0])
        await writer.write(0, b"one-step")
        assert isinstance(await spool.store(writer), StoredUpload)
        writer = await begin(spool, names[1])
        await writer.write(0, b"temporary name")
        done = await writer.finish()
        assert not isinstance(done, Rejection)
        assert isinstance(await spool.commit(done, name=names[1]), StoredUpload)
        writer = await begin(spool, names[2])
        await writer.write(0, b"over an orphan")
        # A fresh unrecorded file (a commit in flight elsewhere) is not replaced.
        spool.layout.committed(SENDER, Folder.IN, names[2]).write_bytes(b"in flight")
        refused = await spool.store(writer)
        assert isinstance(refused, Rejection)
        assert refused.code == Code.FILE_EXISTS
        assert admitted == [(names[0], False), (names[1], False), (names[2], False)]
        assert [r[0] for r in await rows(spool)] == names[:2]
    finally:
        spool.close()
        await engine.dispose()


async def test_limits_and_order(spool: Spool) -> None:
    """Past 1000 bytes: 184; past the quota: 920 (at write, then at begin); out of order: 923."""
    big = await begin(spool)
    too_large = await big.write(0, b"x" * 1001)
    assert too_large is not None
    assert too_large.code is Code.FILE_TOO_LARGE
    assert not os.path.lexists(big.tmp_path)  # noqa: ASYNC240 - a test's local check
    for i in range(2):
        writer = await begin(spool, f"{NAME[:-1]}{i + 2}")
        await writer.write(0, b"x" * 1000)
        assert isinstance(await spool.store(writer), StoredUpload)
    over = await begin(spool, "GO.DMFA.006400.20260115.00001.R.1")
    quota = await over.write(0, b"x" * 600)
    assert quota is not None
    assert quota.code is Code.QUOTA_EXCEEDED
    skip = await begin(spool, "FS.DMFA.006400.20260115.00001.R.1.1")
    gap = await skip.write(10, b"x")
    assert gap is not None
    assert gap.code is Code.OPERATION_NOT_PERMITTED
    fill = await begin(spool, "FS.DMFA.006400.20260115.00002.R.1.1")
    await fill.write(0, b"x" * 500)
    assert isinstance(await spool.store(fill), StoredUpload)
    full = await spool.begin(target("FS.DMFA.006400.20260115.00003.R.1.1"))
    assert isinstance(full, Rejection)
    assert full.code is Code.QUOTA_EXCEEDED
    assert list(spool.layout.tmp_dir.iterdir()) == []


async def test_abort_leaves_nothing(spool: Spool) -> None:
    """An aborted upload has no file, no temp file and no row."""
    writer = await begin(spool)
    await writer.write(0, b"partial")
    writer.abort()
    assert list(spool.layout.tmp_dir.iterdir()) == []
    assert await rows(spool) == []


async def test_recover_removes_temp_files_and_orphans(spool: Spool) -> None:
    """After a crash: temp files and unrecorded committed names go, recorded files stay."""
    kept = await begin(spool)
    await kept.write(0, b"kept")
    assert isinstance(await spool.store(kept), StoredUpload)
    leftover = spool.layout.tmp_dir / "0123abcd"
    leftover.write_bytes(b"half an upload from before the crash")
    orphan = spool.layout.committed(SENDER, Folder.IN, "GO.DMFA.006400.20260115.00001.R.1")
    orphan.write_bytes(b"linked but never recorded")
    recovery = await spool.recover()
    assert (recovery.temp_files, recovery.orphans) == (1, 1)
    assert not orphan.exists()
    assert not leftover.exists()
    assert spool.layout.committed(SENDER, Folder.IN, NAME).read_bytes() == b"kept"


async def contents(spool: Spool) -> dict[int, bytes]:
    """The recorded bytes of uploads placed inline, by upload id."""
    async with spool._engine.connect() as conn:
        query = select(UploadContentRow.upload_id, UploadContentRow.content)
        return {int(i): bytes(c) for i, c in (await conn.execute(query)).all()}


async def test_recover_writes_again_the_lost_files_of_inline_uploads(
    spool: Spool, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small uploads are committed with their bytes on SQLite (their files not synced). A file
    lost or cut short by a crash is written again at recovery, an intact one is kept, and the
    recorded bytes go once the files are synced (read two at a time here: pages). On
    PostgreSQL nothing is recorded inline."""
    monkeypatch.setattr(store, "INLINE_PAGE", 2)
    names = [f"FI.DMFA.006400.20260115.0000{i}.R.1.1" for i in (1, 2, 3)]
    stored = []
    for index, name in enumerate(names):
        writer = await begin(spool, name)
        assert await writer.write(0, bytes([65 + index]) * 300) is None
        done = await spool.store(writer)
        assert isinstance(done, StoredUpload)
        stored.append(done)
    inline = database_url.startswith("sqlite")
    assert await contents(spool) == ({s.id: s.path.read_bytes() for s in stored} if inline else {})
    stored[0].path.unlink()  # lost (its name never reached the disk)
    stored[1].path.write_bytes(b"A" * 12)  # cut short
    recovery = await spool.recover()
    assert recovery.restored == (2 if inline else 0)
    if inline:
        assert [s.path.read_bytes() for s in stored] == [b"A" * 300, b"B" * 300, b"C" * 300]
        assert all(s.path.stat().st_mode & 0o777 == 0o600 for s in stored)
    assert await contents(spool) == {}
    assert [r[0] for r in await rows(spool)] == names


async def test_only_sqlite_places_uploads_inline(
    spool: Spool, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty and a small upload: on SQLite their bytes are recorded and their files left
    unsynced; on PostgreSQL (another node may read a file once its row is committed) each
    file is fsync'ed before its row, and nothing is recorded."""
    synced = record_syncs(monkeypatch, "fsync")
    stored = []
    for name, body in ((NAME, b"small"), ("GO.DMFA.006400.20260115.00001.R.1", b"")):
        writer = await begin(spool, name)
        assert await writer.write(0, body) is None
        done = await spool.store(writer)
        assert isinstance(done, StoredUpload)
        stored.append(done)
    if database_url.startswith("sqlite"):
        assert await contents(spool) == {stored[0].id: b"small", stored[1].id: b""}
        assert not {str(s.path) for s in stored} & set(map(str, synced))
    else:
        assert await contents(spool) == {}
        assert {str(s.path) for s in stored} <= set(map(str, synced))


async def test_remove_pending_and_record_refusal(spool: Spool) -> None:
    """remove_pending drops row, recorded bytes and file once; a refusal is recorded with its
    code."""
    writer = await begin(spool)
    await writer.write(0, b"x")
    stored = await spool.store(writer)
    assert isinstance(stored, StoredUpload)
    assert await spool.remove_pending(SENDER, Folder.IN, NAME) is True
    assert await spool.remove_pending(SENDER, Folder.IN, NAME) is False
    assert not stored.path.exists()
    assert await contents(spool) == {}
    await spool.record_refusal(
        sender=SENDER,
        folder=Folder.IN,
        name="FI.DMFA.006401.20260115.00001.R.1.1",
        rejection=reject(Code.SENDER_NOT_OWNER, "sender number 006401 is not yours"),
        session_id="s1",
    )
    async with spool._engine.connect() as conn:
        refused = (await conn.execute(select(UploadRefusalRow))).one()
    assert (refused.code, refused.answered_at) == (108, None)


async def test_concurrent_uploads_of_one_sender(spool: Spool) -> None:
    """Several uploads of one sender commit side by side without mixing their bytes."""

    async def one(i: int) -> StoredUpload | Rejection:
        writer = await begin(spool, f"FI.DMFA.006400.20260115.0000{i}.R.1.1")
        await writer.write(0, bytes([i]) * 100)
        return await spool.store(writer)

    results = await asyncio.gather(*(one(i) for i in range(1, 6)))
    for i, stored in enumerate(results, start=1):
        assert isinstance(stored, StoredUpload)
        assert stored.path.read_bytes() == bytes([i]) * 100


def test_return_files_are_placed_atomically_and_listed(tmp_path: Path) -> None:
    """place_return_file writes OUT files; listings skip dot-files; IN is refused."""
    from gateway.spool import SpoolLayout

    layout = SpoolLayout(tmp_path)
    place_return_file(layout, SENDER, Folder.OUT, "FO.ACRF.999999.20260115.00001.R", b"<a/>")
    (layout.out_folder(SENDER, Folder.OUT) / ".FO.partial.tmp").write_bytes(b"")
    os.symlink("/etc/passwd", layout.out_folder(SENDER, Folder.OUT) / "LINK")
    scan = ReturnScan(layout.out_folder(SENDER, Folder.OUT))
    listed = scan.read(10)
    assert [(f.name, f.size) for f in listed] == [("FO.ACRF.999999.20260115.00001.R", 4)]
    assert scan.read(10) == []
    paged, after = page_return_files(layout, SENDER, Folder.OUT, after=None, limit=10)
    assert (paged, after) == (listed, None)
    with pytest.raises(ValueError, match="OUT"):
        place_return_file(layout, SENDER, Folder.IN, "X", b"")


async def test_large_upload_is_hashed_and_written_in_chunks(
    database_url: str, tmp_path: Path
) -> None:
    """Several MiB in 32 KiB writes come out byte-exact with the right SHA-256."""
    engine = create_engine(database_url)
    try:
        limits = SpoolLimits(max_file_bytes=64 * 1024 * 1024, sender_pending_quota_bytes=2**40)
        spool = Spool(state_dir=tmp_path / "state", engine=engine, limits=limits)
        body = os.urandom(3 * 1024 * 1024 + 12345)
        writer = await begin(spool)
        for offset in range(0, len(body), 32768):
            assert await writer.write(offset, body[offset : offset + 32768]) is None
        stored = await spool.store(writer)
        assert isinstance(stored, StoredUpload)
        assert stored.sha256 == hashlib.sha256(body).hexdigest()
        assert stored.path.read_bytes() == body
        temp = await begin(spool, "FS.DMFA.006400.20260115.00001.R.1.1")
        for offset in range(0, len(body), 65536):
            await temp.write(offset, body[offset : offset + 65536])
        done = await temp.finish()
        assert not isinstance(done, Rejection)
        assert done.sha256 == stored.sha256
        assert Path(done.tmp_path).read_bytes() == body  # noqa: ASYNC240
        spool.close()
    finally:
        await engine.dispose()
