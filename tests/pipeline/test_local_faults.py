"""A set stopped by a local fault is retried at once with backoff, counted as failed, and then
acknowledged (issue 15 item 3); /readyz follows the spool's free-space floor.

The fault is injected in the function that writes an ACRF's files, which raises ENOSPC the first
time: the disk filling up under a set between its check and its acknowledgement. The pipeline's
clock is fixed, so the backoff is set to zero: the test waits for events (sets finished), never
for a timer.

When the database itself is the fault, SQLite refuses it from inside (a trigger raising an
error on every statement that gives a claim up): the set's last commit fails, and so does the
hand-back of its claim, which is the ``set.held`` path. Written against what is seen from
outside (log events, the ``sets`` row, the files in OUT and at the destination), not the
pipeline's internals.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import os
import sqlite3
from collections.abc import Callable, Iterator, MutableMapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from gateway.core.codes import Code
from gateway.ops.metrics import Metrics, serve_metrics
from gateway.ops.settings import LimitSettings
from gateway.pipeline import acks, steps
from gateway.pipeline.tables import SetRow
from gateway.spool import Spool, SpoolLimits
from gateway.spool.disk import Disk, FreeSpace
from gateway.spool.reserve import SpaceReserve
from tests.ops.test_metrics import curl
from tests.pipeline.conftest import Clock, Harness, build_harness
from tests.pki import StandardPki
from tests.tools import mounted_tmpfs


class FullOnce:
    """The ACRF writer (``stage_return_set``), whose first call meets a full disk."""

    def __init__(self, write: Callable[..., list[Path]]) -> None:
        self.write = write
        self.failures_left = 1

    def __call__(self, *args: Any, **kwargs: Any) -> list[Path]:
        if self.failures_left:
            self.failures_left -= 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.write(*args, **kwargs)


async def test_a_set_that_meets_a_full_disk_is_retried_and_acknowledged(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while the ACRF is written: set.failed (disk_full, with a ticket), counted in
    gateway_sets_total{outcome="failed"}, handed back and retried at once, then acknowledged."""
    pipeline = harness.pipeline
    metrics = Metrics.create()
    pipeline.ctx = dataclasses.replace(pipeline.ctx, metrics=metrics)
    monkeypatch.setattr(steps, "stage_return_set", FullOnce(acks.stage_return_set))
    pipeline.retry_first = timedelta(0)
    with capture_logs() as logs:
        async with asyncio.timeout(60):
            task = asyncio.create_task(pipeline.run())
            await harness.send_set(seq="00001")
            await pipeline.wait_finished(1)
            await pipeline.aclose(deadline=10)
            await task
    [(_, acrf)] = harness.acrfs()
    assert acrf.accepted
    assert pipeline.failures == 1
    assert metrics.sets_total.labels(outcome="failed")._value.get() == 1
    [failed] = [e for e in logs if e["event"] == "set.failed"]
    assert failed["reason"] == "disk_full"
    assert len(failed["ticket"]) == 12
    assert failed.get("exc_info")


async def test_readiness_is_503_while_the_spool_is_short_of_space(
    harness: Harness, tmp_path: Path
) -> None:
    """/readyz (curl) is 503 "spool short of space" while the free space is below the floor."""
    free = [10 * 1024**2]
    spool = Spool(
        state_dir=tmp_path / "state2",
        engine=harness.engine,
        limits=SpoolLimits(
            max_file_bytes=1000, sender_pending_quota_bytes=10_000, min_free_bytes=64 * 1024**2
        ),
        disk=Disk(free_space=lambda path: FreeSpace(free=free[0], total=1024**3)),
    )
    try:
        async with await serve_metrics(Metrics.create(), "127.0.0.1", 0) as server:
            server.set_ready(True)
            server.add_readiness_check(spool.readiness)
            url = f"http://127.0.0.1:{server.port}/readyz"
            assert await curl(url) == (503, "not ready: spool short of space\n")
            free[0] = 128 * 1024**2
            assert await curl(url) == (200, "ready\n")
    finally:
        spool.close()


# Every statement that gives a claim up (a set's last commit, a hand-back) fails inside SQLite;
# taking a claim (NULL -> token) and the steps in between still work.
_CLAIMS_STUCK = """CREATE TRIGGER claims_stuck BEFORE UPDATE OF claim_token ON sets
WHEN OLD.claim_token IS NOT NULL AND NEW.claim_token IS NULL
BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"""


class Heard:
    """A structlog processor a test awaits: set when ``event`` is logged (no polling)."""

    def __init__(self, event: str) -> None:
        self.event = event
        self.heard = asyncio.Event()

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if event_dict.get("event") == self.event:
            self.heard.set()
        return event_dict


def _sqlite(url: str, statement: str) -> None:
    with sqlite3.connect(url.removeprefix("sqlite+aiosqlite:///"), timeout=30) as db:
        db.execute(statement)


