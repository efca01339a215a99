"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

import gateway.registry.all_models  # noqa: F401  (fills Base.metadata)
from gateway.registry.db import Base, create_engine
from gateway.registry.instant import compare_type
from gateway.registry.migrate import migrate
from gateway.registry.models import EnterpriseRow
from tests.pg import pg_admin
from tests.tools import require_env


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": compare_type})
    return list(compare_metadata(context, Base.metadata))


async def test_models_and_migrations_agree(backend_url: str) -> None:
    """``upgrade head`` leaves nothing for autogenerate to add, drop or alter."""
    engine = create_engine(backend_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database with no schema at all."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.sqlite3'}"
        return
    server = require_env("GATEWAY_TEST_PG_DSN")
    name = f"instants_{secrets.token_hex(6)}"  # hex digits only: safe as an identifier
    await pg_admin(server, f'CREATE DATABASE "{name}"')
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        await pg_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_registry_times_written_as_text_read_as_instants_after_0008(
    unmigrated_url: str,
) -> None:
    """Rows the registry stored before 0008 (ISO text, one with a +01:00 offset, one without
    microseconds, a NULL) read as the same instants in UTC after it, order in time in SQL, and
    come back as ISO text on downgrade."""
    url = unmigrated_url
    await migrate(url, "0007_upload_contents")
    enterprises = sa.table(
        "enterprises",
        *(sa.column(c) for c in ("id", "kbo", "name", "status", "password_login")),
        sa.column("created_at", sa.String()),
        sa.column("activated_at", sa.String()),
    )
    old = [
        (1, "2026-01-15T10:30:00.250000+01:00", None),  # 09:30:00.25 UTC
        (2, "2026-01-15T09:45:00+00:00", "2026-01-16T08:00:00.000001+00:00"),
    ]
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.insert(enterprises),
                [
                    {"id": i, "kbo": f"020000000{i}", "name": "E", "status": "active",
                     "password_login": True, "created_at": c, "activated_at": a}
                    for i, c, a in old
                ],
            )  # fmt: skip
    finally:
        await engine.dispose()

    await migrate(url, "head")
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(
                        EnterpriseRow.id, EnterpriseRow.created_at, EnterpriseRow.activated_at
                    )
                    .where(EnterpriseRow.created_at < datetime(2026, 1, 15, 9, 40, tzinfo=UTC))
                    .order_by(EnterpriseRow.created_at)
                )
            ).all()
            later = (
                (
                    await conn.execute(
                        sa.select(EnterpriseRow.id).order_by(EnterpriseRow.created_at.desc())
                    )
                )
                .scalars()
                .all()
            )
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()
    assert rows == [(1, datetime(2026, 1, 15, 9, 30, 0, 250000, tzinfo=UTC), None)]
    assert later == [2, 1]

    await migrate(url, "0007_upload_contents", down=True)
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            back = (
                await conn.execute(
                    sa.select(enterprises.c.created_at, enterprises.c.activated_at).order_by(
                        enterprises.c.id
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    # ISO-8601 text in UTC again, as the registry wrote it before (PostgreSQL's to_char always
    # writes the microseconds; Python's isoformat leaves out zero ones: both read the same).
    moments = [
        [None if t is None else (t.endswith("+00:00"), datetime.fromisoformat(t)) for t in r]
        for r in back
    ]
    assert moments == [
        [(True, datetime(2026, 1, 15, 9, 30, 0, 250000, tzinfo=UTC)), None],
        [
            (True, datetime(2026, 1, 15, 9, 45, tzinfo=UTC)),
            (True, datetime(2026, 1, 16, 8, 0, 0, 1, tzinfo=UTC)),
        ],
    ]
