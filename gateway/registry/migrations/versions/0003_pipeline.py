"""Pipeline: set state, set membership, accepted keys, return counters, routing attempts,
return files and refusal answers.

Revision ID: 0003_pipeline
Revises: 0002_spool
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_pipeline"
down_revision = "0002_spool"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refusal_answers",
        sa.Column("sender", sa.String(length=6), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sender", "name", name=op.f("pk_refusal_answers")),
    )
    op.create_table(
        "return_counters",
        sa.Column("recipient", sa.String(length=6), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("environment", sa.String(length=1), nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("recipient", "day", "environment", name=op.f("pk_return_counters")),
    )
    op.create_table(
        "return_files",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("sender", sa.String(length=6), nullable=False),
        sa.Column("folder", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("ticket", sa.String(length=13), nullable=True),
        sa.Column("subject", sa.String(length=255), nullable=True),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_return_files")),
        sa.UniqueConstraint("sender", "folder", "name", name=op.f("uq_return_files_sender")),
    )
    op.create_index(op.f("ix_return_files_subject"), "return_files", ["subject"], unique=False)
    op.create_index(op.f("ix_return_files_ticket"), "return_files", ["ticket"], unique=False)
    op.create_index(
        op.f("ix_return_files_written_at"), "return_files", ["written_at"], unique=False
    )
    op.create_table(
        "sets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticket", sa.String(length=13), nullable=False),
        sa.Column("trigger", sa.String(length=2), nullable=False),
        sa.Column(
            "trigger_upload_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("trigger_name", sa.String(length=255), nullable=False),
        sa.Column("sender", sa.String(length=6), nullable=False),
        sa.Column("folder", sa.String(length=16), nullable=False),
        sa.Column("application", sa.String(length=4), nullable=False),
        sa.Column("created_date", sa.Date(), nullable=False),
        sa.Column("sequence", sa.String(length=5), nullable=False),
        sa.Column("environment", sa.String(length=1), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("finished", sa.Boolean(), nullable=False),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("claim_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("signer_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("signer_subject", sa.Text(), nullable=True),
        sa.Column("service", sa.String(length=4), nullable=True),
        sa.Column("destination", sa.Text(), nullable=True),
        sa.Column("route_deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("routed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duplicate_of", sa.String(length=13), nullable=True),
        sa.Column("ack_of", sa.String(length=13), nullable=True),
        sa.Column("ack_sequence", sa.String(length=5), nullable=True),
        sa.Column("ack_created", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ack_written_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("files_released", sa.Boolean(), nullable=False),
        sa.Column("archive_path", sa.Text(), nullable=True),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("archive_purged_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sets")),
        sa.UniqueConstraint("ticket", name=op.f("uq_sets_ticket")),
        sa.UniqueConstraint("trigger_upload_id", name=op.f("uq_sets_trigger_upload_id")),
    )
    op.create_index("ix_sets_claimable", "sets", ["finished", "claim_until"], unique=False)
    op.create_index(op.f("ix_sets_finished"), "sets", ["finished"], unique=False)
    op.create_index(
        "ix_sets_key",
        "sets",
        ["sender", "application", "created_date", "sequence", "environment"],
        unique=False,
    )
    op.create_index(op.f("ix_sets_sender"), "sets", ["sender"], unique=False)
    op.create_index(op.f("ix_sets_state"), "sets", ["state"], unique=False)
    op.create_index(op.f("ix_sets_trigger_name"), "sets", ["trigger_name"], unique=False)
    op.create_table(
        "accepted_keys",
        sa.Column("sender", sa.String(length=6), nullable=False),
        sa.Column("application", sa.String(length=4), nullable=False),
        sa.Column("created_date", sa.Date(), nullable=False),
        sa.Column("sequence", sa.String(length=5), nullable=False),
        sa.Column("environment", sa.String(length=1), nullable=False),
        sa.Column("set_id", sa.Integer(), nullable=False),
        sa.Column("ticket", sa.String(length=13), nullable=False),
        sa.Column("digests", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["set_id"], ["sets.id"], name=op.f("fk_accepted_keys_set_id_sets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint(
            "sender",
            "application",
            "created_date",
            "sequence",
            "environment",
            name=op.f("pk_accepted_keys"),
        ),
    )
    op.create_table(
        "route_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("set_id", sa.Integer(), nullable=False),
        sa.Column("ticket", sa.String(length=13), nullable=False),
        sa.Column("service", sa.String(length=4), nullable=False),
        sa.Column("destination", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=12), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["set_id"], ["sets.id"], name=op.f("fk_route_attempts_set_id_sets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_route_attempts")),
    )
    op.create_index(op.f("ix_route_attempts_set_id"), "route_attempts", ["set_id"], unique=False)
    op.create_table(
        "set_files",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("set_id", sa.Integer(), nullable=False),
        sa.Column(
            "upload_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=2), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signer_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("signer_subject", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["set_id"], ["sets.id"], name=op.f("fk_set_files_set_id_sets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_set_files")),
        sa.UniqueConstraint("upload_id", name=op.f("uq_set_files_upload_id")),
    )
    op.create_index(op.f("ix_set_files_name"), "set_files", ["name"], unique=False)
    op.create_index(op.f("ix_set_files_set_id"), "set_files", ["set_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_set_files_set_id"), table_name="set_files")
    op.drop_index(op.f("ix_set_files_name"), table_name="set_files")
    op.drop_table("set_files")
    op.drop_index(op.f("ix_route_attempts_set_id"), table_name="route_attempts")
    op.drop_table("route_attempts")
    op.drop_table("accepted_keys")
    op.drop_index(op.f("ix_sets_trigger_name"), table_name="sets")
    op.drop_index(op.f("ix_sets_state"), table_name="sets")
    op.drop_index(op.f("ix_sets_sender"), table_name="sets")
    op.drop_index("ix_sets_key", table_name="sets")
    op.drop_index(op.f("ix_sets_finished"), table_name="sets")
    op.drop_index("ix_sets_claimable", table_name="sets")
    op.drop_table("sets")
    op.drop_index(op.f("ix_return_files_written_at"), table_name="return_files")
    op.drop_index(op.f("ix_return_files_ticket"), table_name="return_files")
    op.drop_index(op.f("ix_return_files_subject"), table_name="return_files")
    op.drop_table("return_files")
    op.drop_table("return_counters")
    op.drop_table("refusal_answers")
