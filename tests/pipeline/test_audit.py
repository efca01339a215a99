"""Set outcomes are appended to the registry's hash-chained audit trail (SECURITY.md 18)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from gateway.registry.audit import entries, verify
from gateway.registry.models import AuditHeadRow, AuditRow
from tests.pipeline.conftest import Harness
from tests.pipeline.test_local_faults import Heard


async def test_outcomes_are_chained_and_tampering_is_detected(harness: Harness) -> None:
    """set.accepted and set.rejected records verify; editing one breaks the chain."""
    await harness.send_set(seq="00001")
    await harness.send_set(seq="00002", with_fs=False)
    assert await harness.pipeline.run_once() == 2
    tickets = {a.ticket: a for _, a in harness.acrfs()}
    async with AsyncSession(harness.engine) as session:
        report = await verify(session)
        assert report.ok, report.problems
        recent = [e for e in await entries(session, limit=10) if e.actor == "pipeline"]
    assert sorted(e.action for e in recent) == ["set.accepted", "set.rejected"]
    assert {e.target.removeprefix("set ") for e in recent} == set(tickets)
    rejected = next(e for e in recent if e.action == "set.rejected")
    assert '"code":912' in rejected.after
    async with AsyncSession(harness.engine) as session, session.begin():
        await session.execute(
            update(AuditRow).where(AuditRow.seq == recent[0].seq).values(after='{"code":null}')
        )
    async with AsyncSession(harness.engine) as session:
        assert not (await verify(session)).ok


async def test_a_missing_audit_head_holds_a_set_until_it_is_restored(harness: Harness) -> None:
    """Without the chain's head row a set cannot finish: the pipeline counts it a database fault
    (set.failed, reason ``database``, retried), never a bug that would refuse the set after a few
    tries; once the operator restores the head the set is finished, with one ACRF, and its record
    verifies in the chain."""
    pipeline = harness.pipeline
    pipeline.retry_first = timedelta(0)
    async with harness.engine.begin() as conn:
        head = (await conn.execute(select(AuditHeadRow.seq, AuditHeadRow.hash))).one()
        await conn.execute(delete(AuditHeadRow))
    failed = Heard("set.failed")
    with capture_logs(processors=[failed]) as logs:
        async with asyncio.timeout(60):
            task = asyncio.create_task(pipeline.run())
            await harness.send_set(seq="00001")
            await failed.heard.wait()
            async with harness.engine.begin() as conn:
                await conn.execute(insert(AuditHeadRow).values(id=1, seq=head.seq, hash=head.hash))
            await pipeline.wait_finished(1)
            await pipeline.aclose(deadline=10)
            await task
    [(_, acrf)] = harness.acrfs()
    assert acrf.accepted
    reasons = {e["reason"] for e in logs if e["event"] == "set.failed"}
    assert reasons == {"database"}
    assert not [e for e in logs if e["event"] == "set.abandoned"]
    async with AsyncSession(harness.engine) as session:
        report = await verify(session)
        assert report.ok, report.problems
        [record] = [e for e in await entries(session, limit=5) if e.actor == "pipeline"]
    assert (record.seq, record.action) == (head.seq + 1, "set.accepted")
