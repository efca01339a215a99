"""The bytes of small pending uploads, durable in the database before their files (issue 14).

Revision ID: 0007_upload_contents
Revises: 0006_login_lockouts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_upload_contents"
down_revision = "0006_login_lockouts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upload_contents",
        sa.Column(
            "upload_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["upload_id"],
            ["uploads.id"],
            name=op.f("fk_upload_contents_upload_id_uploads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("upload_id", name=op.f("pk_upload_contents")),
    )


def downgrade() -> None:
    op.drop_table("upload_contents")
