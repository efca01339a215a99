"""Fixtures for the registry: a migrated database on SQLite and on PostgreSQL, a registry, keys.

``backend_url`` is parametrized: every contract test runs on SQLite (a file per test, copied
from a template migrated once per module) and on a real PostgreSQL (a database per test module,
migrated once and emptied before each test; the server is named by GATEWAY_TEST_PG_DSN, which
``.ci/start-postgres`` sets). Keys and certificates are made at test time by the real
``ssh-keygen`` and ``openssl``.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, insert

import gateway.registry.all_models  # noqa: F401  (fills Base.metadata)
from gateway.registry.audit import GENESIS
from gateway.registry.catalogue import ServiceCatalogue, load_service_catalogue
from gateway.registry.credentials import Argon2Parameters, PasswordHashing
from gateway.registry.db import Base, create_engine
from gateway.registry.migrate import migrate
from gateway.registry.models import AuditHeadRow
from gateway.registry.networks import NetworkBook, load_networks
from gateway.registry.notify import OutboxNotifier
from gateway.registry.service import Registry
from tests.pg import pg_admin
from tests.tools import require_env, require_tool

ROOT = Path(__file__).resolve().parents[2]

# Cheap argon2id parameters: the suite checks behaviour, bench/registry.py measures cost.
CHEAP = Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1)


@dataclass
class Clock:
    """A clock the test can move; starts at the real now so openssl-made certificates are valid."""

    offset: timedelta = field(default_factory=timedelta)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def backend_template(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """A database migrated to head once per module: ("sqlite", file) or ("postgres", URL).

    PostgreSQL gets a database of its own per test module, so modules never collide."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("registry-template") / "template.sqlite3"
        asyncio.run(migrate(f"sqlite+aiosqlite:///{path}"))
        yield "sqlite", str(path)
        return
    url = require_env("GATEWAY_TEST_PG_DSN")
    # Names are generated here from hex digits only; identifiers cannot be bound parameters.
    name = f"registry_{secrets.token_hex(6)}"
    asyncio.run(pg_admin(url, f'CREATE DATABASE "{name}"'))
    template_url = url.rsplit("/", 1)[0] + "/" + name
    asyncio.run(migrate(template_url))
    yield "postgres", template_url
    asyncio.run(pg_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _wipe(url: str) -> None:
    """Empty every table of a migrated database and restart the audit chain."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                await conn.execute(delete(table))
            await conn.execute(insert(AuditHeadRow).values(id=1, seq=0, hash=GENESIS))
    finally:
        await engine.dispose()


@pytest.fixture
async def backend_url(backend_template: tuple[str, str], tmp_path: Path) -> AsyncIterator[str]:
    """A migrated, empty database for one test: a copy of the module's SQLite file, or the
    module's PostgreSQL database emptied (a database per test costs ~1 s on a loaded machine)."""
    kind, template = backend_template
    if kind == "sqlite":
        path = tmp_path / "registry.sqlite3"
        shutil.copyfile(template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    await _wipe(template)
    yield template


@pytest.fixture(scope="session")
def hashing() -> PasswordHashing:
    """argon2id with cheap parameters."""
    return PasswordHashing(CHEAP)


@pytest.fixture(scope="session")
def catalogue() -> ServiceCatalogue:
    """The shipped services catalogue."""
    return load_service_catalogue(ROOT / "config" / "services.toml")


@pytest.fixture(scope="session")
def networks() -> NetworkBook:
    """The shipped secondary networks file (documentation-range placeholders)."""
    return load_networks(ROOT / "config" / "networks.toml")


@pytest.fixture
def clock() -> Clock:
    """A movable clock."""
    return Clock()


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    """The folder the outbox notifier writes activation messages to."""
    return tmp_path / "outbox"


@pytest.fixture
async def registry(
    backend_url: str,
    hashing: PasswordHashing,
    catalogue: ServiceCatalogue,
    networks: NetworkBook,
    clock: Clock,
    outbox: Path,
) -> AsyncIterator[Registry]:
    """A registry on a fresh database of each backend, with the shipped catalogue and networks."""
    engine = create_engine(backend_url)
    yield Registry(
        engine,
        clock=clock,
        notifier=OutboxNotifier(outbox),
        hashing=hashing,
        catalogue=catalogue,
        networks=networks,
    )
    await engine.dispose()


@dataclass(frozen=True)
class KeyPair:
    """An SSH key pair made by ssh-keygen."""

    private: Path
    public_line: str


@pytest.fixture(scope="session")
def ssh_keys(tmp_path_factory: pytest.TempPathFactory) -> list[KeyPair]:
    """Three ed25519 key pairs made by the real ssh-keygen."""
    tool = require_tool("ssh-keygen")
    folder = tmp_path_factory.mktemp("ssh-keys")
    pairs = []
    for i in range(3):
        path = folder / f"id_{i}"
        subprocess.run(
            [tool, "-q", "-t", "ed25519", "-N", "", "-C", f"key{i}@test", "-f", str(path)],
            check=True,
        )
        pairs.append(KeyPair(path, (folder / f"id_{i}.pub").read_text().strip()))
    return pairs


class Certs:
    """Self-signed certificates made by the real openssl, with a chosen keyUsage."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.openssl = require_tool("openssl")

    def make(
        self,
        name: str,
        *,
        key_usage: str | None = "critical,nonRepudiation",
        days: int = 30,
        der: bool = False,
    ) -> bytes:
        """A certificate (PEM, or DER when ``der``) valid from now for ``days``."""
        key = self.folder / f"{name}.key.pem"
        cert = self.folder / f"{name}.cert.pem"
        args = [
            self.openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            str(days),
            "-subj",
            f"/CN={name}/O=Test",
        ]
        if key_usage is not None:
            args += ["-addext", f"keyUsage={key_usage}"]
        subprocess.run(args, check=True, capture_output=True)
        if not der:
            return cert.read_bytes()
        return subprocess.run(
            [self.openssl, "x509", "-in", str(cert), "-outform", "DER"],
            check=True,
            capture_output=True,
        ).stdout


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """The certificate maker."""
    return Certs(tmp_path_factory.mktemp("certs"))
