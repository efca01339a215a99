"""Account lockout shared by every password login (issue 15 item 4): failed checks per account.

Revision ID: 0006_login_lockouts
Revises: 0005_console
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_login_lockouts"
down_revision = "0005_console"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_lockouts",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.String(length=40), nullable=False),
        sa.Column("locked_until", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_login_lockouts_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_login_lockouts")),
    )


def downgrade() -> None:
    op.drop_table("login_lockouts")
