"""Registry: enterprises, qualities, persons, users, roles, senders, channels, audit trail.

Revision ID: 0001_registry
Revises: (none)
Create Date: 2026-11-29 15:57:57.723165
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_registry"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    # The chain starts from a head of seq 0 and an all-zero hash.
    op.bulk_insert(
        sa.table(
            "audit_head",
            sa.column("id", sa.Integer),
            sa.column("seq", sa.Integer),
            sa.column("hash", sa.String),
        ),
        [{"id": 1, "seq": 0, "hash": "0" * 64}],
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("before", sa.Text(), nullable=False),
        sa.Column("after", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
    )
    op.create_table(
        "enterprises",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kbo", sa.String(length=10), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("password_login", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.String(length=40), nullable=False),
        sa.Column("activated_at", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enterprises")),
        sa.UniqueConstraint("kbo", name=op.f("uq_enterprises_kbo")),
    )
    op.create_table(
        "persons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("national_register_number", sa.String(length=11), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_persons")),
    )
    op.create_table(
        "qualities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("activated_at", sa.String(length=40), nullable=False),
        sa.Column("structured_saved", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["enterprises.id"],
            name=op.f("fk_qualities_enterprise_id_enterprises"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qualities")),
        sa.UniqueConstraint("enterprise_id", "kind", name="uq_qualities_kind"),
    )
    with op.batch_alter_table("qualities", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_qualities_enterprise_id"), ["enterprise_id"], unique=False
        )

    op.create_table(
        "channels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("quality_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("allowed_networks", sa.Text(), nullable=False),
        sa.Column("client_cert_der", sa.LargeBinary(), nullable=True),
        sa.Column("client_cert_sha256", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["quality_id"], ["qualities.id"], name=op.f("fk_channels_quality_id_qualities")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channels")),
        sa.UniqueConstraint("quality_id", "kind", name="uq_channels_quality_kind"),
    )
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_channels_client_cert_sha256"), ["client_cert_sha256"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_channels_quality_id"), ["quality_id"], unique=False)

    op.create_table(
        "senders",
        sa.Column("number", sa.String(length=6), nullable=False),
        sa.Column("quality_id", sa.Integer(), nullable=False),
        sa.Column("assigned_at", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["quality_id"], ["qualities.id"], name=op.f("fk_senders_quality_id_qualities")
        ),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_senders")),
        sa.UniqueConstraint("quality_id", name=op.f("uq_senders_quality_id")),
    )
    op.create_table(
        "signing_certificates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("quality_id", sa.Integer(), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("not_after", sa.String(length=40), nullable=False),
        sa.Column("uploaded_at", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["quality_id"],
            ["qualities.id"],
            name=op.f("fk_signing_certificates_quality_id_qualities"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signing_certificates")),
        sa.UniqueConstraint("quality_id", "sha256", name="uq_signing_certificates_quality_cert"),
    )
    with op.batch_alter_table("signing_certificates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_signing_certificates_quality_id"), ["quality_id"], unique=False
        )

    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("quality_id", sa.Integer(), nullable=False),
        sa.Column("application", sa.String(length=4), nullable=False),
        sa.ForeignKeyConstraint(
            ["quality_id"], ["qualities.id"], name=op.f("fk_subscriptions_quality_id_qualities")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
        sa.UniqueConstraint("quality_id", "application", name="uq_subscriptions_app"),
    )
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_subscriptions_quality_id"), ["quality_id"], unique=False
        )

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("login", sa.String(length=64), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("quality_id", sa.Integer(), nullable=True),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("must_change_password", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.String(length=40), nullable=False),
        sa.Column("last_login_at", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["enterprise_id"], ["enterprises.id"], name=op.f("fk_users_enterprise_id_enterprises")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_users_person_id_persons")
        ),
        sa.ForeignKeyConstraint(
            ["quality_id"], ["qualities.id"], name=op.f("fk_users_quality_id_qualities")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("login", name=op.f("uq_users_login")),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_users_enterprise_id"), ["enterprise_id"], unique=False)

    op.create_table(
        "role_appointments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("quality_id", sa.Integer(), nullable=True),
        sa.Column("appointed_at", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["enterprises.id"],
            name=op.f("fk_role_appointments_enterprise_id_enterprises"),
        ),
        sa.ForeignKeyConstraint(
            ["quality_id"], ["qualities.id"], name=op.f("fk_role_appointments_quality_id_qualities")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_role_appointments_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_role_appointments")),
        sa.UniqueConstraint("user_id", "role", "quality_id", name="uq_role_appointments_user_role"),
    )
    with op.batch_alter_table("role_appointments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_role_appointments_enterprise_id"), ["enterprise_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_role_appointments_user_id"), ["user_id"], unique=False)

    op.create_table(
        "ssh_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("algorithm", sa.String(length=64), nullable=False),
        sa.Column("blob", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["channels.id"], name=op.f("fk_ssh_keys_channel_id_channels")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ssh_keys")),
        sa.UniqueConstraint("channel_id", "sha256", name="uq_ssh_keys_channel_key"),
    )
    with op.batch_alter_table("ssh_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ssh_keys_channel_id"), ["channel_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ssh_keys_sha256"), ["sha256"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ssh_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ssh_keys_sha256"))
        batch_op.drop_index(batch_op.f("ix_ssh_keys_channel_id"))

    op.drop_table("ssh_keys")
    with op.batch_alter_table("role_appointments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_role_appointments_user_id"))
        batch_op.drop_index(batch_op.f("ix_role_appointments_enterprise_id"))

    op.drop_table("role_appointments")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_users_enterprise_id"))

    op.drop_table("users")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscriptions_quality_id"))

    op.drop_table("subscriptions")
    with op.batch_alter_table("signing_certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signing_certificates_quality_id"))

    op.drop_table("signing_certificates")
    op.drop_table("senders")
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_channels_quality_id"))
        batch_op.drop_index(batch_op.f("ix_channels_client_cert_sha256"))

    op.drop_table("channels")
    with op.batch_alter_table("qualities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_qualities_enterprise_id"))

    op.drop_table("qualities")
    op.drop_table("persons")
    op.drop_table("enterprises")
    op.drop_table("audit_log")
    op.drop_table("audit_head")
