"""The batch path (gateway/pipeline/batch.py): the sets claimed together are answered together,
each with its own outcome, and what the batch does not finish is finished by the per-set path.

Written against what a sender and an operator see: the ACRFs in OUT, the destination folder,
the ``sets`` and ``route_attempts`` rows.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import structlog
from sqlalchemy import select

from gateway.core.codes import Code
from gateway.ops.priority import HIGHEST
from gateway.pipeline.outcome import SUMMARY_EVENTS
from gateway.pipeline.tables import RouteAttemptRow, SetRow
from tests.pipeline.conftest import Harness, harness_on, pipeline_settings, set_names
from tests.pipeline.sqlcount import counting, pipeline_engine
from tests.pki import StandardPki


async def _states(harness: Harness) -> dict[str, tuple[str, int | None]]:
    async with harness.engine.connect() as conn:
        rows = (await conn.execute(select(SetRow))).all()
    return {row.trigger_name: (row.state, row.code) for row in rows}


async def test_a_batch_of_mixed_sets_gets_one_acrf_each(harness: Harness) -> None:
    """Accepted, refused and an exact resend in one pass: every set gets its own answer, the
    resend the original's ACRF again, and only the accepted sets are routed."""
    body = b"<declaration seq='00001'>resent</declaration>\r\n"
    signature = harness.sign(body)  # signed once: an exact resend repeats the very same FS

    async def send_first_set() -> str:
        [fi], [fs], go, _ = set_names(sender=harness.number, seq="00001")
        for name, data in ((fi, body), (fs, signature), (go, b"")):
            await harness.upload(name, data)
        return go

    first = await send_first_set()
    assert await harness.pipeline.run_once() == 1
    [(original, accepted)] = harness.acrfs()

    resent = await send_first_set()  # the same names and bytes again
    good = await harness.send_set(seq="00002")
    wrong = await harness.send_set(seq="00003", signer=harness.cast.untrusted)
    unsigned = await harness.send_set(seq="00004", with_fs=False)
    with structlog.testing.capture_logs() as logs:
        assert await harness.pipeline.run_once() == 4

    acrfs = dict(harness.acrfs())
    assert len(acrfs) == 4  # the resend's is the original's, written again under its names
    # One summary line per set at info names its ACRF (the batch's three and the resend's, on
    # the per-set path); the ACRF's own line is debug (issue 14: one info line per set).
    summaries = {e["set"]: e["ack"] for e in logs if e["event"] in SUMMARY_EVENTS.values()}
    assert summaries.keys() == {resent, good, wrong, unsigned}
    assert sorted(summaries.values()) == sorted(acrfs)
    assert summaries[resent] == original
    assert [e["log_level"] for e in logs if e["event"] == "ack.written"] in ([], ["debug"] * 4)
    assert acrfs[original] == accepted
    by_set = {acrf.file_name: acrf for acrf in acrfs.values()}
    assert by_set[good].accepted
    assert by_set[wrong].code == Code.CERTIFICATE_UNTRUSTED
    assert by_set[unsigned].code == Code.SIGNATURE_MISSING
    assert sorted(harness.routed()) == sorted([accepted.ticket, by_set[good].ticket])
    states = await _states(harness)
    assert first == resent
    assert states[good] == ("acknowledged", None)
    assert states[wrong] == ("rejected", int(Code.CERTIFICATE_UNTRUSTED))
    assert not any((harness.state_dir / "work").iterdir())


async def test_a_delivery_that_cannot_be_staged_is_retried_then_delivered(
    harness: Harness,
) -> None:
    """The destination cannot be written: the set's failed attempt is recorded and it waits,
    with no ACRF; once the destination is back, the retry delivers it and it is answered."""
    destination = harness.state_dir / "routed" / "DMFA"
    destination.parent.mkdir(parents=True)
    destination.write_text("not a folder")  # what an operator's mistake leaves
    go = await harness.send_set(seq="00001")
    assert await harness.pipeline.run_once() == 0
    assert harness.acrfs() == []
    async with harness.engine.connect() as conn:
        attempts = (await conn.execute(select(RouteAttemptRow))).all()
    assert [a.outcome for a in attempts] == ["failed"]
    assert (await _states(harness))[go][0] == "checking"

    destination.unlink()
    harness.pipeline.ctx.clock.offset += timedelta(minutes=5)  # type: ignore[attr-defined]
    assert await harness.pipeline.run_once() == 1
    [(_, acrf)] = harness.acrfs()
    assert acrf.accepted
    assert list(harness.routed()) == [acrf.ticket]


async def test_a_batch_is_not_capped_by_the_per_set_concurrency(
    tmp_path: Path, sqlite_url: str, cast: StandardPki, ssh_public_key: str
) -> None:
    """``concurrency`` bounds the sets processed each on its own, ``batch_limit`` a batch: with
    one per-set slot, twelve waiting GO sets still go through as one batch (the intake's, the
    decisions' and the finish's transactions), not as twelve."""
    h = await harness_on(tmp_path, sqlite_url, cast, ssh_public_key, concurrency=1)
    try:
        assert h.pipeline.concurrency == 1
        assert h.pipeline.batch_limit >= 12
        for n in range(1, 13):
            await h.send_set(seq=f"{n:05d}")
        with counting(pipeline_engine(h.pipeline.ctx.store)) as seen:
            assert await h.pipeline.run_once() == 12
        assert len(h.acrfs()) == 12
        assert all(acrf.accepted for _, acrf in h.acrfs())
        assert seen["COMMIT"] <= 4, seen  # twelve batches of one would commit 24 times or more
    finally:
        await h.engine.dispose()


async def test_the_pipeline_threads_run_above_the_thread_that_hands_them_work(
    tmp_path: Path, sqlite_url: str, cast: StandardPki, ssh_public_key: str
) -> None:
    """With ``priority_boost = 10`` the threads that check and acknowledge sets raise
    themselves 10 nice levels above the event loop's thread, which keeps its own
    (gateway.ops.priority)."""
    harness = await harness_on(
        tmp_path, sqlite_url, cast, ssh_public_key, settings=pipeline_settings(priority_boost=10)
    )
    loop_nice = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        seen = await harness.pipeline.ctx.blocking(os.getpriority, os.PRIO_PROCESS, 0)
    finally:
        await harness.engine.dispose()
    boost = harness.pipeline.priority
    assert boost.levels == 10
    assert boost.outcome is not None
    assert seen == boost.outcome.after
    if not boost.outcome.refused:
        assert seen == max(HIGHEST, loop_nice - 10)
    assert os.getpriority(os.PRIO_PROCESS, 0) == loop_nice
