"""Periodic work: answer refused uploads, purge old return files and archives.

- **Refusals** (``upload_refusals`` rows the channels recorded): each gets a negative ACRF
  naming the refused file and its code, in the OUT folder of the environment the name targets
  (``OUT`` when it cannot be told), at most one per (sender, name) per ``refusal_ack_window``.
  The decision (sequence number, "answered") is committed before the files are written, so a
  crash can lose one answer but never send two within the window.
- **Retention**: return files older than ``out_retention`` are removed from OUT (those the sender
  already deleted are just marked); archived sets older than ``archive_retention`` are removed.
  Every purge is logged.

Timeouts (sets without GO) are intake's business (:func:`gateway.pipeline.intake.take_expired`).
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import select, update

from gateway.core.codes import Code, Rejection
from gateway.core.folders import Folder
from gateway.core.names import Environment, environment_hint, printable
from gateway.core.receipts import format_sequence, new_ticket
from gateway.pipeline.acks import acrf_content, place_return_set, return_names
from gateway.pipeline.context import Context
from gateway.pipeline.files import remove_tree
from gateway.pipeline.tables import RefusalAnswerRow, ReturnFileRow, SetRow
from gateway.spool.tables import UploadRefusalRow

log = structlog.get_logger("gateway.pipeline")

MAX_NAME_IN_ACRF = 120
_SENDER = re.compile(r"[0-9]{6}")


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _code(value: int) -> Code:
    try:
        return Code(value)
    except ValueError:
        return Code.INTERNAL_ERROR


async def answer_refusals(ctx: Context, limit: int = 200) -> int:
    """Answer unanswered refusals; returns how many negative ACRFs were written."""
    engine = ctx.store.engine
    query = (
        select(UploadRefusalRow)
        .where(UploadRefusalRow.answered_at.is_(None))
        .order_by(UploadRefusalRow.id)
        .limit(limit)
    )
    async with engine.connect() as conn:
        refusals = list((await conn.execute(query)).all())
    written = 0
    for refusal in refusals:
        if await _answer(ctx, refusal):
            written += 1
    return written


async def _answer(ctx: Context, refusal: Any) -> bool:
    now = _utc(ctx.clock())
    if not _SENDER.fullmatch(refusal.sender or ""):
        # Only an authenticated sender has an OUT folder; mark it answered and move on.
        async with ctx.store.writing() as conn:
            await conn.execute(
                update(UploadRefusalRow)
                .where(UploadRefusalRow.id == refusal.id)
                .values(answered_at=now)
            )
        return False
    shown = printable(refusal.name, MAX_NAME_IN_ACRF)
    environment = environment_hint(refusal.name)
    if environment is None:
        inbound = Folder.parse(refusal.folder)
        if inbound is not None and inbound.inbound:
            environment = inbound.environment
    folder = Folder.outbound(environment) if environment is not None else Folder.OUT
    env_letter = str(environment) if environment is not None else "R"
    last = await ctx.store.refusal_last_answered(refusal.sender, shown)
    in_window = last is not None and now - _utc(last) < ctx.settings.refusal_ack_window
    sequence = None
    async with ctx.store.writing() as conn:
        claimed = await conn.execute(
            update(UploadRefusalRow)
            .where(UploadRefusalRow.id == refusal.id, UploadRefusalRow.answered_at.is_(None))
            .values(answered_at=now)
        )
        if claimed.rowcount != 1:
            return False  # another worker answered it
        if not in_window:
            sequence = format_sequence(
                await ctx.store.allocate(conn, refusal.sender, ctx.day(now), env_letter)
            )
            upsert = ctx.store.dialect_insert(RefusalAnswerRow).values(
                sender=refusal.sender, name=shown, answered_at=now
            )
            await conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=["sender", "name"], set_={"answered_at": now}
                )
            )
    if sequence is None:
        log.info("refusal.skipped", sender=refusal.sender, name=shown, code=refusal.code)
        return False
    ticket = new_ticket(os.urandom(10), created=now)
    names = return_names(
        application="ACRF",
        gateway_sender=ctx.settings.gateway_sender,
        day=ctx.day(now),
        sequence=sequence,
        environment=Environment(env_letter),
    )
    rejection = Rejection(code=_code(refusal.code), reason=refusal.reason)
    content = acrf_content(
        file_name=shown, ticket=ticket, created=ctx.local(now), rejection=rejection
    )
    await ctx.blocking(
        place_return_set,
        ctx.layout,
        sender=refusal.sender,
        folder=folder,
        names=names,
        content=content,
        signer=ctx.signer,
        signed_at=now,
    )
    await ctx.store.record_return_files(
        [
            {
                "sender": refusal.sender,
                "folder": folder.value,
                "name": name,
                "kind": "refusal",
                "ticket": ticket,
                "subject": shown,
                "code": int(rejection.code),
                "written_at": now,
                "purged_at": None,
            }
            for name in names.all()
        ]
    )
    if ctx.metrics is not None:
        ctx.metrics.acks_written_total.labels(result="negative").inc()
    log.info(
        "refusal.answered",
        sender=refusal.sender,
        name=shown,
        code=int(rejection.code),
        ticket=ticket,
        folder=folder.value,
        ack=names.main,
    )
    return True


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


async def purge_return_files(ctx: Context, limit: int = 1000) -> int:
    """Remove return files older than ``out_retention``; returns how many were removed."""
    now = _utc(ctx.clock())
    cutoff = now - ctx.settings.out_retention
    query = (
        select(ReturnFileRow)
        .where(ReturnFileRow.purged_at.is_(None), ReturnFileRow.written_at < cutoff)
        .limit(limit)
    )
    async with ctx.store.engine.connect() as conn:
        rows = list((await conn.execute(query)).all())
    removed = 0
    for row in rows:
        path = ctx.layout.out_dir / row.sender / row.folder / row.name
        present = await ctx.blocking(_unlink, path)
        async with ctx.store.writing() as conn:
            await conn.execute(
                update(ReturnFileRow).where(ReturnFileRow.id == row.id).values(purged_at=now)
            )
        removed += int(present)
        log.info(
            "return_file.purged",
            sender=row.sender,
            folder=row.folder,
            name=row.name,
            ticket=row.ticket,
            written_at=_utc(row.written_at).isoformat(),
            present=present,
        )
    return removed


async def purge_archives(ctx: Context, limit: int = 500) -> int:
    """Remove archived sets older than ``archive_retention``; returns how many were removed."""
    now = _utc(ctx.clock())
    cutoff = now - ctx.settings.archive_retention
    query = (
        select(SetRow.id, SetRow.ticket, SetRow.sender, SetRow.archive_path, SetRow.archived_at)
        .where(
            SetRow.archived_at.is_not(None),
            SetRow.archive_purged_at.is_(None),
            SetRow.archived_at < cutoff,
        )
        .limit(limit)
    )
    async with ctx.store.engine.connect() as conn:
        rows = list((await conn.execute(query)).all())
    for row in rows:
        path = ctx.archive_dir(row.sender, row.ticket)
        present = await ctx.blocking(remove_tree, path)
        async with ctx.store.writing() as conn:
            await conn.execute(
                update(SetRow).where(SetRow.id == row.id).values(archive_purged_at=now)
            )
        log.info(
            "archive.purged",
            ticket=row.ticket,
            sender=row.sender,
            archived_at=_utc(row.archived_at).isoformat(),
            present=present,
        )
    return len(rows)


async def remove_stray_work_dirs(ctx: Context) -> int:
    """Single-node start-up: remove ``work/<ticket>`` directories no unreleased set names.

    They are left by a crash between linking a set's files and committing the set; the files
    themselves are still in the spool (pending), so nothing is lost.
    """
    work = ctx.state_dir / "work"
    if not work.is_dir():
        return 0
    query = select(SetRow.ticket).where(SetRow.files_released.is_(False))
    async with ctx.store.engine.connect() as conn:
        known = set((await conn.execute(query)).scalars().all())
    stray = [entry for entry in work.iterdir() if entry.name not in known]
    for entry in stray:
        await ctx.blocking(remove_tree, entry)
        log.info("work.removed", ticket=entry.name)
    return len(stray)
