"""A complete, signed set becomes a routed declaration and a signed positive ACRF, exactly once."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
from sqlalchemy import event, select

from gateway.core.folders import Folder
from gateway.core.types import SenderNumber
from gateway.pipeline.tables import SetRow
from gateway.spool.durable import StateSync
from gateway.spool.store import INLINE_MAX_BYTES
from gateway.spool.tables import UploadContentRow, UploadRow
from tests.pipeline.conftest import Harness, harness_on, set_names
from tests.pki import StandardPki
from tests.tools import record_syncs


async def test_three_part_set_is_routed_and_acknowledged(harness: Harness) -> None:
    """A 3-part DmfA set yields the payload + envelope at the destination and a positive ACRF."""
    bodies = [f"<part n='{i}'>{'d' * 1000}</part>\r\n".encode() for i in (1, 2, 3)]
    go = await harness.send_set(parts=3, contents=bodies)
    assert await harness.pipeline.run_once() == 1

    acrfs = harness.acrfs()
    assert len(acrfs) == 1
    name, acrf = acrfs[0]
    assert acrf.accepted
    assert acrf.file_name == go
    assert len(acrf.ticket) == 13
    names = harness.out_names()
    stem = name[len("FO.") :]
    assert names == sorted([f"FO.{stem}", f"FS.{stem}", f"GO.{stem}"])
    assert name.startswith("FO.ACRF.999999.")
    verified = harness.openssl_verify_ack(
        harness.out_dir() / name, harness.out_dir() / f"FS.{stem}"
    )
    assert verified.returncode == 0, verified.stderr

    routed = harness.routed()
    assert list(routed) == [acrf.ticket]
    fis, _, _, _ = set_names(sender=harness.number, parts=3)
    assert sorted(routed[acrf.ticket]) == sorted([*fis, "envelope.json"])
    for fi, body in zip(fis, bodies, strict=True):
        assert routed[acrf.ticket][fi] == body
    envelope = harness.envelope(acrf.ticket)
    assert envelope["ticket"] == acrf.ticket
    assert envelope["sender"] == harness.number
    assert envelope["application"] == "DMFA"
    assert envelope["environment"] == "R"
    assert envelope["enterprise"]
    assert envelope["quality"]["kind"] == "employer"
    assert [f["sha256"] for f in envelope["files"]] == [
        hashlib.sha256(b).hexdigest() for b in bodies
    ]
    assert envelope["signer"]["fingerprint"] == hashlib.sha256(harness.signer.cert_der).hexdigest()
    assert "sender 006400 rsa" in envelope["signer"]["subject"]
    assert envelope["received"]

    async with harness.engine.connect() as conn:
        row = (await conn.execute(select(SetRow))).one()
        uploads = (await conn.execute(select(UploadRow.state))).scalars().all()
    assert row.state == "acknowledged"
    assert row.finished
    assert set(uploads) == {"taken"}
    assert await harness.spool.pending_files(SenderNumber(harness.number), Folder.IN) == []
    archive = harness.state_dir / "archive" / harness.number / acrf.ticket
    assert sorted(p.name for p in archive.iterdir()) == sorted(
        [*fis, *(f"FS{n[2:]}" for n in fis), go]
    )
    assert not (harness.state_dir / "work" / acrf.ticket).exists()
    assert await harness.pipeline.run_once() == 0


async def test_intake_syncs_inline_uploads_and_drops_their_bytes(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The set's small files were committed inline (bytes recorded, files not synced): intake
    syncs each file's data before the commit that takes it, which drops the recorded bytes."""
    go = await harness.send_set(parts=2)
    async with harness.engine.connect() as conn:
        recorded = (await conn.execute(select(UploadContentRow.upload_id))).scalars().all()
    assert len(recorded) == 5  # FI and FS of two parts, and the GO
    synced = record_syncs(monkeypatch, "fdatasync")
    assert await harness.pipeline.run_once() == 1
    fis, fss, _, _ = set_names(sender=harness.number, parts=2)
    assert {*fis, *fss, go} <= {path.name for path in synced}
    async with harness.engine.connect() as conn:
        assert (await conn.execute(select(UploadContentRow.upload_id))).all() == []
        states = (await conn.execute(select(UploadRow.state))).scalars().all()
    assert states == ["taken"] * 5


