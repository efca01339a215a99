"""Two nodes, one PostgreSQL database, one sender's quota (issue 15 item 2; SECURITY.md 14, 21).

Two SFTP channel processes (``python -m gateway.cli.sftp_testserver``) share one PostgreSQL
database and one state directory, as two nodes behind a balancer do. Each node reserves bytes
against what it can see: the committed pending total and its own uploads in flight, not the
other node's. So one sender fills the quota on both nodes at once (every write answered), and
only then closes everything: the commits race, and the check each commit makes under the
sender's advisory lock is what keeps the committed total within the quota. No timer: the two
clients meet at a barrier between their writes and their closes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import asyncssh
import pytest
from sqlalchemy import select

from gateway.ops.settings import DEFAULT_TIMEZONE
from gateway.registry.db import create_engine
from gateway.spool.tables import UploadRefusalRow, UploadRow
from tests.channels.conftest import Key
from tests.channels.provision import Sender, provision_database
from tests.channels.spooled import committed_files
from tests.channels.test_sftp import temp_files
from tests.channels.test_sftp_process import ServerProcess
from tests.pg import fresh_pg_database

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]

SIZE = 64 * 1024
PER_NODE = 4
QUOTA = PER_NODE * SIZE  # each node alone may take the whole quota in flight


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh migrated PostgreSQL database."""
    async with fresh_pg_database("quota") as url:
        yield url


def _name(sender: str, n: int) -> str:
    today = f"{datetime.now(DEFAULT_TIMEZONE):%Y%m%d}"  # the channel's calendar
    return f"FI.DMFA.{sender}.{today}.{n:05d}.R.1.1"


async def _fill_then_close(
    port: int, sender: Sender, key: Key, names: list[str], barrier: asyncio.Barrier
) -> list[str | None]:
    """Open and write every name (each write answered), wait at ``barrier``, then close them
    all at once: the refusal text of each close, or None when it committed."""
    async with (
        asyncssh.connect(
            "127.0.0.1",
            port,
            username=sender.login,
            client_keys=[str(key.private)],
            known_hosts=None,
            agent_path=None,
        ) as conn,
        conn.start_sftp_client() as sftp,
    ):
        files = [await sftp.open(f"/IN/{name}", "wb") for name in names]
        for file in files:
            await file.write(os.urandom(SIZE))
        await barrier.wait()

        async def close(file: asyncssh.SFTPClientFile) -> str | None:
            try:
                await file.close()
            except asyncssh.SFTPError as exc:
                return str(exc.reason)
            return None

        return list(await asyncio.gather(*(close(f) for f in files)))


async def _rows(url: str) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(name, size) of every ``uploads`` row; (name, code) of every refusal row."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            uploads = (await conn.execute(select(UploadRow.name, UploadRow.size))).all()
            refusals = (
                await conn.execute(select(UploadRefusalRow.name, UploadRefusalRow.code))
            ).all()
    finally:
        await engine.dispose()
    return [(n, s) for n, s in uploads], [(n, c) for n, c in refusals]


async def test_two_nodes_never_commit_past_one_senders_quota(
    pg_url: str,
    tmp_path: Path,
    keys: list[Key],
    host_keys: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Four uploads in flight on each node (each node's reservations fill the quota), closed
    together: exactly the quota is committed, the other four get 920 at their close, are
    recorded for the negative ACRF and leave no file, temp file included."""
    state_dir = tmp_path / "state"
    shutil.copytree(host_keys, state_dir / "hostkeys")
    [sender] = await provision_database(pg_url, tmp_path, [[keys[0].public_line]])
    limits = {"SENDER_PENDING_QUOTA_BYTES": QUOTA, "MIN_FREE_BYTES": 0, "MIN_FREE_PERCENT": 0}
    for key, value in limits.items():
        monkeypatch.setenv(f"GATEWAY_LIMITS__{key}", str(value))  # read by both nodes' settings
    nodes = [ServerProcess(state_dir, pg_url) for _ in range(2)]
    names = [[_name(sender.number, i * PER_NODE + n + 1) for n in range(PER_NODE)] for i in (0, 1)]
    barrier = asyncio.Barrier(2)
    try:
        for node in nodes:  # one after the other: each migrates (a no-op) and recovers at start
            await node.start()
        async with asyncio.timeout(120):
            answers = await asyncio.gather(
                *(
                    _fill_then_close(node.port, sender, keys[0], node_names, barrier)
                    for node, node_names in zip(nodes, names, strict=True)
                )
            )
    finally:
        for node in nodes:
            await node.kill()

    uploads, refusals = await _rows(pg_url)
    outcome = {
        name: reason
        for node_names, node_answers in zip(names, answers, strict=True)
        for name, reason in zip(node_names, node_answers, strict=True)
    }
    committed = sorted(n for n, reason in outcome.items() if reason is None)
    refused = sorted(n for n, reason in outcome.items() if reason is not None)
    assert sum(size for _, size in uploads) == QUOTA
    assert sorted(n for n, _ in uploads) == committed
    assert len(refused) == PER_NODE
    assert all(str(outcome[n]).startswith("920: ") for n in refused), outcome
    assert sorted(refusals) == [(n, 920) for n in refused]
    assert committed_files(state_dir) == sorted(f"{sender.number}/IN/{n}" for n in committed)
    assert temp_files(state_dir) == []
