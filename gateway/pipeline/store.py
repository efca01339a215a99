"""Set state in the registry database: intake, claims, guarded step commits, counters.

Rules, and why:
- Every step of a set commits through :meth:`SetStore.advance`, an ``UPDATE … WHERE id = ? AND
  claim_token = ?``: a worker whose claim expired (or was taken over after a crash) cannot
  overwrite the state another worker wrote. A lost claim raises :class:`ClaimLost`, and that
  worker drops the set.
- Claims pick rows with ``SELECT … FOR UPDATE SKIP LOCKED`` (PostgreSQL: two workers never wait
  for or take the same row) and then write the claim with a conditional ``UPDATE`` that only
  succeeds on an unclaimed or expired row, which is also what keeps SQLite (no row locks, one
  writer at a time) correct.
- Every write transaction starts with a write statement, so SQLite takes its write lock at the
  first statement (waiting on ``busy_timeout``) instead of failing to upgrade a read snapshot.
- Return-file sequence numbers come from one counter row per (recipient, date, environment),
  incremented with an upsert: unique across workers and nodes. A set stores its number once, so
  a retry after a crash rewrites the same ACRF names instead of allocating new ones.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.core.receipts import format_sequence
from gateway.pipeline.audit import AuditRecord, append_outcome
from gateway.pipeline.db import (
    Database,
    q_all,
    q_first,
    q_one,
    q_rowcount,
    q_scalar,
)
from gateway.pipeline.statements import (
    ADVANCE,
    FILES_OF_SET,
    INSERT_ATTEMPT,
    INSERT_KEY,
    INSERT_SET,
    INSERT_SET_FILES,
    KEY_HOLDER,
    NOTIFICATIONS,
    PENDING_WITH_STEM,
    SET_BY_ID,
    SET_BY_TICKET,
    SIGN_SET_FILE,
    TAKE_UPLOADS,
    DialectStatements,
    dialect_insert,
)
from gateway.pipeline.tables import (
    AcceptedKeyRow,
    NewSet,
    RefusalAnswerRow,
    RouteAttemptRow,
    SetRow,
)
from gateway.registry.auth import load_sender_profile
from gateway.registry.types import SenderNumber, SenderProfile
from gateway.spool.commit import write_turn
from gateway.spool.tables import UPLOAD_PENDING, UploadRow

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Accepted:
    """A set's row and files as :meth:`SetStore.accept_key` committed them (read in its
    transaction, so the caller needs no second read)."""

    row: Any
    files: list[Any]


class ClaimLost(Exception):
    """Another worker owns the set now (our claim expired); drop it without writing."""


class SetState:
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

    def __init__(self, engine: AsyncEngine, clock: Clock, *, lease: timedelta) -> None:
        self.engine = engine
        self.clock = clock
        self.lease = lease
        self.dialect_insert = dialect_insert(engine.dialect.name)
        self.statements = DialectStatements(engine.dialect.name)
        self.db = Database(engine)

    def close(self) -> None:
        """Release the store's database thread (SQLite)."""
        self.db.close()

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (queued behind the process's other writes on SQLite).

        SQLite has one writer; connections that collide wait in SQLite's busy handler, which
        sleeps in steps of up to 100 ms. The pipeline and the spool's group commit take turns
        on one lock instead (:func:`gateway.spool.commit.write_turn`).
        """
        async with write_turn(self.engine), self.engine.begin() as conn:
            yield conn

    # -- intake --------------------------------------------------------------------------------

    async def pending_triggers(self, limit: int = 200) -> list[Any]:
        """Pending GO/TD uploads, oldest first."""
        query = (
            select(UploadRow)
            .where(
                UploadRow.state == UPLOAD_PENDING,
                or_(UploadRow.name.like("GO.%"), UploadRow.name.like("TD.%")),
            )
            .order_by(UploadRow.id)
            .limit(limit)
        )
        return await self.db.read(q_all, query)

    async def pending_with_stem(self, sender: str, folder: str, stem: str) -> list[Any]:
        """Pending uploads of one sender and folder whose name continues with ``.stem``."""
        return (await self.pending_with_stems([(sender, folder, stem)]))[0]

    async def pending_with_stems(self, keys: Sequence[tuple[str, str, str]]) -> list[list[Any]]:
        """:meth:`pending_with_stem` for several (sender, folder, stem) at once (one hop)."""
        # The stem holds only [A-Z0-9.] (it comes from a parsed name), so no LIKE wildcard.
        params = [
            {"b_sender": sender, "b_folder": folder, "b_like": f"__.{stem}%"}
            for sender, folder, stem in keys
        ]

        def each(conn: Connection) -> list[list[Any]]:
            return [list(conn.execute(PENDING_WITH_STEM, p).all()) for p in params]

        return await self.db.read(each)

    async def pending_uploads_before(self, before: datetime, limit: int = 500) -> list[Any]:
        """Pending FI/FS uploads that arrived before ``before`` (candidates for a timeout)."""
        query = (
            select(UploadRow)
            .where(UploadRow.state == UPLOAD_PENDING, UploadRow.arrived_at < before)
            .order_by(UploadRow.id)
            .limit(limit)
        )
        return await self.db.read(q_all, query)

    def _insert_set(self, conn: Connection, new: NewSet) -> int:
        """Insert one set and take its uploads in ``conn``; :class:`_Conflict` if taken."""
        values = {
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
        ids = [f.upload_id for f in new.files]
        set_id = int(conn.execute(INSERT_SET, values).scalar_one())
        taken = conn.execute(TAKE_UPLOADS, {"b_ids": ids})
        if taken.rowcount != len(ids):
            raise _Conflict
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
                for f in new.files
            ],
        )
        return set_id

    async def intake(self, new: NewSet) -> int | None:
        """Record a new set and take its uploads; None when another worker took them first."""
        try:
            return await self.db.write(self._insert_set, new)
        except (_Conflict, IntegrityError):
            return None

    async def intake_many(
        self, news: Sequence[NewSet], *, claim: int = 0
    ) -> tuple[list[int], list[tuple[int, str]]] | None:
        """Record several new sets in one transaction (one commit for a burst of GOs), and with
        ``claim`` > 0 claim up to that many sets in the same transaction (as :meth:`claim`
        does: a commit and a thread hop fewer per set than claiming after).

        All or nothing: None when any of them conflicts; the caller then takes them one by one.
        Returns the new sets' ids and the claims.
        """

        def many(conn: Connection) -> tuple[list[int], list[tuple[int, str]]]:
            ids = [self._insert_set(conn, new) for new in news]
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

    async def claim(self, limit: int) -> list[tuple[int, str]]:
        """Claim up to ``limit`` unfinished, unclaimed (or expired), due sets: (id, token) each."""
        return await self.db.write(self._claim, limit)

    def _claim(self, conn: Connection, limit: int) -> list[tuple[int, str]]:
        now = self.clock()
        token = secrets.token_hex(16)
        claimable = and_(
            SetRow.finished.is_(False),
            or_(SetRow.claim_until.is_(None), SetRow.claim_until < now),
            or_(SetRow.not_before.is_(None), SetRow.not_before <= now),
        )
        if self.engine.dialect.name == "postgresql":
            picked = (
                select(SetRow.id)
                .where(claimable)
                .order_by(SetRow.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
        else:
            picked = (
                select(SetRow.id).where(claimable).order_by(SetRow.id).limit(limit)
            ).scalar_subquery()
        statement = (
            update(SetRow)
            .where(SetRow.id.in_(picked), claimable)
            .values(
                claim_token=token,
                claim_until=now + self.lease,
                state=case(
                    (SetRow.state == SetState.RECEIVED, SetState.CHECKING),
                    else_=SetRow.state,
                ),
            )
            .returning(SetRow.id)
        )
        ids = sorted(int(i) for i in conn.execute(statement).scalars())
        return [(i, token) for i in ids]

    async def load(self, set_id: int) -> Any:
        """The set's row."""
        return await self.db.read(q_one, SET_BY_ID, {"b_set_id": set_id})

    async def load_with_files(self, set_id: int) -> tuple[Any, list[Any]]:
        """The set's row and its files by name (one hop)."""
        return await self.db.read(_set_and_files, set_id)

    async def load_for_check(self, set_id: int) -> tuple[Any, list[Any], Any | None]:
        """The set's row, its files by name, and the accepted set holding its key if any (one
        hop; the key constraint at :meth:`accept_key` stays the authority)."""

        def three(conn: Connection) -> tuple[Any, list[Any], Any | None]:
            row, files = _set_and_files(conn, set_id)
            return row, files, conn.execute(KEY_HOLDER, _key_params(row)).first()

        return await self.db.read(three)

    async def files_of(self, set_id: int) -> list[Any]:
        """The set's files, by name."""
        return await self.db.read(q_all, FILES_OF_SET, {"b_set_id": set_id})

    def _advance(self, conn: Connection, set_id: int, token: str, values: dict[str, Any]) -> None:
        now = self.clock()
        params = {"updated_at": now, "claim_until": now + self.lease, **values}
        params.update(b_set_id=set_id, b_token=token)
        if conn.execute(ADVANCE, params).rowcount != 1:
            raise ClaimLost(set_id)

    async def advance(self, set_id: int, token: str, **values: Any) -> None:
        """Commit a step of a set we hold; renews the claim. Raises :class:`ClaimLost`."""
        await self.db.write(self._advance, set_id, token, values)

    async def release(self, set_id: int, token: str, *, not_before: datetime | None) -> None:
        """Give the set back (e.g. to wait for a routing retry at ``not_before``)."""
        statement = (
            update(SetRow)
            .where(SetRow.id == set_id, SetRow.claim_token == token)
            .values(claim_token=None, claim_until=None, not_before=not_before)
        )
        await self.db.write(q_rowcount, statement)

    # -- duplicates ----------------------------------------------------------------------------

    async def accept_key(
        self,
        set_id: int,
        token: str,
        row: Any,
        *,
        digests: str,
        signers: dict[str, tuple[str, str]],
        day: date,
        **values: Any,
    ) -> Accepted | Any:
        """Reserve the set key and commit the verified step: the set as committed
        (:class:`Accepted`), or the earlier holder of the key when it is taken.

        The key insert, the signer of each FI, the ACRF's sequence number and the step commit
        are one transaction: a set is verified-and-accepted, or not at all. Allocating the
        number here saves a commit later: the ACRF is written right after delivery.
        """

        def accept(conn: Connection) -> Accepted:
            number = self._allocate(conn, row.sender, day, row.environment)
            key = {
                "sender": row.sender,
                "application": row.application,
                "created_date": row.created_date,
                "sequence": row.sequence,
                "environment": row.environment,
                "set_id": set_id,
                "ticket": row.ticket,
                "digests": digests,
            }
            conn.execute(INSERT_KEY, key)
            signed = [
                {"b_set_id": set_id, "b_name": name, "b_fingerprint": fp, "b_subject": subject}
                for name, (fp, subject) in signers.items()
            ]
            if signed:
                conn.execute(SIGN_SET_FILE, signed)
            self._advance(conn, set_id, token, {**values, "ack_sequence": format_sequence(number)})
            return Accepted(*_set_and_files(conn, set_id))

        try:
            return await self.db.write(accept)
        except IntegrityError:
            pass
        earlier = await self.key_holder(row)
        if earlier is None or earlier.set_id == set_id:
            raise ClaimLost(set_id)  # raced with ourselves after a takeover: let the sweep retry
        return earlier

    async def release_key(self, set_id: int) -> None:
        """Free the key of a set that will not be accepted after all (destination down: 940)."""
        statement = delete(AcceptedKeyRow).where(AcceptedKeyRow.set_id == set_id)
        await self.db.write(q_rowcount, statement)

    async def decide(
        self,
        set_id: int,
        token: str,
        *,
        recipient: str | None,
        day: date,
        environment: str,
        **values: Any,
    ) -> str | None:
        """Commit a set's outcome with its ACRF sequence number (allocated here, once).

        With ``recipient`` None no number is allocated (an exact resend reuses the original's).
        Returns the formatted sequence number, or None.
        """

        def decide(conn: Connection) -> str | None:
            sequence: str | None = None
            fields = values
            if recipient is not None:
                sequence = format_sequence(self._allocate(conn, recipient, day, environment))
                fields = {**values, "ack_sequence": sequence}
            self._advance(conn, set_id, token, fields)
            return sequence

        return await self.db.write(decide)

    async def finish(
        self,
        set_id: int,
        token: str,
        *,
        return_rows: Sequence[dict[str, Any]],
        attempt: dict[str, Any] | None = None,
        audit: AuditRecord | None = None,
        **values: Any,
    ) -> None:
        """The last commit of a set: its final state, its delivery, its return files, no claim,
        and its outcome appended to the registry's hash-chained audit trail (SECURITY.md 18)."""

        def finish(conn: Connection) -> None:
            fields = {"finished": True, "claim_token": None, "claim_until": None, **values}
            self._advance(conn, set_id, token, fields)
            if attempt is not None:
                conn.execute(INSERT_ATTEMPT, attempt)
            if audit is not None:
                append_outcome(conn, audit)
            if return_rows:
                conn.execute(self.statements.record_return_files, list(return_rows))

        await self.db.write(finish)

    async def sender_profile(self, sender: SenderNumber) -> SenderProfile | None:
        """The registry's sender profile, read in one hop on the store's connection."""
        return await self.db.read(load_sender_profile, sender)

    async def key_holder(self, row: Any) -> Any | None:
        """The accepted set holding this set's key, if any (read only)."""
        return await self.db.read(q_first, KEY_HOLDER, _key_params(row))

    async def set_by_ticket(self, ticket: str) -> Any | None:
        """A set by its ticket."""
        return await self.db.read(q_first, SET_BY_TICKET, {"b_ticket": ticket})

    # -- return files --------------------------------------------------------------------------

    def _allocate(self, conn: Connection, recipient: str, day: date, environment: str) -> int:
        params = {"b_recipient": recipient, "b_day": day, "b_environment": environment}
        return int(conn.execute(self.statements.allocate, params).scalar_one())

    async def allocate(
        self, conn: AsyncConnection, recipient: str, day: date, environment: str
    ) -> int:
        """Next sequence number for (recipient, day, environment), inside ``conn``'s transaction."""
        return await conn.run_sync(self._allocate, recipient, day, environment)

    async def next_sequence(self, recipient: str, day: date, environment: str) -> int:
        """Allocate the next return-file sequence number for (recipient, day, environment)."""
        return await self.db.write(self._allocate, recipient, day, environment)

    async def record_return_files(self, rows: Sequence[dict[str, Any]]) -> None:
        """Record return files placed in OUT (idempotent per sender, folder and name)."""
        if not rows:
            return
        statement = self.statements.record_return_files

        def record(conn: Connection) -> None:
            conn.execute(statement, list(rows))

        await self.db.write(record)

    # -- notifications posted by online services ---------------------------------------------

    async def notification(self, application: str, key: str) -> Any | None:
        """The row of a posted notification by (``application``, idempotency ``key``), or None."""
        table = NOTIFICATIONS
        query = select(table).where(
            table.c.application == application, table.c.idempotency_key == key
        )
        return await self.db.read(q_first, query)

    async def reserve_notification(self, values: dict[str, Any]) -> Any:
        """The row of (``application``, ``idempotency_key``): the one ``values`` describes when
        the key is new, else the one already there (read in the same transaction)."""
        table = NOTIFICATIONS
        where = and_(
            table.c.application == values["application"],
            table.c.idempotency_key == values["idempotency_key"],
        )

        def reserve(conn: Connection) -> Any:
            conn.execute(self.statements.reserve_notification, values)
            return q_one(conn, select(table).where(where))

        return await self.db.write(reserve)

    async def notification_placed(
        self, row_id: int, placed_at: datetime, return_rows: Sequence[dict[str, Any]]
    ) -> None:
        """A notification's files are in OUT: their rows and ``placed_at``, in one commit."""
        table = NOTIFICATIONS

        def placed(conn: Connection) -> None:
            conn.execute(self.statements.record_return_files, list(return_rows))
            conn.execute(update(table).where(table.c.id == row_id).values(placed_at=placed_at))

        await self.db.write(placed)

    # -- routing attempts ----------------------------------------------------------------------

    async def record_attempt(self, **values: Any) -> None:
        """Record one delivery attempt."""
        await self.db.write(q_rowcount, insert(RouteAttemptRow).values(**values))

    async def attempts(self, set_id: int) -> int:
        """How many delivery attempts the set has had."""
        query = select(RouteAttemptRow.id).where(RouteAttemptRow.set_id == set_id)
        return len(await self.db.read(q_all, query))

    # -- refusals ------------------------------------------------------------------------------

    async def refusal_last_answered(self, sender: str, name: str) -> datetime | None:
        """When this refused name was last answered, if ever."""
        query = select(RefusalAnswerRow.answered_at).where(
            RefusalAnswerRow.sender == sender, RefusalAnswerRow.name == name
        )
        result: datetime | None = await self.db.read(q_scalar, query)
        return result


class _Conflict(Exception):
    """Internal: the uploads were taken by someone else in the meantime."""


def _set_and_files(conn: Connection, set_id: int) -> tuple[Any, list[Any]]:
    """A set's row and its files by name, in ``conn``."""
    params = {"b_set_id": set_id}
    return conn.execute(SET_BY_ID, params).one(), list(conn.execute(FILES_OF_SET, params))


def _key_params(row: Any) -> dict[str, Any]:
    """:data:`KEY_HOLDER`'s parameters for a set's row."""
    return {
        "b_sender": row.sender,
        "b_application": row.application,
        "b_created_date": row.created_date,
        "b_sequence": row.sequence,
        "b_environment": row.environment,
    }