async def test_with_one_syncfs_per_batch_nothing_is_placed_inline(
    tmp_path: Path,
    sqlite_url: str,
    cast: StandardPki,
    ssh_public_key: str,
) -> None:
    """state_sync "filesystem": the spool's batch syncfs makes small files durable, so their
    bytes are not recorded, and the pipeline (which would sync them at intake) knows it."""
    h = await harness_on(
        tmp_path, sqlite_url, cast, ssh_public_key, state_sync=StateSync.FILESYSTEM
    )
    try:
        assert not h.pipeline.ctx.store.inline_uploads
        await h.send_set(parts=2)
        async with h.engine.connect() as conn:
            assert (await conn.execute(select(UploadContentRow.upload_id))).all() == []
            assert len((await conn.execute(select(UploadRow.id))).all()) == 5
        assert await h.pipeline.run_once() == 1
        async with h.engine.connect() as conn:
            assert (await conn.execute(select(SetRow.state))).scalars().all() == ["acknowledged"]
    finally:
        await h.engine.dispose()


async def test_intake_leaves_the_files_synced_at_their_close(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upload larger than the inline bound was synced before its close was answered, so
    intake syncs only the small ones (placed inline) with the work directory."""
    big = b"<declaration part='1'>" + b"x" * INLINE_MAX_BYTES + b"</declaration>\r\n"
    small = b"<declaration part='2'>short</declaration>\r\n"
    go = await harness.send_set(parts=2, contents=[big, small])
    synced = record_syncs(monkeypatch, "fdatasync")
    assert await harness.pipeline.run_once() == 1
    fis, fss, _, _ = set_names(sender=harness.number, parts=2)
    # The names synced in the sets' work directories: intake's syncs.
    work = harness.state_dir / "work"
    in_work = [path.name for path in synced if path.is_relative_to(work)]
    assert sorted(in_work) == sorted([fis[1], *fss, go])


async def test_spool_names_a_power_cut_brings_back_after_intake_are_removed_at_recovery(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite (one node), intake drops the taken uploads' spool names without syncing their
    folder; names a power cut brings back (made again here, with old bytes) have no pending row,
    so the spool's start-up recovery removes them and the set keeps its files."""
    go = await harness.send_set(parts=1)
    synced = record_syncs(monkeypatch, "fsync")
    assert await harness.pipeline.run_once() == 1
    spool_in = harness.state_dir / "spool" / harness.number / "IN"
    assert spool_in not in synced  # the unlinks are not synced: recovery covers them
    fis, fss, _, _ = set_names(sender=harness.number, parts=1)
    assert not any(spool_in.iterdir())
    for name in (*fis, *fss, go):
        (spool_in / name).write_bytes(b"stale")
    recovery = await harness.spool.recover()
    assert recovery.orphans == 3
    assert not any(spool_in.iterdir())
    [(_, acrf)] = harness.acrfs()
    assert acrf.accepted
    assert sorted(harness.routed()[acrf.ticket]) == sorted([*fis, "envelope.json"])


@pytest.mark.postgres
async def test_several_nodes_sync_the_spool_folder_after_intake(
    tmp_path: Path,
    pg_url: str,
    cast: StandardPki,
    ssh_public_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On PostgreSQL (several nodes share the spool; the next recovery may be far off), intake
    syncs the sender's spool folder once it has dropped the names of the uploads it took."""
    h = await harness_on(tmp_path, pg_url, cast, ssh_public_key)
    try:
        await h.send_set(parts=1)
        synced = record_syncs(monkeypatch, "fsync")
        assert await h.pipeline.run_once() == 1
    finally:
        await h.engine.dispose()
    spool_in = h.state_dir / "spool" / h.number / "IN"
    assert spool_in in synced
    assert not any(spool_in.iterdir())


async def test_the_spool_and_the_store_write_through_one_thread_and_connection(
    harness: Harness,
) -> None:
    """On SQLite the spool's group commit and the pipeline's store share the process's one
    writer (gateway/registry/db.py SqliteWriter): every checkout of the uploads' inserts and of
    the pipeline's reads and transactions is of one pysqlite connection, on one thread."""
    writer = harness.writer
    assert writer is not None
    seen: set[tuple[int, int]] = set()

    def checkout(dbapi: object, _record: object, _proxy: object) -> None:
        seen.add((threading.get_ident(), id(dbapi)))

    event.listen(writer.engine, "checkout", checkout)
    try:
        go = await harness.send_set(seq="00001")
        stored = len(seen)
        assert await harness.pipeline.run_once() == 1
    finally:
        event.remove(writer.engine, "checkout", checkout)
    assert stored >= 1  # the uploads' inserts went through the writer
    assert len(seen) == 1, seen  # and the pipeline's statements through the same connection
    [(thread, _)] = seen
    assert thread != threading.get_ident()  # never on the event loop's thread
    assert [acrf.file_name for _, acrf in harness.acrfs()] == [go]
