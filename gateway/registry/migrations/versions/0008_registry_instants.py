"""The registry's times become instants: the one UTC type of the spool and the pipeline (issue 14).

Until now the registry kept its times as ISO-8601 text (``2026-01-15T09:30:00.123456+00:00``,
its offset the clock's), compared as text in SQL and parsed by each reader. Now every column
but the audit trail's ``at`` (hashed into the chain as text, so it stays text) is a
:class:`~gateway.registry.instant.UtcDateTime`:

- PostgreSQL: ``TIMESTAMP WITH TIME ZONE``, converted in place (``USING column::timestamptz``
  reads the offset).
- SQLite: the values are rewritten to the type's text (``2026-01-15 09:30:00.123456``, UTC),
  which sorts in time order; the declared type stays ``VARCHAR(40)``. SQLite stores the text
  the same under either declaration, and changing one means copying the table, which the
  foreign keys that reference ``enterprises``, ``qualities`` and ``users`` refuse inside this
  migration's transaction. :func:`gateway.registry.instant.compare_type` tells Alembic the two
  are one column.

Downgrade writes the ISO-8601 text back.

Revision ID: 0008_registry_instants
Revises: 0007_upload_contents
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008_registry_instants"
down_revision = "0007_upload_contents"
branch_labels = None
depends_on = None

# (table, [(column, nullable)]): every registry time but audit_log.at.
COLUMNS: tuple[tuple[str, tuple[tuple[str, bool], ...]], ...] = (
    ("enterprises", (("created_at", False), ("activated_at", True))),
    ("qualities", (("activated_at", False),)),
    ("users", (("created_at", False), ("last_login_at", True))),
    ("role_appointments", (("appointed_at", False),)),
    ("senders", (("assigned_at", False),)),
    ("channels", (("created_at", False),)),
    ("signing_certificates", (("not_after", False), ("uploaded_at", False))),
    ("api_tokens", (("created_at", False), ("expires_at", False), ("revoked_at", True))),
    ("console_sessions", (("created_at", False), ("seen_at", False), ("ended_at", True))),
    ("totp_secrets", (("enrolled_at", False),)),
    ("login_lockouts", (("window_start", False), ("locked_until", True))),
)


def _instant_text(value: str) -> str:
    """ISO-8601 with an offset -> UtcDateTime's SQLite text. Written out here rather than
    imported from :mod:`gateway.registry.instant`: a migration keeps the format of its
    revision whatever the type does later."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:  # never written so; read as UTC rather than fail the upgrade
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(" ", "microseconds")[:-6]


def _iso_text(value: str) -> str:
    """UtcDateTime's SQLite text -> the ISO-8601 the registry wrote before."""
    return datetime.fromisoformat(value).replace(tzinfo=UTC).isoformat()


def _rewrite_sqlite(convert: Callable[[str], str]) -> None:
    bind = op.get_bind()
    for name, columns in COLUMNS:
        names = [column for column, _ in columns]
        table = sa.table(name, sa.column("rowid"), *(sa.column(column) for column in names))
        rows = bind.execute(sa.select(table.c.rowid, *(table.c[c] for c in names))).all()
        update = (
            table.update()
            .where(table.c.rowid == sa.bindparam("row"))
            .values({column: sa.bindparam(f"new_{column}") for column in names})
        )
        for row in rows:
            values = {
                f"new_{column}": None if value is None else convert(value)
                for column, value in zip(names, row[1:], strict=True)
            }
            bind.execute(update, {"row": row[0], **values})


TEXT = sa.String(length=40)
INSTANT = sa.DateTime(timezone=True)


def _convert(
    sqlite: Callable[[str], str],
    *,
    to: sa.types.TypeEngine[Any],
    existing: sa.types.TypeEngine[Any],
    using: Callable[[str], str],
) -> None:
    """SQLite: each value rewritten by ``sqlite``; PostgreSQL: each column altered from
    ``existing`` ``to``, its values converted by the SQL ``using(column)``."""
    if op.get_bind().dialect.name == "sqlite":
        _rewrite_sqlite(sqlite)
        return
    for table, columns in COLUMNS:
        for name, nullable in columns:
            op.alter_column(
                table,
                name,
                type_=to,
                existing_type=existing,
                existing_nullable=nullable,
                postgresql_using=using(name),
            )


def upgrade() -> None:
    _convert(_instant_text, to=INSTANT, existing=TEXT, using=lambda name: f"{name}::timestamptz")


def downgrade() -> None:
    _convert(
        _iso_text,
        to=TEXT,
        existing=INSTANT,
        using=lambda name: (
            f"to_char({name} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
        ),
    )
