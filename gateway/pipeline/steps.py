"""What a set's steps decide and write, as plain functions shared by the two ways sets are run:
one set through its own coroutine (:mod:`.process`), and a batch of sets in a few hops
(:mod:`.batch`).

- :func:`judge` (blocking: it reads the set's files): the checks of a set, names and parts,
  signatures, declarations; accepted (:class:`Checked`), an exact-resend candidate
  (:class:`Resent`: its key is held already), or a refusal;
- :func:`refusal_changes` and :func:`accepted_changes`: what the deciding step writes;
- :func:`attempt_record`: a delivery attempt's row, counted and logged;
- :class:`Acknowledgement` (:func:`plan_acknowledgement`): a set's ACRF, from its names and
  bytes to the finish step that records it: the files it stages, the renames that publish it
  (and the set's delivery and archive), the directories those touch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog

from gateway.core.codes import Code, Rejection, reject
from gateway.core.folders import Folder, out_folder_for
from gateway.core.names import Environment
from gateway.core.types import SenderNumber
from gateway.pipeline.acks import (
    ReturnNames,
    acrf_content,
    publish_return_go,
    publish_return_parts,
    return_names,
    stage_return_set,
)
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
from gateway.pipeline.outcome import AUDIT_ACTOR, SUMMARY_EVENTS
from gateway.pipeline.records import (
    AttemptValues,
    KeyHolder,
    ReturnFileValues,
    SetChanges,
    SetFileRecord,
    SetRecord,
)
from gateway.pipeline.routing import Delivery, Destination, Outcome, Staged, publish_staged
from gateway.pipeline.store import SetState, SetStore, Step
from gateway.registry.audit import AuditRecord
from gateway.registry.types import SenderProfile
from gateway.spool.writer import fsync_dir

log = structlog.get_logger("gateway.pipeline")

Files = tuple[SetFileRecord, ...]


# -- checks -----------------------------------------------------------------------------------


def members_of(ctx: Context, row: SetRecord, files: Files) -> list[MemberFile]:
    """The set's FI and FS files, where they are now (its work directory)."""
    work = ctx.work_dir(row.ticket)
    return [
        MemberFile(name=f.name, size=f.size, sha256=f.sha256, path=work / f.name)
        for f in files
        if f.kind in ("FI", "FS")
    ]


@dataclass(frozen=True, slots=True)
class Checked:
    """A set whose checks passed: its content fingerprint and its signed parts."""

    digests: str
    signed: list[SignedPart]


@dataclass(frozen=True, slots=True)
class Resent:
    """A set whose key an accepted set holds: a duplicate, or an exact resend (same digests)."""

    digests: str
    holder: KeyHolder


def judge(
    ctx: Context,
    row: SetRecord,
    files: Files,
    profile: SenderProfile | None,
    holder: KeyHolder | None,
    now: datetime,
) -> Checked | Resent | Rejection:
    """Check a GO set (blocking: the signatures and declarations read its files): the sender,
    the names and parts, then (when no accepted set holds its key) the signatures and the
    formal checks of its FI files."""
    if profile is None or not profile.active:
        return reject(Code.SENDER_NOT_OWNER, f"sender {row.sender} is not an active sender")
    members = members_of(ctx, row, files)
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
        return complete
    digests = digests_text(members)
    if holder is not None:  # read with the row; the key's constraint decides races
        return Resent(digests, holder)
    signed = verify_signatures(
        complete,
        members,
        registered=profile.signing_certificates,
        trust=ctx.trust,
        policy=ctx.policy,
        now=now,
    )
    if isinstance(signed, Rejection):
        return signed
    entry = ctx.catalogue.get(row.application)
    if entry is not None and entry.declaration is not None:  # format = "xml"
        refused = check_declarations(complete, members, entry.declaration)
        if refused is not None:
            return refused
    return Checked(digests, signed)


def refusal_changes(
    rejection: Rejection, state: str, *, allocate: bool, now: datetime
) -> SetChanges:
    """The columns a refusal writes; ``allocate``: the ACRF's number is allocated with it, so
    its creation instant is stored too (a number belongs to the date of its ``ack_created``)."""
    changes: SetChanges = {
        "state": state,
        "code": int(rejection.code),
        "reason": rejection.reason[:2000],
    }
    if allocate:
        changes["ack_created"] = now
    return changes


