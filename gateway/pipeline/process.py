"""Processing of one claimed set: check → route → acknowledge → release, each step committed.

The set's row says how far it got, so a worker that takes it over after a crash continues from
the last committed step:

    state      verified  ack_sequence  next step
    received   -         -             (claim turns it into checking)
    checking   no        -             checks: rejected (+ sequence) or verified (key reserved)
    checking   yes       -             route: routed (+ sequence), retry later, or 940
    routed / rejected / cancelled / expired, not finished
                                       write the ACRF (same names, same bytes), archive or
                                       remove the files, finish

Each commit waits for the other sets in hand (:mod:`.turns`), so the sets processed together
commit their steps in one transaction; that changes nothing of the table above: each set's
steps stay in their order, and a batch commits all of its sets' steps or none.

Every step is idempotent: the checks are pure; delivery is keyed by the ticket (a redelivery
after a crash finds the ticket's directory, or POSTs with the same ``Idempotency-Key``); the
ACRF's sequence number and creation instant are stored before it is written. The only
exactly-once decisions (which set takes a key, which sequence number an ACRF gets) are made by
database constraints.
"""

from __future__ import annotations

import time
from datetime import datetime

import structlog

from gateway.core.codes import Code, Rejection, reject
from gateway.core.types import SenderNumber
from gateway.pipeline.context import Context
from gateway.pipeline.faults import CrashPoint
from gateway.pipeline.outcome import build_envelope, summarize
from gateway.pipeline.records import (
    AttemptValues,
    Claim,
    KeyHolder,
    SetRecord,
)
from gateway.pipeline.routing import (
    DEFAULT_BACKOFF,
    DEFAULT_DEADLINE,
    MAX_BACKOFF,
    Delivery,
    DirectoryDestination,
    HttpsDestination,
    Outcome,
    Staged,
    deliver_https,
    stage_directory,
)
from gateway.pipeline.steps import (
    Acknowledgement,
    Files,
    Resent,
    accepted_changes,
    attempt_record,
    judge,
    members_of,
    plan_acknowledgement,
    refusal_changes,
)
from gateway.pipeline.store import Accepted, SetState

log = structlog.get_logger("gateway.pipeline")


class Retry(Exception):
    """The set was handed back to wait for ``not_before`` (a routing retry)."""

    def __init__(self, not_before: datetime) -> None:
        super().__init__(not_before.isoformat())
        self.not_before = not_before


async def process_set(ctx: Context, claim: Claim) -> str | None:
    """Take a claimed set as far as it can go; its final state, or None when it waits."""
    # The row, its files and the holder of its key: read by the claim, or now (a set retried).
    loaded = claim.loaded or await ctx.store.load_for_check(claim.set_id)
    token = claim.token
    row, files = loaded.row, loaded.files
    ctx.faults.reached(CrashPoint.AFTER_CLAIM)
    durations: dict[str, float] = {}
    if row.state in (SetState.RECEIVED, SetState.CHECKING) and not row.verified:
        started = time.monotonic()
        row, files = await _check(ctx, row, token, files, loaded.holder)
        durations["check"] = round(time.monotonic() - started, 4)
        ctx.faults.reached(CrashPoint.AFTER_VERIFY)
    delivered: AttemptValues | None = None
    staged: Staged | None = None
    if row.state == SetState.CHECKING and row.verified:
        started = time.monotonic()
        try:
            row, delivered, staged = await _route(ctx, row, token, files)
        except Retry as retry:
            await ctx.store.release(row.id, token, not_before=retry.not_before)
            return None
        durations["route"] = round(time.monotonic() - started, 4)
    if row.ack_sequence is None and row.ack_of is None:
        # Decided at intake (expired) without a sequence number yet.
        rejection = reject(Code(row.code or Code.INTERNAL_ERROR), row.reason)
        row = await _reject(ctx, row, token, row.state, rejection)
    started = time.monotonic()
    ack = await _acknowledge_and_release(ctx, row, token, delivered, staged)
    durations["ack"] = round(time.monotonic() - started, 4)
    # The row as of the outcome: nothing reported changed.
    summarize(ctx, row, ack, durations)
    return ack.final


