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
from pathlib import Path

import structlog

from gateway.core.codes import Code, Rejection
from gateway.core.folders import Folder
from gateway.core.names import Environment, environment_hint, printable
from gateway.core.receipts import new_ticket
from gateway.pipeline.acks import acrf_content, place_return_set, return_names
from gateway.pipeline.context import Context
from gateway.pipeline.files import remove_tree
from gateway.pipeline.records import RefusalRecord

log = structlog.get_logger("gateway.pipeline")

MAX_NAME_IN_ACRF = 120
_SENDER = re.compile(r"[0-9]{6}")


def _code(value: int) -> Code:
    try:
        return Code(value)
    except ValueError:
        return Code.INTERNAL_ERROR


async def answer_refusals(ctx: Context, limit: int = 200) -> int:
    """Answer unanswered refusals; returns how many negative ACRFs were written."""
    refusals = await ctx.store.unanswered_refusals(limit)
    written = 0
    for refusal in refusals:
        if await _answer(ctx, refusal):
            written += 1
    return written


async def _answer(ctx: Context, refusal: RefusalRecord) -> bool:
    now = ctx.now()
    if not _SENDER.fullmatch(refusal.sender or ""):
        # Only an authenticated sender has an OUT folder; mark it answered and move on.
        await ctx.store.refusal_answered(refusal.id, now)
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
    in_window = last is not None and now - last < ctx.settings.refusal_ack_window
    answer = None if in_window else (refusal.sender, shown, ctx.day(now), env_letter)
    claim = await ctx.store.claim_refusal(refusal.id, now, answer=answer)
    if not claim.claimed:
        return False  # another worker answered it
    sequence = claim.sequence
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
    now = ctx.now()
    cutoff = now - ctx.settings.out_retention
    rows = await ctx.store.return_files_to_purge(cutoff, limit)
    removed = 0
    for row in rows:
        path = ctx.layout.out_dir / row.sender / row.folder / row.name
        present = await ctx.blocking(_unlink, path)
        await ctx.store.return_file_purged(row.id, now)
        removed += int(present)
        log.info(
            "return_file.purged",
            sender=row.sender,
            folder=row.folder,
            name=row.name,
            ticket=row.ticket,
            written_at=row.written_at.isoformat(),
            present=present,
        )
    return removed


async def purge_archives(ctx: Context, limit: int = 500) -> int:
    """Remove archived sets older than ``archive_retention``; returns how many were removed."""
    now = ctx.now()
    cutoff = now - ctx.settings.archive_retention
    rows = await ctx.store.archives_to_purge(cutoff, limit)
    for row in rows:
        path = ctx.archive_dir(row.sender, row.ticket)
        present = await ctx.blocking(remove_tree, path)
        await ctx.store.archive_purged(row.id, now)
        log.info(
            "archive.purged",
            ticket=row.ticket,
            sender=row.sender,
            archived_at=row.archived_at.isoformat(),
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
    known = await ctx.store.unreleased_tickets()
    stray = [entry for entry in work.iterdir() if entry.name not in known]
    for entry in stray:
        await ctx.blocking(remove_tree, entry)
        log.info("work.removed", ticket=entry.name)
    return len(stray)
