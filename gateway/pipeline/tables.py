"""The pipeline's tables: set state, set membership, routing attempts, return files, counters.

Every row here is written by the pipeline only. The spool owns ``uploads`` and
``upload_refusals``; the pipeline links uploads to sets through ``set_files`` (one set per upload,
enforced by a unique constraint) and stamps ``upload_refusals.answered_at``.

Crash safety rests on three constraints, not on application logic:
- ``sets.trigger_upload_id`` is unique, so a GO/TD is taken in by exactly one set even when two
  workers see it at once;
- ``set_files.upload_id`` is unique, so no file belongs to two sets;
- ``accepted_keys`` has the set key as primary key, so two workers verifying two sets with the
  same name can never both accept (the loser gets 133).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from gateway.registry.db import Base
from gateway.registry.instant import UtcDateTime

# Same type as the spool's ``uploads.id`` (64-bit on PostgreSQL, INTEGER rowid on SQLite).
UploadId = BigInteger().with_variant(Integer, "sqlite")


class SetRow(Base):
    """One set (GO- or TD-triggered, or expired without GO) and where it is in its life."""

    __tablename__ = "sets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket: Mapped[str] = mapped_column(String(13), unique=True)
    trigger: Mapped[str] = mapped_column(String(2))  # GO | TD | TO (timeout, no GO came)
    trigger_upload_id: Mapped[int | None] = mapped_column(UploadId, unique=True)
    trigger_name: Mapped[str] = mapped_column(String(255), index=True)
    sender: Mapped[str] = mapped_column(String(6), index=True)
    folder: Mapped[str] = mapped_column(String(16))
    application: Mapped[str] = mapped_column(String(4))
    created_date: Mapped[date] = mapped_column(Date)
    sequence: Mapped[str] = mapped_column(String(5))
    environment: Mapped[str] = mapped_column(String(1))
    state: Mapped[str] = mapped_column(String(12), index=True)
    finished: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    code: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claim_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    not_before: Mapped[datetime | None] = mapped_column(UtcDateTime())
    files: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    signer_fingerprint: Mapped[str | None] = mapped_column(String(64))
    signer_subject: Mapped[str | None] = mapped_column(Text)
    service: Mapped[str | None] = mapped_column(String(4))
    destination: Mapped[str | None] = mapped_column(Text)
    route_deadline: Mapped[datetime | None] = mapped_column(UtcDateTime())
    routed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    duplicate_of: Mapped[str | None] = mapped_column(String(13))
    ack_of: Mapped[str | None] = mapped_column(String(13))
    ack_sequence: Mapped[str | None] = mapped_column(String(5))
    ack_created: Mapped[datetime | None] = mapped_column(UtcDateTime())
    ack_written_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    files_released: Mapped[bool] = mapped_column(Boolean, default=False)
    archive_path: Mapped[str | None] = mapped_column(Text)
    archived_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    archive_purged_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (
        Index("ix_sets_claimable", "finished", "claim_until"),
        Index("ix_sets_key", "sender", "application", "created_date", "sequence", "environment"),
    )


class SetFileRow(Base):
    """One uploaded file taken into a set, with the digest the spool computed while streaming."""

    __tablename__ = "set_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("sets.id", ondelete="CASCADE"), index=True)
    upload_id: Mapped[int] = mapped_column(UploadId, unique=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    kind: Mapped[str] = mapped_column(String(2))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    arrived_at: Mapped[datetime] = mapped_column(UtcDateTime())
    signer_fingerprint: Mapped[str | None] = mapped_column(String(64))
    signer_subject: Mapped[str | None] = mapped_column(Text)


class AcceptedKeyRow(Base):
    """The set keys already accepted: the primary key makes duplicate detection (133) atomic."""

    __tablename__ = "accepted_keys"

    sender: Mapped[str] = mapped_column(String(6), primary_key=True)
    application: Mapped[str] = mapped_column(String(4), primary_key=True)
    created_date: Mapped[date] = mapped_column(Date, primary_key=True)
    sequence: Mapped[str] = mapped_column(String(5), primary_key=True)
    environment: Mapped[str] = mapped_column(String(1), primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("sets.id", ondelete="CASCADE"))
    ticket: Mapped[str] = mapped_column(String(13))
    digests: Mapped[str] = mapped_column(Text)  # "name=sha256;…" of the FI/FS files, sorted


class ReturnCounterRow(Base):
    """Last sequence number used for return files, per recipient, date and environment."""

    __tablename__ = "return_counters"

    recipient: Mapped[str] = mapped_column(String(6), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    environment: Mapped[str] = mapped_column(String(1), primary_key=True)
    last: Mapped[int] = mapped_column(Integer)


class RouteAttemptRow(Base):
    """Every attempt at delivering a set to its destination, successful or not."""

    __tablename__ = "route_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("sets.id", ondelete="CASCADE"), index=True)
    ticket: Mapped[str] = mapped_column(String(13))
    service: Mapped[str] = mapped_column(String(4))
    destination: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    outcome: Mapped[str] = mapped_column(String(12))  # delivered | already | failed
    status: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)


class ReturnFileRow(Base):
    """A file the gateway placed in a sender's OUT folder (ACRF parts, notifications)."""

    __tablename__ = "return_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sender: Mapped[str] = mapped_column(String(6))
    folder: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(8))  # acrf | noti | refusal
    ticket: Mapped[str | None] = mapped_column(String(13), index=True)
    subject: Mapped[str | None] = mapped_column(String(255), index=True)  # GO or refused name
    code: Mapped[int | None] = mapped_column(Integer)
    written_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    purged_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (UniqueConstraint("sender", "folder", "name"),)


