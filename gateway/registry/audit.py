"""The audit trail: every registry change appended to one SHA-256 hash chain, and its verifier.

Each record's hash covers the previous record's hash and the record's own fields (seq, time,
actor, action, target, before, after) in canonical JSON. ``audit_head`` holds the last seq and
hash, so an edited row (hash mismatch), an inserted row (broken link), a deleted row (gap in seq),
a deleted tail (head ahead of the last row) and a deleted head are all detected (SECURITY.md 18).

Writers lock the head row first (:func:`lock_head`): that serialises registry writes on both
SQLite and PostgreSQL, so two transactions can never fork the chain. Before/after values never
carry secrets: callers pass descriptions, not password hashes.

One function appends (:func:`append_records`, Core statements on a connection): the registry's
changes through :func:`append` (inside its ORM session's transaction), and the pipeline's set
outcomes (``set.accepted``, ``set.rejected``, ``set.cancelled``, ``set.expired``), one record per
finished set, written inside the set's final transaction, so outcome and audit commit together
and ``gateway admin audit verify`` detects an edited, inserted or deleted outcome too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.ops.faults import DamagedDatabase
from gateway.registry.models import AuditHeadRow, AuditRow

GENESIS = "0" * 64


def canonical(value: Mapping[str, Any] | None) -> str:
    """Canonical JSON of a before/after value (sorted keys, no spaces); ``None`` is ``{}``."""
    return json.dumps(value or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(
    prev_hash: str,
    *,
    seq: int,
    at: str,
    actor: str,
    action: str,
    target: str,
    before: str,
    after: str,
) -> str:
    """The chain hash of one record."""
    body = json.dumps(
        [seq, at, actor, action, target, before, after], separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256((prev_hash + "\n" + body).encode()).hexdigest()


async def lock_head(session: AsyncSession) -> None:
    """Take the registry write lock: a no-op update of the head row (row lock / SQLite writer)."""
    await session.execute(
        update(AuditHeadRow).where(AuditHeadRow.id == 1).values(seq=AuditHeadRow.seq)
    )


class AuditHeadMissing(DamagedDatabase):
    """The head row is gone: nothing can be appended until the chain is restored (verify says
    so too). Raised, not refused, because it is damage to the database, not a user's mistake."""

    def __init__(self) -> None:
        super().__init__(
            "the audit chain head (audit_head row 1) is missing: nothing can be recorded; "
            "run `gateway admin audit verify` and restore the registry from a backup"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One audit record as read back."""

    seq: int
    at: str
    actor: str
    action: str
    target: str
    before: str
    after: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    """One record to append: when (ISO 8601 text), who, what, on what, and the values before and
    after (descriptions, never secrets)."""

    at: str
    actor: str
    action: str
    target: str
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None


_AUDIT = cast(Table, AuditRow.__table__)
_HEAD = cast(Table, AuditHeadRow.__table__)
_BUMP_HEAD = (
    update(_HEAD)
    .where(_HEAD.c.id == 1)
    .values(seq=_HEAD.c.seq + bindparam("b_count"))
    .returning(_HEAD.c.seq, _HEAD.c.hash)
)
"""Reserve ``b_count`` records: the last one's number, and the hash the first one follows."""
_INSERT = insert(_AUDIT)
_MOVE_HEAD = update(_HEAD).where(_HEAD.c.id == 1).values(hash=bindparam("b_hash"))


def append_records(conn: Connection, records: Sequence[AuditRecord]) -> int:
    """Append ``records`` (at least one), in order, inside ``conn``'s transaction; the last
    one's seq. The one way anything is written to the chain: the registry's changes
    (:func:`append`) and the pipeline's set outcomes (``gateway.pipeline.store``).

    Three Core statements whatever the number of records: the first moves the head's number past
    all of them, which locks the head (PostgreSQL row lock, SQLite writer), so the chain cannot
    fork; the records are chained in memory and inserted in one ``executemany``; the third moves
    the head's hash. :class:`AuditHeadMissing` if the head row is gone.
    """
    if not records:
        raise ValueError("no audit record to append")
    head = conn.execute(_BUMP_HEAD, {"b_count": len(records)}).one_or_none()
    if head is None:
        raise AuditHeadMissing
    last = int(head.seq)
    seq, previous = last - len(records) + 1, str(head.hash)
    rows = []
    for record in records:
        before, after = canonical(record.before), canonical(record.after)
        digest = record_hash(
            previous,
            seq=seq,
            at=record.at,
            actor=record.actor,
            action=record.action,
            target=record.target,
            before=before,
            after=after,
        )
        rows.append(
            {
                "seq": seq,
                "at": record.at,
                "actor": record.actor,
                "action": record.action,
                "target": record.target,
                "before": before,
                "after": after,
                "prev_hash": previous,
                "hash": digest,
            }
        )
        seq, previous = seq + 1, digest
    conn.execute(_INSERT, rows)
    conn.execute(_MOVE_HEAD, {"b_hash": previous})
    return last


async def append(
    session: AsyncSession,
    *,
    at: str,
    actor: str,
    action: str,
    target: str,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> int:
    """Append one record in the caller's transaction (which holds :func:`lock_head`); its seq."""
    record = AuditRecord(
        at=at, actor=actor, action=action, target=target, before=before, after=after
    )
    return await session.run_sync(lambda sync: append_records(sync.connection(), [record]))


@dataclass(frozen=True, slots=True)
class AuditProblem:
    """One break in the chain: the record's seq (or the head) and what is wrong."""

    seq: int
    problem: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditReport:
    """The result of a verification: how many records, and every problem found."""

    records: int
    problems: tuple[AuditProblem, ...]
    anchors: int = 0
    """How many anchors were checked (``audit verify --anchors``)."""

    @property
    def ok(self) -> bool:
        """True when the chain is intact."""
        return not self.problems


async def verify(session: AsyncSession) -> AuditReport:
    """Walk the whole chain and report edited, inserted and deleted records."""
    problems: list[AuditProblem] = []
    prev_hash, expected_seq, count = GENESIS, 1, 0
    result = await session.stream(
        select(AuditRow).order_by(AuditRow.seq).execution_options(yield_per=500)
    )
    async for row in result.scalars():
        count += 1
        if row.seq != expected_seq:
            problems.append(AuditProblem(row.seq, f"records {expected_seq}..{row.seq - 1} missing"))
        if row.prev_hash != prev_hash:
            problems.append(AuditProblem(row.seq, "link to the previous record is broken"))
        recomputed = record_hash(
            row.prev_hash,
            seq=row.seq,
            at=row.at,
            actor=row.actor,
            action=row.action,
            target=row.target,
            before=row.before,
            after=row.after,
        )
        if recomputed != row.hash:
            problems.append(AuditProblem(row.seq, "record was modified (hash mismatch)"))
        prev_hash, expected_seq = row.hash, row.seq + 1
    head = await session.scalar(select(AuditHeadRow).where(AuditHeadRow.id == 1))
    if head is None:
        problems.append(AuditProblem(expected_seq - 1, "chain head is missing"))
    elif head.seq != expected_seq - 1 or head.hash != prev_hash:
        problems.append(AuditProblem(head.seq, "chain head does not match the last record"))
    return AuditReport(records=count, problems=tuple(problems))


async def entries(session: AsyncSession, *, limit: int = 50) -> list[AuditEntry]:
    """The newest ``limit`` records, newest first."""
    rows = await session.scalars(select(AuditRow).order_by(AuditRow.seq.desc()).limit(limit))
    return [
        AuditEntry(
            seq=r.seq,
            at=r.at,
            actor=r.actor,
            action=r.action,
            target=r.target,
            before=r.before,
            after=r.after,
        )
        for r in rows
    ]
