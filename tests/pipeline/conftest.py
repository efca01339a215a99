"""A real pipeline on a real registry and spool: senders provisioned through the registry's API,
uploads committed through the spool's own API, signatures made by the real openssl.

:class:`Harness` is what the pipeline tests drive: ``send_set`` stores FI/FS/GO files exactly as
a channel would (``Spool.begin`` → ``write`` → ``finish`` → ``commit``), ``pipeline.run_once()``
processes them, and the helpers read what a sender would see in OUT and what the destination got.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.core.folders import Folder
from gateway.core.receipts import Acrf, parse_acrf
from gateway.core.signature import TrustStore
from gateway.core.types import SenderNumber
from gateway.ops.settings import (
    DEFAULT_TIMEZONE,
    LimitSettings,
    PipelineSettings,
    SignatureSettings,
)
from gateway.pipeline import Pipeline, ensure_gateway_identity
from gateway.registry.catalogue import ServiceCatalogue, load_service_catalogue
from gateway.registry.credentials import Argon2Parameters, PasswordHashing
from gateway.registry.db import SqliteWriter, create_engine, sqlite_writer
from gateway.registry.migrate import migrate
from gateway.registry.notify import OutboxNotifier
from gateway.registry.service import Registry
from gateway.spool import (
    Spool,
    SpoolLimits,
    StoredUpload,
    UploadTarget,
    UploadWriter,
)
from gateway.spool.durable import StateSync
from tests.pg import fresh_pg_database
from tests.pipeline.provision import Sender, provision
from tests.pki import Identity, StandardPki, fs_text, standard_pki
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
CHEAP = Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1)


@dataclass
class Clock:
    """A clock the test can move; starts at the real now so openssl-made certificates are valid."""

    offset: timedelta = field(default_factory=timedelta)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture(scope="session")
def cast(tmp_path_factory: pytest.TempPathFactory) -> StandardPki:
    """The standard test PKI (root + signing CA + signers), made once by openssl."""
    require_tool("openssl")
    return standard_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def ssh_public_key(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An ed25519 public key made by ssh-keygen (the SFTP channel needs one to exist)."""
    tool = require_tool("ssh-keygen")
    path = tmp_path_factory.mktemp("ssh") / "id"
    subprocess.run([tool, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite registry migrated to head once; each test copies it."""
    path = tmp_path_factory.mktemp("db") / "template.sqlite3"
    asyncio.run(migrate(f"sqlite+aiosqlite:///{path}"))
    return path


def today() -> date:
    """Today on the calendar the pipeline checks names against (the default time zone)."""
    return datetime.now(DEFAULT_TIMEZONE).date()


def set_names(
    *,
    app: str = "DMFA",
    sender: str,
    seq: str = "00001",
    env: str = "R",
    parts: int | None = 1,
    day: date | None = None,
) -> tuple[list[str], list[str], str, str]:
    """(FI names, FS names, GO name, TD name) of one set, dated ``day`` (default: today)."""
    stem = f"{app}.{sender}.{day or today():%Y%m%d}.{seq}.{env}"
    if parts is None:
        return [f"FI.{stem}"], [f"FS.{stem}"], f"GO.{stem}", f"TD.{stem}"
    fis = [f"FI.{stem}.{parts}.{n}" for n in range(1, parts + 1)]
    fss = [f"FS.{stem}.{parts}.{n}" for n in range(1, parts + 1)]
    return fis, fss, f"GO.{stem}.{parts}", f"TD.{stem}.{parts}"


@dataclass
class Harness:
    """One gateway's pipeline, spool and registry on a temporary state directory."""

    state_dir: Path
    url: str
    registry: Registry
    spool: Spool
    pipeline: Pipeline
    sender: Sender
    cast: StandardPki
    clock: Clock
    gateway_cert: Path
    engine: Any
    signer: Identity
    writer: SqliteWriter | None = None
    """SQLite: the one writer thread and connection the spool and the store share."""

    @property
    def number(self) -> str:
        """The provisioned sender's number."""
        return self.sender.number

    async def upload(
        self, name: str, data: bytes, *, folder: str = "IN", sender: str | None = None
    ) -> StoredUpload:
        """Store one file through the spool's API, as a channel does."""
        target = UploadTarget(
            sender=SenderNumber(sender or self.number),
            folder=Folder(folder),
            name=name,
            session_id="test-session",
            channel="test",
        )
        writer = await self.spool.begin(target)
        assert isinstance(writer, UploadWriter), writer
        written = await writer.write(0, data)
        assert written is None, written
        stored = await self.spool.store(writer)
        assert isinstance(stored, StoredUpload), stored
        return stored

    def sign(self, content: bytes, signer: Identity | None = None, **kw: Any) -> bytes:
        """An FS text for ``content``: openssl cms -sign -binary, base64 in 76-column CR lines."""
        der = self.cast.pki.sign(content, signer or self.signer, certfile=[self.cast.sub], **kw)
        return fs_text(der, "76-cr")

    async def send_set(
        self,
        *,
        app: str = "DMFA",
        seq: str = "00001",
        env: str = "R",
        parts: int | None = 1,
        contents: Sequence[bytes] | None = None,
        signer: Identity | None = None,
        with_fs: bool = True,
        close: str | None = "GO",
        day: date | None = None,
    ) -> str:
        """Upload FI (+FS) parts and the GO (or TD, or nothing); returns the GO/TD name."""
        fis, fss, go, td = set_names(
            app=app, sender=self.number, seq=seq, env=env, parts=parts, day=day
        )
        folder = {"R": "IN", "T": "INTEST", "S": "INTEST-S"}[env]
        bodies = contents or [
            f"<declaration part='{i}' seq='{seq}'>{'x' * 300}</declaration>\r\n".encode()
            for i in range(1, len(fis) + 1)
        ]
        for fi, fs, body in zip(fis, fss, bodies, strict=True):
            await self.upload(fi, body, folder=folder)
            if with_fs:
                await self.upload(fs, self.sign(body, signer), folder=folder)
        if close == "GO":
            await self.upload(go, b"", folder=folder)
        elif close == "TD":
            await self.upload(td, b"", folder=folder)
        return go if close != "TD" else td

    def out_dir(self, folder: str = "OUT") -> Path:
        """The sender's OUT folder on disk."""
        return self.state_dir / "out" / self.number / folder

    def out_names(self, folder: str = "OUT") -> list[str]:
        """Names in the sender's OUT folder (what `ls OUT` shows)."""
        directory = self.out_dir(folder)
        if not directory.exists():
            return []
        return sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))

    def acrfs(self, folder: str = "OUT") -> list[tuple[str, Acrf]]:
        """Every FO.ACRF in the folder, parsed, by name."""
        return [
            (name, parse_acrf((self.out_dir(folder) / name).read_bytes()))
            for name in self.out_names(folder)
            if name.startswith("FO.ACRF.")
        ]

    def routed(self, app: str = "DMFA") -> dict[str, dict[str, bytes]]:
        """The directory destination: ticket -> {file name: bytes}."""
        base = self.state_dir / "routed" / app
        if not base.exists():
            return {}
        return {
            d.name: {f.name: f.read_bytes() for f in d.iterdir()}
            for d in base.iterdir()
            if not d.name.startswith(".")
        }

    def envelope(self, ticket: str, app: str = "DMFA") -> dict[str, Any]:
        """The JSON envelope of a routed set."""
        data = (self.state_dir / "routed" / app / ticket / "envelope.json").read_bytes()
        result: dict[str, Any] = json.loads(data)
        return result

    def openssl_verify_ack(self, fo: Path, fs: Path) -> subprocess.CompletedProcess[bytes]:
        """Verify an ACRF's FS like a sender: base64 -d, openssl cms -verify with gateway.pem."""
        der = fs.parent / f".{fs.name}.der"
        der.write_bytes(base64.b64decode(b"".join(fs.read_bytes().split())))
        try:
            return subprocess.run(
                [
                    "openssl",
                    "cms",
                    "-verify",
                    "-binary",
                    "-inform",
                    "DER",
                    "-in",
                    str(der),
                    "-content",
                    str(fo),
                    "-CAfile",
                    str(self.gateway_cert),
                    "-purpose",
                    "any",
                    "-out",
                    "/dev/null",
                ],
                capture_output=True,
                check=False,
            )
        finally:
            der.unlink()


