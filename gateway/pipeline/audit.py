"""A set's outcome in the registry's hash-chained audit trail (SECURITY.md 18).

The pipeline appends one record per finished set (``set.accepted``, ``set.rejected``,
``set.cancelled``, ``set.expired``) to the same chain as every registry change, with the same
hash function, so ``gateway admin audit verify`` detects an edited, inserted or deleted outcome.
The record is written inside the set's final transaction: outcome and audit commit together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from gateway.pipeline.statements import BUMP_AUDIT_HEAD, INSERT_AUDIT, MOVE_AUDIT_HEAD
from gateway.registry.audit import canonical, record_hash


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    """A set's outcome for the audit trail."""

    at: str
    action: str
    target: str
    facts: dict[str, Any]


def append_outcome(conn: Connection, record: AuditRecord) -> None:
    """Append ``record`` to the registry's audit chain inside ``conn``'s transaction."""
    append_outcomes(conn, [record])


def append_outcomes(conn: Connection, records: Sequence[AuditRecord]) -> None:
    """Append ``records``, in order, to the registry's audit chain inside ``conn``'s transaction.

    Same chain, same hash function as ``gateway.registry.audit`` (its verifier checks these
    records too), written with three Core statements whatever their number instead of an ORM
    session: the first one moves the head's number past all of them, which locks it
    (PostgreSQL row lock, SQLite writer), so the chain cannot fork; the records are chained in
    memory and inserted in one ``executemany``; the third moves the head's hash.
    """
    if not records:
        return
    head = conn.execute(BUMP_AUDIT_HEAD, {"b_count": len(records)}).one()
    seq, previous = int(head.seq) - len(records) + 1, head.hash
    rows = []
    for record in records:
        before, after = canonical(None), canonical(record.facts)
        digest = record_hash(
            previous,
            seq=seq,
            at=record.at,
            actor="pipeline",
            action=record.action,
            target=record.target,
            before=before,
            after=after,
        )
        rows.append(
            {
                "seq": seq,
                "at": record.at,
                "actor": "pipeline",
                "action": record.action,
                "target": record.target,
                "before": before,
                "after": after,
                "prev_hash": previous,
                "hash": digest,
            }
        )
        seq, previous = seq + 1, digest
    conn.execute(INSERT_AUDIT, rows)
    conn.execute(MOVE_AUDIT_HEAD, {"b_hash": previous})
