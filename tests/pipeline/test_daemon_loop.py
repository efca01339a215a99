"""The daemon's entry point: ``run()`` woken by the spool's hook, ``aclose()`` drains."""

from __future__ import annotations

import asyncio

from gateway.pipeline.worker import Pipeline
from tests.pipeline.conftest import Harness


async def test_run_processes_sets_as_their_go_lands(harness: Harness) -> None:
    """With run() as a task, a committed GO is acknowledged without any explicit pass."""
    pipeline = harness.pipeline
    async with asyncio.timeout(60):
        task = asyncio.create_task(pipeline.run())
        await harness.send_set(seq="00001")
        await pipeline.wait_finished(1)
        await harness.send_set(seq="00002", parts=2)
        await pipeline.wait_finished(2)
        assert pipeline.statistics().running
        await pipeline.aclose(deadline=10)
        await task
    assert len(harness.acrfs()) == 2
    assert all(a.accepted for _, a in harness.acrfs())
    assert not pipeline.statistics().running


async def test_refusals_are_answered_by_the_sweep(harness: Harness) -> None:
    """The periodic sweep answers a refusal recorded while the daemon runs."""
    from gateway.core.codes import Code, reject
    from gateway.core.folders import Folder
    from gateway.core.types import SenderNumber

    pipeline = harness.pipeline
    pipeline.sweep_interval = 0.05
    async with asyncio.timeout(60):
        task = asyncio.create_task(pipeline.run())
        await harness.spool.record_refusal(
            sender=SenderNumber(harness.number),
            folder=Folder.IN,
            name="FI.DMFA.006401.20260101.00001.R.1.1",
            rejection=reject(Code.SENDER_NOT_OWNER, "sender number 006401 is not yours"),
            session_id="s",
        )
        # A sweep under way when the refusal was recorded may have missed it; the next will not.
        await pipeline.wait_sweeps(pipeline.statistics().sweeps + 2)
        await pipeline.aclose(deadline=10)
        await task
    [(_, acrf)] = harness.acrfs()
    assert acrf.code == Code.SENDER_NOT_OWNER


async def _idle(pipeline: Pipeline) -> None:
    """Until the worker waits for a wake-up: none pending, no pass running."""
    while pipeline._wake.is_set() or pipeline._pass_lock.locked():  # noqa: ASYNC110 (no event)
        await asyncio.sleep(0.01)


async def test_a_lone_set_costs_three_write_transactions(harness: Harness) -> None:
    """A set landing alone is taken in and claimed, decided, finished: three transactions.
    Once its batch is done and nothing else arrived, the pass ends without another read of
    the triggers or another claim (each a round trip that found nothing, issue 14)."""
    from tests.pipeline.sqlcount import counting, pipeline_engine

    pipeline = harness.pipeline
    pipeline.sweep_interval = 3600  # the start's sweep only: no wake-up while counting
    async with asyncio.timeout(60):
        task = asyncio.create_task(pipeline.run())
        await pipeline.wait_sweeps(1)
        await _idle(pipeline)  # the passes of the start and of its sweep have ended
        with counting(pipeline_engine(pipeline.ctx.store)) as seen:
            await harness.send_set(seq="00001")
            await pipeline.wait_finished(1)
            await _idle(pipeline)  # and so has the set's
        await pipeline.aclose(deadline=10)
        await task
    assert len(harness.acrfs()) == 1
    assert seen["BEGIN"] == 3, seen
    assert seen["COMMIT"] == 3, seen
