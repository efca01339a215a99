"""What a finished set leaves behind besides its ACRF: the routing envelope and the one summary
event (``set.accepted`` / ``set.rejected`` / ``set.cancelled`` / ``set.expired``) with metrics.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog

from gateway.core.types import SenderNumber
from gateway.pipeline.context import Context
from gateway.pipeline.records import SetFileRecord, SetRecord
from gateway.pipeline.routing import Payload
from gateway.pipeline.store import SetState
from gateway.registry.types import SenderProfile

if TYPE_CHECKING:  # steps imports this module (SUMMARY_EVENTS)
    from gateway.pipeline.steps import Acknowledgement

log = structlog.get_logger("gateway.pipeline")

AUDIT_ACTOR = "pipeline"
"""The actor of the set outcomes the pipeline appends to the registry's audit trail."""
SUMMARY_EVENTS: dict[str, str] = {
    SetState.ACKNOWLEDGED: "set.accepted",
    SetState.REJECTED: "set.rejected",
    SetState.CANCELLED: "set.cancelled",
    SetState.EXPIRED: "set.expired",
}
METRIC_OUTCOMES: dict[str, str] = {
    SetState.ACKNOWLEDGED: "accepted",
    SetState.REJECTED: "rejected",
    SetState.CANCELLED: "cancelled",
    SetState.EXPIRED: "expired",
}


async def build_envelope(
    ctx: Context, row: SetRecord, set_files: Sequence[SetFileRecord] | None = None
) -> tuple[bytes, list[Payload]]:
    """The JSON envelope delivered with an accepted set (docs/pipeline.md), and its FI files.

    ``set_files``: the set's file rows when the caller has them (else they are read).
    """
    if set_files is None:
        set_files = await ctx.store.files_of(row.id)
    return envelope_of(ctx, row, set_files, await ctx.profile(SenderNumber(row.sender)))


def envelope_of(
    ctx: Context, row: SetRecord, set_files: Sequence[SetFileRecord], profile: SenderProfile | None
) -> tuple[bytes, list[Payload]]:
    """:func:`build_envelope` from the set's file rows and its sender's profile."""
    files = [f for f in set_files if f.kind == "FI"]
    work = ctx.work_dir(row.ticket)
    document = {
        "ticket": row.ticket,
        "sender": row.sender,
        "enterprise": str(profile.enterprise) if profile else None,
        "quality": {"id": str(profile.quality), "kind": profile.quality_kind} if profile else None,
        "application": row.application,
        "environment": row.environment,
        "set": {
            "go": row.trigger_name,
            "date": row.created_date.isoformat(),
            "sequence": row.sequence,
        },
        "files": [
            {
                "name": f.name,
                "size": f.size,
                "sha256": f.sha256,
                "signer": (
                    {"fingerprint": f.signer_fingerprint, "subject": f.signer_subject}
                    if f.signer_fingerprint
                    else None
                ),
            }
            for f in files
        ],
        "signer": (
            {"fingerprint": row.signer_fingerprint, "subject": row.signer_subject}
            if row.signer_fingerprint
            else None
        ),
        "received": row.received_at.isoformat(),
    }
    envelope = json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"
    return envelope, [Payload(name=f.name, path=work / f.name) for f in files]


def summarize(
    ctx: Context, row: SetRecord, ack: Acknowledgement, durations: dict[str, float]
) -> None:
    """Log the set's one summary event (its final state and its ACRF's name from ``ack``) and
    count it in the metrics."""
    final = ack.final
    total = (ctx.now() - row.received_at).total_seconds()
    event = SUMMARY_EVENTS.get(final, "set.finished")
    log.info(
        event,
        ticket=row.ticket,
        sender=row.sender,
        set=row.trigger_name,
        application=row.application,
        environment=row.environment,
        files=row.files,
        bytes=row.bytes,
        code=row.code,
        reason=row.reason,
        duplicate_of=row.duplicate_of,
        destination=row.destination,
        ack=ack.names.main,
        durations=durations,
        total_seconds=round(total, 4),
    )
    if ctx.metrics is not None:
        ctx.metrics.sets_total.labels(outcome=METRIC_OUTCOMES.get(final, final)).inc()
        ctx.metrics.set_duration_seconds.observe(max(total, 0.0))
