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
from pathlib import Path

import structlog

from gateway.core.codes import Code, Rejection, reject
from gateway.core.folders import out_folder_for
from gateway.core.names import Environment
from gateway.core.types import SenderNumber
from gateway.pipeline.acks import (
    acrf_content,
    publish_return_set,
    return_names,
    stage_return_set,
)
from gateway.pipeline.audit import AuditRecord
from gateway.pipeline.checks import (
    MemberFile,
    NameRules,
    SignedPart,
    assemble,
    check_declarations,
    digests_text,
    verify_signatures,
)
from gateway.pipeline.context import Context
from gateway.pipeline.faults import CrashPoint
from gateway.pipeline.files import move, remove_tree
from gateway.pipeline.outcome import SUMMARY_EVENTS, build_envelope, summarize
from gateway.pipeline.records import (
    AttemptValues,
    Claim,
    KeyHolder,
    ReturnFileValues,
    SetChanges,
    SetFileRecord,
    SetRecord,
    utc,
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
    publish_staged,
    stage_directory,
)
from gateway.pipeline.store import Accepted, SetState

log = structlog.get_logger("gateway.pipeline")

Files = tuple[SetFileRecord, ...]


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
    final = await _acknowledge_and_release(ctx, row, token, delivered, staged)
    durations["ack"] = round(time.monotonic() - started, 4)
    summarize(ctx, row, final, durations)  # the row as of the outcome: nothing reported changed
    return final


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
    final = await _acknowledge_and_release(ctx, row, claim.token, None, None)
    summarize(ctx, row, final, {})
    return final


# -- checks -----------------------------------------------------------------------------------


def _members(ctx: Context, row: SetRecord, files: Files) -> list[MemberFile]:
    work = ctx.work_dir(row.ticket)
    return [
        MemberFile(name=f.name, size=f.size, sha256=f.sha256, path=work / f.name)
        for f in files
        if f.kind in ("FI", "FS")
    ]


async def _reject(
    ctx: Context, row: SetRecord, token: str, state: str, rejection: Rejection
) -> SetRecord:
    """Commit a refusal (the record as committed); the ACRF number is allocated now unless the
    set already holds one."""
    now = utc(ctx.clock())
    allocate = row.ack_sequence is None
    # A number allocated earlier belongs to the date of its ack_created: keep both together.
    changes: SetChanges = {
        "state": state,
        "code": int(rejection.code),
        "reason": rejection.reason[:2000],
    }
    if allocate:
        changes["ack_created"] = now
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
        removed = len(_members(ctx, row, files))
        reason = f"set cancelled by {row.trigger_name}; {removed} file(s) removed, nothing routed"
        rejection = reject(Code.SET_CANCELLED, reason)
        return await _reject(ctx, row, token, SetState.CANCELLED, rejection), files
    now = utc(ctx.clock())
    members = _members(ctx, row, files)
    profile = await ctx.profile(SenderNumber(row.sender))
    if profile is None or not profile.active:
        rejection = reject(Code.SENDER_NOT_OWNER, f"sender {row.sender} is not an active sender")
        return await _reject(ctx, row, token, SetState.REJECTED, rejection), files
    rules = NameRules(
        folder=row.folder,
        sender=SenderNumber(row.sender),
        applications=profile.applications,
        today=ctx.day(now),
        max_age_days=ctx.settings.max_file_age.days,
        max_parts=ctx.limits.max_parts,
        parted=ctx.parted,
        max_file_bytes=ctx.limits.max_file_bytes,
    )
    complete = assemble(row.trigger_name, members, rules, now=now)
    if isinstance(complete, Rejection):
        return await _reject(ctx, row, token, SetState.REJECTED, complete), files
    digests = digests_text(members)
    if holder is not None:  # read with the row; accept_key's constraint decides races
        return await _duplicate(ctx, row, token, holder, digests), files
    entry = ctx.catalogue.get(row.application)
    declaration = entry.declaration if entry is not None else None  # format = "xml"

    def verify() -> list[SignedPart] | Rejection:
        # One hop: the signatures, then (when they hold) the formal checks of the FI files.
        signed = verify_signatures(
            complete,
            members,
            registered=profile.signing_certificates,
            trust=ctx.trust,
            policy=ctx.policy,
            now=now,
        )
        if isinstance(signed, Rejection) or declaration is None:
            return signed
        return check_declarations(complete, members, declaration) or signed

    signed = await ctx.blocking(verify)
    if isinstance(signed, Rejection):
        return await _reject(ctx, row, token, SetState.REJECTED, signed), files
    signers = {
        part.fi: (part.signature.signer_fingerprint, part.signature.signer_subject)
        for part in signed
        if part.signature is not None
    }
    first = next((part.signature for part in signed if part.signature is not None), None)
    destination = ctx.destination(row.application)
    async with ctx.turns.turn():
        result = await ctx.store.accept_key(
            row,
            token,
            files,
            digests=digests,
            signers=signers,
            day=ctx.day(now),
            ack_created=now,
            state=SetState.CHECKING,
            verified=True,
            signer_fingerprint=first.signer_fingerprint if first else None,
            signer_subject=first.signer_subject if first else None,
            service=row.application,
            destination=destination.describe() if destination is not None else None,
        )
    if isinstance(result, Accepted):
        return result.row, result.files
    return await _duplicate(ctx, row, token, result, digests), files


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
            return await ctx.store.advance(
                row,
                token,
                state=SetState.REJECTED,
                code=int(rejection.code),
                reason=rejection.reason + " (exact resend: its acknowledgement is sent again)",
                duplicate_of=earlier.ticket,
                ack_of=earlier.ticket,
            )
    now = utc(ctx.clock())
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