async def _set_row(harness: Harness) -> Any:
    async with harness.engine.connect() as conn:
        return (await conn.execute(select(SetRow))).one()


async def test_a_set_whose_claim_cannot_be_handed_back_is_held_then_acknowledged_once(
    harness: Harness,
) -> None:
    """The database failing under a set's last commit and under the hand-back of its claim:
    set.failed (database, with a ticket), then set.held; the row keeps this node's claim, and
    once the database is well again this node retries the set after its backoff and the set is
    acknowledged once (one ACRF, one delivery, the claim given up)."""
    pipeline = harness.pipeline
    pipeline.retry_first = timedelta(0)
    held = Heard("set.held")
    await asyncio.to_thread(_sqlite, harness.url, _CLAIMS_STUCK)
    with capture_logs(processors=[held]) as logs:
        async with asyncio.timeout(60):
            task = asyncio.create_task(pipeline.run())
            await harness.send_set(seq="00001")
            await held.heard.wait()
            kept = await _set_row(harness)
            await asyncio.to_thread(_sqlite, harness.url, "DROP TRIGGER claims_stuck")
            await pipeline.wait_finished(1)
            await pipeline.aclose(deadline=10)
            await task
    assert kept.claim_token is not None
    assert not kept.finished

    [(_, acrf)] = harness.acrfs()
    assert acrf.accepted
    assert list(harness.routed()) == [acrf.ticket]
    row = await _set_row(harness)
    assert (row.ticket, row.state, row.finished, row.claim_token) == (
        acrf.ticket,
        "acknowledged",
        True,
        None,
    )
    failed = [e for e in logs if e["event"] == "set.failed"]
    holds = [e for e in logs if e["event"] == "set.held"]
    assert failed
    assert {(e["set_id"], e["reason"]) for e in failed} == {(row.id, "database")}
    assert all(len(e["ticket"]) == 12 and e.get("exc_info") for e in failed)
    assert holds
    assert {e["set_id"] for e in holds} == {row.id}
    assert pipeline.failures == len(failed)


RESERVE_BYTES = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs under ``tmp_path`` (root needed), unmounted at the end."""
    with mounted_tmpfs(tmp_path / "disk", "4m") as point:
        yield point


def _fill(directory: Path) -> None:
    """Write a file in ``directory`` until its filesystem is full (ENOSPC, for real)."""

    def write_until_full(fh: Any, size: int) -> None:
        while True:
            fh.write(b"\0" * size)

    with (directory / "filler").open("wb", buffering=0) as fh:
        for size in (64 * 1024, 4096, 1):
            with pytest.raises(OSError, match="No space left") as full:
                write_until_full(fh, size)
            assert full.value.errno == errno.ENOSPC


async def test_a_set_that_meets_a_full_disk_gives_up_the_space_reserve(
    tmp_path: Path,
    small_disk: Path,
    sqlite_url: str,
    cast: StandardPki,
    ssh_public_key: str,
) -> None:
    """The state directory on a small tmpfs, filled up after the set (a TD: its ACRF is the only
    file the pipeline writes) was stored: the ACRF's write meets a real ENOSPC, set.failed
    (disk_full), and the pipeline gives up the space reserve (storage.reserve_released, cause
    pipeline: the file is gone); the retry writes the ACRF in the room it gave."""
    state = small_disk / "state"
    state.mkdir()
    reserve = SpaceReserve.at_start(state, RESERVE_BYTES)
    assert reserve.path.exists()
    harness = await build_harness(
        state_dir=state,
        url=sqlite_url,
        cast=cast,
        ssh_public_key=ssh_public_key,
        clock=Clock(),
        spool_limits=SpoolLimits.from_settings(
            LimitSettings(min_free_bytes=0, min_free_percent=0)  # no floor: 4 MiB is enough
        ),
        release_reserve=reserve.release,
    )
    try:
        pipeline = harness.pipeline
        pipeline.retry_first = timedelta(0)
        await harness.send_set(seq="00001", close="TD")
        await asyncio.to_thread(_fill, small_disk)
        with capture_logs() as logs:
            async with asyncio.timeout(60):
                task = asyncio.create_task(pipeline.run())
                await pipeline.wait_finished(1)
                await pipeline.aclose(deadline=10)
                await task
        harness.spool.close()
    finally:
        await harness.engine.dispose()
    assert not reserve.path.exists()
    assert reserve.short
    [released] = [e for e in logs if e["event"] == "storage.reserve_released"]
    assert released["cause"] == "pipeline"
    assert released["log_level"] == "critical"
    failed = [e for e in logs if e["event"] == "set.failed"]
    assert [e["reason"] for e in failed] == ["disk_full"]
    [(_, acrf)] = harness.acrfs()
    assert not acrf.accepted
    assert acrf.code == Code.SET_CANCELLED
