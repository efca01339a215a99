"""Fixtures and helpers for the FTP(S) channel tests: a provisioned registry with FTP passwords,
the development FTPS identity, a gateway on port 0, and the real clients (curl, lftp, ftplib).

The fixtures are exposed to the tests through ``tests/channels/conftest.py``. The gateway runs
in the test's event loop; every client runs in a subprocess or a worker thread so that the loop
stays free to serve it.
"""

from __future__ import annotations

import asyncio
import ftplib
import shutil
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pytest

from gateway.channels.ftp import FtpConfig, FtpGateway, Listener
from gateway.channels.penalties import PenaltyPolicy, SourceGuard
from gateway.channels.proxy import ProxyPolicy
from gateway.ops.metrics import Metrics
from gateway.ops.tls import DevIdentity, ensure_dev_server_identity, server_context
from gateway.registry.db import create_engine
from gateway.registry.migrate import migrate
from gateway.registry.service import Registry
from gateway.registry.types import ChannelKind
from gateway.spool import Spool, SpoolLimits
from gateway.spool.folders import Folders, NamePolicy
from tests.channels.provision import Sender, registry_on
from tests.channels.spooled import committed_files, refusal_rows, upload_rows
from tests.pipeline.provision import ok, provision
from tests.tools import require_tool

MIB = 1024 * 1024
TODAY = date(2026, 1, 15)
PASSWORD = "Batch-Gateway-2026!"
PLAIN_HOST = "127.0.0.2"
PLAIN_LISTENER = "lan"
# Sender B's FTP channel only admits this range: a login from loopback is network_not_allowed.
B_NETWORK = "192.0.2.0/24"


def name(kind: str, sender: str, seq: str = "00001", env: str = "R") -> str:
    """An upload name dated TODAY (GO has no part number)."""
    suffix = ".1" if kind == "GO" else ".1.1"
    return f"{kind}.DMFA.{sender}.20260115.{seq}.{env}{suffix}"


@dataclass(frozen=True)
class FtpTemplate:
    """A migrated, provisioned SQLite database: senders A and B with SFTP and FTP channels."""

    path: Path
    senders: list[Sender]


async def _provision(url: str, folder: Path, public_keys: list[str]) -> list[Sender]:
    await migrate(url)
    registry = registry_on(url, folder)
    senders = []
    applications = ("DMFA", "WECH")
    try:
        for index, key in enumerate(public_keys):
            made = await provision(
                registry, index=index, ssh_public_key=key, applications=applications
            )
            ok(
                await registry.add_channel(
                    actor=made.htb,
                    quality=made.quality,
                    kind=ChannelKind.ftp,
                    ftp_password=PASSWORD,
                    networks=[B_NETWORK] if index == 1 else [],
                )
            )
            senders.append(Sender(made.login, made.number, frozenset(applications)))
    finally:
        await registry.engine.dispose()
    return senders


@pytest.fixture(scope="module")
def ftp_template(tmp_path_factory: pytest.TempPathFactory, keys: list[object]) -> FtpTemplate:
    """Senders A and B, with an FTP password each (B's channel bound to ``B_NETWORK``)."""
    folder = tmp_path_factory.mktemp("ftp-registry")
    path = folder / "template.sqlite3"
    lines = [str(getattr(k, "public_line")) for k in keys]  # noqa: B009 (conftest's Key)
    senders = asyncio.run(_provision(f"sqlite+aiosqlite:///{path}", folder, lines))
    return FtpTemplate(path, senders)


@pytest.fixture(scope="session")
def ftps_identity(tmp_path_factory: pytest.TempPathFactory) -> DevIdentity:
    """The development FTPS identity (CA, chain, key), made once per run."""
    return ensure_dev_server_identity(tmp_path_factory.mktemp("ftps"))


@dataclass
class FtpEnv:
    """A running FTP gateway and what a test needs to talk to it."""

    gateway: FtpGateway
    spool: Spool
    state_dir: Path
    ca: Path
    a: Sender
    b: Sender
    metrics: Metrics
    sources: SourceGuard
    plain_allowed: set[str] = field(default_factory=set)
    registry: Registry | None = None

    @property
    def port(self) -> int:
        """The public FTPS listener's port."""
        return self.gateway.port

    @property
    def plain_port(self) -> int:
        """The plain listener's port (on ``PLAIN_HOST``)."""
        return self.gateway.ports[PLAIN_LISTENER]

    async def uploads(self) -> list[tuple[str, str, str, int, str]]:
        """Rows of ``uploads``: (sender, folder, name, size, sha256)."""
        return await upload_rows(self.spool)

    async def refusals(self) -> list[tuple[str, str, int]]:
        """Rows of ``upload_refusals``: (folder, name, code)."""
        return await refusal_rows(self.spool)

    def visible_files(self) -> list[str]:
        """Every committed file under the spool (relative paths), temp area excluded."""
        return committed_files(self.state_dir)


StartFtp = Callable[..., Awaitable[FtpEnv]]


