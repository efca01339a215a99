"""Two pipeline processes on one PostgreSQL process 200 sets, and no set is routed twice."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import func, select

from gateway.pipeline.tables import RouteAttemptRow, SetRow
from gateway.registry.migrate import migrate
from tests.pipeline.conftest import ROOT, Clock, build_harness, set_names
from tests.pki import StandardPki
from tests.tools import require_env

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SETS = 200


async def _admin(url: str, statement: str) -> None:
    dsn = url.replace("postgresql+asyncpg://", "postgresql://").rsplit("/", 1)[0] + "/postgres"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh database on the test PostgreSQL server, migrated to head; dropped afterwards."""
    server = require_env("GATEWAY_TEST_PG_DSN")
    # The name is made of hex digits here; identifiers cannot be bound parameters.
    name = f"pipeline_{secrets.token_hex(6)}"
    await _admin(server, f'CREATE DATABASE "{name}"')
    url = server.rsplit("/", 1)[0] + "/" + name
    await migrate(url)
    yield url
    await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
