"""The audit trail: every change is chained; edits, insertions and deletions (of records and of the
head) are detected."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import delete, insert, select, update

from gateway.registry.audit import AuditHeadMissing, record_hash
from gateway.registry.models import AuditHeadRow, AuditRow
from gateway.registry.service import Registry
from gateway.registry.types import Refusal
from tests.registry.world import EMPLOYER_A, KBO_A, ok, person, provision


async def _history(registry: Registry) -> None:
    await provision(registry, KBO_A, "htb-a")
    ok(await registry.activate_quality(actor="htb-a", kbo=KBO_A, kind="employer"))
    made = await registry.create_user(
        actor="htb-a", quality=EMPLOYER_A, person=person("Bob"), login="bob"
    )
    assert not isinstance(made, Refusal)
    ok(await registry.block_user(actor="htb-a", login="bob"))


async def test_changes_are_recorded_with_actor_and_before_after(registry: Registry) -> None:
    """Each change has an audit record naming the actor, the action, the target, before/after."""
    await _history(registry)
    entries = await registry.audit_entries(limit=10)
    actions = [e.action for e in reversed(entries)]
    assert actions == [
        "enterprise.provision",
        "enterprise.activate",
        "quality.activate",
        "user.create",
        "user.block",
    ]
    block = entries[0]
    assert block.actor == "htb-a"
    assert block.target == "bob"
    assert json.loads(block.before) == {"status": "active"}
    assert json.loads(block.after) == {"status": "blocked"}
    assert "argon2" not in "".join(e.before + e.after for e in entries)
    report = await registry.audit_verify()
    assert report.ok
    assert report.records == 5


async def test_refused_action_leaves_no_record(registry: Registry) -> None:
    """A refusal appends nothing to the chain."""
    await _history(registry)
    refused = await registry.set_password_login(actor="bob", kbo=KBO_A, enabled=False)
    assert isinstance(refused, Refusal)
    assert (await registry.audit_verify()).records == 5


async def test_edited_record_is_detected(registry: Registry) -> None:
    """Changing a field of a stored record breaks its hash."""
    await _history(registry)
    async with registry.engine.begin() as conn:
        await conn.execute(update(AuditRow).where(AuditRow.seq == 4).values(actor="operator"))
    report = await registry.audit_verify()
    assert not report.ok
    assert [p.seq for p in report.problems] == [4]
    assert "modified" in report.problems[0].problem


async def test_deleted_record_is_detected(registry: Registry) -> None:
    """Removing a record leaves a gap and a broken link; removing the last one moves the head."""
    await _history(registry)
    async with registry.engine.begin() as conn:
        await conn.execute(delete(AuditRow).where(AuditRow.seq == 3))
    report = await registry.audit_verify()
    assert {p.seq for p in report.problems} == {4}
    async with registry.engine.begin() as conn:
        await conn.execute(delete(AuditRow).where(AuditRow.seq == 5))
    report = await registry.audit_verify()
    assert any("head" in p.problem for p in report.problems)


async def test_inserted_record_is_detected(registry: Registry) -> None:
    """A forged record, even with a correct hash of its own, breaks the next record's link."""
    await _history(registry)
    async with registry.engine.begin() as conn:
        rows = (await conn.execute(select(AuditRow).order_by(AuditRow.seq))).all()
        await conn.execute(delete(AuditRow).where(AuditRow.seq >= 3))
        forged = {
            "seq": 3,
            "at": rows[2].at,
            "actor": "operator",
            "action": "user.create",
            "target": "mallory",
            "before": "{}",
            "after": "{}",
            "prev_hash": rows[1].hash,
        }
        forged["hash"] = record_hash(
            rows[1].hash,
            **{k: forged[k] for k in ("seq", "at", "actor", "action", "target", "before", "after")},
        )
        await conn.execute(insert(AuditRow).values(**forged))
        for row in rows[2:]:
            await conn.execute(insert(AuditRow).values(**{**row._asdict(), "seq": row.seq + 1}))
    report = await registry.audit_verify()
    assert not report.ok


async def test_concurrent_writes_keep_one_chain(registry: Registry) -> None:
    """Writes racing each other are serialised: the chain stays linear and verifies."""
    await _history(registry)
    results = await asyncio.gather(
        *(
            registry.create_user(
                actor="htb-a", quality=EMPLOYER_A, person=person(f"Racer {i}"), login=f"racer-{i}"
            )
            for i in range(12)
        )
    )
    assert not any(isinstance(r, Refusal) for r in results)
    report = await registry.audit_verify()
    assert report.ok
    assert report.records == 5 + 12


async def test_deleted_head_is_detected_and_stops_writes(registry: Registry) -> None:
    """Without its head row the chain is reported broken, and a change raises instead of
    writing an unchained record."""
    await _history(registry)
    async with registry.engine.begin() as conn:
        await conn.execute(delete(AuditHeadRow))
    report = await registry.audit_verify()
    assert [(p.seq, p.problem) for p in report.problems] == [(5, "chain head is missing")]
    with pytest.raises(AuditHeadMissing):
        await registry.unblock_user(actor="htb-a", login="bob")
    assert (await registry.audit_verify()).records == 5
