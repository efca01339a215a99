"""Fixtures and helpers for the web channel tests: a test PKI, a provisioned registry with
web-service channels, a gateway on port 0, and the real client (curl with a client certificate).

The fixtures are exposed to the tests through ``tests/channels/conftest.py``. The gateway runs
in the test's event loop; curl runs in a subprocess.

The cast (made once per run by the real ``openssl``, tests/pki.py):

- ``ca``: the trust folder's CA; its CRL revokes ``revoked``;
- ``a``: sender A's registered certificate, issued by ``ca`` (checked against its CRL);
- ``b``: sender B's registered certificate, self-signed (its own TLS anchor);
- ``c``: sender C's registered certificate, issued by ``ca`` and revoked;
- ``d``: sender D's registered certificate, issued by ``ca``, expired since yesterday
  (registered three days ago, by a registry whose clock says so);
- ``stranger``: issued by ``ca``, registered nowhere (passes TLS, 401).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.channels.penalties import PenaltyPolicy, SourceGuard
from gateway.channels.web import (
    NotificationDesk,
    ServiceLookup,
    WebConfig,
    WebGateway,
)
from gateway.ops.metrics import Metrics
from gateway.ops.tls import DevIdentity, ensure_dev_server_identity
from gateway.registry.catalogue import load_service_catalogue
from gateway.registry.credentials import PasswordHashing
from gateway.registry.db import create_engine
from gateway.registry.migrate import migrate
from gateway.registry.notify import OutboxNotifier
from gateway.registry.service import Registry
from gateway.registry.types import ChannelKind
from gateway.spool import Spool, SpoolLimits
from gateway.spool.folders import Folders, NamePolicy
from tests.channels.ftp_env import TODAY, Run, run
from tests.channels.provision import CHEAP, ROOT, Sender, registry_on
from tests.channels.spooled import refusal_rows, upload_rows
from tests.pipeline.provision import ok, provision
from tests.pki import Identity, Pki
from tests.tools import require_tool

MIB = 1024 * 1024


class ServiceDeskLike(NotificationDesk, ServiceLookup, Protocol):
    """What the service API needs: the declared services and where notifications go
    (``gateway.pipeline.desk.ServiceDesk``)."""


@dataclass(frozen=True)
class WebPki:
    """The test cast (see the module docstring) and the trust folder's files."""

    ca: Identity
    crl: Path
    a: Identity
    b: Identity
    c: Identity
    d: Identity
    stranger: Identity


def _self_signed(pki: Pki, name: str) -> Identity:
    folder = pki.root / f"self-{name}"
    folder.mkdir()
    key, cert = folder / "key.pem", folder / "cert.pem"
    pki.run(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", cert, "-subj", f"/O=Batch Gateway Tests/CN={name}",
        "-days", "30", "-addext", "keyUsage=critical,digitalSignature",
        "-addext", "extendedKeyUsage=clientAuth",
    )  # fmt: skip
    return Identity(name=name, key=key, cert=cert)


@pytest.fixture(scope="session")
def web_pki(tmp_path_factory: pytest.TempPathFactory) -> WebPki:
    """The web tests' certificates, made once per run."""
    pki = Pki(tmp_path_factory.mktemp("web-pki"))
    ca = pki.root_ca("Web Test CA")
    a = pki.leaf("sender-a", issuer=ca, key="ec:P-256")
    c = pki.leaf("sender-c", issuer=ca, key="ec:P-256")
    stranger = pki.leaf("stranger", issuer=ca, key="ec:P-256")
    now = datetime.now(UTC)
    d = pki.leaf("sender-d", issuer=ca, key="ec:P-256", not_before=now - timedelta(days=10),
                 not_after=now - timedelta(days=1))  # fmt: skip
    pki.revoke(ca, c)
    crl = pki.crl(ca)
    b = _self_signed(pki, "sender-b")
    return WebPki(ca=ca, crl=crl, a=a, b=b, c=c, d=d, stranger=stranger)


def _ssh_line() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


def _registry_at(url: str, folder: Path, days_ago: int) -> Registry:
    """:func:`registry_on` with a clock ``days_ago`` days in the past."""
    return Registry(
        create_engine(url),
        clock=lambda: datetime.now(UTC) - timedelta(days=days_ago),
        notifier=OutboxNotifier(folder / "outbox"),
        hashing=PasswordHashing(CHEAP),
        catalogue=load_service_catalogue(ROOT / "config" / "services.toml"),
    )


async def _provision(url: str, folder: Path, certs: list[Identity], past: int) -> list[Sender]:
    """One sender per certificate; from index ``past`` on, registered three days ago."""
    await migrate(url)
    senders = []
    applications = ("DMFA", "WECH")
    for index, cert in enumerate(certs):
        registry = _registry_at(url, folder, 3 if index >= past else 0)
        try:
            made = await provision(
                registry, index=index, ssh_public_key=_ssh_line(), applications=applications
            )
            ok(
                await registry.add_channel(
                    actor=made.htb,
                    quality=made.quality,
                    kind=ChannelKind.webservice,
                    client_certificate=cert.cert_pem,
                )
            )
            senders.append(Sender(made.login, made.number, frozenset(applications)))
        finally:
            await registry.engine.dispose()
    return senders


@dataclass(frozen=True)
class WebTemplate:
    """A migrated, provisioned SQLite database: senders A to D with web-service channels."""

    path: Path
    senders: list[Sender]


@pytest.fixture(scope="module")
def web_template(tmp_path_factory: pytest.TempPathFactory, web_pki: WebPki) -> WebTemplate:
    """Senders A, B, C and D, each with its registered client certificate."""
    folder = tmp_path_factory.mktemp("web-registry")
    path = folder / "template.sqlite3"
    certs = [web_pki.a, web_pki.b, web_pki.c, web_pki.d]
    senders = asyncio.run(_provision(f"sqlite+aiosqlite:///{path}", folder, certs, past=3))
    return WebTemplate(path, senders)


