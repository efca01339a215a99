"""Set outcomes are appended to the registry's hash-chained audit trail (SECURITY.md 18)."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.registry.audit import entries, verify
from gateway.registry.models import AuditRow
from tests.pipeline.conftest import Harness


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
