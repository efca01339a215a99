"""The spool: committed uploads and refused upload attempts (gateway.spool.tables).

Revision ID: 0002_spool
Revises: 0001_registry
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_spool"
down_revision = "0001_registry"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create ``uploads`` and ``upload_refusals``."""
    op.create_table(
        "uploads",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("sender", sa.String(6), nullable=False),
        sa.Column("folder", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_uploads")),
    )
    op.create_index("ix_uploads_sender_folder_name", "uploads", ["sender", "folder", "name"])
    op.create_index("ix_uploads_sender_state", "uploads", ["sender", "state"])
    op.create_table(
        "upload_refusals",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("sender", sa.String(6), nullable=False),
        sa.Column("folder", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upload_refusals")),
    )
    op.create_index("ix_upload_refusals_answered_at", "upload_refusals", ["answered_at"])


def downgrade() -> None:
    """Drop both tables."""
    op.drop_index("ix_upload_refusals_answered_at", table_name="upload_refusals")
    op.drop_table("upload_refusals")
    op.drop_index("ix_uploads_sender_state", table_name="uploads")
    op.drop_index("ix_uploads_sender_folder_name", table_name="uploads")
    op.drop_table("uploads")
