"""Crash safety: the pipeline is killed at each step of processing, restarted, and every set ends
acknowledged exactly once and delivered to the destination exactly once.

The pipeline runs in a child process (``tests/pipeline/runner.py``) with
``GATEWAY_TEST_CRASH_AT=<step>``, which makes it ``os._exit(137)`` at that step: no cleanup, no
flush, like SIGKILL. The second run has no crash point and must finish the work.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.pipeline.tables import ReturnFileRow, SetRow
from tests.pipeline.conftest import ROOT, Clock, build_harness
from tests.pki import StandardPki

SETS = 4


def run_pipeline(
    state: Path, url: str, trust: Path, crash_at: str | None, state_sync: str = "files"
) -> int:
    """Run the pipeline child to completion (or to its crash); its exit status."""
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_TEST_CRASH_AT"}
    if crash_at is not None:
        env["GATEWAY_TEST_CRASH_AT"] = crash_at
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.pipeline.runner",
            "--state",
            str(state),
            "--db",
            url,
            "--trust",
            str(trust),
            "--concurrency",
            "2",
            "--state-sync",
            state_sync,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if result.returncode not in (0, 137):
        raise AssertionError(result.stderr.decode(errors="replace")[-3000:])
    return result.returncode


CRASH_POINTS = ["after_claim", "after_verify", "after_route", "after_fo", "before_commit"]


@pytest.mark.parametrize("crash_at", CRASH_POINTS)
async def test_killed_at_each_step_then_restarted(
    tmp_path: Path, sqlite_url: str, cast: StandardPki, ssh_public_key: str, crash_at: str
) -> None:
    """After a kill at ``crash_at`` and a restart, each set has one ACRF and one delivery."""
    await killed_then_restarted(tmp_path, sqlite_url, cast, ssh_public_key, crash_at)


@pytest.mark.postgres
@pytest.mark.parametrize("crash_at", CRASH_POINTS)
async def test_killed_at_each_step_then_restarted_postgresql(
    tmp_path: Path, pg_url: str, cast: StandardPki, ssh_public_key: str, crash_at: str
) -> None:
    """The same on PostgreSQL."""
    await killed_then_restarted(tmp_path, pg_url, cast, ssh_public_key, crash_at)


@pytest.mark.parametrize("crash_at", ["after_fo", "before_commit"])
async def test_killed_with_one_syncfs_per_batch(
    tmp_path: Path, sqlite_url: str, cast: StandardPki, ssh_public_key: str, crash_at: str
) -> None:
    """``state_sync = "filesystem"`` (one syncfs per batch instead of an fsync per file): the
    same outcome after a kill once the files are written and before the commit."""
    await killed_then_restarted(
        tmp_path, sqlite_url, cast, ssh_public_key, crash_at, state_sync="filesystem"
    )


async def killed_then_restarted(
    tmp_path: Path,
    url: str,
    cast: StandardPki,
    ssh_public_key: str,
    crash_at: str,
    *,
    state_sync: str = "files",
) -> None:
    """Four sets; the pipeline killed at ``crash_at``, then run again: each set has one ACRF
    and one delivery, every set is finished, nothing is left half-placed."""
    state = tmp_path / "state"
    h = await build_harness(
        state_dir=state, url=url, cast=cast, ssh_public_key=ssh_public_key, clock=Clock()
    )
    for n in range(1, SETS + 1):
        await h.send_set(seq=f"0000{n}", parts=2)
    await h.engine.dispose()
    trust = tmp_path / "root.pem"
    trust.write_bytes(cast.root.cert_pem)

    assert run_pipeline(state, url, trust, crash_at, state_sync) == 137
    assert run_pipeline(state, url, trust, None, state_sync) == 0

    acrfs = h.acrfs()
    assert len(acrfs) == SETS, h.out_names()
    assert all(a.accepted for _, a in acrfs)
    tickets = {a.ticket for _, a in acrfs}
    assert len(tickets) == SETS
    assert len(h.out_names()) == 3 * SETS
    routed = h.routed()
    assert set(routed) == tickets
    assert all(len(files) == 3 for files in routed.values())  # 2 FI + envelope
    assert not [p for p in (state / "routed" / "DMFA").iterdir() if p.name.startswith(".")]
    async with h.engine.connect() as conn:
        states = (await conn.execute(select(SetRow.state, SetRow.finished))).all()
        returned = (await conn.execute(select(func.count()).select_from(ReturnFileRow))).scalar()
    assert sorted(states) == [("acknowledged", True)] * SETS
    assert returned == 3 * SETS
    await h.engine.dispose()
