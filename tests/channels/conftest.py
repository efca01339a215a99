"""Fixtures for the SFTP channel: a provisioned registry, SSH keys, and a gateway on port 0.

The registry is the real one, provisioned through its service API once per module into a SQLite
template that each test copies. Keys are made by the real ``ssh-keygen``. ``start_gateway``
starts an :class:`SftpGateway` on 127.0.0.1, port 0, with the limits a test asks for.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from gateway.channels.hostkeys import load_host_keys
from gateway.channels.penalties import PenaltyPolicy
from gateway.channels.proxy import ProxyPolicy
from gateway.channels.sftp import SftpConfig, SftpGateway
from gateway.core.names import default_parted
from gateway.core.types import SenderNumber
from gateway.registry.db import create_engine
from gateway.registry.service import Registry
from gateway.spool import Spool, SpoolLimits
from gateway.spool.folders import Folders, NamePolicy
from tests.channels.provision import Sender, provision_database, registry_on
from tests.tools import require_tool

MIB = 1024 * 1024


@dataclass(frozen=True)
class Key:
    """An ed25519 key pair made by ssh-keygen."""

    private: Path
    public_line: str


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> list[Key]:
    """Two key pairs: sender A's and sender B's."""
    tool = require_tool("ssh-keygen")
    folder = tmp_path_factory.mktemp("sftp-keys")
    pairs = []
    for i in range(2):
        path = folder / f"id_{i}"
        subprocess.run([tool, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
        pairs.append(Key(path, (folder / f"id_{i}.pub").read_text().strip()))
    return pairs


@pytest.fixture(scope="session")
def host_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Host keys made once per run (RSA generation is slow) and copied into each state dir."""
    folder = tmp_path_factory.mktemp("hostkeys") / "hostkeys"
    load_host_keys(folder)
    return folder


@dataclass(frozen=True)
class Template:
    """A migrated, provisioned SQLite database and its senders."""

    path: Path
    senders: list[Sender]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, keys: list[Key]) -> Template:
    """Senders A and B provisioned once per module."""
    folder = tmp_path_factory.mktemp("sftp-registry")
    path = folder / "template.sqlite3"
    senders = asyncio.run(
        provision_database(
            f"sqlite+aiosqlite:///{path}", folder, [[keys[0].public_line], [keys[1].public_line]]
        )
    )
    return Template(path, senders)


@dataclass
class Env:
    """A running gateway and what a test needs to talk to it."""

    gateway: SftpGateway
    spool: Spool
    registry: Registry
    state_dir: Path
    database_url: str
    a: Sender
    b: Sender
    key_a: Key
    key_b: Key
    started: list[SftpGateway] = field(default_factory=list)

    @property
    def port(self) -> int:
        """The gateway's port."""
        return self.gateway.port

    def sender_a(self) -> SenderNumber:
        """Sender A's number."""
        return SenderNumber(self.a.number)

    async def connect(self, *, key: Key | None = None, login: str | None = None) -> Any:
        """An asyncssh client connection (as sender A unless told otherwise)."""
        return await asyncssh.connect(
            "127.0.0.1",
            self.port,
            username=login or self.a.login,
            client_keys=[str((key or self.key_a).private)],
            known_hosts=None,
            agent_path=None,
        )


StartGateway = Callable[..., Awaitable[Env]]


@pytest.fixture
async def start_gateway(
    tmp_path: Path, template: Template, keys: list[Key], host_keys: Path
) -> AsyncIterator[StartGateway]:
    """Start a gateway with chosen limits; everything is closed at the end of the test."""
    state_dir = tmp_path / "state"
    shutil.copytree(host_keys, state_dir / "hostkeys")
    db_path = tmp_path / "registry.sqlite3"
    shutil.copyfile(template.path, db_path)
    url = f"sqlite+aiosqlite:///{db_path}"
    engine = create_engine(url)
    registry = registry_on(url, tmp_path)
    envs: list[Env] = []

    async def start(
        *,
        max_file_bytes: int = 8 * MIB,
        quota: int = 64 * MIB,
        max_sessions: int = 20,
        idle: float = 600.0,
        grace: float = 30.0,
        max_startups: int = 100,
        today: date | None = None,
        parted: Callable[[str], bool] = default_parted,
        penalties: PenaltyPolicy | None = None,
        proxy: ProxyPolicy | None = None,
    ) -> Env:
        spool = Spool(
            state_dir=state_dir,
            engine=engine,
            limits=SpoolLimits(max_file_bytes=max_file_bytes, sender_pending_quota_bytes=quota),
        )
        config = SftpConfig(
            host="127.0.0.1",
            port=0,
            host_key_dir=state_dir / "hostkeys",
            login_grace_seconds=grace,
            idle_timeout_seconds=idle,
            max_startups=max_startups,
            sender_max_sessions=max_sessions,
            penalties=penalties or PenaltyPolicy(),
            proxy=proxy or ProxyPolicy(),
        )
        names = NamePolicy(today=(lambda: today) if today else date.today, parted=parted)
        folders = Folders(spool=spool, names=names)
        gateway = SftpGateway(config=config, authenticator=registry, folders=folders)
        await gateway.start()
        env = Env(
            gateway=gateway,
            spool=spool,
            registry=registry,
            state_dir=state_dir,
            database_url=url,
            a=template.senders[0],
            b=template.senders[1],
            key_a=keys[0],
            key_b=keys[1],
        )
        envs.append(env)
        return env

    yield start
    for env in envs:
        env.gateway.close()
        await env.gateway.wait_closed()
        env.spool.close()
    await registry.engine.dispose()
    await engine.dispose()


@pytest.fixture
async def env(start_gateway: StartGateway) -> Env:
    """A gateway with the default test limits."""
    return await start_gateway()


@dataclass(frozen=True)
class SftpRun:
    """What OpenSSH ``sftp`` did: its exit code and output."""

    returncode: int
    stdout: str
    stderr: str


async def run_sftp(
    env: Env,
    batch: str,
    *,
    key: Key | None = None,
    login: str | None = None,
    cwd: Path | None = None,
) -> SftpRun:
    """Run OpenSSH ``sftp`` in batch mode with key auth against the gateway (without blocking
    the event loop the gateway runs on)."""
    tool = require_tool("sftp")
    args = [
        "-b", "-", "-i", str((key or env.key_a).private), "-P", str(env.port),
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes",
        f"{login or env.a.login}@127.0.0.1",
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        tool,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
    )
    async with asyncio.timeout(120):
        out, err = await process.communicate(batch.encode())
    return SftpRun(process.returncode or 0, out.decode(), err.decode())


# The FTP(S) channel's fixtures live in their own module; exposed here for tests/channels.
from tests.channels.ftp_env import ftp, ftp_template, ftps_identity, start_ftp  # noqa: E402, F401
from tests.channels.web_env import (  # noqa: E402, F401
    start_web,
    web,
    web_identity,
    web_pki,
    web_template,
)