def accepted_changes(
    ctx: Context, row: SetRecord, checked: Checked, now: datetime
) -> tuple[dict[str, tuple[str, str]], SetChanges]:
    """The signer of each signed FI, and the columns the accepted (verified) step writes."""
    signers = {
        part.fi: (part.signature.signer_fingerprint, part.signature.signer_subject)
        for part in checked.signed
        if part.signature is not None
    }
    first = next((part.signature for part in checked.signed if part.signature is not None), None)
    destination = ctx.destination(row.application)
    return signers, {
        "ack_created": now,
        "state": SetState.CHECKING,
        "verified": True,
        "signer_fingerprint": first.signer_fingerprint if first else None,
        "signer_subject": first.signer_subject if first else None,
        "service": row.application,
        "destination": destination.describe() if destination is not None else None,
    }


# -- routing ----------------------------------------------------------------------------------


def attempt_record(
    ctx: Context,
    row: SetRecord,
    destination: Destination,
    delivery: Delivery,
    *,
    attempt: int,
    at: datetime,
) -> AttemptValues:
    """The ``route_attempts`` row of a delivery attempt, counted in the metrics and logged (at
    debug when it went through: the set's summary event names the destination)."""
    if ctx.metrics is not None:
        ctx.metrics.routing_attempts_total.labels(
            destination=row.application, outcome=delivery.outcome.value
        ).inc()
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
    return {
        "set_id": row.id,
        "ticket": row.ticket,
        "service": row.application,
        "destination": destination.describe(),
        "attempt": attempt,
        "at": at,
        "outcome": delivery.outcome.value,
        "status": delivery.status,
        "detail": delivery.detail,
    }


