"""The batch path: claimed sets that need only local work, taken to their ACRF together.

Why: a set run through its own coroutine (:mod:`.process`) makes about ten thread hops and a
dozen turns of the event loop, each handing its step to a thread and back, and waits at a
barrier before each commit for the other sets to catch up. The sets a claim hands over at once
are mostly alike (a GO set not checked yet, for a service routed to a directory), so they run
here as one batch, in four hops whatever their number:

1. the checks of every set (:func:`.steps.judge`), on the pipeline's threads;
2. one transaction with their decisions: keys reserved and ACRF numbers allocated
   (:meth:`SetStore.run_steps`);
3. on the pipeline's threads: each accepted set's delivery staged, each ACRF written under
   temporary names, one sync of them all, the deliveries, ACRFs' main files and FS renamed
   into place, one sync of the OUT folders, the GOs renamed and the sets' files archived or
   removed, one sync of the directories touched;
4. one transaction that finishes them.

Each set goes through the same steps in the same order as in :mod:`.process`, each committed
before its effect, and reaches the same crash points; what a crash leaves is what the per-set
path would leave, and that path continues it. What the batch does not finish:

- a set whose key an accepted set holds (a duplicate or an exact resend), or whose delivery
  could not be staged, goes to the per-set path as it stands (which answers the resend, or
  records the failed attempt and retries it);
- a set stopped by a fault in one of its steps is reported with its error, to be counted and
  retried like any other failure; one set's fault does not stop the others;
- a set whose claim was lost is dropped (another node has it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from gateway.core.codes import Rejection
from gateway.core.types import SenderNumber
from gateway.pipeline.context import Context
from gateway.pipeline.faults import CrashPoint
from gateway.pipeline.outcome import envelope_of, summarize
from gateway.pipeline.records import Claim, Loaded, SetRecord
from gateway.pipeline.routing import (
    Delivery,
    DirectoryDestination,
    Outcome,
    stage_directory,
)
from gateway.pipeline.steps import (
    Acknowledgement,
    Checked,
    Files,
    Resent,
    accepted_changes,
    attempt_record,
    judge,
    plan_acknowledgement,
    refusal_changes,
)
from gateway.pipeline.store import LOST, TAKEN, SetState, SetStore, Step, accepted, decided
from gateway.registry.types import SenderProfile


def batchable(ctx: Context, claim: Claim) -> bool:
    """Whether the batch path takes ``claim``: a GO set its claim read, not checked yet, no
    accepted set holding its key, for a service routed to a directory."""
    loaded = claim.loaded
    if loaded is None or loaded.holder is not None:
        return False
    row = loaded.row
    return (
        row.trigger == "GO"
        and row.state in (SetState.RECEIVED, SetState.CHECKING)
        and not row.verified
        and row.ack_sequence is None
        and row.ack_of is None
        and isinstance(ctx.destination(row.application), DirectoryDestination)
    )


@dataclass(slots=True)
class BatchOutcome:
    """What became of a batch's sets."""

    finished: list[tuple[int, str]] = field(default_factory=list)
    """Sets that reached a final state: (id, state)."""
    left: list[Claim] = field(default_factory=list)
    """Sets for the per-set path (their claims, to be reloaded): a duplicate or an exact
    resend, or a delivery that could not be staged."""
    lost: list[int] = field(default_factory=list)
    """Sets whose claim was no longer this node's: dropped."""
    failed: list[tuple[Claim, Exception]] = field(default_factory=list)
    """Sets stopped by a fault in one of their steps."""


@dataclass(slots=True)
class _Item:
    """One set of the batch, as its steps commit."""

    claim: Claim
    row: SetRecord
    files: Files
    step: Step
    """Its deciding step: accepted (its key, its signers) or refused."""
    signers: dict[str, tuple[str, str]]
    """The signer of each signed FI (accepted sets)."""
    ack: Acknowledgement | None = None

    @property
    def accepted(self) -> bool:
        """Whether its checks passed (its step reserves the set's key)."""
        return self.step.key is not None


