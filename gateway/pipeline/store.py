"""Set state in the registry database: intake, claims, guarded step commits, counters.

Rules, and why:
- A set's steps (accepted, decided, finished) are :meth:`SetStore._steps` items: the steps of
  all the sets that commit together are one transaction of a few statements, an
  ``executemany`` per kind whatever their number (:meth:`gateway.pipeline.db.Database.step`).
  The batch first renews its claims with one ``UPDATE … WHERE (id, claim_token) IN (…)
  RETURNING id``: a worker whose claim expired (or was taken over after a crash) writes nothing
  of that set, and raises :class:`ClaimLost`, so it drops the set. Then the keys are reserved
  (``ON CONFLICT DO NOTHING RETURNING``: a taken key is a value, not a failed transaction),
  numbers allocated, and the rows written; nothing is read back: the caller gets the record as
  committed (:mod:`.records`).
- A claim returns its sets' records, files and key holders, read in the claim's transaction,
  so a set's processing starts without a read.
- Claims pick rows with ``SELECT … FOR UPDATE SKIP LOCKED`` (PostgreSQL: two workers never wait
  for or take the same row) and then write the claim with a conditional ``UPDATE`` that only
  succeeds on an unclaimed or expired row, which is also what keeps SQLite (no row locks, one
  writer at a time) correct.
- Every write transaction starts with a write statement, so SQLite takes its write lock at the
  first statement (waiting on ``busy_timeout``) instead of failing to upgrade a read snapshot.
- Return-file sequence numbers come from one counter row per (recipient, date, environment),
  moved past every number a batch takes with one upsert: unique across workers and nodes. A
  set stores its number once, so a retry after a crash rewrites the same ACRF names instead of
  allocating new ones.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from enum import Enum, StrEnum
from typing import Unpack

from sqlalchemy import and_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.core.receipts import format_sequence
from gateway.pipeline.db import (
    Database,
    q_all,
    q_first,
    q_one,
    q_rowcount,
    q_scalar,
)
from gateway.pipeline.faults import CrashPoint, Faults
from gateway.pipeline.records import (
    ArchiveRecord,
    AttemptRecord,
    AttemptValues,
    Claim,
    KeyHolder,
    Loaded,
    NotificationRecord,
    NotificationValues,
    PendingUpload,
    RefusalRecord,
    ReturnFileRecord,
    ReturnFileValues,
    SetChanges,
    SetFileRecord,
    SetRecord,
    SetStory,
    UploadRecord,
)
from gateway.pipeline.statements import (
    ACRFS_OF_TICKET,
    ADVANCE,
    ANSWER_REFUSAL,
    ARCHIVES_BEFORE,
    ATTEMPT_IDS,
    ATTEMPTS_OF_SET,
    CLAIM_REFUSAL,
    FILES_OF_SET,
    FILES_OF_SETS,
    HOLD_CLAIMS,
    INSERT_ATTEMPT,
    INSERT_SET,
    INSERT_SET_FILES,
    INSERT_SETS,
    KEY_HOLDER,
    KEY_HOLDERS_OF_SETS,
    LAST_ANSWERED,
    NOTIFICATIONS,
    PENDING_BEFORE,
    PENDING_NAMED,
    PENDING_TRIGGERS,
    PENDING_WITH_STEMS,
    PURGE_ARCHIVE,
    PURGE_RETURN_FILE,
    REFUSALS_NAMED,
    RELEASE,
    RELEASE_KEY,
    RETURN_FILES_BEFORE,
    RETURN_FILES_NAMED,
    RETURN_FILES_OF_TICKET,
    SET_BY_ID,
    SET_BY_TICKET,
    SETS_NAMED,
    SIGN_SET_FILE,
    TAKE_UPLOADS,
    UNANSWERED_REFUSALS,
    UNRELEASED_TICKETS,
    DialectStatements,
)
from gateway.pipeline.tables import (
    NewSet,
    SetRow,
)
from gateway.registry.audit import AuditRecord, append_records
from gateway.registry.auth import load_sender_profile
from gateway.registry.db import SqliteWriter
from gateway.registry.types import SenderNumber, SenderProfile
from gateway.spool.commit import DROP_CONTENTS, inline_uploads
from gateway.spool.durable import StateSync

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Accepted:
    """A set's row and files as :meth:`SetStore.accept_key` committed them (read in its
    transaction, so the caller needs no second read)."""

    row: SetRecord
    files: tuple[SetFileRecord, ...]


class ClaimLost(Exception):
    """Another worker owns the set now (our claim expired); drop it without writing."""


class SetState(StrEnum):
    """The states of a set (``sets.state``)."""

    RECEIVED = "received"
    CHECKING = "checking"
    ROUTING = "routing"
    ROUTED = "routed"
    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class SetStore:
    """All of the pipeline's database access (each operation one hop: :mod:`.db`)."""

    def __init__(
        self,
        engine: AsyncEngine,
        clock: Clock,
        *,
        lease: timedelta,
        faults: Faults | None = None,
        writer: SqliteWriter | None = None,
        state_sync: StateSync = StateSync.FILES,
    ) -> None:
        self.engine = engine
        self.faults = faults or Faults()
        self.clock = clock
        self.lease = lease
        self.statements = DialectStatements(engine.dialect.name)
        self.db = Database(engine, writer)
        self.inline_uploads = inline_uploads(engine, state_sync)
        """The spool may place uploads inline: intake syncs their files before taking them
        (:func:`gateway.pipeline.intake.take_triggers`) and drops their recorded bytes."""

    def close(self) -> None:
        """Release the store's database thread (SQLite)."""
        self.db.close()

    # -- intake --------------------------------------------------------------------------------

    async def pending_triggers(self, limit: int = 200) -> list[UploadRecord]:
        """Pending GO/TD uploads, oldest first."""

        def read(conn: Connection) -> list[UploadRecord]:
            return UploadRecord.all_of(conn.execute(PENDING_TRIGGERS, {"b_limit": limit}))

        return await self.db.read(read)

    async def pending_with_stem(self, sender: str, folder: str, stem: str) -> list[UploadRecord]:
        """Pending uploads of one sender and folder whose name continues with ``.stem``."""
        return (await self.pending_with_stems([(sender, folder, stem)]))[0]

    async def pending_with_stems(
        self, keys: Sequence[tuple[str, str, str]]
    ) -> list[list[UploadRecord]]:
        """:meth:`pending_with_stem` for several (sender, folder, stem) at once: one statement
        (one per stem length) reads the matching pending uploads, oldest first."""
        # A name continues with ".<stem>" after its two-letter kind: the database compares the
        # name from its third character, so only the set's own files are read and mapped.
        by_length: dict[int, set[tuple[str, str, str]]] = {}
        for sender, folder, stem in keys:
            by_length.setdefault(len(stem) + 1, set()).add((sender, folder, f".{stem}"))

        def read(conn: Connection) -> dict[tuple[str, str, str], list[UploadRecord]]:
            found: dict[tuple[str, str, str], list[UploadRecord]] = {}
            for length, wanted in by_length.items():
                params = {"b_length": length, "b_keys": sorted(wanted)}
                for upload in UploadRecord.all_of(conn.execute(PENDING_WITH_STEMS, params)):
                    key = (upload.sender, upload.folder, upload.name[2 : 2 + length])
                    found.setdefault(key, []).append(upload)
            return found

        found = await self.db.read(read) if by_length else {}
        return [list(found.get((sender, folder, f".{stem}"), ())) for sender, folder, stem in keys]

    async def pending_uploads_before(
        self, before: datetime, limit: int = 500
    ) -> list[UploadRecord]:
        """Pending FI/FS uploads that arrived before ``before`` (candidates for a timeout)."""
        return await self.db.read(q_all, PENDING_BEFORE, {"b_before": before, "b_limit": limit})

    def _set_values(self, new: NewSet) -> dict[str, object]:
        return {
            "ticket": new.ticket,
            "trigger": new.trigger,
            "trigger_upload_id": new.trigger_upload_id,
            "trigger_name": new.trigger_name,
            "sender": new.sender,
            "folder": new.folder,
            "application": new.application,
            "created_date": new.created_date,
            "sequence": new.sequence,
            "environment": new.environment,
            "state": new.state,
            "finished": False,
            "code": new.code,
            "reason": new.reason,
            "received_at": new.received_at,
            "updated_at": self.clock(),
            "files": sum(1 for f in new.files if f.kind in ("FI", "FS")),
            "bytes": sum(f.size for f in new.files if f.kind in ("FI", "FS")),
            "verified": False,
            "files_released": False,
        }

    def _insert_sets(self, conn: Connection, news: Sequence[NewSet]) -> list[int]:
        """Insert sets and take their uploads in ``conn`` (a few statements for all of them);
        :class:`_Conflict` if any upload was taken."""
        if len(news) == 1:
            ids = [int(conn.execute(INSERT_SET, self._set_values(news[0])).scalar_one())]
        else:
            made = {
                ticket: int(set_id)
                for set_id, ticket in conn.execute(INSERT_SETS, [self._set_values(n) for n in news])
            }
            ids = [made[new.ticket] for new in news]
        uploads = [f.upload_id for new in news for f in new.files]
        taken = conn.execute(TAKE_UPLOADS, {"b_ids": uploads})
        if taken.rowcount != len(uploads):
            raise _Conflict
        if self.inline_uploads:
            conn.execute(DROP_CONTENTS, {"b_ids": uploads})
        conn.execute(
            INSERT_SET_FILES,
            [
                {
                    "set_id": set_id,
                    "upload_id": f.upload_id,
                    "name": f.name,
                    "kind": f.kind,
                    "size": f.size,
                    "sha256": f.sha256,
                    "arrived_at": f.arrived_at,
                }
                for set_id, new in zip(ids, news, strict=True)
                for f in new.files
            ],
        )
        return ids

    async def intake(self, new: NewSet) -> int | None:
        """Record a new set and take its uploads; None when another worker took them first."""
        try:
            return (await self.db.write(self._insert_sets, [new]))[0]
        except (_Conflict, IntegrityError):
            return None

    async def intake_many(
        self, news: Sequence[NewSet], *, claim: int = 0
    ) -> tuple[list[int], list[Claim]] | None:
        """Record several new sets in one transaction (one commit for a burst of GOs), and with
        ``claim`` > 0 claim up to that many sets in the same transaction (as :meth:`claim`
        does: a commit and a thread hop fewer per set than claiming after).

        All or nothing: None when any of them conflicts; the caller then takes them one by one.
        Returns the new sets' ids and the claims.
        """

        def many(conn: Connection) -> tuple[list[int], list[Claim]]:
            ids = self._insert_sets(conn, news)
            return ids, self._claim(conn, claim) if claim > 0 else []

        try:
            return await self.db.write(many)
        except (_Conflict, IntegrityError):
            return None

    # -- claims --------------------------------------------------------------------------------

    async def release_all_claims(self) -> int:
        """Single-node start-up (SQLite): every claim left in the table is from a dead process."""
        statement = (
            update(SetRow)
            .where(SetRow.finished.is_(False), SetRow.claim_token.is_not(None))
            .values(claim_token=None, claim_until=None)
        )
        return await self.db.write(q_rowcount, statement)

    async def claim(self, limit: int) -> list[Claim]:
        """Claim up to ``limit`` unfinished, unclaimed (or expired), due sets, each with its
        record, files and key holder (read in the claim's transaction)."""
        return await self.db.write(self._claim, limit)

    def _claim(self, conn: Connection, limit: int) -> list[Claim]:
        now = self.clock()
        token = secrets.token_hex(16)
        params = {"b_now": now, "b_limit": limit, "b_token": token, "b_until": now + self.lease}
        claimed = SetRecord.all_of(conn.execute(self.statements.claim, params))
        rows = sorted(claimed, key=lambda r: r.id)
        loaded = _load_many(conn, rows)
        return [Claim(row.id, token, loaded[row.id]) for row in rows]

    async def load(self, set_id: int) -> SetRecord:
        """The set's record."""
        return SetRecord.of((await self.db.read(q_one, SET_BY_ID, {"b_set_id": set_id}))._mapping)

    async def load_with_files(self, set_id: int) -> tuple[SetRecord, tuple[SetFileRecord, ...]]:
        """The set's record and its files by name (one hop)."""
        loaded = await self.load_for_check(set_id)
        return loaded.row, loaded.files

    async def load_for_check(self, set_id: int) -> Loaded:
        """The set's record, its files by name, and the accepted set holding its key if any
        (one hop; the key constraint at :meth:`accept_key` stays the authority)."""

        def load(conn: Connection) -> Loaded:
            row = SetRecord.of(conn.execute(SET_BY_ID, {"b_set_id": set_id}).one()._mapping)
            return _load_many(conn, [row])[set_id]

        return await self.db.read(load)

    async def files_of(self, set_id: int) -> list[SetFileRecord]:
        """The set's files, by name."""

        def read(conn: Connection) -> list[SetFileRecord]:
            return SetFileRecord.all_of(conn.execute(FILES_OF_SET, {"b_set_id": set_id}))

        return await self.db.read(read)

    def _advance(self, conn: Connection, set_id: int, token: str, values: SetChanges) -> None:
        now = self.clock()
        params = {"updated_at": now, "claim_until": now + self.lease, **values}
        params.update(b_set_id=set_id, b_token=token)
        if conn.execute(ADVANCE, params).rowcount != 1:
            raise ClaimLost(set_id)

    async def _commit_step(self, row: SetRecord, token: str, values: SetChanges) -> SetRecord:
        """Commit a step of a set we hold; renews the claim; the record as committed. Raises
        :class:`ClaimLost`."""
        await self.db.write(self._advance, row.id, token, values)
        return _replaced(row, values)

    async def answer_resend(
        self, row: SetRecord, token: str, *, code: int, reason: str, earlier: str
    ) -> SetRecord:
        """Refuse an exact resend of the set accepted under ticket ``earlier``: its answer is that
        set's ACRF, sent again (``ack_of``), so no sequence number is allocated."""
        values: SetChanges = {
            "state": SetState.REJECTED,
            "code": code,
            "reason": reason,
            "duplicate_of": earlier,
            "ack_of": earlier,
        }
        return await self._commit_step(row, token, values)

    async def set_route_deadline(self, row: SetRecord, token: str, deadline: datetime) -> SetRecord:
        """Commit when routing the set gives up (set by its first failed attempt)."""
        return await self._commit_step(row, token, {"route_deadline": deadline})

    async def release(self, set_id: int, token: str, *, not_before: datetime | None) -> None:
        """Give the set back (e.g. to wait for a routing retry at ``not_before``)."""
        params = {"b_set_id": set_id, "b_token": token, "b_not_before": not_before}
        await self.db.write(q_rowcount, RELEASE, params)

    # -- duplicates ----------------------------------------------------------------------------

    async def accept_key(
        self,
        row: SetRecord,
        token: str,
        files: Sequence[SetFileRecord],
        *,
        digests: str,
        signers: dict[str, tuple[str, str]],
        day: date,
        **values: Unpack[SetChanges],
    ) -> Accepted | KeyHolder:
        """Reserve the set key and commit the verified step: the set as committed
        (:class:`Accepted`), or the earlier holder of the key when it is taken.

        The key, the signer of each FI, the ACRF's sequence number and the step commit
        together: a set is verified-and-accepted, or not at all. Allocating the number here
        saves a commit later: the ACRF is written right after delivery.
        """
        step = self.accept_step(row, token, digests=digests, signers=signers, day=day, **values)
        done = await self.db.step(self._steps, step)
        if done is LOST:
            raise ClaimLost(row.id)
        if isinstance(done, str):
            return accepted(row, files, values, done, signers)
        earlier = await self.key_holder(row)
        if earlier is None or earlier.set_id == row.id:
            raise ClaimLost(row.id)  # raced with ourselves after a takeover: let the sweep retry
        return earlier

    @staticmethod
    def accept_step(
        row: SetRecord,
        token: str,
        *,
        digests: str,
        signers: dict[str, tuple[str, str]],
        day: date,
        **values: Unpack[SetChanges],
    ) -> Step:
        """The step of :meth:`accept_key`, for :meth:`run_steps`."""
        key = {
            "sender": row.sender,
            "application": row.application,
            "created_date": row.created_date,
            "sequence": row.sequence,
            "environment": row.environment,
            "set_id": row.id,
            "ticket": row.ticket,
            "digests": digests,
        }
        signed = [
            {"b_set_id": row.id, "b_name": name, "b_fingerprint": fp, "b_subject": subject}
            for name, (fp, subject) in signers.items()
        ]
        return Step(
            set_id=row.id,
            token=token,
            values=values,
            key=key,
            signers=signed,
            allocate=(row.sender, day, row.environment),
        )

    async def release_key(self, set_id: int) -> None:
        """Free the key of a set that will not be accepted after all (destination down: 940)."""
        await self.db.write(q_rowcount, RELEASE_KEY, {"b_set_id": set_id})

    async def decide(
        self,
        row: SetRecord,
        token: str,
        *,
        recipient: str | None,
        day: date,
        environment: str,
        **values: Unpack[SetChanges],
    ) -> SetRecord:
        """Commit a set's outcome with its ACRF sequence number (allocated here, once); the
        record as committed.

        With ``recipient`` None no number is allocated (an exact resend reuses the original's).
        """
        step = self.decide_step(
            row, token, recipient=recipient, day=day, environment=environment, **values
        )
        done = await self.db.step(self._steps, step)
        if done is LOST:
            raise ClaimLost(row.id)
        if isinstance(done, str):
            return decided(row, values, done)
        return _replaced(row, values)

    @staticmethod
    def decide_step(
        row: SetRecord,
        token: str,
        *,
        recipient: str | None,
        day: date,
        environment: str,
        **values: Unpack[SetChanges],
    ) -> Step:
        """The step of :meth:`decide`, for :meth:`run_steps`."""
        return Step(
            set_id=row.id,
            token=token,
            values=values,
            allocate=None if recipient is None else (recipient, day, environment),
        )

    async def finish(self, step: Step) -> None:
        """The last commit of a set (a :meth:`finish_step`): its final state, its delivery, its
        return files, no claim, and its outcome appended to the registry's hash-chained audit
        trail (SECURITY.md 18)."""
        if await self.db.step(self._steps, step) is LOST:
            raise ClaimLost(step.set_id)

    @staticmethod
    def finish_step(
        set_id: int,
        token: str,
        *,
        return_rows: Sequence[ReturnFileValues],
        attempt: AttemptValues | None = None,
        audit: AuditRecord | None = None,
        **values: Unpack[SetChanges],
    ) -> Step:
        """The step of :meth:`finish`, for :meth:`run_steps`."""
        fields: SetChanges = {"finished": True, **values}
        return Step(
            set_id=set_id,
            token=token,
            values=fields,
            attempt=attempt,
            audit=audit,
            return_rows=return_rows,
            release=True,
        )

    async def run_steps(self, steps: Sequence[Step]) -> list[StepResult]:
        """Commit the steps of several sets in one write (a batch's, :mod:`.batch`): per step,
        its allocated number (str), None, :data:`LOST` or :data:`TAKEN` (see :meth:`_steps`)."""
        if not steps:
            return []
        return await self.db.write(self._steps, list(steps))

    def _steps(self, conn: Connection, steps: list[Step]) -> list[StepResult]:
        """Commit the steps of a batch of sets: a few statements for all of them, in a fixed
        order (claims, keys, numbers, signers, set rows, attempts, audit, return files), so
        two nodes' batches take the shared rows (counters, the audit head) in the same order.

        Per step: the allocated number (str), None, :data:`LOST` (the claim is not ours) or
        :data:`TAKEN` (the key is held by another set: nothing of the step is written).
        """
        now = self.clock()
        until = now + self.lease
        claims = [(s.set_id, s.token) for s in steps]
        held = set(conn.execute(HOLD_CLAIMS, {"b_claims": claims, "b_until": until}).scalars())
        results: dict[int, StepResult] = {s.set_id: LOST for s in steps if s.set_id not in held}
        keyed = [s for s in steps if s.key is not None and s.set_id in held]
        if keyed:
            keys = [s.key for s in keyed if s.key is not None]
            got = set(conn.execute(self.statements.reserve_keys, keys).scalars())
            results.update({s.set_id: TAKEN for s in keyed if s.set_id not in got})
        live = [s for s in steps if s.set_id not in results]
        numbers = self._allocate_many(conn, [(s.set_id, s.allocate) for s in live if s.allocate])
        signers = [p for s in live for p in s.signers]
        if signers:
            conn.execute(SIGN_SET_FILE, signers)
        shapes: dict[frozenset[str], list[dict[str, object]]] = {}
        for s in live:
            params: dict[str, object] = {"updated_at": now, "claim_until": until, **s.values}
            if s.release:
                params.update(claim_token=None, claim_until=None)
            if s.set_id in numbers:
                params["ack_sequence"] = numbers[s.set_id]
            params.update(b_set_id=s.set_id, b_token=s.token)
            shapes.setdefault(frozenset(params), []).append(params)
        for group in shapes.values():
            conn.execute(ADVANCE, group)
        attempts = [s.attempt for s in live if s.attempt is not None]
        if attempts:
            conn.execute(INSERT_ATTEMPT, attempts)
        outcomes = [s.audit for s in live if s.audit is not None]
        if outcomes:
            append_records(conn, outcomes)
        returned = [r for s in live for r in s.return_rows]
        if returned:
            conn.execute(self.statements.record_return_files, returned)
        if any(s.release for s in live):
            self.faults.reached(CrashPoint.BEFORE_COMMIT)
        return [results.get(s.set_id, numbers.get(s.set_id)) for s in steps]

    def _allocate_many(
        self, conn: Connection, wanted: Sequence[tuple[int, tuple[str, date, str]]]
    ) -> dict[int, str]:
        """Return-file numbers for several sets (set id, (recipient, day, environment)): one
        ``executemany`` that moves each counter past all the numbers it gives out."""
        if not wanted:
            return {}
        counts: dict[tuple[str, date, str], int] = {}
        for _, key in wanted:
            counts[key] = counts.get(key, 0) + 1
        params = [
            {"b_recipient": r, "b_day": d, "b_environment": e, "b_count": n}
            for (r, d, e), n in sorted(counts.items())
        ]
        rows = conn.execute(self.statements.allocate, params).all()
        following = {
            (row.recipient, row.day, row.environment): int(row.last)
            - counts[(row.recipient, row.day, row.environment)]
            + 1
            for row in rows
        }
        numbers = {}
        for set_id, key in wanted:
            numbers[set_id] = format_sequence(following[key])
            following[key] += 1
        return numbers

    async def sender_profile(self, sender: SenderNumber) -> SenderProfile | None:
        """The registry's sender profile, read in one hop on the store's connection."""
        return await self.db.read(load_sender_profile, sender)

    async def key_holder(self, row: SetRecord) -> KeyHolder | None:
        """The accepted set holding this set's key, if any (read only)."""
        found = await self.db.read(q_first, KEY_HOLDER, _key_params(row))
        return None if found is None else KeyHolder.of(found._mapping)

    async def set_by_ticket(self, ticket: str) -> SetRecord | None:
        """A set by its ticket."""
        found = await self.db.read(q_first, SET_BY_TICKET, {"b_ticket": ticket})
        return None if found is None else SetRecord.of(found._mapping)

    # -- return files --------------------------------------------------------------------------

    def _allocate(self, conn: Connection, recipient: str, day: date, environment: str) -> int:
        params = {
            "b_recipient": recipient,
            "b_day": day,
            "b_environment": environment,
            "b_count": 1,
        }
        return int(conn.execute(self.statements.allocate, params).one().last)

    async def next_sequence(self, recipient: str, day: date, environment: str) -> int:
        """Allocate the next return-file sequence number for (recipient, day, environment)."""
        return await self.db.write(self._allocate, recipient, day, environment)

    async def record_return_files(self, rows: Sequence[ReturnFileValues]) -> None:
        """Record return files placed in OUT (idempotent per sender, folder and name)."""
        if not rows:
            return
        statement = self.statements.record_return_files

        def record(conn: Connection) -> None:
            conn.execute(statement, list(rows))

        await self.db.write(record)

    # -- notifications posted by online services ---------------------------------------------

    async def notification(self, application: str, key: str) -> NotificationRecord | None:
        """The row of a posted notification by (``application``, idempotency ``key``), or None."""
        table = NOTIFICATIONS
        query = select(table).where(
            table.c.application == application, table.c.idempotency_key == key
        )
        found = await self.db.read(q_first, query)
        return None if found is None else NotificationRecord.of(found._mapping)

    async def reserve_notification(self, values: NotificationValues) -> NotificationRecord:
        """The row of (``application``, ``idempotency_key``): the one ``values`` describes when
        the key is new, else the one already there (read in the same transaction)."""
        table = NOTIFICATIONS
        where = and_(
            table.c.application == values["application"],
            table.c.idempotency_key == values["idempotency_key"],
        )

        def reserve(conn: Connection) -> NotificationRecord:
            conn.execute(self.statements.reserve_notification, dict(values))
            return NotificationRecord.of(q_one(conn, select(table).where(where))._mapping)

        return await self.db.write(reserve)

    async def notification_placed(
        self, row_id: int, placed_at: datetime, return_rows: Sequence[ReturnFileValues]
    ) -> None:
        """A notification's files are in OUT: their rows and ``placed_at``, in one commit."""
        table = NOTIFICATIONS

        def placed(conn: Connection) -> None:
            conn.execute(self.statements.record_return_files, list(return_rows))
            conn.execute(update(table).where(table.c.id == row_id).values(placed_at=placed_at))

        await self.db.write(placed)

    # -- routing attempts ----------------------------------------------------------------------

    async def record_attempt(self, attempt: AttemptValues) -> None:
        """Record one delivery attempt."""
        await self.db.write(q_rowcount, INSERT_ATTEMPT, dict(attempt))

    async def attempts(self, set_id: int) -> int:
        """How many delivery attempts the set has had."""
        return len(await self.db.read(q_all, ATTEMPT_IDS, {"b_set_id": set_id}))

    # -- refusals ------------------------------------------------------------------------------

    async def unanswered_refusals(self, limit: int) -> list[RefusalRecord]:
        """Up to ``limit`` refusals not answered yet, oldest first."""

        def read(conn: Connection) -> list[RefusalRecord]:
            return RefusalRecord.all_of(conn.execute(UNANSWERED_REFUSALS, {"b_limit": limit}))

        return await self.db.read(read)

    async def refusal_answered(self, refusal_id: int, now: datetime) -> None:
        """Mark a refusal answered without an answer (its sender has no OUT folder)."""
        await self.db.write(q_rowcount, ANSWER_REFUSAL, {"b_id": refusal_id, "b_now": now})

    async def claim_refusal(
        self,
        refusal_id: int,
        now: datetime,
        *,
        answer: tuple[str, str, date, str] | None,
    ) -> RefusalClaim:
        """Mark a refusal answered at ``now`` unless another worker did, and with ``answer``
        (sender, name shown, day, environment) allocate its ACRF's number and record the
        answer of (sender, name), all in one transaction (committed before any file is
        written: a crash loses an answer, never sends two)."""

        def claim(conn: Connection) -> RefusalClaim:
            claimed = conn.execute(CLAIM_REFUSAL, {"b_id": refusal_id, "b_now": now})
            if claimed.rowcount != 1:
                return RefusalClaim(claimed=False)
            if answer is None:
                return RefusalClaim(claimed=True)
            sender, name, day, environment = answer
            sequence = format_sequence(self._allocate(conn, sender, day, environment))
            params = {"b_sender": sender, "b_name": name, "b_now": now}
            conn.execute(self.statements.record_refusal_answer, params)
            return RefusalClaim(claimed=True, sequence=sequence)

        return await self.db.write(claim)

    async def refusal_last_answered(self, sender: str, name: str) -> datetime | None:
        """When this refused name was last answered, if ever."""
        params = {"b_sender": sender, "b_name": name}
        result: datetime | None = await self.db.read(q_scalar, LAST_ANSWERED, params)
        return result

    # -- retention -----------------------------------------------------------------------------

    async def return_files_to_purge(self, before: datetime, limit: int) -> list[ReturnFileRecord]:
        """Up to ``limit`` return files still in OUT that were written before ``before``."""

        def read(conn: Connection) -> list[ReturnFileRecord]:
            params = {"b_before": before, "b_limit": limit}
            return ReturnFileRecord.all_of(conn.execute(RETURN_FILES_BEFORE, params))

        return await self.db.read(read)

    async def return_file_purged(self, file_id: int, now: datetime) -> None:
        """A return file is gone from OUT (``purged_at``)."""
        await self.db.write(q_rowcount, PURGE_RETURN_FILE, {"b_id": file_id, "b_now": now})

    async def archives_to_purge(self, before: datetime, limit: int) -> list[ArchiveRecord]:
        """Up to ``limit`` sets whose archive is still there and was made before ``before``."""

        def read(conn: Connection) -> list[ArchiveRecord]:
            params = {"b_before": before, "b_limit": limit}
            return ArchiveRecord.all_of(conn.execute(ARCHIVES_BEFORE, params))

        return await self.db.read(read)

    async def archive_purged(self, set_id: int, now: datetime) -> None:
        """A set's archive is removed (``archive_purged_at``)."""
        await self.db.write(q_rowcount, PURGE_ARCHIVE, {"b_set_id": set_id, "b_now": now})

    async def unreleased_tickets(self) -> set[str]:
        """The tickets of the sets whose files are not released yet."""

        def read(conn: Connection) -> set[str]:
            return {str(ticket) for ticket in conn.execute(UNRELEASED_TICKETS).scalars()}

        return await self.db.read(read)