@pytest.fixture(scope="session")
def web_identity(tmp_path_factory: pytest.TempPathFactory) -> DevIdentity:
    """The development server identity of the web listener, made once per run."""
    return ensure_dev_server_identity(tmp_path_factory.mktemp("web"))


@dataclass
class WebEnv:
    """A running web gateway and what a test needs to talk to it."""

    gateway: WebGateway
    spool: Spool
    registry: Registry
    state_dir: Path
    server_ca: Path
    pki: WebPki
    a: Sender
    b: Sender
    c: Sender
    metrics: Metrics
    sources: SourceGuard

    @property
    def url(self) -> str:
        """The base URL of the API."""
        return f"https://127.0.0.1:{self.gateway.port}/v1"

    async def uploads(self) -> list[tuple[str, str, str, int, str]]:
        """Rows of ``uploads``: (sender, folder, name, size, sha256)."""
        return await upload_rows(self.spool)

    async def refusals(self) -> list[tuple[str, str, int]]:
        """Rows of ``upload_refusals``: (folder, name, code)."""
        return await refusal_rows(self.spool)


StartWeb = Callable[..., Awaitable[WebEnv]]


@pytest.fixture
async def start_web(
    tmp_path: Path, web_template: WebTemplate, web_identity: DevIdentity, web_pki: WebPki
) -> AsyncIterator[StartWeb]:
    """Start a web gateway with chosen limits; everything is closed at the end of the test."""
    tmp_path = tmp_path / "web"  # its own database and spool beside the other channels'
    tmp_path.mkdir()
    state_dir = tmp_path / "state"
    db_path = tmp_path / "registry.sqlite3"
    shutil.copyfile(web_template.path, db_path)
    url = f"sqlite+aiosqlite:///{db_path}"
    engine = create_engine(url)
    registry = registry_on(url, tmp_path)
    trust = tmp_path / "trust"
    trust.mkdir()
    shutil.copyfile(web_pki.ca.cert, trust / "ca.pem")
    shutil.copyfile(web_pki.crl, trust / "ca.crl.pem")
    envs: list[WebEnv] = []

    async def start(
        *,
        max_file_bytes: int = 8 * MIB,
        quota: int = 64 * MIB,
        list_limit: int = 1000,
        penalties: PenaltyPolicy | None = None,
        sender_max_sessions: int = 20,
        services: Callable[[Registry, Path], ServiceDeskLike] | None = None,
    ) -> WebEnv:
        spool = Spool(
            state_dir=state_dir,
            engine=engine,
            limits=SpoolLimits(max_file_bytes=max_file_bytes, sender_pending_quota_bytes=quota),
        )
        metrics = Metrics.create()
        folders = Folders(spool=spool, names=NamePolicy(today=lambda: TODAY), metrics=metrics)
        sources = SourceGuard(penalties or PenaltyPolicy())
        config = WebConfig(
            tls_cert=web_identity.cert,
            tls_key=web_identity.key,
            trust_dirs=(trust,),
            host="127.0.0.1",
            port=0,
            max_body=max_file_bytes,
            list_limit=list_limit,
            sender_max_sessions=sender_max_sessions,
        )
        desk = services(registry, state_dir) if services is not None else None
        gateway = WebGateway(
            config=config,
            authenticator=registry,
            folders=folders,
            sources=sources,
            metrics=metrics,
            services=desk,
            desk=desk,
        )
        await gateway.start()
        a, b, c, _ = web_template.senders
        env = WebEnv(
            gateway=gateway,
            spool=spool,
            registry=registry,
            state_dir=state_dir,
            server_ca=web_identity.ca,
            pki=web_pki,
            a=a,
            b=b,
            c=c,
            metrics=metrics,
            sources=sources,
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
async def web(start_web: StartWeb) -> WebEnv:
    """A web gateway with the default test limits."""
    return await start_web()


# -- curl ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What curl got: its exit code, the HTTP status, the headers and the body."""

    returncode: int
    status: int
    headers: dict[str, str]
    body: bytes
    stderr: str

    def json(self) -> object:
        """The body as JSON."""
        return json.loads(self.body)


async def curl(
    env: WebEnv,
    path: str,
    *args: str,
    identity: Identity | None = None,
    cert: bool = True,
    folder: Path,
    root: bool = False,
) -> Answer:
    """``curl`` against ``env.url + path`` with a client certificate (A's unless told), verifying
    the gateway with its CA; ``--path-as-is`` so that dot segments reach the server. With
    ``root``, ``path`` is from the server's root, not from ``/v1``."""
    tool = require_tool("curl")
    who = identity or env.pki.a
    body, head = folder / "curl-body", folder / "curl-head"
    command = [
        tool, "--silent", "--show-error", "--path-as-is", "--cacert", str(env.server_ca),
        "--max-time", "60", "--output", str(body), "--dump-header", str(head),
        "--write-out", "%{http_code}",
    ]  # fmt: skip
    if cert:
        command += ["--cert", str(who.cert), "--key", str(who.key)]
    base = env.url.removesuffix("/v1") if root else env.url
    done: Run = await run([*command, *args, base + path])
    headers: dict[str, str] = {}
    text = head.read_text(errors="replace") if head.exists() else ""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip().lower()] = value.strip()
    status = int(done.stdout.strip() or "0")
    data = body.read_bytes() if body.exists() else b""
    for leftover in (body, head):
        leftover.unlink(missing_ok=True)
    return Answer(done.returncode, status, headers, data, done.stderr)