async def abandon_set(ctx: Context, claim: Claim, rejection: Rejection) -> str | None:
    """End a set that keeps failing with a bug: refuse it with ``rejection`` (999 and the
    ticket of its last failure) through the same steps as any refusal (its key released, the
    negative ACRF written, its files removed, finished); its final state.

    Only a set not decided yet (being checked or routed) is ended so: a set already decided
    (routed, or refused with its ACRF left to write) keeps its outcome, and None says so (its
    ACRF is written by the same step a refusal's would be, so it stays in the retry loop).
    """
    row = (await ctx.store.load_for_check(claim.set_id)).row
    if row.finished or row.state not in (SetState.RECEIVED, SetState.CHECKING):
        return None
    if row.verified:  # its key was reserved by the checks: a resend must be accepted
        await ctx.store.release_key(row.id)
    row = await _reject(ctx, row, claim.token, SetState.REJECTED, rejection)
    ack = await _acknowledge_and_release(ctx, row, claim.token, None, None)
    summarize(ctx, row, ack, {})
    return ack.final


# -- checks -----------------------------------------------------------------------------------


async def _reject(
    ctx: Context, row: SetRecord, token: str, state: str, rejection: Rejection
) -> SetRecord:
    """Commit a refusal (the record as committed); the ACRF number is allocated now unless the
    set already holds one."""
    now = ctx.now()
    allocate = row.ack_sequence is None
    changes = refusal_changes(rejection, state, allocate=allocate, now=now)
    async with ctx.turns.turn():
        return await ctx.store.decide(
            row,
            token,
            recipient=row.sender if allocate else None,
            day=ctx.day(now),
            environment=row.environment,
            **changes,
        )


async def _check(
    ctx: Context, row: SetRecord, token: str, files: Files, holder: KeyHolder | None
) -> tuple[SetRecord, Files]:
    """Judge the set and commit the outcome: accepted (verified, its key reserved), refused or
    a duplicate; the record and files as committed."""
    if row.trigger == "TD":
        removed = len(members_of(ctx, row, files))
        reason = f"set cancelled by {row.trigger_name}; {removed} file(s) removed, nothing routed"
        rejection = reject(Code.SET_CANCELLED, reason)
        return await _reject(ctx, row, token, SetState.CANCELLED, rejection), files
    now = ctx.now()
    profile = await ctx.profile(SenderNumber(row.sender))
    verdict = await ctx.blocking(judge, ctx, row, files, profile, holder, now)
    if isinstance(verdict, Rejection):
        return await _reject(ctx, row, token, SetState.REJECTED, verdict), files
    if isinstance(verdict, Resent):
        return await _duplicate(ctx, row, token, verdict.holder, verdict.digests), files
    signers, changes = accepted_changes(ctx, row, verdict, now)
    async with ctx.turns.turn():
        result = await ctx.store.accept_key(
            row, token, files, digests=verdict.digests, signers=signers, day=ctx.day(now), **changes
        )
    if isinstance(result, Accepted):
        return result.row, result.files
    return await _duplicate(ctx, row, token, result, verdict.digests), files


async def _duplicate(
    ctx: Context, row: SetRecord, token: str, earlier: KeyHolder, digests: str
) -> SetRecord:
    """133; an exact resend (same names, same bytes) gets the original ACRF again instead."""
    original = await ctx.store.set_by_ticket(earlier.ticket)
    rejection = reject(
        Code.ALREADY_SENT,
        f"{row.trigger_name} was already sent and accepted under ticket {earlier.ticket}",
    )
    if earlier.digests == digests and original is not None and original.ack_sequence is not None:
        async with ctx.turns.turn():
            return await ctx.store.answer_resend(
                row,
                token,
                code=int(rejection.code),
                reason=rejection.reason + " (exact resend: its acknowledgement is sent again)",
                earlier=earlier.ticket,
            )
    now = ctx.now()
    return await ctx.store.decide(
        row,
        token,
        recipient=row.sender,
        day=ctx.day(now),
        environment=row.environment,
        state=SetState.REJECTED,
        code=int(rejection.code),
        reason=rejection.reason,
        duplicate_of=earlier.ticket,
        ack_created=now,
    )


# -- routing ----------------------------------------------------------------------------------


Routed = tuple[SetRecord, AttemptValues | None, Staged | None]