class NotificationRow(Base):
    """A notification an online service posted over the web service, by the idempotency key it
    sent: a retry with the same key finds this row and places no second file. The names are
    allocated with the row, before the files are placed, so a retry after a crash between the
    two places the same names; ``placed_at`` says the files and their return-file rows are
    committed."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    application: Mapped[str] = mapped_column(String(4))
    idempotency_key: Mapped[str] = mapped_column(String(128))
    request_sha256: Mapped[str] = mapped_column(String(64))
    client: Mapped[str] = mapped_column(String(64))  # the service certificate's fingerprint
    sender: Mapped[str] = mapped_column(String(6), index=True)
    environment: Mapped[str] = mapped_column(String(1))
    kind: Mapped[str] = mapped_column(String(4))
    folder: Mapped[str] = mapped_column(String(16))
    main_name: Mapped[str] = mapped_column(String(255))
    signature_name: Mapped[str] = mapped_column(String(255))
    go_name: Mapped[str] = mapped_column(String(255))
    compressed: Mapped[bool] = mapped_column(Boolean)
    size: Mapped[int] = mapped_column(Integer)
    content_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    placed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (UniqueConstraint("application", "idempotency_key"),)


class RefusalAnswerRow(Base):
    """When a refused name was last answered with a negative ACRF (one per window)."""

    __tablename__ = "refusal_answers"

    sender: Mapped[str] = mapped_column(String(6), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    answered_at: Mapped[datetime] = mapped_column(UtcDateTime())


# Values that intake records into ``sets`` and ``set_files`` (SetStore.intake).


@dataclass(frozen=True, slots=True, kw_only=True)
class NewSetFile:
    """An upload to take into a new set."""

    upload_id: int
    name: str
    kind: str
    size: int
    sha256: str
    arrived_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class NewSet:
    """Everything :meth:`SetStore.intake` records for a new set."""

    ticket: str
    trigger: str
    trigger_upload_id: int | None
    trigger_name: str
    sender: str
    folder: str
    application: str
    created_date: date
    sequence: str
    environment: str
    state: str
    received_at: datetime
    files: Sequence[NewSetFile]
    code: int | None = None
    reason: str | None = None
