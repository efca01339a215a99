"""Read every row of every table, to assert that a refused action changed nothing."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

import gateway.registry.all_models  # noqa: F401  (fills Base.metadata)
from gateway.registry.db import Base


async def snapshot(engine: AsyncEngine) -> dict[str, list[str]]:
    """Every table's rows, as sorted reprs."""
    out: dict[str, list[str]] = {}
    async with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = (await conn.execute(select(table))).all()
            out[table.name] = sorted(repr(tuple(r)) for r in rows)
    return out