async def _route(ctx: Context, row: SetRecord, token: str, files: Files) -> Routed:
    """Deliver the set. Delivered: the attempt's row (committed with the ACRF's finish) and,
    for a directory, the delivery staged (published with the ACRF once durable); refused for
    good: None, with the record as rejected; to retry later: raises :class:`Retry`."""
    destination = ctx.destination(row.application)
    if destination is None:
        await ctx.store.release_key(row.id)
        rejection = reject(
            Code.APPLICATION_NOT_ALLOWED, f"no online service is configured for {row.application}"
        )
        return await _reject(ctx, row, token, SetState.REJECTED, rejection), None, None
    envelope, payload = await build_envelope(ctx, row, files)
    attempt = await ctx.store.attempts(row.id) + 1 if row.route_deadline is not None else 1
    now = ctx.now()
    staged: Staged | None = None
    try:
        if isinstance(destination, DirectoryDestination):
            staged = await ctx.blocking(
                stage_directory,
                destination,
                ticket=row.ticket,
                envelope=envelope,
                payload=payload,
            )
            final = destination.path / row.ticket
            delivery = Delivery(
                Outcome.ALREADY if staged is None else Outcome.DELIVERED, detail=str(final)
            )
        else:
            with ctx.turns.away():  # timeouts and retries: the other sets do not wait for it
                delivery = await ctx.blocking(
                    deliver_https,
                    destination,
                    ticket=row.ticket,
                    envelope=envelope,
                    payload=payload,
                    ssl_context=ctx.ssl_context,
                    allowed_urls=ctx.allowed_urls,
                )
    except OSError as exc:
        delivery = Delivery(Outcome.FAILED, detail=f"{type(exc).__name__}: {exc}"[:500])
    record = attempt_record(ctx, row, destination, delivery, attempt=attempt, at=now)
    if delivery.outcome is not Outcome.FAILED:
        ctx.faults.reached(CrashPoint.AFTER_ROUTE)
        return row, record, staged
    await ctx.store.record_attempt(record)
    if isinstance(destination, HttpsDestination):
        deadline_after, delay = destination.deadline, destination.retry_delay(attempt)
    else:
        deadline_after = DEFAULT_DEADLINE
        delay = min(DEFAULT_BACKOFF * 2 ** (attempt - 1), MAX_BACKOFF)
    deadline = row.route_deadline if row.route_deadline else now + deadline_after
    if row.route_deadline is None:
        row = await ctx.store.set_route_deadline(row, token, deadline)
    if now + delay <= deadline:
        raise Retry(now + delay)
    log.critical(
        "route.abandoned",
        alert=True,
        ticket=row.ticket,
        sender=row.sender,
        destination=destination.describe(),
        attempts=attempt,
        code=int(Code.DESTINATION_UNAVAILABLE),
    )
    await ctx.store.release_key(row.id)
    rejection = reject(
        Code.DESTINATION_UNAVAILABLE,
        f"the online service for {row.application} did not confirm the set after "
        f"{attempt} attempt(s); send it again later",
    )
    return await _reject(ctx, row, token, SetState.REJECTED, rejection), None, None


# -- acknowledgement and release --------------------------------------------------------------


async def _acknowledge_and_release(
    ctx: Context,
    row: SetRecord,
    token: str,
    delivered: AttemptValues | None,
    staged: Staged | None,
) -> Acknowledgement:
    """Write the ACRF, publish a staged delivery, archive or remove the set's files, finish;
    the ACRF written.

    Files: the ACRF is written under temporary names (one hop); then one hop for the sets in
    hand (:mod:`.flush`) syncs their files, renames each delivery and ACRF into place, archives
    or removes each set's files and syncs the directories touched; then the commit that
    finishes them.
    """
    source: SetRecord | None = row
    if row.ack_of is not None:
        source = await ctx.store.set_by_ticket(row.ack_of)
    ack = plan_acknowledgement(ctx, row, source, delivered, staged)
    written = await ctx.blocking(ack.stage, ctx)
    async with ctx.turns.turn():  # one hop for the sets in hand: sync, publish, sync
        await ctx.flush(
            ctx.blocking,
            files=written,
            directories=ack.staging_dirs(),
            then=lambda: ack.publish(ctx),
            after=ack.touched(ctx),
        )
    step = ack.finish_step(token, ctx.now())
    async with ctx.turns.turn():
        await ctx.store.finish(step)
    ack.report(ctx)
    return ack
