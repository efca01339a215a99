"""The statements every set runs, built once on the tables and executed with parameters.

Why: a statement built per call on the ORM classes (``update(SetRow).where(…).values(**kw)``)
costs SQLAlchemy a coercion of every value and a new cache key before the compiled form is
found in its cache; on a busy gateway that was about half of the pipeline's CPU per set. These
statements are made once on the ``Table`` objects, with ``bindparam`` placeholders: their cache
key is computed once and every execution only binds values. Statements whose columns vary with
the step (:data:`ADVANCE`) take their ``SET`` columns from the parameter names, as SQLAlchemy
does for an ``UPDATE`` without ``values()``.

Parameter names that stand for a ``WHERE`` value start with ``b_``: SQLAlchemy reserves a
column's own name for its new value.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import (
    Integer,
    Table,
    and_,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.elements import BindParameter

from gateway.pipeline.tables import (
    AcceptedKeyRow,
    NotificationRow,
    RefusalAnswerRow,
    ReturnCounterRow,
    ReturnFileRow,
    RouteAttemptRow,
    SetFileRow,
    SetRow,
)
from gateway.spool.tables import UploadRefusalRow, UploadRow, UploadState

"""``uploads.state`` once the pipeline has taken the file into a set (it left the IN listing)."""


def _table(row: type) -> Table:
    return cast(Table, row.__table__)  # type: ignore[attr-defined]


SETS = _table(SetRow)
SET_FILES = _table(SetFileRow)
ACCEPTED_KEYS = _table(AcceptedKeyRow)
RETURN_COUNTERS = _table(ReturnCounterRow)
ROUTE_ATTEMPTS = _table(RouteAttemptRow)
RETURN_FILES = _table(ReturnFileRow)
NOTIFICATIONS = _table(NotificationRow)
UPLOADS = _table(UploadRow)
REFUSALS = _table(UploadRefusalRow)
REFUSAL_ANSWERS = _table(RefusalAnswerRow)

# -- sets -------------------------------------------------------------------------------------

ADVANCE = update(SETS).where(
    SETS.c.id == bindparam("b_set_id"), SETS.c.claim_token == bindparam("b_token")
)
"""A guarded step commit: parameters ``b_set_id``, ``b_token`` and the columns to set."""

RELEASE = (
    update(SETS)
    .where(SETS.c.id == bindparam("b_set_id"), SETS.c.claim_token == bindparam("b_token"))
    .values(claim_token=None, claim_until=None, not_before=bindparam("b_not_before"))
)
"""Give a held set back, due again at ``b_not_before``."""
INSERT_SET = insert(SETS).returning(SETS.c.id)
INSERT_SETS = insert(SETS).returning(SETS.c.id, SETS.c.ticket)
"""Several new sets in one ``executemany``: (id, ticket) each, in no particular order."""
HOLD_CLAIMS = (
    update(SETS)
    .where(
        tuple_(SETS.c.id, SETS.c.claim_token).in_(bindparam("b_claims", expanding=True)),
        SETS.c.finished.is_(False),
    )
    .values(claim_until=bindparam("b_until"))
    .returning(SETS.c.id)
)
"""The claims of a batch, (id, token) pairs, renewed in one statement that also says which are
still ours (a write first: SQLite takes its write lock here; PostgreSQL locks the rows)."""
FILES_OF_SETS = (
    select(SET_FILES)
    .where(SET_FILES.c.set_id.in_(bindparam("b_ids", expanding=True)))
    .order_by(SET_FILES.c.set_id, SET_FILES.c.name)
)
SET_BY_ID = select(SETS).where(SETS.c.id == bindparam("b_set_id"))
SET_BY_TICKET = select(SETS).where(SETS.c.ticket == bindparam("b_ticket"))
FILES_OF_SET = (
    select(SET_FILES).where(SET_FILES.c.set_id == bindparam("b_set_id")).order_by(SET_FILES.c.name)
)
INSERT_SET_FILES = insert(SET_FILES)
SIGN_SET_FILE = (
    update(SET_FILES)
    .where(SET_FILES.c.set_id == bindparam("b_set_id"), SET_FILES.c.name == bindparam("b_name"))
    .values(signer_fingerprint=bindparam("b_fingerprint"), signer_subject=bindparam("b_subject"))
)

# -- uploads ----------------------------------------------------------------------------------

TAKE_UPLOADS = (
    update(UPLOADS)
    .where(
        UPLOADS.c.id.in_(bindparam("b_ids", expanding=True)), UPLOADS.c.state == UploadState.PENDING
    )
    .values(state=UploadState.TAKEN)
)
PENDING_TRIGGERS = (
    select(UPLOADS)
    .where(
        UPLOADS.c.state == UploadState.PENDING,
        or_(UPLOADS.c.name.like("GO.%"), UPLOADS.c.name.like("TD.%")),
    )
    .order_by(UPLOADS.c.id)
    .limit(bindparam("b_limit", type_=Integer))
)
"""Up to ``b_limit`` pending GO/TD uploads, oldest first."""
PENDING_BEFORE = (
    select(UPLOADS)
    .where(UPLOADS.c.state == UploadState.PENDING, UPLOADS.c.arrived_at < bindparam("b_before"))
    .order_by(UPLOADS.c.id)
    .limit(bindparam("b_limit", type_=Integer))
)
"""Up to ``b_limit`` pending uploads that arrived before ``b_before``, oldest first."""
PENDING_WITH_STEMS = (
    select(UPLOADS)
    .where(
        tuple_(
            UPLOADS.c.sender,
            UPLOADS.c.folder,
            func.substr(UPLOADS.c.name, 3, bindparam("b_length", type_=Integer)),
        ).in_(bindparam("b_keys", expanding=True)),
        UPLOADS.c.state == UploadState.PENDING,
    )
    .order_by(UPLOADS.c.id)
)
"""Pending uploads whose (sender, folder, name from its third character) is one of ``b_keys``,
each name part ``b_length`` characters long (``.<stem>``), in one statement: only the matching
rows leave the database, not every pending upload of the folders."""

# -- sweep: refusals, retention, stray work directories ------------------------------------------

_LIMIT = bindparam("b_limit", type_=Integer)
UNANSWERED_REFUSALS = (
    select(REFUSALS).where(REFUSALS.c.answered_at.is_(None)).order_by(REFUSALS.c.id).limit(_LIMIT)
)
"""Up to ``b_limit`` refusals not answered yet, oldest first."""
_ANSWERED = bindparam("b_now", type_=REFUSALS.c.answered_at.type)
ANSWER_REFUSAL = (
    update(REFUSALS).where(REFUSALS.c.id == bindparam("b_id")).values(answered_at=_ANSWERED)
)
"""Mark refusal ``b_id`` answered at ``b_now``."""
CLAIM_REFUSAL = (
    update(REFUSALS)
    .where(REFUSALS.c.id == bindparam("b_id"), REFUSALS.c.answered_at.is_(None))
    .values(answered_at=_ANSWERED)
)
"""Mark refusal ``b_id`` answered at ``b_now`` unless it already is (one row: ours to answer)."""
LAST_ANSWERED = select(REFUSAL_ANSWERS.c.answered_at).where(
    REFUSAL_ANSWERS.c.sender == bindparam("b_sender"), REFUSAL_ANSWERS.c.name == bindparam("b_name")
)
"""When (``b_sender``, ``b_name``) was last answered."""
RETURN_FILES_BEFORE = (
    select(RETURN_FILES)
    .where(RETURN_FILES.c.purged_at.is_(None), RETURN_FILES.c.written_at < bindparam("b_before"))
    .limit(_LIMIT)
)
"""Up to ``b_limit`` return files still in OUT written before ``b_before``."""
PURGE_RETURN_FILE = (
    update(RETURN_FILES)
    .where(RETURN_FILES.c.id == bindparam("b_id"))
    .values(purged_at=bindparam("b_now", type_=RETURN_FILES.c.purged_at.type))
)
ARCHIVES_BEFORE = (
    select(SETS.c.id, SETS.c.ticket, SETS.c.sender, SETS.c.archive_path, SETS.c.archived_at)
    .where(
        SETS.c.archived_at.is_not(None),
        SETS.c.archive_purged_at.is_(None),
        SETS.c.archived_at < bindparam("b_before"),
    )
    .limit(_LIMIT)
)
"""Up to ``b_limit`` archived sets, archive still there, archived before ``b_before``."""
PURGE_ARCHIVE = (
    update(SETS)
    .where(SETS.c.id == bindparam("b_set_id"))
    .values(archive_purged_at=bindparam("b_now", type_=SETS.c.archive_purged_at.type))
)
UNRELEASED_TICKETS = select(SETS.c.ticket).where(SETS.c.files_released.is_(False))

# -- trace: a ticket's or a file name's story ----------------------------------------------------

_TICKET: BindParameter[str] = bindparam("b_ticket")
_NAME: BindParameter[str] = bindparam("b_name")
RETURN_FILES_OF_TICKET = select(RETURN_FILES).where(RETURN_FILES.c.ticket == _TICKET)
ACRFS_OF_TICKET = (
    select(RETURN_FILES)
    .where(RETURN_FILES.c.ticket == _TICKET, RETURN_FILES.c.kind == "acrf")
    .order_by(RETURN_FILES.c.id)
)
SETS_NAMED = select(SETS).where(
    or_(
        SETS.c.trigger_name == _NAME,
        SETS.c.id.in_(select(SET_FILES.c.set_id).where(SET_FILES.c.name == _NAME)),
    )
)
"""The sets ``b_name`` triggered or belongs to."""
PENDING_NAMED = select(UPLOADS).where(
    UPLOADS.c.name == _NAME, UPLOADS.c.state == UploadState.PENDING
)
REFUSALS_NAMED = select(REFUSALS).where(REFUSALS.c.name == _NAME).order_by(REFUSALS.c.id)
RETURN_FILES_NAMED = select(RETURN_FILES).where(
    or_(RETURN_FILES.c.name == _NAME, RETURN_FILES.c.subject == _NAME)
)
"""Return files named ``b_name`` or about it (their subject)."""
ATTEMPTS_OF_SET = (
    select(ROUTE_ATTEMPTS)
    .where(ROUTE_ATTEMPTS.c.set_id == bindparam("b_set_id"))
    .order_by(ROUTE_ATTEMPTS.c.attempt)
)

# -- keys, attempts -----------------------------------------------------------------------------

_KEY = (
    ACCEPTED_KEYS.c.sender == bindparam("b_sender"),
    ACCEPTED_KEYS.c.application == bindparam("b_application"),
    ACCEPTED_KEYS.c.created_date == bindparam("b_created_date"),
    ACCEPTED_KEYS.c.sequence == bindparam("b_sequence"),
    ACCEPTED_KEYS.c.environment == bindparam("b_environment"),
)
KEY_HOLDER = select(ACCEPTED_KEYS).where(*_KEY)
"""The accepted set holding a key: parameters ``b_sender`` … ``b_environment``."""
KEY_HOLDERS_OF_SETS = (
    select(ACCEPTED_KEYS, SETS.c.id.label("for_set"))
    .join(
        SETS,
        and_(
            ACCEPTED_KEYS.c.sender == SETS.c.sender,
            ACCEPTED_KEYS.c.application == SETS.c.application,
            ACCEPTED_KEYS.c.created_date == SETS.c.created_date,
            ACCEPTED_KEYS.c.sequence == SETS.c.sequence,
            ACCEPTED_KEYS.c.environment == SETS.c.environment,
        ),
    )
    .where(SETS.c.id.in_(bindparam("b_ids", expanding=True)))
)
"""The holders of the keys of several sets (``for_set``: the set whose key it holds)."""

RELEASE_KEY = ACCEPTED_KEYS.delete().where(ACCEPTED_KEYS.c.set_id == bindparam("b_set_id"))
ATTEMPT_IDS = select(ROUTE_ATTEMPTS.c.id).where(ROUTE_ATTEMPTS.c.set_id == bindparam("b_set_id"))
INSERT_KEY = insert(ACCEPTED_KEYS)
INSERT_ATTEMPT = insert(ROUTE_ATTEMPTS)

# -- per dialect ------------------------------------------------------------------------------


def dialect_insert(dialect: str) -> Any:
    """The dialect's ``INSERT`` with ``ON CONFLICT`` support (``postgresql`` or ``sqlite``)."""
    return pg_insert if dialect == "postgresql" else sqlite_insert