def staged_dirs(staged: Staged | None) -> list[Path]:
    """The staging directory of a delivery, whose entries are synced before it is renamed."""
    return [] if staged is None else [staged.staging]


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
    now = utc(ctx.clock())
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
    record: AttemptValues = {
        "set_id": row.id,
        "ticket": row.ticket,
        "service": row.application,
        "destination": destination.describe(),
        "attempt": attempt,
        "at": now,
        "outcome": delivery.outcome.value,
        "status": delivery.status,
        "detail": delivery.detail,
    }
    if ctx.metrics is not None:
        ctx.metrics.routing_attempts_total.labels(
            destination=row.application, outcome=delivery.outcome.value
        ).inc()
    # A delivery is in the set's summary event (destination, route duration): debug; a failed
    # attempt is worth a line of its own.
    (log.debug if delivery.outcome is not Outcome.FAILED else log.info)(
        "route.attempted",
        ticket=row.ticket,
        sender=row.sender,
        destination=destination.describe(),
        attempt=attempt,
        outcome=delivery.outcome.value,
        status=delivery.status,
        detail=delivery.detail,
    )
    if delivery.outcome is not Outcome.FAILED:
        ctx.faults.reached(CrashPoint.AFTER_ROUTE)
        return row, record, staged
    await ctx.store.record_attempt(record)
    if isinstance(destination, HttpsDestination):
        deadline_after, delay = destination.deadline, destination.retry_delay(attempt)
    else:
        deadline_after = DEFAULT_DEADLINE
        delay = min(DEFAULT_BACKOFF * 2 ** (attempt - 1), MAX_BACKOFF)
    deadline = utc(row.route_deadline) if row.route_deadline else now + deadline_after
    if row.route_deadline is None:
        row = await ctx.store.advance(row, token, route_deadline=deadline)
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
) -> str:
    """Write the ACRF, publish a staged delivery, archive or remove the set's files, finish.

    Files: the ACRF is written under temporary names (one hop); then one hop for the sets in
    hand (:mod:`.flush`) syncs their files, renames each delivery and ACRF into place, archives
    or removes each set's files and syncs the directories touched; then the commit that
    finishes them.
    """
    source: SetRecord | None = row
    if row.ack_of is not None:
        source = await ctx.store.set_by_ticket(row.ack_of)
    if source is None or source.ack_sequence is None or source.ack_created is None:
        raise ValueError(f"set {row.ticket} has no acknowledgement to write")
    accepted = delivered is not None or row.state == SetState.ROUTED
    final = SetState.ACKNOWLEDGED if accepted else row.state
    created = ctx.local(utc(source.ack_created))
    names = return_names(
        application="ACRF",
        gateway_sender=ctx.settings.gateway_sender,
        day=created.date(),
        sequence=source.ack_sequence,
        environment=Environment(source.environment),
    )
    rejection = None
    if not accepted and source.state not in (SetState.ROUTED, SetState.ACKNOWLEDGED):
        code = Code(source.code or Code.INTERNAL_ERROR)
        rejection = Rejection(code=code, reason=source.reason or "")
    content = acrf_content(
        file_name=source.trigger_name, ticket=source.ticket, created=created, rejection=rejection
    )
    folder = out_folder_for(source.environment)
    work = ctx.work_dir(row.ticket)
    archive = ctx.archive_dir(row.sender, row.ticket) if final == SetState.ACKNOWLEDGED else None

    def write_acrf() -> list[Path]:
        return stage_return_set(
            ctx.layout,
            sender=row.sender,
            folder=folder,
            names=names,
            content=content,
            signer=ctx.signer,
            signed_at=created,
        )

    def publish() -> None:
        if staged is not None:
            publish_staged(staged)
        publish_return_set(
            ctx.layout,
            sender=row.sender,
            folder=folder,
            names=names,
            after_main=lambda: ctx.faults.reached(CrashPoint.AFTER_FO),
        )
        if archive is not None:
            move(work, archive)
        else:
            remove_tree(work, sync=False)

    written = await ctx.blocking(write_acrf)
    if staged is not None:
        written += list(staged.staging.iterdir())
    # The renames: the delivery's folder, OUT, the archive's folder and work/ (both moved from).
    touched = [ctx.layout.out_folder(SenderNumber(row.sender), folder), work.parent]
    touched += [] if archive is None else [archive.parent]
    touched += [] if staged is None else [staged.final.parent]
    async with ctx.turns.turn():  # one hop for the sets in hand: sync, publish, sync
        await ctx.flush(
            ctx.blocking,
            files=written,
            directories=staged_dirs(staged),
            then=publish,
            after=touched,
        )
    now = utc(ctx.clock())
    changes: SetChanges = {"state": final, "ack_written_at": now, "files_released": True}
    if archive is not None:
        changes["archive_path"] = str(archive)
        changes["archived_at"] = now
        if delivered is not None:
            changes["routed_at"] = delivered["at"]
    return_rows: list[ReturnFileValues] = [
        {
            "sender": row.sender,
            "folder": folder.value,
            "name": name,
            "kind": "acrf",
            "ticket": source.ticket,
            "subject": source.trigger_name,
            "code": None if rejection is None else int(rejection.code),
            "written_at": now,
            "purged_at": None,
        }
        for name in names.all()
    ]
    audit = AuditRecord(
        at=now.isoformat(),
        action=SUMMARY_EVENTS.get(final, "set.finished"),
        target=f"set {row.ticket}",
        facts={
            "sender": row.sender,
            "set": row.trigger_name,
            "files": row.files,
            "bytes": row.bytes,
            "code": None if rejection is None else int(rejection.code),
            "destination": row.destination if final == SetState.ACKNOWLEDGED else None,
            "ack": names.main,
            "signer": row.signer_fingerprint,
        },
    )
    async with ctx.turns.turn():
        await ctx.store.finish(
            row.id,
            token,
            return_rows=return_rows,
            attempt=delivered,
            audit=audit,
            **changes,
        )
    if ctx.metrics is not None:
        ctx.metrics.acks_written_total.labels(
            result="positive" if rejection is None else "negative"
        ).inc()
    log.info(
        "ack.written",
        ticket=source.ticket,
        sender=row.sender,
        folder=folder.value,
        name=names.main,
        result="positive" if rejection is None else "negative",
        resent=row.ack_of is not None,
    )
    return final
