"""Bring a database to the newest schema with Alembic (``upgrade head``), programmatically.

Called by the daemon at start-up, by ``gateway admin db migrate`` and by test fixtures. The
migration scripts live beside this module in ``migrations/``.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from gateway.registry.db import create_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    """The Alembic configuration pointing at ``gateway/registry/migrations``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(engine_url: str) -> None:
    """Upgrade the database at ``engine_url`` to the newest revision."""
    engine = create_engine(engine_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade)
    finally:
        await engine.dispose()
