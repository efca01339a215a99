"""The spool's two tables: committed uploads and refused upload attempts.

``uploads`` holds one row per committed file (state ``pending`` until the pipeline takes it);
its sum of ``size`` over pending rows is a sender's pending-bytes quota usage. ``upload_refusals``
holds one row per refused upload (name, code, time, session) so the pipeline can answer it with a
negative ACRF in OUT (``answered_at`` is set when it has). Migration: ``0002_spool``.

``upload_contents`` holds the bytes of a small pending upload whose file was written but not
yet made durable (SQLite; :mod:`gateway.spool.store` says why): the row is the upload's durable
copy until the pipeline's intake syncs the file and deletes it, or recovery rewrites the file
from it. Migration: ``0007_upload_contents``.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from gateway.registry.db import Base
from gateway.registry.instant import UtcDateTime


class UploadState(enum.StrEnum):
    """An upload row's ``state``: pending until the pipeline takes it into a set."""

    PENDING = "pending"
    TAKEN = "taken"


class UploadRow(Base):
    """One committed upload: the file is at ``spool/<sender>/<folder>/<name>``."""

    __tablename__ = "uploads"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    sender: Mapped[str] = mapped_column(String(6))
    folder: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    arrived_at: Mapped[datetime] = mapped_column(UtcDateTime())
    session_id: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default=UploadState.PENDING)

    __table_args__ = (
        Index("ix_uploads_sender_folder_name", "sender", "folder", "name"),
        Index("ix_uploads_sender_state", "sender", "state"),
    )


class UploadContentRow(Base):
    """The bytes of a small pending upload whose file may not be on disk yet."""

    __tablename__ = "upload_contents"

    upload_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("uploads.id", ondelete="CASCADE"),
        primary_key=True,
    )
    content: Mapped[bytes] = mapped_column(LargeBinary)


class UploadRefusalRow(Base):
    """One refused upload attempt, to be answered by a negative ACRF (``answered_at`` then set)."""

    __tablename__ = "upload_refusals"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    sender: Mapped[str] = mapped_column(String(6))
    folder: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(255))
    code: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(500))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    session_id: Mapped[str] = mapped_column(String(64))
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    __table_args__ = (Index("ix_upload_refusals_answered_at", "answered_at"),)
