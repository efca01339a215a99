"""``gateway trace TICKET|NAME``: where is my file? Answered from the database alone.

Given a ticket (13 characters ``[0-9A-Z]``) it shows that set; given a file name it finds every
trace of that name: pending or taken uploads, refusals at upload, sets it triggered or belonged
to, and return files with that name. Each set is shown with its whole story: files, checks'
outcome, delivery attempts, acknowledgement files, archive.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.pipeline import store
from gateway.pipeline.records import ReturnFileRecord, SetRecord, SetStory

_TICKET = re.compile(r"[0-9A-Z]{13}")


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat(timespec="seconds")  # aware UTC: its column type (UtcDateTime)


@dataclass(frozen=True, slots=True, kw_only=True)
class SetTrace:
    """One set's story."""

    ticket: str
    sender: str
    folder: str
    trigger: str
    trigger_name: str
    state: str
    finished: bool
    code: int | None
    reason: str | None
    received_at: str | None
    routed_at: str | None
    destination: str | None
    duplicate_of: str | None
    signer_subject: str | None
    files: list[dict[str, Any]]
    attempts: list[dict[str, Any]]
    acknowledgement: list[dict[str, Any]]
    archive: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceReport:
    """Everything the database knows about a ticket or a file name."""

    query: str
    sets: list[SetTrace] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    refusals: list[dict[str, Any]] = field(default_factory=list)
    return_files: list[dict[str, Any]] = field(default_factory=list)

    @property
    def found(self) -> bool:
        """Whether anything matched."""
        return bool(self.sets or self.pending or self.refusals or self.return_files)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "query": self.query,
            "sets": [dataclasses.asdict(s) for s in self.sets],
            "pending": self.pending,
            "refusals": self.refusals,
            "return_files": self.return_files,
        }


def _set_trace(story: SetStory) -> SetTrace:
    row = story.row
    return SetTrace(
        ticket=row.ticket,
        sender=row.sender,
        folder=row.folder,
        trigger=row.trigger,
        trigger_name=row.trigger_name,
        state=row.state,
        finished=bool(row.finished),
        code=row.code,
        reason=row.reason,
        received_at=_iso(row.received_at),
        routed_at=_iso(row.routed_at),
        destination=row.destination,
        duplicate_of=row.duplicate_of,
        signer_subject=row.signer_subject,
        files=[
            {"name": f.name, "size": f.size, "sha256": f.sha256, "arrived_at": _iso(f.arrived_at)}
            for f in story.files
        ],
        attempts=[
            {
                "attempt": a.attempt,
                "at": _iso(a.at),
                "outcome": a.outcome,
                "status": a.status,
                "detail": a.detail,
            }
            for a in story.attempts
        ],
        acknowledgement=[
            {
                "folder": r.folder,
                "name": r.name,
                "written_at": _iso(r.written_at),
                "purged_at": _iso(r.purged_at),
            }
            for r in story.acknowledgement
        ],
        archive=None if row.archive_purged_at is not None else row.archive_path,
    )


async def trace(engine: AsyncEngine, query: str) -> TraceReport:
    """Look ``query`` (a ticket or a file name) up; see the module docstring."""
    async with engine.connect() as conn:
        return await conn.run_sync(_trace, query)


def _trace(conn: Connection, query: str) -> TraceReport:
    """:func:`trace` on one connection (the store's reads, in order)."""
    report = TraceReport(query=query)
    ticket = _TICKET.fullmatch(query) is not None
    set_rows: dict[int, SetRecord] = {}
    if ticket:
        for row in store.sets_of_ticket(conn, query):
            set_rows[row.id] = row
        for ret in store.return_files_of_ticket(conn, query):
            report.return_files.append(_return_dict(ret))
    for row in store.sets_named(conn, query):
        set_rows[row.id] = row
    for upload in store.pending_named(conn, query):
        report.pending.append(
            {
                "sender": upload.sender,
                "folder": upload.folder,
                "name": upload.name,
                "size": upload.size,
                "arrived_at": _iso(upload.arrived_at),
                "channel": upload.channel,
            }
        )
    for refusal in store.refusals_named(conn, query):
        report.refusals.append(
            {
                "sender": refusal.sender,
                "folder": refusal.folder,
                "code": refusal.code,
                "reason": refusal.reason,
                "at": _iso(refusal.at),
                "answered_at": _iso(refusal.answered_at),
            }
        )
    for ret in store.return_files_named(conn, query):
        if not ticket:
            report.return_files.append(_return_dict(ret))
            if ret.ticket is not None and ret.kind == "acrf":
                for row in store.sets_of_ticket(conn, ret.ticket):
                    set_rows[row.id] = row
    for row in sorted(set_rows.values(), key=lambda r: r.id):
        report.sets.append(_set_trace(store.set_story(conn, row)))
    return report


def _return_dict(row: ReturnFileRecord) -> dict[str, Any]:
    return {
        "sender": row.sender,
        "folder": row.folder,
        "name": row.name,
        "kind": row.kind,
        "ticket": row.ticket,
        "subject": row.subject,
        "code": row.code,
        "written_at": _iso(row.written_at),
        "purged_at": _iso(row.purged_at),
    }


def render(report: TraceReport) -> str:
    """Human-readable text, one fact per line."""
    if not report.found:
        return f"nothing is known about {report.query!r}\n"
    lines: list[str] = []
    for item in report.sets:
        outcome = item.state if item.code is None else f"{item.state} ({item.code}: {item.reason})"
        lines.append(f"set {item.ticket}  sender {item.sender}  {item.folder}/{item.trigger_name}")
        lines.append(f"  received   {item.received_at}  trigger {item.trigger}")
        lines.append(f"  outcome    {outcome}{'' if item.finished else '  (in progress)'}")
        if item.duplicate_of:
            lines.append(f"  earlier    {item.duplicate_of}")
        if item.signer_subject:
            lines.append(f"  signer     {item.signer_subject}")
        for f in item.files:
            lines.append(f"  file       {f['name']}  {f['size']} bytes  sha256 {f['sha256']}")
        for a in item.attempts:
            status = f" HTTP {a['status']}" if a["status"] else ""
            lines.append(f"  delivery   #{a['attempt']} {a['at']} {a['outcome']}{status}")
        if item.routed_at:
            lines.append(f"  routed     {item.routed_at}  to {item.destination}")
        for ack in item.acknowledgement:
            gone = f"  (purged {ack['purged_at']})" if ack["purged_at"] else ""
            lines.append(f"  ack        {ack['folder']}/{ack['name']}  {ack['written_at']}{gone}")
        if item.archive:
            lines.append(f"  archive    {item.archive}")
    for p in report.pending:
        lines.append(
            f"pending upload {p['folder']}/{p['name']}  sender {p['sender']}  {p['size']} bytes  "
            f"since {p['arrived_at']} (waiting for its GO)"
        )
    for r in report.refusals:
        answered = f"answered {r['answered_at']}" if r["answered_at"] else "not answered yet"
        lines.append(
            f"refused at upload {r['at']}  sender {r['sender']}  {r['folder']}: "
            f"{r['code']}: {r['reason']}  ({answered})"
        )
    for f in report.return_files:
        gone = f"  (purged {f['purged_at']})" if f["purged_at"] else ""
        lines.append(f"return file {f['folder']}/{f['name']}  {f['kind']}  {f['written_at']}{gone}")
    return "\n".join(lines) + "\n"
