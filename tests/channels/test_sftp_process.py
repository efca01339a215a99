"""The SFTP channel from outside: ssh-audit's verdict, and a SIGKILL in the middle of an upload.

The crash test runs the channel in its own process (``python -m
gateway.cli.sftp_testserver``) so it can be killed with SIGKILL while 100 MiB stream in.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import sys
from datetime import datetime
from pathlib import Path

import asyncssh
import pytest
from sqlalchemy import func, select

from gateway.ops.settings import DEFAULT_TIMEZONE
from gateway.registry.db import create_engine
from gateway.spool.tables import UploadRow
from tests.channels.conftest import MIB, Env, Key, Template
from tests.channels.test_sftp import temp_files, visible_files

ROOT = Path(__file__).resolve().parents[2]


async def test_ssh_audit_reports_no_weak_algorithm_and_strict_kex(env: Env) -> None:
    """ssh-audit finds no failing algorithm, only post-quantum warnings, and strict KEX."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ssh_audit", "-j", "--skip-rate-test", f"127.0.0.1:{env.port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(120):
        out, _ = await process.communicate()
    report = json.loads(out)
    assert report["banner"]["raw"] == "SSH-2.0-BatchGateway"
    kex = [entry["algorithm"] for entry in report["kex"]]
    assert "kex-strict-s-v00@openssh.com" in kex
    for section in ("kex", "key", "enc", "mac"):
        for entry in report[section]:
            notes = entry.get("notes", {})
            assert not notes.get("fail"), (section, entry)
            for warning in notes.get("warn", []):
                assert "post-quantum" in warning, (section, entry)
    assert report["cves"] == []
    assert not report.get("recommendations", {}).get("critical")
    keys = {entry["algorithm"] for entry in report["key"]}
    assert keys == {"ssh-ed25519", "rsa-sha2-256", "rsa-sha2-512"}


class ServerProcess:
    """The SFTP channel running as ``python -m gateway.cli.sftp_testserver``."""

    def __init__(self, state_dir: Path, database_url: str) -> None:
        self.state_dir = state_dir
        self.database_url = database_url
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0

    async def start(self) -> None:
        """Start it and wait for its ``port N`` line."""
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli.sftp_testserver",
            "--state-dir", str(self.state_dir), "--database-url", self.database_url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            cwd=ROOT,
        )  # fmt: skip
        assert self.process.stdout is not None
        async with asyncio.timeout(60):
            line = await self.process.stdout.readline()
        assert line.startswith(b"port "), line
        self.port = int(line.split()[1])

    async def kill(self) -> None:
        """SIGKILL: no clean-up code runs."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()


@pytest.fixture
def crash_env(tmp_path: Path, template: Template, host_keys: Path) -> tuple[Path, str]:
    """A state dir (with host keys) and a copy of the provisioned database."""
    state_dir = tmp_path / "state"
    shutil.copytree(host_keys, state_dir / "hostkeys")
    db = tmp_path / "registry.sqlite3"
    shutil.copyfile(template.path, db)
    return state_dir, f"sqlite+aiosqlite:///{db}"


async def _rows(url: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(UploadRow))).scalar_one()
            )
    finally:
        await engine.dispose()


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_sigkill_mid_upload_leaves_nothing_and_retry_succeeds(
    crash_env: tuple[Path, str], template: Template, keys: list[Key], tmp_path: Path
) -> None:
    """SIGKILL during a 100 MiB upload: no visible file, no row; after restart it succeeds."""
    state_dir, url = crash_env
    sender = template.senders[0]
    today = f"{datetime.now(DEFAULT_TIMEZONE):%Y%m%d}"  # the gateway's calendar
    target = f"/IN/FI.DMFA.{sender.number}.{today}.00001.R.1.1"
    body = os.urandom(100 * MIB)
    server = ServerProcess(state_dir, url)
    await server.start()
    connect = {
        "username": sender.login,
        "client_keys": [str(keys[0].private)],
        "known_hosts": None,
        "agent_path": None,
    }
    try:
        conn = await asyncssh.connect("127.0.0.1", server.port, **connect)
        sftp = await conn.start_sftp_client()
        file = await sftp.open(target, "wb")
        for offset in range(0, 30 * MIB, MIB):
            await file.write(body[offset : offset + MIB], offset)
        await server.kill()
        conn.abort()
        assert visible_files(state_dir) == []
        assert await _rows(url) == 0

        await server.start()  # recovery at start-up removes the crash's temp file
        assert temp_files(state_dir) == []
        async with (
            await asyncssh.connect("127.0.0.1", server.port, **connect) as conn2,
            conn2.start_sftp_client() as sftp2,
        ):
            async with sftp2.open(target, "wb") as out:
                await out.write(body)
            assert (await sftp2.stat(target)).size == len(body)
        stored = state_dir / "spool" / sender.number / "IN" / target.rsplit("/", 1)[1]
        assert stored.stat().st_size == len(body)
        assert hashlib.sha256(stored.read_bytes()).digest() == hashlib.sha256(body).digest()
        assert await _rows(url) == 1
    finally:
        await server.kill()
