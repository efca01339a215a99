"""Two pipeline processes on one PostgreSQL process 200 sets, and no set is routed twice."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.pipeline.tables import RouteAttemptRow, SetRow
from tests.pipeline.conftest import ROOT, Clock, build_harness, set_names
from tests.pki import StandardPki

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SETS = 200


async def test_two_workers_never_route_a_set_twice(
    tmp_path: Path, pg_url: str, cast: StandardPki, ssh_public_key: str
) -> None:
    """200 sets, two worker processes racing on SKIP LOCKED claims: 200 deliveries, 200 ACRFs."""
    state = tmp_path / "state"
    h = await build_harness(
        state_dir=state, url=pg_url, cast=cast, ssh_public_key=ssh_public_key, clock=Clock()
    )
    body = b"<declaration>" + b"z" * 2000 + b"</declaration>\r\n"
    signature = h.sign(body)
    for n in range(1, SETS + 1):
        fis, fss, go, _ = set_names(sender=h.number, seq=f"{n:05d}")
        await h.upload(fis[0], body)
        await h.upload(fss[0], signature)
        await h.upload(go, b"")
    trust = tmp_path / "root.pem"
    trust.write_bytes(cast.root.cert_pem)
    command = [sys.executable, "-m", "tests.pipeline.runner", "--state", str(state), "--db",
               pg_url, "--trust", str(trust), "--concurrency", "8", "--multi-node"]  # fmt: skip
    workers = [
        await asyncio.create_subprocess_exec(
            *command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    results = await asyncio.wait_for(
        asyncio.gather(*(w.communicate() for w in workers)), timeout=240
    )
    for worker, (_, err) in zip(workers, results, strict=True):
        assert worker.returncode == 0, err.decode(errors="replace")[-3000:]

    acrfs = h.acrfs()
    assert len(acrfs) == SETS
    assert all(a.accepted for _, a in acrfs)
    assert len({name.split(".")[4] for name, _ in acrfs}) == SETS  # sequence numbers unique
    routed = h.routed()
    assert len(routed) == SETS
    async with h.engine.connect() as conn:
        attempts = (
            await conn.execute(
                select(RouteAttemptRow.set_id, func.count())
                .group_by(RouteAttemptRow.set_id)
                .having(func.count() > 1)
            )
        ).all()
        states = (
            await conn.execute(select(SetRow.state, func.count()).group_by(SetRow.state))
        ).all()
        delivered = (
            await conn.execute(
                select(func.count())
                .select_from(RouteAttemptRow)
                .where(RouteAttemptRow.outcome == "delivered")
            )
        ).scalar()
    assert attempts == []
    assert delivered == SETS
    assert states == [("acknowledged", SETS)]
    await h.engine.dispose()
