"""Dates in names follow the gateway's calendar (``pipeline.timezone``, default Europe/Brussels).

A Belgian sender who sends just after midnight writes the new day's date in the names. At that
moment UTC is still on the day before, so a gateway that checked against the UTC date refused
such sets as "in the future" (109) for one or two hours every night. These tests put the
pipeline's clock at 23:30 UTC, which is always the next calendar day in Brussels (00:30 in
winter, 01:30 in summer).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from gateway.core.codes import Code
from tests.pipeline.conftest import (
    Clock,
    Harness,
    build_harness,
    pipeline_settings,
)
from tests.pki import StandardPki

BRUSSELS = ZoneInfo("Europe/Brussels")


def late_evening_utc() -> Clock:
    """A clock at the coming 23:30 UTC (never in the past: the test certificates start now)."""
    now = datetime.now(UTC)
    target = datetime.combine(now.date(), time(23, 30), tzinfo=UTC)
    if target <= now:
        target += timedelta(days=1)
    return Clock(offset=target - now)


async def test_a_set_dated_today_in_brussels_is_accepted_while_utc_is_still_yesterday(
    harness: Harness,
) -> None:
    """Named with Brussels' date, the set is accepted; its ACRF is named and dated in Brussels."""
    harness.clock.offset = late_evening_utc().offset
    local = harness.clock().astimezone(BRUSSELS)
    assert local.date() == harness.clock().date() + timedelta(days=1)  # the case under test
    go = await harness.send_set(day=local.date())
    assert await harness.pipeline.run_once() == 1
    [(name, acrf)] = harness.acrfs()
    assert acrf.accepted, acrf.description
    assert acrf.file_name == go
    assert name.startswith(f"FO.ACRF.999999.{local:%Y%m%d}.")
    # FormCreationDate/Hour are Brussels wall-clock time (within the test's own run time).
    assert acrf.created.date() == local.date()
    assert abs(acrf.created - local.replace(tzinfo=None)) < timedelta(minutes=5)


async def test_a_set_dated_tomorrow_in_brussels_is_in_the_future(harness: Harness) -> None:
    """One day past Brussels' date is refused with 109, and the negative ACRF says so."""
    harness.clock.offset = late_evening_utc().offset
    local = harness.clock().astimezone(BRUSSELS)
    go = await harness.send_set(day=local.date() + timedelta(days=1))
    assert await harness.pipeline.run_once() == 1
    [(name, acrf)] = harness.acrfs()
    assert not acrf.accepted
    assert acrf.file_name == go
    assert acrf.code == Code.DATE_IN_FUTURE
    assert name.startswith(f"FO.ACRF.999999.{local:%Y%m%d}.")


async def test_a_gateway_configured_for_utc_checks_against_the_utc_date(
    tmp_path: Path, sqlite_url: str, cast: StandardPki, ssh_public_key: str
) -> None:
    """``pipeline.timezone = "UTC"``: the same Brussels-dated set is one day ahead, so 109."""
    state = tmp_path / "state"
    state.mkdir()
    clock = late_evening_utc()
    harness = await build_harness(
        state_dir=state,
        url=sqlite_url,
        cast=cast,
        ssh_public_key=ssh_public_key,
        clock=clock,
        settings=pipeline_settings(timezone="UTC"),
    )
    try:
        local = clock().astimezone(BRUSSELS)
        await harness.send_set(day=local.date())
        assert await harness.pipeline.run_once() == 1
        [(name, acrf)] = harness.acrfs()
        assert acrf.code == Code.DATE_IN_FUTURE
        assert name.startswith(f"FO.ACRF.999999.{clock():%Y%m%d}.")
    finally:
        await harness.engine.dispose()