@pytest.fixture
async def start_ftp(
    tmp_path: Path, ftp_template: FtpTemplate, ftps_identity: DevIdentity
) -> AsyncIterator[StartFtp]:
    """Start an FTP gateway with chosen limits; everything is closed at the end of the test."""
    state_dir = tmp_path / "state"
    db_path = tmp_path / "registry.sqlite3"
    shutil.copyfile(ftp_template.path, db_path)
    url = f"sqlite+aiosqlite:///{db_path}"
    engine = create_engine(url)
    registry = registry_on(url, tmp_path)
    tls = server_context(ftps_identity.cert, ftps_identity.key)
    envs: list[FtpEnv] = []

    async def start(
        *,
        max_file_bytes: int = 8 * MIB,
        quota: int = 64 * MIB,
        max_attempts: int = 3,
        max_sessions: int = 20,
        grace: float = 30.0,
        idle: float = 600.0,
        max_startups: int = 100,
        plain_allowed: Collection[str] = (),
        block_size: int = 256 * 1024,
        passive_ports: tuple[int, int] | None = None,
        penalties: PenaltyPolicy | None = None,
        folders_type: type[Folders] = Folders,
        passive_address: str | None = None,
        proxy: ProxyPolicy | None = None,
    ) -> FtpEnv:
        spool = Spool(
            state_dir=state_dir,
            engine=engine,
            limits=SpoolLimits(max_file_bytes=max_file_bytes, sender_pending_quota_bytes=quota),
        )
        metrics = Metrics.create()
        names = NamePolicy(today=lambda: TODAY)
        folders = folders_type(spool=spool, names=names, metrics=metrics)
        sources = SourceGuard(penalties or PenaltyPolicy())
        allowed = set(plain_allowed)

        def plain_network(listener: str, address: str) -> str | None:
            return "Loopback" if listener == PLAIN_LISTENER and address in allowed else None

        config = FtpConfig(
            tls=tls,
            host="127.0.0.1",
            port=0,
            plain_listeners=(Listener(PLAIN_LISTENER, PLAIN_HOST, 0),),
            passive_ports=passive_ports,
            passive_address=passive_address,
            login_grace_seconds=grace,
            idle_timeout_seconds=idle,
            max_startups=max_startups,
            max_login_attempts=max_attempts,
            sender_max_sessions=max_sessions,
            block_size=block_size,
            proxy=proxy or ProxyPolicy(),
        )
        gateway = FtpGateway(
            config=config,
            authenticator=registry,
            folders=folders,
            sources=sources,
            plain_network=plain_network,
            metrics=metrics,
        )
        await gateway.start()
        env = FtpEnv(
            gateway=gateway,
            spool=spool,
            state_dir=state_dir,
            ca=ftps_identity.ca,
            a=ftp_template.senders[0],
            b=ftp_template.senders[1],
            metrics=metrics,
            sources=sources,
            plain_allowed=allowed,
            registry=registry,
        )
        envs.append(env)
        return env

    yield start
    for env in envs:
        await env.gateway.drain(1.0)
        env.spool.close()
    await registry.engine.dispose()
    await engine.dispose()


@pytest.fixture
async def ftp(start_ftp: StartFtp) -> FtpEnv:
    """An FTP gateway with the default test limits."""
    return await start_ftp()


# -- clients ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """What a client process did."""

    returncode: int
    stdout: str
    stderr: str


async def run(args: list[str], *, cwd: Path | None = None, seconds: float = 120) -> Run:
    """Run a client without blocking the event loop the gateway serves on."""
    process = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
    )
    async with asyncio.timeout(seconds):
        out, err = await process.communicate()
    return Run(process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))


def curl_base(env: FtpEnv, login: str | None = None) -> list[str]:
    """curl over explicit FTPS (AUTH TLS, PROT P), verifying the gateway with its CA."""
    tool = require_tool("curl")
    return [
        tool, "--silent", "--show-error", "--ssl-reqd", "--cacert", str(env.ca),
        "--ftp-pasv", "--user", f"{login or env.a.login}:{PASSWORD}",
    ]  # fmt: skip


def lftp_script(env: FtpEnv, body: str, *, login: str | None = None) -> list[str]:
    """lftp forced to TLS on control and data, verifying the gateway with its CA."""
    tool = require_tool("lftp")
    script = (
        "set ftp:ssl-force true; set ftp:ssl-protect-data true; "
        f"set ssl:ca-file {env.ca}; set ssl:verify-certificate true; "
        "set net:max-retries 1; set net:timeout 20; set cmd:fail-exit true; "
        f"open -u {login or env.a.login},{PASSWORD} -p {env.port} ftp://127.0.0.1; {body}"
    )
    return [tool, "-c", script]


def ftps_client(env: FtpEnv, *, login: bool = True, prot_p: bool = True) -> ftplib.FTP_TLS:
    """A logged-in ftplib FTPS client (blocking: use it from a worker thread)."""
    context = ssl.create_default_context(cafile=str(env.ca))
    client = ftplib.FTP_TLS(context=context, timeout=30)  # noqa: S321 (FTP is under test)
    client.connect("127.0.0.1", env.port)
    if login:
        client.login(env.a.login, PASSWORD)  # AUTH TLS first (ftplib's FTP_TLS.login)
        if prot_p:
            client.prot_p()
    return client


def plain_client(host: str, port: int) -> ftplib.FTP:
    """A plain FTP client, connected (blocking: use it from a worker thread)."""
    client = ftplib.FTP(timeout=30)  # noqa: S321 (FTP is under test)
    client.connect(host, port)
    return client


def reply_of(call: Callable[[], object]) -> str:
    """The reply an ftplib call ends with (its error's text when the server refused)."""
    try:
        return str(call())
    except ftplib.all_errors as exc:
        return str(exc)