# -- acknowledgement --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Acknowledgement:
    """A decided set's ACRF and its last step (see :func:`plan_acknowledgement`).

    The files, in order: :meth:`stage` writes the ACRF under temporary names; once they (and a
    staged delivery) are durable, :meth:`publish_parts` renames the delivery, the ACRF's main
    file and FS into place; once the OUT folder is durable, :meth:`publish_rest` renames its GO
    and archives (or removes) the set's files; once the directories :meth:`touched` lists are
    durable, :meth:`finish_step` is committed.
    """

    row: SetRecord
    source: SetRecord
    """The set whose ACRF this is: the set itself, or the original of an exact resend."""
    final: str
    names: ReturnNames
    folder: Folder
    content: bytes
    created: datetime
    rejection: Rejection | None
    work: Path
    archive: Path | None
    staged: Staged | None
    delivered: AttemptValues | None

    def stage(self, ctx: Context) -> list[Path]:
        """Write the ACRF under temporary names (blocking); the files to make durable before
        :meth:`publish_parts` (the ACRF's and the staged delivery's)."""
        written = stage_return_set(
            ctx.layout,
            sender=self.row.sender,
            folder=self.folder,
            names=self.names,
            content=self.content,
            signer=ctx.signer,
            signed_at=self.created,
        )
        if self.staged is not None:
            written += list(self.staged.staging.iterdir())
        return written

    def staging_dirs(self) -> list[Path]:
        """The staging directory of a delivery, whose entries are synced before it is renamed."""
        return [] if self.staged is None else [self.staged.staging]

    def out_folder(self, ctx: Context) -> Path:
        """The OUT folder the ACRF goes to."""
        return ctx.layout.out_folder(SenderNumber(self.row.sender), self.folder)

    def publish_parts(self, ctx: Context) -> None:
        """Rename the delivery, the ACRF's main file and FS into place (idempotent)."""
        if self.staged is not None:
            publish_staged(self.staged)
        publish_return_parts(
            ctx.layout,
            sender=self.row.sender,
            folder=self.folder,
            names=self.names,
            after_main=lambda: ctx.faults.reached(CrashPoint.AFTER_FO),
        )

    def publish_rest(self, ctx: Context) -> None:
        """Rename the ACRF's GO into place, then archive or remove the set's files."""
        publish_return_go(ctx.layout, sender=self.row.sender, folder=self.folder, names=self.names)
        if self.archive is not None:
            move(self.work, self.archive)
        else:
            remove_tree(self.work, sync=False)

    def publish(self, ctx: Context) -> None:
        """:meth:`publish_parts`, the OUT folder synced, :meth:`publish_rest`: the renames of one
        set on its own (a batch syncs its OUT folders once for all its sets instead)."""
        self.publish_parts(ctx)
        fsync_dir(self.out_folder(ctx))
        self.publish_rest(ctx)

    def touched(self, ctx: Context) -> list[Path]:
        """The directories the renames touched: OUT, work/ (moved from), the archive's
        folder, the delivery's folder."""
        touched = [self.out_folder(ctx), self.work.parent]
        touched += [] if self.archive is None else [self.archive.parent]
        touched += [] if self.staged is None else [self.staged.final.parent]
        return touched

    def finish_step(self, token: str, now: datetime) -> Step:
        """The set's last step: its final state, its ACRF's rows, its delivery, its audit."""
        row, rejection = self.row, self.rejection
        changes: SetChanges = {"state": self.final, "ack_written_at": now, "files_released": True}
        if self.archive is not None:
            changes["archive_path"] = str(self.archive)
            changes["archived_at"] = now
            if self.delivered is not None:
                changes["routed_at"] = self.delivered["at"]
        code = None if rejection is None else int(rejection.code)
        return_rows: list[ReturnFileValues] = [
            {
                "sender": row.sender,
                "folder": self.folder.value,
                "name": name,
                "kind": "acrf",
                "ticket": self.source.ticket,
                "subject": self.source.trigger_name,
                "code": code,
                "written_at": now,
                "purged_at": None,
            }
            for name in self.names.all()
        ]
        audit = AuditRecord(
            at=now.isoformat(),
            actor=AUDIT_ACTOR,
            action=SUMMARY_EVENTS.get(self.final, "set.finished"),
            target=f"set {row.ticket}",
            after={
                "sender": row.sender,
                "set": row.trigger_name,
                "files": row.files,
                "bytes": row.bytes,
                "code": code,
                "destination": row.destination if self.final == SetState.ACKNOWLEDGED else None,
                "ack": self.names.main,
                "signer": row.signer_fingerprint,
            },
        )
        return SetStore.finish_step(
            row.id,
            token,
            return_rows=return_rows,
            attempt=self.delivered,
            audit=audit,
            **changes,
        )

    def report(self, ctx: Context) -> None:
        """Count the ACRF and log it at debug (once its step is committed): the set's summary
        event names it at info (``ack``)."""
        result = "positive" if self.rejection is None else "negative"
        if ctx.metrics is not None:
            ctx.metrics.acks_written_total.labels(result=result).inc()
        log.debug(
            "ack.written",
            ticket=self.source.ticket,
            sender=self.row.sender,
            folder=self.folder.value,
            name=self.names.main,
            result=result,
            resent=self.row.ack_of is not None,
        )


def plan_acknowledgement(
    ctx: Context,
    row: SetRecord,
    source: SetRecord | None,
    delivered: AttemptValues | None,
    staged: Staged | None,
) -> Acknowledgement:
    """The ACRF of a decided set (``source``: the set whose ACRF it is, see
    :attr:`Acknowledgement.source`), delivered or not."""
    if source is None or source.ack_sequence is None or source.ack_created is None:
        raise ValueError(f"set {row.ticket} has no acknowledgement to write")
    accepted = delivered is not None or row.state == SetState.ROUTED
    final = SetState.ACKNOWLEDGED if accepted else row.state
    created = ctx.local(source.ack_created)
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
    return Acknowledgement(
        row=row,
        source=source,
        final=final,
        names=names,
        folder=out_folder_for(source.environment),
        content=content,
        created=created,
        rejection=rejection,
        work=ctx.work_dir(row.ticket),
        archive=ctx.archive_dir(row.sender, row.ticket) if final == SetState.ACKNOWLEDGED else None,
        staged=staged,
        delivered=delivered,
    )
