"""Stopping the SFTP channel: a transfer in progress finishes, new files are refused (926), idle
sessions end at once, and what cannot finish by the deadline is aborted (nothing visible)."""

from __future__ import annotations

import asyncio
import os

import asyncssh
import pytest

from tests.channels.conftest import Env, StartGateway
from tests.channels.test_sftp import TODAY, name, temp_files, uploads, visible_files


@pytest.fixture
async def gw(start_gateway: StartGateway) -> Env:
    """A gateway whose name check runs on TODAY."""
    return await start_gateway(today=TODAY)


async def test_a_transfer_in_progress_finishes_and_idle_sessions_end_at_once(gw: Env) -> None:
    """While draining: the idle session is ended at once; the busy one may not open another
    file (926, nothing recorded) but writes and closes its upload, which is committed; then it
    is ended too, before the deadline."""
    me = gw.a.number
    busy, idle = await gw.connect(), await gw.connect()
    async with busy, idle, busy.start_sftp_client() as sftp:
        upload = await sftp.open(f"IN/{name('FI', me)}", "wb")
        await upload.write(b"x" * 1000)
        draining = asyncio.create_task(gw.gateway.drain(30.0))
        await asyncio.wait_for(idle.wait_closed(), timeout=10)
        with pytest.raises(asyncssh.SFTPFailure, match=r"^926: the gateway is stopping"):
            await sftp.open(f"IN/{name('FS', me)}", "wb")
        await upload.write(b"y" * 1000, 1000)
        await upload.close()
        assert await asyncio.wait_for(draining, timeout=10) == 0
        await asyncio.wait_for(busy.wait_closed(), timeout=10)
    assert visible_files(gw.state_dir) == [f"{me}/IN/{name('FI', me)}"]
    assert [(r[2], r[3]) for r in await uploads(gw)] == [(name("FI", me), 2000)]


async def test_an_upload_waiting_for_its_rename_may_finish(gw: Env) -> None:
    """WinSCP-style: closed under NAME.filepart when the drain starts, renamed after; the rename
    is still allowed and commits the upload, and only then is the session ended."""
    me = gw.a.number
    final = name("FI", me)
    conn = await gw.connect()
    async with conn, conn.start_sftp_client() as sftp:
        async with sftp.open(f"IN/{final}.filepart", "wb") as upload:
            await upload.write(b"z" * 500)
        draining = asyncio.create_task(gw.gateway.drain(30.0))
        await asyncio.sleep(0.3)  # several drain rounds: a parked upload keeps the session
        assert not draining.done()
        await sftp.rename(f"IN/{final}.filepart", f"IN/{final}")
        assert await asyncio.wait_for(draining, timeout=10) == 0
        await asyncio.wait_for(conn.wait_closed(), timeout=10)
    assert visible_files(gw.state_dir) == [f"{me}/IN/{final}"]


async def test_an_upload_still_open_at_the_deadline_is_aborted(gw: Env) -> None:
    """An upload never closed holds the drain until the deadline, then its connection is cut:
    no file, no row, no temp file."""
    me = gw.a.number
    conn = await gw.connect()
    async with conn, conn.start_sftp_client() as sftp:
        upload = await sftp.open(f"IN/{name('FI', me)}", "wb")
        await upload.write(os.urandom(3 * 1024 * 1024))  # past one chunk: a temp file exists
        assert len(temp_files(gw.state_dir)) == 1
        assert await asyncio.wait_for(gw.gateway.drain(0.5), timeout=10) == 1
        await asyncio.wait_for(conn.wait_closed(), timeout=10)
        await asyncio.wait_for(gw.gateway.wait_sftp_ended(1), timeout=10)
    assert visible_files(gw.state_dir) == []
    assert await uploads(gw) == []
    assert temp_files(gw.state_dir) == []