@dataclass(frozen=True, slots=True, kw_only=True)
class RefusalClaim:
    """:meth:`SetStore.claim_refusal`'s outcome: whether the refusal was ours to answer, and
    the number of its ACRF when one is to be written."""

    claimed: bool
    sequence: str | None = None


# -- trace: reads on a caller's connection (``gateway trace`` runs them on any engine) -----------


def sets_of_ticket(conn: Connection, ticket: str) -> list[SetRecord]:
    """The sets with this ticket."""
    return SetRecord.all_of(conn.execute(SET_BY_TICKET, {"b_ticket": ticket}))


def return_files_of_ticket(conn: Connection, ticket: str) -> list[ReturnFileRecord]:
    """The return files of a ticket."""
    return ReturnFileRecord.all_of(conn.execute(RETURN_FILES_OF_TICKET, {"b_ticket": ticket}))


def sets_named(conn: Connection, name: str) -> list[SetRecord]:
    """The sets a file of this name triggered or belongs to."""
    return SetRecord.all_of(conn.execute(SETS_NAMED, {"b_name": name}))


def pending_named(conn: Connection, name: str) -> list[PendingUpload]:
    """The pending uploads of this name."""
    return PendingUpload.all_of(conn.execute(PENDING_NAMED, {"b_name": name}))