def pipeline_settings(**overrides: Any) -> PipelineSettings:
    """Pipeline settings for tests (everything else default)."""
    return PipelineSettings(**overrides)


async def build_harness(
    *,
    state_dir: Path,
    url: str,
    cast: StandardPki,
    ssh_public_key: str,
    clock: Clock,
    catalogue: ServiceCatalogue | None = None,
    settings: PipelineSettings | None = None,
    index: int = 1,
    trust: TrustStore | None = None,
    spool_limits: SpoolLimits | None = None,
    state_sync: StateSync = StateSync.FILES,
    **pipeline_kw: Any,
) -> Harness:
    """Wire a registry, a spool and a pipeline on ``url``; provision one sender (``index``)."""
    engine = create_engine(url)
    catalogue = catalogue or load_service_catalogue(ROOT / "config" / "services.toml")
    registry = Registry(
        engine,
        clock=clock,
        notifier=OutboxNotifier(state_dir / "outbox"),
        hashing=PasswordHashing(CHEAP),
        catalogue=catalogue,
    )
    signer = cast.rsa
    sender = await provision(
        registry,
        index=index,
        ssh_public_key=ssh_public_key,
        certificates=(signer.cert_pem, cast.untrusted.cert_pem, cast.revoked.cert_pem),
    )
    settings = settings or pipeline_settings()
    key_pem, cert_pem = ensure_gateway_identity(state_dir, settings)
    gateway_cert = state_dir / "keys" / "gateway.pem"
    if trust is None:
        trust = TrustStore.from_blobs([cast.root.cert_pem], [cast.crl.read_bytes()])
    # As gateway serve wires them: on SQLite, one writer thread and connection for the spool
    # and the pipeline's store (closed when the engine is disposed).
    writer = sqlite_writer(engine)
    pipeline = Pipeline(
        pipeline=settings,
        limits=LimitSettings(),
        signature=SignatureSettings(),
        engine=engine,
        registry=registry,
        state_dir=state_dir,
        clock=clock,
        gateway_key=key_pem,
        gateway_cert=cert_pem,
        trust=trust,
        catalogue=catalogue,
        state_sync=state_sync,
        writer=writer,
        **pipeline_kw,
    )
    spool = Spool(
        state_dir=state_dir,
        engine=engine,
        limits=spool_limits or SpoolLimits.from_settings(LimitSettings()),
        on_stored=pipeline.on_stored,
        admit=pipeline.admit,
        clock=clock,
        state_sync=state_sync,
        writer=writer,
    )
    return Harness(
        state_dir=state_dir,
        url=url,
        registry=registry,
        spool=spool,
        pipeline=pipeline,
        sender=sender,
        cast=cast,
        clock=clock,
        gateway_cert=gateway_cert,
        engine=engine,
        signer=signer,
        writer=writer,
    )


