"""The :class:`Pipeline`: the owned tasks that take committed sets to their acknowledgement.

Two tasks, both owned by :meth:`Pipeline.run` (one ``asyncio.TaskGroup``):

- the **worker loop** sleeps on an ``asyncio.Event`` that the spool's ``on_stored`` hook sets
  for every committed GO or TD (:meth:`Pipeline.notify_stored`); awake, it takes every pending
  trigger into a set and processes claimable sets, up to ``concurrency`` at a time, until none
  is left;
- the **sweep** runs every ``sweep_interval`` seconds: it reloads the trust store when its files
  changed (:mod:`.trust_files`), wakes the worker (routing retries that
  became due, claims of a crashed node that expired), answers refused uploads, expires sets
  whose GO never came, and purges old return files and archives.

A set stopped by a fault (the per-set boundary in :meth:`Pipeline._process_one`) is a local
failure (a full disk, an I/O error, a database error) or a bug: it is logged once with a ticket
and its traceback (``set.failed``), counted (``gateway_sets_total{outcome="failed"}``) and
handed back to be retried after a backoff (1 s, doubling up to ``LOCAL_RETRY_MAX``), with a
wake-up at that time, so it resumes as soon as the fault clears instead of at its claim's
expiry. When even the hand-back fails (the database is the fault), this node keeps the claim
and retries the set itself after the backoff, well within the claim's lease. A local fault is
retried for as long as it lasts; a bug is not: the ``BUG_ATTEMPTS``-th bug failure of a set in
one series of failures ends it with a negative ACRF (999 "internal error, ticket T", the ticket
of that failure), its key released so a resend is accepted, logged once at critical with an
alert (``set.abandoned``); when even that refusal fails, the set stays in the retry loop. A
full disk (``disk_full``) also gives up the daemon's space reserve (:mod:`gateway.spool.reserve`,
cause ``pipeline``): the ACRFs, deliveries and archives of the sets in hand are written on the
same state directory, and the set's retry finds that room.

At start, a single-node pipeline (SQLite, the embedded default: one writer) releases every claim
left in the table, since they can only belong to a process that died; with PostgreSQL, claims of
other nodes are left alone and expire after ``claim_lease``. :meth:`aclose` stops taking new
work, lets the sets in hand finish within a deadline, then cancels what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.core.codes import Rejection, internal_error
from gateway.core.names import Environment
from gateway.core.signature import TrustStore
from gateway.ops.faults import local_failure, log_fault, new_fault_ticket
from gateway.ops.metrics import Metrics
from gateway.ops.priority import ThreadBoost
from gateway.ops.settings import LimitSettings, PipelineSettings, SignatureSettings
from gateway.pipeline.acks import GatewaySigner
from gateway.pipeline.batch import BatchOutcome, batchable, process_batch
from gateway.pipeline.context import Context, ProfileCache, SenderDirectory, declared_urls
from gateway.pipeline.faults import Faults
from gateway.pipeline.flush import GroupFlush
from gateway.pipeline.intake import Taken, count_readable, take_expired, take_triggers
from gateway.pipeline.process import abandon_set, process_set
from gateway.pipeline.publish import Published, publish_notification
from gateway.pipeline.records import Claim
from gateway.pipeline.store import ClaimLost, SetStore
from gateway.pipeline.sweep import (
    answer_refusals,
    purge_archives,
    purge_return_files,
    remove_stray_work_dirs,
)
from gateway.pipeline.trust_files import TrustFiles
from gateway.registry.catalogue import ServiceCatalogue
from gateway.registry.db import SqliteWriter
from gateway.registry.instant import utc_now
from gateway.registry.trust import signature_policy
from gateway.spool.durable import StateSync
from gateway.spool.layout import SpoolLayout
from gateway.spool.store import StoredUpload

log = structlog.get_logger("gateway.pipeline")

# Backoff of a set stopped by a fault: the first retry, and the longest wait (well below any
# claim lease, so a claim this node keeps through a database fault is still its own).
LOCAL_RETRY_FIRST = timedelta(seconds=1)
LOCAL_RETRY_MAX = timedelta(seconds=60)
# A set that fails with a bug (an exception that is no local fault) this many times in a row is
# ended with a negative ACRF, 999 and the ticket of its last failure (see _abandon).
BUG_ATTEMPTS = 5
ABANDONED_ADVICE = (
    ": send the set again later; if it fails again, give this ticket to the gateway's operator"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineStatistics:
    """What :meth:`Pipeline.statistics` reports."""

    finished: int
    in_flight: int
    sweeps: int
    running: bool


class Pipeline:
    """Set processing for one node; see the module docstring."""

    def __init__(
        self,
        *,
        pipeline: PipelineSettings,
        limits: LimitSettings,
        signature: SignatureSettings,
        engine: AsyncEngine,
        registry: SenderDirectory,
        state_dir: Path,
        clock: Callable[[], datetime] = utc_now,
        gateway_key: bytes,
        gateway_cert: bytes,
        trust: TrustStore,
        catalogue: ServiceCatalogue,
        metrics: Metrics | None = None,
        concurrency: int | None = None,
        sweep_interval: float | None = None,
        claim_lease: timedelta | None = None,
        single_node: bool | None = None,
        ssl_context: ssl.SSLContext | None = None,
        trust_files: TrustFiles | None = None,
        release_reserve: Callable[[str], object] | None = None,
        state_sync: StateSync = StateSync.FILES,
        writer: SqliteWriter | None = None,
    ) -> None:
        faults = Faults.from_env()
        store = SetStore(
            engine,
            clock,
            lease=claim_lease or pipeline.claim_lease,
            faults=faults,
            writer=writer,  # the process's one SQLite writer, shared with the spool
            state_sync=state_sync,  # the spool's: whether it places uploads inline
        )
        if single_node is None:
            single_node = engine.dialect.name == "sqlite"
        self.priority = ThreadBoost(pipeline.priority_boost, "pipeline")
        """Its threads' priority, raised as each starts (:mod:`gateway.ops.priority`)."""
        self.ctx = Context(
            settings=pipeline,
            limits=limits,
            policy=signature_policy(signature),
            store=store,
            registry=registry,
            layout=SpoolLayout(state_dir),
            clock=clock,
            signer=GatewaySigner(gateway_key, gateway_cert),
            trust=trust,
            catalogue=catalogue,
            metrics=metrics,
            faults=faults,
            ssl_context=ssl_context,
            allowed_urls=declared_urls(catalogue),
            profiles=ProfileCache(store),  # the registry's query, on the store's thread
            parted=catalogue.parts_rule(),
            zone=pipeline.timezone,
            executor=ThreadPoolExecutor(
                max_workers=(concurrency or pipeline.concurrency) + 2,
                thread_name_prefix="pipeline",
                initializer=self.priority,
            ),
            flush=GroupFlush(state_sync),
            single_node=single_node,
        )
        self.concurrency = concurrency or pipeline.concurrency
        self.batch_limit = pipeline.batch_limit
        self.sweep_interval = sweep_interval or pipeline.sweep_interval_seconds
        self._wake = asyncio.Event()
        self._arrival = asyncio.Event()
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._in_flight = 0
        self._finished = 0
        # Admission (see admit): GO/TD seen pending at the last intake read and not taken,
        # plus those admitted since.
        self.admission_backlog = (
            2 * (self.concurrency + self.batch_limit)
            if pipeline.admission_backlog is None
            else pipeline.admission_backlog
        )
        self.admission_wait = pipeline.admission_max_wait_seconds
        self._waiting = 0
        self._ready = 0
        self._admitted = 0
        # Whether a pass should read the pending triggers and claim, though this node saw no
        # trigger pending: set by a wake-up (the sweep, a retry's timer) and by an arrival,
        # and while the last claim filled its room; see _pass.
        self._look = True
        self.admissions_held = 0
        self._sweeps = 0
        self._progress = asyncio.Condition()
        self._pass_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._trust_files = trust_files
        # The space reserve's release (SpaceReserve.release), given up when a set meets a full
        # disk; None: no reserve (tests, tools).
        self._release_reserve = release_reserve
        # Sets stopped by a fault: how many times in a row (the backoff), and those whose claim
        # could not be handed back (token, due on the loop's clock), retried by this node.
        self._faults: dict[int, int] = {}
        self._bugs: dict[int, list[str]] = {}  # the tickets of a set's bug failures
        self._held: dict[int, tuple[str, float]] = {}
        self.failures = 0
        self.retry_first = LOCAL_RETRY_FIRST
        self.retry_max = LOCAL_RETRY_MAX
        self.bug_attempts = BUG_ATTEMPTS

    # -- hooks ---------------------------------------------------------------------------------

    def notify_stored(self, upload: StoredUpload) -> None:
        """The spool committed ``upload``: wake the worker if it closes or cancels a set."""
        if upload.name.startswith(("GO.", "TD.")):
            self._look = True
            self._wake.set()
            self._arrival.set()

    async def on_stored(self, upload: StoredUpload) -> None:
        """:class:`gateway.spool.Spool`'s ``on_stored`` callback (async form of the hook)."""
        self.notify_stored(upload)

    def backlog(self) -> int:
        """Sets this node has in hand: processing, claimed and waiting for a slot, or closed by a
        GO/TD and not taken yet."""
        return self._in_flight + self._ready + self._waiting + self._admitted

    async def admit(self, name: str) -> None:
        """:class:`gateway.spool.Spool`'s ``admit`` hook, awaited before a file is committed.

        A GO or TD is held while this node has ``admission_backlog`` sets in hand, until one
        finishes or ``admission_max_wait_seconds`` pass: under overload a sender's GO takes
        longer to close instead of its ACRF arriving minutes later behind an ever longer queue.
        Only while the background worker runs (a pipeline driven by ``run_once`` never holds);
        every other file, and every GO below the mark, goes through at once.
        """
        if not name.startswith(("GO.", "TD.")) or self.admission_backlog <= 0:
            return
        if self._tasks and self.backlog() >= self.admission_backlog:
            self.admissions_held += 1
            if self.ctx.metrics is not None:
                self.ctx.metrics.admissions_held_total.inc()
            async with self._progress:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._progress.wait_for(
                            lambda: self.backlog() < self.admission_backlog or not self._tasks
                        ),
                        timeout=self.admission_wait,
                    )
        self._admitted += 1

    def wake(self) -> None:
        """Ask the worker for a pass (e.g. after a routing retry became due)."""
        self._look = True
        self._wake.set()
        self._arrival.set()

    @property
    def single_node(self) -> bool:
        """Whether this process alone works on the database and spool
        (:attr:`Context.single_node`)."""
        return self.ctx.single_node

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the worker loop and the sweep until :meth:`aclose`."""
        self._stopped.clear()
        if self.single_node:
            released = await self.ctx.store.release_all_claims()
            if released:
                log.info("pipeline.resumed", sets=released)
            await remove_stray_work_dirs(self.ctx)
        log.info("pipeline.started", concurrency=self.concurrency, single_node=self.single_node)
        try:
            async with asyncio.TaskGroup() as group:
                self._tasks = [
                    group.create_task(self._worker_loop(), name="pipeline-worker"),
                    group.create_task(self._sweep_loop(), name="pipeline-sweep"),
                ]
        finally:
            self._tasks = []
            self._stopped.set()
            log.info(
                "pipeline.stopped",
                sets=self._finished,
                statements=self.ctx.store.db.statements,
            )

    async def aclose(self, deadline: float = 30.0) -> None:
        """Stop taking work; let the sets in hand finish within ``deadline`` seconds."""
        self._stopping.set()
        self._wake.set()
        if not self._tasks:
            self.ctx.executor.shutdown(wait=False)
            self.ctx.flush.close()
            self.ctx.store.close()
            return
        try:
            await asyncio.wait_for(self._stopped.wait(), timeout=deadline)
        except TimeoutError:
            names = [t.get_name() for t in self._tasks if not t.done()]
            log.warning("pipeline.drain_timeout", cancelled=names, in_flight=self._in_flight)
            for task in self._tasks:
                task.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), timeout=5.0)
        self.ctx.executor.shutdown(wait=False)
        self.ctx.flush.close()
        self.ctx.store.close()

    async def _worker_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                await self._pass()
            except Exception:
                # The database or the disk failed outside any one set (intake, claims): log it
                # and try again at the next wake-up (the sweep wakes us periodically).
                log.exception("pipeline.pass_failed")
            if self._stopping.is_set():
                break
            await self._wake.wait()

    async def _sweep_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.sweep()
            except Exception:
                log.exception("sweep.failed")
            async with self._progress:
                self._sweeps += 1
                self._progress.notify_all()
            self.wake()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.sweep_interval)

    # -- introspection -------------------------------------------------------------------------

    def statistics(self) -> PipelineStatistics:
        """Counters for tests, health checks and the admin API."""
        return PipelineStatistics(
            finished=self._finished,
            in_flight=self._in_flight,
            sweeps=self._sweeps,
            running=bool(self._tasks),
        )

    async def wait_sweeps(self, count: int) -> None:
        """Wait (no polling) until the background sweep has completed ``count`` passes."""
        async with self._progress:
            await self._progress.wait_for(lambda: self._sweeps >= count)

    async def wait_finished(self, count: int) -> None:
        """Wait (no polling) until this pipeline has finished ``count`` sets since it was built."""
        async with self._progress:
            await self._progress.wait_for(lambda: self._finished >= count)

    # -- work ----------------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Take pending triggers in and process claimable sets until none is left.

        Up to ``concurrency`` sets processed each on its own are in flight at any time, beside
        one batch of up to ``batch_limit``. Sets are taken in and claimed a batch at a time (up
        to the room left), the ones without a slot yet waiting in hand:
        taking them in one by one, as slots free, cost a read, a link, a commit and an unlink
        per set. The sets the batch path takes (:func:`.batch.batchable`) run together, one batch
        at a time: those that arrive while it runs make the next one; every other set runs on
        its own, its slot refilled as soon as it is done. Returns how many
        sets reached a final state. Tests and tools call this directly to run the pipeline to
        quiescence without the background tasks.

        Called directly, it first reads the pending triggers and claims, whatever this node
        knows (:meth:`_pass` for the worker's own passes).
        """
        self._look = True
        return await self._pass()

    async def _pass(self) -> int:
        """:meth:`run_once`, reading the pending triggers and claiming only when something may
        be there: a trigger arrived (:meth:`notify_stored`), triggers were left pending, the last
        claim filled its room, or something woke the worker (:meth:`wake`: a retry became due,
        the sweep). Without that rule, a pass at a low rate ended every batch with a read that
        found no trigger and a claim that found no set (two of a set's seven database round
        trips, each run from cold caches on this host: bench/README.md, bench/cold.py), and the
        pass that an arrival already taken in had woken began with them too."""
        async with self._pass_lock:
            finished = 0
            in_flight: set[asyncio.Task[int]] = set()  # the batch's task and one per set
            batch_task: asyncio.Task[int] | None = None  # the batch path's, one at a time
            ready: deque[Claim] = deque()
            try:
                while not self._stopping.is_set():
                    self._arrival.clear()
                    ready.extend(self._due_held())
                    free = self.concurrency - len(in_flight) + (batch_task is not None)
                    room = free + (self.batch_limit if batch_task is None else 0)
                    taken = 0
                    # While a batch runs, the GOs that arrive wait for the next one (taking each
                    # as it came made batches of one set, each paying a batch's transactions);
                    # they are taken in meanwhile only once they would fill half a batch (an
                    # intake in the middle costs the next batch a transaction more).
                    worth = max(1, self.batch_limit // 2)
                    if (
                        room > len(ready)
                        and (batch_task is None or self._pending() >= worth)
                        and (self._look or self._pending() > 0)
                    ):
                        # Only when the sets in hand cannot fill the room: the rest stays
                        # pending, cheaply.
                        taken, claims = await self._intake(room - len(ready))
                        ready.extend(claims)
                    batch: list[Claim] = []
                    waiting: list[Claim] = []
                    while ready:
                        claim = ready.popleft()
                        if batchable(self.ctx, claim):
                            if batch_task is None and len(batch) < self.batch_limit:
                                batch.append(claim)
                            else:
                                waiting.append(claim)  # for the next batch
                            continue
                        if free <= 0:
                            waiting.append(claim)  # for the next free slot
                            continue
                        free -= 1
                        self.ctx.turns.join()  # before the task runs: the others wait for it
                        task = asyncio.create_task(
                            self._process_one(claim), name=f"set-{claim.set_id}"
                        )
                        in_flight.add(task)
                    ready.extend(waiting)
                    if batch:
                        batch_task = asyncio.create_task(
                            self._process_batch(batch), name=f"sets-{batch[0].set_id}"
                        )
                        in_flight.add(batch_task)
                    self._ready = len(ready)
                    if not in_flight:
                        if not taken:
                            break
                        continue
                    # Wait for a slot to free, or (with a slot free) for a new GO to arrive.
                    waiters: set[asyncio.Future[Any]] = set(in_flight)
                    arrival = None
                    if free > 0 or batch_task is None:
                        arrival = asyncio.ensure_future(self._arrival.wait())
                        waiters.add(arrival)
                    done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                    if arrival is not None and not arrival.done():
                        arrival.cancel()
                    for task in in_flight & done:
                        in_flight.remove(task)
                        if task is batch_task:
                            batch_task = None
                        finished += task.result()
            finally:
                # Stopping (or a failure of intake/claims): the sets in hand finish their step;
                # the claims of sets never started are handed back for the next pass or node.
                self._ready = 0
                for claim in ready:
                    with contextlib.suppress(Exception):
                        await self.ctx.store.release(claim.set_id, claim.token, not_before=None)
                if in_flight:
                    results = await asyncio.gather(*in_flight, return_exceptions=True)
                    finished += sum(r for r in results if isinstance(r, int))
            return finished

    def _pending(self) -> int:
        """GOs and TDs pending, as far as this node knows without a read: those seen pending
        and not taken at the last intake, and those admitted since."""
        return self._waiting + self._admitted

    async def _intake(self, limit: int) -> tuple[int, list[Claim]]:
        """Take pending triggers in and claim up to ``limit`` sets: (sets made, claims)."""
        self._look = False  # an arrival or a wake-up from now on asks for the next look
        admitted = self._admitted
        triggers = await self.ctx.store.pending_triggers(
            limit=limit + max(16, self.admission_backlog)
        )
        made = await take_triggers(self.ctx, triggers, limit) if triggers else Taken(0)
        # What the read saw replaces the admissions counted before it (later ones stay counted).
        self._admitted = max(0, self._admitted - admitted)
        self._waiting = max(0, count_readable(self.ctx, triggers) - made.count)
        async with self._progress:
            self._progress.notify_all()
        claims = made.claims if made.claims is not None else await self.ctx.store.claim(limit)
        if len(claims) >= limit:
            self._look = True  # the room is full: more sets may be claimable
        return made.count, claims

    async def _process_one(self, claim: Claim) -> int:
        """Run one set through :func:`process_set` (a member of the turns until it is done);
        1 when it reached a final state."""
        self._in_flight += 1
        failure: Exception | None = None
        final: str | None = None
        try:
            final = await process_set(self.ctx, claim)
        except ClaimLost:
            log.warning("set.claim_lost", set_id=claim.set_id)
            return 0
        except Exception as exc:  # the per-set boundary: a fault must not stop the other sets
            failure = exc
        finally:
            self.ctx.turns.leave()
            self._in_flight -= 1
            await self._notify_admission()
        if failure is not None:  # handed back, or refused once a bug keeps stopping it
            return await self._failed(claim, failure)
        return await self._done(claim.set_id, final)

    async def _process_batch(self, claims: list[Claim]) -> int:
        """Run sets through the batch path (:mod:`.batch`), and those it leaves through
        :meth:`_process_one`; how many reached a final state."""
        self._in_flight += len(claims)
        try:
            outcome = await process_batch(self.ctx, claims)
        except Exception as exc:  # a fault of the whole batch (its database writes, a sync)
            outcome = BatchOutcome(failed=[(claim, exc) for claim in claims])
        finally:
            self._in_flight -= len(claims)
            await self._notify_admission()
        finished = 0
        for set_id, final in outcome.finished:
            finished += await self._done(set_id, final)
        for set_id in outcome.lost:
            log.warning("set.claim_lost", set_id=set_id)
        for claim, error in outcome.failed:
            finished += await self._failed(claim, error)
        for _ in outcome.left:
            self.ctx.turns.join()  # before the tasks run: the others wait for them
        left = await asyncio.gather(*(self._process_one(claim) for claim in outcome.left))
        return finished + sum(left)

    async def _notify_admission(self) -> None:
        if self.admission_backlog > 0:
            async with self._progress:
                self._progress.notify_all()

    async def _done(self, set_id: int, final: str | None) -> int:
        """A set's processing returned ``final`` (None: it waits for a routing retry)."""
        self._faults.pop(set_id, None)
        self._bugs.pop(set_id, None)
        if final is None:
            self._schedule_wake()
            return 0
        async with self._progress:
            self._finished += 1
            self._progress.notify_all()
        return 1

    async def _failed(self, claim: Claim, exc: Exception) -> int:
        """A set stopped by ``exc`` (no member of the turns): counted and retried, or ended once
        a bug has stopped it ``bug_attempts`` times (1 when it was)."""
        set_id = claim.set_id
        kind = local_failure(exc)
        count, ticket = self._count_failure(set_id, kind, exc)
        if kind == "disk_full":
            self._give_up_reserve()
        tickets = self._bugs.get(set_id, [])
        if kind is None and len(tickets) >= self.bug_attempts:
            final = await self._abandon(claim, ticket, tickets)
            if final is not None:
                return await self._done(set_id, final)
        await self._hand_back(set_id, claim.token, count)
        return 0

    def _delay(self, count: int) -> timedelta:
        delay: timedelta = min(self.retry_first * 2 ** min(count - 1, 16), self.retry_max)
        return delay

    def _count_failure(self, set_id: int, kind: str | None, exc: Exception) -> tuple[int, str]:
        """Log (with a ticket and the traceback) and count a set stopped by ``exc``: its
        failures in a row and the ticket."""
        count = self._faults.get(set_id, 0) + 1
        self._faults[set_id] = count
        ticket = log_fault(
            log,
            "set.failed",
            exc_info=exc,
            set_id=set_id,
            reason=kind or "bug",
            failures=count,
            retry_seconds=self._delay(count).total_seconds(),
        )
        if kind is None:  # local faults in between do not reset it: only the set's progress
            self._bugs.setdefault(set_id, []).append(ticket)
        self.failures += 1
        if self.ctx.metrics is not None:
            self.ctx.metrics.sets_total.labels(outcome="failed").inc()
        return count, ticket

    def _give_up_reserve(self) -> None:
        """Release the space reserve (once; later calls do nothing), so the sets in hand can
        still be written."""
        if self._release_reserve is None:
            return
        try:
            self._release_reserve("pipeline")  # an unlink: no room needed
        except Exception:
            log_fault(log, "storage.reserve_release_failed", cause="pipeline")

    async def _abandon(self, claim: Claim, ticket: str, tickets: list[str]) -> str | None:
        """End a set that failed with a bug ``bug_attempts`` times (see
        :func:`~gateway.pipeline.process.abandon_set`): its final state, or None when it was
        not ended (already decided, or the refusal failed too) and stays in the retry loop."""
        rejection = internal_error(ticket)
        rejection = Rejection(code=rejection.code, reason=rejection.reason + ABANDONED_ADVICE)
        # The operator hears of a set that cannot be ended once (critical, alert), at the first
        # try; the later tries of the retry loop log at error.
        first = len(tickets) == self.bug_attempts
        try:
            final = await abandon_set(self.ctx, claim, rejection)
        except Exception:
            fault = log.critical if first else log.error
            fault(
                "set.abandon_failed",
                **({"alert": True} if first else {}),
                exc_info=True,
                set_id=claim.set_id,
                ticket=new_fault_ticket(),
                tickets=list(tickets),
            )
            return None
        if final is None:  # decided already: its outcome stands, its ACRF is what fails
            if first:
                log.critical("set.stuck", alert=True, set_id=claim.set_id, tickets=list(tickets))
            return None
        log.critical(
            "set.abandoned",
            alert=True,
            set_id=claim.set_id,
            failures=len(tickets),
            ticket=ticket,
            tickets=list(tickets),
            code=int(rejection.code),
        )
        return final

    async def _hand_back(self, set_id: int, token: str, count: int) -> None:
        """Hand a failed set back to be retried after its backoff, and wake the worker then."""
        delay = self._delay(count)
        loop = asyncio.get_running_loop()
        try:
            await self.ctx.store.release(
                set_id, token, not_before=self.ctx.clock().astimezone(UTC) + delay
            )
        except Exception:
            # The database is (part of) the fault: keep the claim and retry the set ourselves.
            log.warning("set.held", set_id=set_id, retry_seconds=delay.total_seconds())
            self._held[set_id] = (token, loop.time() + delay.total_seconds())
        loop.call_later(delay.total_seconds(), self.wake)

    def _due_held(self) -> list[Claim]:
        """Held sets (see :meth:`_hand_back`) whose backoff is over, taken out of the list."""
        if not self._held:
            return []
        now = asyncio.get_running_loop().time()
        due = [Claim(set_id, token) for set_id, (token, at) in self._held.items() if at <= now]
        for claim in due:
            del self._held[claim.set_id]
        return due

    def _schedule_wake(self) -> None:
        # A set waits for a routing retry: make sure a pass happens soon after it is due. The
        # sweep would find it anyway; this keeps short backoffs short.
        loop = asyncio.get_running_loop()
        loop.call_later(min(self.sweep_interval, 1.0), self.wake)

    async def sweep(self) -> None:
        """One pass of the periodic work (see the module docstring)."""
        if self._trust_files is not None:
            trust = await self._trust_files.reload_if_changed()
            if trust is not None:  # sets already in hand keep the store they started with
                self.ctx = dataclasses.replace(self.ctx, trust=trust)
        await answer_refusals(self.ctx)
        expired = await take_expired(self.ctx, self.ctx.settings.set_timeout)
        if expired:
            self.wake()
        await purge_return_files(self.ctx)
        await purge_archives(self.ctx)

    # -- notifications -------------------------------------------------------------------------

    async def publish(
        self, *, sender: str, environment: Environment, application: str, content: bytes
    ) -> Published | Rejection:
        """Place a signed notification in the sender's OUT folder (see ``publish.py``)."""
        return await publish_notification(
            self.ctx,
            sender=sender,
            environment=environment,
            application=application,
            content=content,
        )