def refusals_named(conn: Connection, name: str) -> list[RefusalRecord]:
    """The refusals of uploads of this name, oldest first."""
    return RefusalRecord.all_of(conn.execute(REFUSALS_NAMED, {"b_name": name}))


def return_files_named(conn: Connection, name: str) -> list[ReturnFileRecord]:
    """The return files of this name or about it (their subject)."""
    return ReturnFileRecord.all_of(conn.execute(RETURN_FILES_NAMED, {"b_name": name}))


def set_story(conn: Connection, row: SetRecord) -> SetStory:
    """A set's files, delivery attempts and ACRF files (those of the set it resends, for an
    exact resend)."""
    files = SetFileRecord.all_of(conn.execute(FILES_OF_SET, {"b_set_id": row.id}))
    attempts = AttemptRecord.all_of(conn.execute(ATTEMPTS_OF_SET, {"b_set_id": row.id}))
    ticket = row.ticket if row.ack_of is None else row.ack_of
    acks = ReturnFileRecord.all_of(conn.execute(ACRFS_OF_TICKET, {"b_ticket": ticket}))
    return SetStory(row=row, files=files, attempts=attempts, acknowledgement=acks)


class _Conflict(Exception):
    """Internal: the uploads were taken by someone else in the meantime."""


def _replaced(row: SetRecord, values: SetChanges) -> SetRecord:
    """``row`` with the columns a step wrote."""
    changed: dict[str, object] = dict(values)
    return replace(row, **changed)  # type: ignore[arg-type]  # the keys are SetRecord fields


