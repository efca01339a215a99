"""The registry's tables: enterprises, qualities, persons, users, roles, senders, channels, audit.

Rules the schema itself holds:
- a KBO number, a login and a sender number are unique; sender numbers live in their own table
  and rows are never deleted, so a number is never handed out twice;
- one channel of each kind per quality (one technical user per quality is the service's rule,
  checked under the write lock), one role appointment per (user, role, quality);
- password hashes are argon2id strings; SSH keys are kept as algorithm + base64 blob (no comment);
- the audit trail is append-only, each row chained to the previous one by ``prev_hash``.

Times are instants (:class:`~gateway.registry.instant.UtcDateTime`: aware UTC in and out, in
time order in SQL on SQLite and PostgreSQL alike), but for the audit trail's ``at``, which is
hashed into the chain and so stays the ISO-8601 text it was hashed as.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from gateway.registry.db import Base
from gateway.registry.instant import UtcDateTime


class EnterpriseRow(Base):
    """An enterprise (KBO/BCE number), pending until its HTB first logs in."""

    __tablename__ = "enterprises"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kbo: Mapped[str] = mapped_column(String(10), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    password_login: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    activated_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class QualityRow(Base):
    """One activated quality (employer, social secretariat…) of an enterprise."""

    __tablename__ = "qualities"
    __table_args__ = (UniqueConstraint("enterprise_id", "kind", name="uq_qualities_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    activated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    structured_saved: Mapped[bool] = mapped_column(Boolean, default=False)


class PersonRow(Base):
    """Contact data of a natural person."""

    __tablename__ = "persons"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    phone: Mapped[str] = mapped_column(String(32))
    language: Mapped[str] = mapped_column(String(2))
    national_register_number: Mapped[str | None] = mapped_column(String(11), nullable=True)


class UserRow(Base):
    """An account: a person's user (of one quality, or none for an HTB) or a technical user."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    login: Mapped[str] = mapped_column(String(64), unique=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"), index=True)
    quality_id: Mapped[int | None] = mapped_column(ForeignKey("qualities.id"), nullable=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(Text, nullable=True)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class RoleRow(Base):
    """A role appointment: HTB and co-HTB hold for the enterprise, TB and co-TB for a quality."""

    __tablename__ = "role_appointments"
    __table_args__ = (
        UniqueConstraint("user_id", "role", "quality_id", name="uq_role_appointments_user_role"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str] = mapped_column(String(8))
    quality_id: Mapped[int | None] = mapped_column(ForeignKey("qualities.id"), nullable=True)
    appointed_at: Mapped[datetime] = mapped_column(UtcDateTime)


class SenderRow(Base):
    """A sender number, assigned once to a quality at its first channel; never deleted."""

    __tablename__ = "senders"

    number: Mapped[str] = mapped_column(String(6), primary_key=True)
    quality_id: Mapped[int] = mapped_column(ForeignKey("qualities.id"), unique=True)
    assigned_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ChannelRow(Base):
    """A channel of a quality; FTP carries a password hash and an optional allow-list."""

    __tablename__ = "channels"
    __table_args__ = (UniqueConstraint("quality_id", "kind", name="uq_channels_quality_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    quality_id: Mapped[int] = mapped_column(ForeignKey("qualities.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(Text, nullable=True)
    allowed_networks: Mapped[str] = mapped_column(Text, default="[]")
    client_cert_der: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    client_cert_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class SshKeyRow(Base):
    """An SSH public key of an SFTP channel (algorithm + base64 blob; the comment is dropped)."""

    __tablename__ = "ssh_keys"
    __table_args__ = (UniqueConstraint("channel_id", "sha256", name="uq_ssh_keys_channel_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"), index=True)
    algorithm: Mapped[str] = mapped_column(String(64))
    blob: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64), index=True)


class SigningCertificateRow(Base):
    """A signing certificate registered for a quality (code 153 checks FS signers against it)."""

    __tablename__ = "signing_certificates"
    __table_args__ = (
        UniqueConstraint("quality_id", "sha256", name="uq_signing_certificates_quality_cert"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    quality_id: Mapped[int] = mapped_column(ForeignKey("qualities.id"), index=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(Text)
    not_after: Mapped[datetime] = mapped_column(UtcDateTime)
    uploaded_at: Mapped[datetime] = mapped_column(UtcDateTime)


class SubscriptionRow(Base):
    """An online service (application code) a quality sends structured messages for."""

    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("quality_id", "application", name="uq_subscriptions_app"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    quality_id: Mapped[int] = mapped_column(ForeignKey("qualities.id"), index=True)
    application: Mapped[str] = mapped_column(String(4))


class AuditRow(Base):
    """One audit record; ``hash`` = SHA-256 over the previous hash and this record's fields."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(Text)
    before: Mapped[str] = mapped_column(Text)
    after: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The chain's head (one row): last seq and hash. Locking it serialises registry writes."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
