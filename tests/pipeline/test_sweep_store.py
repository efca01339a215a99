"""The sweep's and ``gateway trace``'s database access through the store (issue 14): refusals
in a set's story, retention of return files and archives, stray work directories."""

from __future__ import annotations

from datetime import timedelta

from gateway.core.codes import Code, reject
from gateway.core.folders import Folder
from gateway.core.types import SenderNumber
from gateway.pipeline.sweep import (
    purge_archives,
    purge_return_files,
    remove_stray_work_dirs,
)
from gateway.pipeline.trace import render, trace
from tests.pipeline.conftest import Harness


async def test_trace_shows_an_answered_refusal(harness: Harness) -> None:
    """A refusal, once answered, is in the name's trace with its negative ACRF."""
    name = f"FI.DMFA.006401.{harness.clock():%Y%m%d}.00001.T.1.1"
    await harness.spool.record_refusal(
        sender=SenderNumber(harness.number),
        folder=Folder.INTEST,
        name=name,
        rejection=reject(Code.SENDER_NOT_OWNER, "sender number 006401 is not yours"),
        session_id="s1",
    )
    before = await trace(harness.engine, name)
    [refusal] = before.refusals
    assert refusal["answered_at"] is None
    assert refusal["code"] == int(Code.SENDER_NOT_OWNER)
    await harness.pipeline.sweep()
    after = await trace(harness.engine, name)
    [refusal] = after.refusals
    assert refusal["answered_at"] is not None
    assert {f["kind"] for f in after.return_files} == {"refusal"}
    assert all(f["subject"] == name for f in after.return_files)
    assert after.sets == []
    text = render(after)
    assert f"refused at upload {refusal['at']}" in text
    assert "not answered yet" not in text


async def test_retention_purges_return_files_and_archives(harness: Harness) -> None:
    """Past the retention, OUT's return files and the set's archive are removed, once."""
    await harness.send_set()
    assert await harness.pipeline.run_once() == 1
    [(_, acrf)] = harness.acrfs()
    archive = harness.state_dir / "archive" / harness.number / acrf.ticket
    assert archive.is_dir()
    assert await purge_return_files(harness.pipeline.ctx) == 0
    assert await purge_archives(harness.pipeline.ctx) == 0
    harness.clock.offset = timedelta(days=91)
    assert await purge_return_files(harness.pipeline.ctx) == 3
    assert harness.out_names() == []
    assert await purge_archives(harness.pipeline.ctx) == 1
    assert not archive.exists()
    assert await purge_return_files(harness.pipeline.ctx) == 0
    assert await purge_archives(harness.pipeline.ctx) == 0
    [story] = (await trace(harness.engine, acrf.ticket)).sets
    assert story.archive is None
    assert all(a["purged_at"] is not None for a in story.acknowledgement)


async def test_stray_work_dirs_are_removed(harness: Harness) -> None:
    """A work directory no unreleased set names is removed; an unreleased set's is kept."""
    work = harness.state_dir / "work"
    (work / "STRAY00000000").mkdir(parents=True)
    assert await remove_stray_work_dirs(harness.pipeline.ctx) == 1
    assert not (work / "STRAY00000000").exists()
    assert await remove_stray_work_dirs(harness.pipeline.ctx) == 0