def _load_many(conn: Connection, rows: Sequence[SetRecord]) -> dict[int, Loaded]:
    """The files and key holders of ``rows``, two statements for all of them."""
    if not rows:
        return {}
    ids = {"b_ids": [row.id for row in rows]}
    files: dict[int, list[SetFileRecord]] = {row.id: [] for row in rows}
    for f in SetFileRecord.all_of(conn.execute(FILES_OF_SETS, ids)):
        files[f.set_id].append(f)
    holders = {h.for_set: KeyHolder.of(h._mapping) for h in conn.execute(KEY_HOLDERS_OF_SETS, ids)}
    return {
        row.id: Loaded(row=row, files=tuple(files[row.id]), holder=holders.get(row.id))
        for row in rows
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One set's step for :meth:`SetStore._steps` (built by the store's ``*_step`` methods)."""

    set_id: int
    token: str
    values: SetChanges
    key: dict[str, object] | None = None
    """The ``accepted_keys`` row to reserve first; taken: the step is not written."""
    allocate: tuple[str, date, str] | None = None
    """(recipient, day, environment): allocate the ACRF's number (``ack_sequence``)."""
    signers: Sequence[dict[str, object]] = ()
    attempt: AttemptValues | None = None
    audit: AuditRecord | None = None
    return_rows: Sequence[ReturnFileValues] = ()
    release: bool = False
    """The set's last step: its claim is released."""