@pytest.fixture
async def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """A fresh migrated SQLite database for one test."""
    path = tmp_path / "registry.sqlite3"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


async def harness_on(
    tmp_path: Path, url: str, cast: StandardPki, ssh_public_key: str, **kw: Any
) -> Harness:
    """:func:`build_harness` on ``tmp_path/state`` (made here), the database at ``url`` (SQLite
    or PostgreSQL) and a fresh clock; ``kw`` as :func:`build_harness` takes it (settings,
    pipeline arguments). The caller disposes of ``engine``."""
    state = tmp_path / "state"
    state.mkdir()
    return await build_harness(
        state_dir=state,
        url=url,
        cast=cast,
        ssh_public_key=ssh_public_key,
        clock=Clock(),
        **kw,
    )


@pytest.fixture
async def harness(
    tmp_path: Path, sqlite_url: str, cast: StandardPki, ssh_public_key: str
) -> AsyncIterator[Harness]:
    """A pipeline on SQLite with one provisioned sender (DMFA, WECH; registered certificates: the
    RSA signer, a signer under an untrusted CA and a revoked signer)."""
    h = await harness_on(tmp_path, sqlite_url, cast, ssh_public_key)
    yield h
    await h.engine.dispose()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh database on the test PostgreSQL server, migrated to head; dropped afterwards."""
    async with fresh_pg_database("pipeline") as url:
        yield url
