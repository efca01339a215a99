"""The one column type for instants, on SQLite and PostgreSQL: aware UTC out whatever zone went
in, naive values refused, order kept in SQL, and SQLite's stored text unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, Table, insert, select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.registry.db import create_engine
from gateway.registry.instant import UtcDateTime, as_utc

BRUSSELS = ZoneInfo("Europe/Brussels")
_META = MetaData()
MOMENTS = Table(
    "test_instants",
    _META,
    Column("id", Integer, primary_key=True),
    Column("at", UtcDateTime(), nullable=True),
)
PLAIN = Table(  # the same table seen with SQLAlchemy's own type (rows written before UtcDateTime)
    "test_instants",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=True),
)


@pytest.fixture
async def engine(backend_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(backend_url)
    async with engine.begin() as conn:
        await conn.run_sync(_META.create_all)
    try:
        yield engine
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(_META.drop_all)
        await engine.dispose()


async def test_an_instant_in_any_zone_comes_back_the_same_instant_in_utc(
    engine: AsyncEngine,
) -> None:
    summer = datetime(2026, 7, 1, 14, 30, 5, 123456, tzinfo=BRUSSELS)  # 12:30:05 UTC
    winter = datetime(2026, 1, 1, 0, 15, tzinfo=BRUSSELS)  # 2025-12-31 23:15 UTC
    async with engine.begin() as conn:
        await conn.execute(
            insert(MOMENTS),
            [{"id": 1, "at": summer}, {"id": 2, "at": winter}, {"id": 3, "at": None}],
        )
    async with engine.connect() as conn:
        rows = {row.id: row.at for row in await conn.execute(select(MOMENTS.c.id, MOMENTS.c.at))}
    assert rows[1] == summer
    assert rows[1].tzinfo is UTC
    assert (rows[1].hour, rows[1].minute) == (12, 30)
    assert rows[2] == winter
    assert rows[2].tzinfo is UTC
    assert rows[2].date().isoformat() == "2025-12-31"
    assert rows[3] is None


async def test_comparisons_in_sql_follow_time_not_wall_clocks(engine: AsyncEngine) -> None:
    # 13:00 in Brussels (UTC+2 in summer) is before 12:00 UTC: a store that kept the wall
    # clock would order them the other way round.
    async with engine.begin() as conn:
        await conn.execute(
            insert(MOMENTS),
            [
                {"id": 1, "at": datetime(2026, 7, 1, 13, 0, tzinfo=BRUSSELS)},
                {"id": 2, "at": datetime(2026, 7, 1, 12, 0, tzinfo=UTC)},
            ],
        )
    bound = datetime(2026, 7, 1, 11, 30, tzinfo=UTC)
    async with engine.connect() as conn:
        before = (await conn.execute(select(MOMENTS.c.id).where(MOMENTS.c.at < bound))).scalars()
        first = (await conn.execute(select(MOMENTS.c.id).order_by(MOMENTS.c.at))).scalars()
        assert list(before) == [1]
        assert list(first) == [1, 2]


async def test_a_naive_value_is_refused_and_nothing_is_written(engine: AsyncEngine) -> None:
    with pytest.raises(StatementError, match="naive"):
        async with engine.begin() as conn:
            await conn.execute(insert(MOMENTS), {"id": 1, "at": datetime(2026, 7, 1, 12, 0)})
    async with engine.connect() as conn:
        assert (await conn.execute(select(MOMENTS.c.id))).all() == []
    with pytest.raises(TypeError, match="naive"):
        as_utc(datetime(2026, 7, 1))


async def test_rows_written_by_sqlalchemys_own_type_read_the_same(engine: AsyncEngine) -> None:
    """No migration: what ``DateTime(timezone=True)`` wrote before reads as the same instant,
    and on SQLite the text written is byte for byte the one SQLAlchemy's type writes."""
    moment = datetime(2026, 2, 3, 4, 5, 6, 7, tzinfo=UTC)
    async with engine.begin() as conn:
        await conn.execute(insert(PLAIN), {"id": 1, "at": moment})
        await conn.execute(insert(MOMENTS), {"id": 2, "at": moment.astimezone(BRUSSELS)})
    async with engine.connect() as conn:
        ours = (await conn.execute(select(MOMENTS.c.at).order_by(MOMENTS.c.id))).scalars().all()
        assert ours == [moment, moment]
        if engine.dialect.name == "sqlite":
            stored = (await conn.execute(text("SELECT at FROM test_instants ORDER BY id"))).all()
            assert [row[0] for row in stored] == ["2026-02-03 04:05:06.000007"] * 2
