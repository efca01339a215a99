"""A fresh PostgreSQL database for one test, on the server ``.ci/start-postgres`` runs (named by
``GATEWAY_TEST_PG_DSN``; missing: skipped, or failed under ``CI=true``)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from gateway.registry.migrate import migrate
from tests.tools import require_env


def _dsn(url: str, database: str) -> str:
    """asyncpg's DSN of ``database`` on the server of SQLAlchemy ``url``."""
    return url.replace("postgresql+asyncpg://", "postgresql://").rsplit("/", 1)[0] + "/" + database


async def pg_admin(url: str, statement: str) -> None:
    """Run ``statement`` on the server's ``postgres`` database (CREATE/DROP DATABASE)."""
    conn = await asyncpg.connect(_dsn(url, "postgres"))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@asynccontextmanager
async def fresh_pg_database(prefix: str) -> AsyncIterator[str]:
    """A new database migrated to head (its SQLAlchemy URL), dropped at the end."""
    server = require_env("GATEWAY_TEST_PG_DSN")
    # The name is made of a fixed prefix and hex digits; identifiers cannot be bound parameters.
    name = f"{prefix}_{secrets.token_hex(6)}"
    await pg_admin(server, f'CREATE DATABASE "{name}"')
    try:
        url = server.rsplit("/", 1)[0] + "/" + name
        await migrate(url)
        yield url
    finally:
        await pg_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
