"""Notifications posted by online services over the web service, by idempotency key.

Revision ID: 0004_notifications
Revises: 0003_pipeline
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_notifications"
down_revision = "0003_pipeline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("application", sa.String(length=4), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("sender", sa.String(length=6), nullable=False),
        sa.Column("environment", sa.String(length=1), nullable=False),
        sa.Column("kind", sa.String(length=4), nullable=False),
        sa.Column("folder", sa.String(length=16), nullable=False),
        sa.Column("main_name", sa.String(length=255), nullable=False),
        sa.Column("signature_name", sa.String(length=255), nullable=False),
        sa.Column("go_name", sa.String(length=255), nullable=False),
        sa.Column("compressed", sa.Boolean(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint(
            "application", "idempotency_key", name=op.f("uq_notifications_application")
        ),
    )
    op.create_index(op.f("ix_notifications_sender"), "notifications", ["sender"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_notifications_sender"), table_name="notifications")
    op.drop_table("notifications")