_NOW = bindparam("b_now", type_=SETS.c.claim_until.type)
_CLAIMABLE = and_(
    SETS.c.finished.is_(False),
    or_(SETS.c.claim_until.is_(None), SETS.c.claim_until < _NOW),
    or_(SETS.c.not_before.is_(None), SETS.c.not_before <= _NOW),
)
"""Unfinished, unclaimed (or expired) and due at ``b_now``."""


class DialectStatements:
    """The statements whose form depends on the database: the upserts (``ON CONFLICT``) and
    the claim (``FOR UPDATE SKIP LOCKED`` on PostgreSQL)."""

    def __init__(self, dialect: str) -> None:
        picked = (
            select(SETS.c.id)
            .where(_CLAIMABLE)
            .order_by(SETS.c.id)
            .limit(bindparam("b_limit", type_=Integer))
        )
        if dialect == "postgresql":
            picked = picked.with_for_update(skip_locked=True)
        self.claim = (
            update(SETS)
            .where(SETS.c.id.in_(picked.scalar_subquery()), _CLAIMABLE)
            .values(
                claim_token=bindparam("b_token"),
                claim_until=bindparam("b_until"),
                # SetState.RECEIVED -> SetState.CHECKING (gateway.pipeline.store)
                state=case((SETS.c.state == "received", "checking"), else_=SETS.c.state),
            )
            .returning(*SETS.c)
        )
        """Claim up to ``b_limit`` claimable sets (at ``b_now``) with ``b_token`` until
        ``b_until``: their rows, as claimed."""
        upsert = dialect_insert(dialect)
        counters = upsert(RETURN_COUNTERS).values(
            recipient=bindparam("b_recipient"),
            day=bindparam("b_day"),
            environment=bindparam("b_environment"),
            last=bindparam("b_count"),
        )
        self.allocate = counters.on_conflict_do_update(
            index_elements=["recipient", "day", "environment"],
            set_={"last": RETURN_COUNTERS.c.last + counters.excluded.last},
        ).returning(
            RETURN_COUNTERS.c.recipient,
            RETURN_COUNTERS.c.day,
            RETURN_COUNTERS.c.environment,
            RETURN_COUNTERS.c.last,
        )
        """The last of the next ``b_count`` return-file numbers of (``b_recipient``, ``b_day``,
        ``b_environment``); an ``executemany`` of distinct keys takes them for several."""
        keys = upsert(ACCEPTED_KEYS)
        self.reserve_keys = keys.on_conflict_do_nothing().returning(ACCEPTED_KEYS.c.set_id)
        """Set keys reserved by several sets: the ids of the sets that got theirs (one
        ``executemany``; a taken key returns nothing)."""
        self.record_return_files = upsert(RETURN_FILES).on_conflict_do_nothing(
            index_elements=["sender", "folder", "name"]
        )
        """Return files placed in OUT, idempotent per (sender, folder, name)."""
        self.reserve_notification = upsert(NOTIFICATIONS).on_conflict_do_nothing(
            index_elements=["application", "idempotency_key"]
        )
        """A posted notification's row, unless its (application, key) is already taken."""
        answered = bindparam("b_now", type_=REFUSAL_ANSWERS.c.answered_at.type)
        self.record_refusal_answer = (
            upsert(REFUSAL_ANSWERS)
            .values(sender=bindparam("b_sender"), name=bindparam("b_name"), answered_at=answered)
            .on_conflict_do_update(
                index_elements=["sender", "name"], set_={"answered_at": answered}
            )
        )
        """A refused name answered at ``b_now`` (its last answer, per sender and name)."""
