"""Fixtures shared by the spool's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.registry.db import create_engine
from gateway.registry.migrate import migrate


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated SQLite registry."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.sqlite3'}"
    await migrate(url)
    engine = create_engine(url)
    yield engine
    await engine.dispose()