async def process_batch(ctx: Context, claims: Sequence[Claim]) -> BatchOutcome:
    """Take ``claims`` (each :func:`batchable`) to their ACRF; see the module docstring."""
    outcome = BatchOutcome()
    loaded: list[tuple[Claim, Loaded]] = [(c, c.loaded) for c in claims if c.loaded is not None]
    profiles = {
        sender: await ctx.profile(SenderNumber(sender))
        for sender in {entry.row.sender for _, entry in loaded}
    }
    ctx.faults.reached(CrashPoint.AFTER_CLAIM)
    started = time.monotonic()
    now = ctx.now()
    verdicts = await ctx.blocking(_judge_all, ctx, loaded, profiles, now)
    items: list[_Item] = []
    for (claim, entry), verdict in zip(loaded, verdicts, strict=True):
        row = entry.row
        if isinstance(verdict, Resent):
            outcome.left.append(Claim(claim.set_id, claim.token))
            continue
        if isinstance(verdict, Checked):
            signers, changes = accepted_changes(ctx, row, verdict, now)
            step = SetStore.accept_step(
                row,
                claim.token,
                digests=verdict.digests,
                signers=signers,
                day=ctx.day(now),
                **changes,
            )
        else:
            changes = refusal_changes(verdict, SetState.REJECTED, allocate=True, now=now)
            step = SetStore.decide_step(
                row,
                claim.token,
                recipient=row.sender,
                day=ctx.day(now),
                environment=row.environment,
                **changes,
            )
            signers = {}
        items.append(_Item(claim, row, entry.files, step, signers))
    decided_items: list[_Item] = []
    results = await ctx.store.run_steps([item.step for item in items])
    for item, result in zip(items, results, strict=True):
        if result is LOST:
            outcome.lost.append(item.claim.set_id)
        elif result is TAKEN:  # an accepted set took the key meanwhile
            outcome.left.append(Claim(item.claim.set_id, item.claim.token))
        elif isinstance(result, str):
            if item.accepted:
                taken = accepted(item.row, item.files, item.step.values, result, item.signers)
                item.row, item.files = taken.row, taken.files
            else:
                item.row = decided(item.row, item.step.values, result)
            decided_items.append(item)
    if not decided_items:
        return outcome
    ctx.faults.reached(CrashPoint.AFTER_VERIFY)
    checked = time.monotonic()
    failures = await ctx.blocking(_deliver_and_acknowledge, ctx, decided_items, profiles, now)
    for item, error in failures:
        if isinstance(error, Undelivered):
            outcome.left.append(Claim(item.claim.set_id, item.claim.token))
        else:
            outcome.failed.append((item.claim, error))
    stopped = {id(item) for item, _ in failures}
    done = [item for item in decided_items if id(item) not in stopped]
    finished_at = ctx.now()
    finishing = [_ack(item).finish_step(item.claim.token, finished_at) for item in done]
    results = await ctx.store.run_steps(finishing)
    ended = time.monotonic()
    # The batch's: its checks and decisions, then its deliveries, ACRFs and finish.
    durations = {"check": round(checked - started, 4), "ack": round(ended - checked, 4)}
    for item, result in zip(done, results, strict=True):
        if result is LOST:
            outcome.lost.append(item.claim.set_id)
            continue
        ack = _ack(item)
        ack.report(ctx)
        summarize(ctx, item.row, ack, durations)
        outcome.finished.append((item.claim.set_id, ack.final))
    return outcome


def _judge_all(
    ctx: Context,
    loaded: list[tuple[Claim, Loaded]],
    profiles: dict[str, SenderProfile | None],
    now: datetime,
) -> list[Checked | Resent | Rejection]:
    return [
        judge(ctx, entry.row, entry.files, profiles[entry.row.sender], entry.holder, now)
        for _, entry in loaded
    ]


def _deliver_and_acknowledge(
    ctx: Context,
    items: list[_Item],
    profiles: dict[str, SenderProfile | None],
    now: datetime,
) -> list[tuple[_Item, Exception]]:
    """Stage each accepted set's delivery and each ACRF, then publish them all with three
    syncs (see the module docstring). Sets a fault stopped, with their errors; a failed sync
    raises (for all)."""
    failed: list[tuple[_Item, Exception]] = []
    live: list[_Item] = []
    for item in items:
        try:
            item.ack = _plan(ctx, item, profiles[item.row.sender], now)
        except Exception as exc:
            failed.append((item, exc))
        else:
            live.append(item)
    if any(_ack(item).delivered is not None for item in live):
        ctx.faults.reached(CrashPoint.AFTER_ROUTE)
    files: list[Path] = []
    staging: list[Path] = []

    def stage(ack: Acknowledgement) -> None:
        files.extend(ack.stage(ctx))
        staging.extend(ack.staging_dirs())

    live = _each(live, stage, failed)
    ctx.flush.sync_now(files, staging)
    live = _each(live, lambda ack: ack.publish_parts(ctx), failed)
    ctx.flush.sync_now([], sorted({_ack(item).out_folder(ctx) for item in live}))
    live = _each(live, lambda ack: ack.publish_rest(ctx), failed)
    ctx.flush.sync_now([], sorted({d for item in live for d in _ack(item).touched(ctx)}))
    return failed


def _plan(
    ctx: Context, item: _Item, profile: SenderProfile | None, now: datetime
) -> Acknowledgement:
    """Stage an accepted set's delivery (recording the attempt), and plan its ACRF."""
    row = item.row
    delivered = staged = None
    if item.accepted:
        destination = ctx.destination(row.application)
        if not isinstance(destination, DirectoryDestination):
            raise ValueError(f"{row.application} is no longer routed to a directory")
        envelope, payload = envelope_of(ctx, row, item.files, profile)
        try:
            staged = stage_directory(
                destination, ticket=row.ticket, envelope=envelope, payload=payload
            )
        except OSError as exc:
            raise Undelivered(str(exc)) from exc
        outcome = Outcome.ALREADY if staged is None else Outcome.DELIVERED
        delivery = Delivery(outcome, detail=str(destination.path / row.ticket))
        delivered = attempt_record(ctx, row, destination, delivery, attempt=1, at=now)
    return plan_acknowledgement(ctx, row, row, delivered, staged)


class Undelivered(Exception):
    """A delivery could not be staged: the set goes to the per-set path, which records the
    failed attempt and retries it (or refuses the set with 940 at its deadline)."""


def _ack(item: _Item) -> Acknowledgement:
    if item.ack is None:
        raise ValueError(f"set {item.row.ticket} has no acknowledgement planned")
    return item.ack


def _each(
    items: list[_Item],
    action: Callable[[Acknowledgement], None],
    failed: list[tuple[_Item, Exception]],
) -> list[_Item]:
    """Run ``action`` on each item's ACRF; the items it did not fail for (the others join
    ``failed``: one set's fault is its own)."""
    kept = []
    for item in items:
        try:
            action(_ack(item))
        except Exception as exc:
            failed.append((item, exc))
        else:
            kept.append(item)
    return kept