class StepOutcome(Enum):
    """A step's result other than a number or None."""

    LOST = "lost"
    """The set's claim is no longer ours: nothing of the step is written."""
    TAKEN = "taken"
    """Another set holds the key: nothing of the step is written."""


LOST = StepOutcome.LOST
TAKEN = StepOutcome.TAKEN
StepResult = str | StepOutcome | None
"""What :meth:`SetStore.run_steps` gives per step: the ACRF number it allocated, None, or a
:class:`StepOutcome`."""


def decided(row: SetRecord, values: SetChanges, number: str) -> SetRecord:
    """The set as a deciding step (``values``, its ACRF number) committed it."""
    return replace(_replaced(row, values), ack_sequence=number)


def accepted(
    row: SetRecord,
    files: Sequence[SetFileRecord],
    values: SetChanges,
    number: str,
    signers: dict[str, tuple[str, str]],
) -> Accepted:
    """The set and its files as an accepted step (``values``, number, signers) committed them."""
    committed = decided(row, values, number)
    return Accepted(
        committed,
        tuple(
            replace(f, signer_fingerprint=signers[f.name][0], signer_subject=signers[f.name][1])
            if f.name in signers
            else f
            for f in files
        ),
    )


def _key_params(row: SetRecord) -> dict[str, object]:
    """:data:`KEY_HOLDER`'s parameters for a set's row."""
    return {
        "b_sender": row.sender,
        "b_application": row.application,
        "b_created_date": row.created_date,
        "b_sequence": row.sequence,
        "b_environment": row.environment,
    }
