"""Fixtures for the admin plane's tests: two provisioned enterprises, an admin listener on port 0
over them, and the real client (curl with a cookie jar).

Enterprise 0 (HTB ``htb0``) and enterprise 1 (HTB ``htb1``) each have an employer quality with
a sender; both HTBs' passwords are :data:`PASSWORD` (set through the registry: reset by the
operator, then changed by the HTB).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.admin.config import AdminConfig
from gateway.admin.routes import ROUTES
from gateway.admin.server import AdminGateway, AdminPlane
from gateway.ops.tls import DevIdentity, ensure_dev_server_identity
from gateway.registry.migrate import migrate
from gateway.registry.service import Registry
from gateway.registry.types import IssuedPassword
from tests.channels.ftp_env import Run, run
from tests.channels.provision import registry_on
from tests.pipeline.provision import Sender, ok, provision
from tests.tools import require_tool

PASSWORD = "Correct-Horse-Battery-42"


def _ssh_line() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


async def set_password(registry: Registry, login: str, password: str = PASSWORD) -> None:
    """Give ``login`` a known password: the operator resets it, the person changes it."""
    issued = ok(await registry.reset_password(actor=None, login=login))
    assert isinstance(issued, IssuedPassword)
    assert await registry.change_password(login=login, old=issued.password, new=password) is None


@dataclass
class AdminEnv:
    """A running admin listener and what a test needs to talk to it."""

    gateway: AdminGateway
    registry: Registry
    senders: list[Sender]
    ca: Path
    folder: Path
    jars: dict[str, Path] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The listener's base URL."""
        return f"https://127.0.0.1:{self.gateway.port}"


@pytest.fixture(scope="session")
def admin_identity(tmp_path_factory: pytest.TempPathFactory) -> DevIdentity:
    """The admin listener's development identity, made once per run."""
    return ensure_dev_server_identity(tmp_path_factory.mktemp("admin-tls"), purpose="admin console")


@pytest.fixture(scope="module")
def admin_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Sender]]:
    """A migrated registry with enterprises 0 and 1 provisioned, HTB passwords known."""
    import asyncio

    folder = tmp_path_factory.mktemp("admin-registry")
    path = folder / "template.sqlite3"
    url = f"sqlite+aiosqlite:///{path}"

    async def make() -> list[Sender]:
        await migrate(url)
        registry = registry_on(url, folder)
        try:
            senders = [
                await provision(registry, index=i, ssh_public_key=_ssh_line()) for i in (0, 1)
            ]
            for sender in senders:
                await set_password(registry, sender.htb)
            return senders
        finally:
            await registry.engine.dispose()

    return path, asyncio.run(make())


@pytest.fixture
async def admin(
    tmp_path: Path, admin_template: tuple[Path, list[Sender]], admin_identity: DevIdentity
) -> AsyncIterator[AdminEnv]:
    """An admin listener on a copy of the template registry."""
    template, senders = admin_template
    db = tmp_path / "registry.sqlite3"
    shutil.copyfile(template, db)
    registry = registry_on(f"sqlite+aiosqlite:///{db}", tmp_path)
    config = AdminConfig(tls_cert=admin_identity.cert, tls_key=admin_identity.key, port=0)
    gateway = AdminGateway(AdminPlane(registry=registry, config=config), ROUTES)
    await gateway.start()
    try:
        yield AdminEnv(gateway, registry, senders, admin_identity.ca, tmp_path)
    finally:
        await gateway.stop()
        await registry.engine.dispose()


@dataclass(frozen=True)
class Answer:
    """What curl got."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        """The body as JSON."""
        return json.loads(self.body)


async def curl(env: AdminEnv, method: str, path: str, *args: str, who: str | None = None) -> Answer:
    """``curl`` against the admin listener; with ``who``, that person's cookie jar is read and
    written (``-b``/``-c``), as a browser keeps its cookies."""
    body, head = env.folder / "curl-body", env.folder / "curl-head"
    command = [
        require_tool("curl"), "--silent", "--show-error", "--cacert", str(env.ca),
        "--max-time", "30", "--request", method, "--output", str(body),
        "--dump-header", str(head), "--write-out", "%{http_code}",
    ]  # fmt: skip
    if who is not None:
        jar = env.jars.setdefault(who, env.folder / f"jar-{who}")
        command += ["--cookie", str(jar), "--cookie-jar", str(jar)]
    done: Run = await run([*command, *args, env.url + path])
    headers: dict[str, str] = {}
    for line in head.read_text(errors="replace").splitlines() if head.exists() else []:
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip().lower()] = value.strip()
    data = body.read_bytes() if body.exists() else b""
    for leftover in (body, head):
        leftover.unlink(missing_ok=True)
    return Answer(int(done.stdout.strip() or "0"), headers, data)


async def sign_in(env: AdminEnv, login: str, password: str = PASSWORD) -> str:
    """Sign ``login`` in (its cookie jar keeps the session); returns the CSRF token."""
    answer = await curl(
        env, "POST", "/admin/api/v1/session",
        "-H", "Content-Type: application/json",
        "--data", json.dumps({"login": login, "password": password}),
        who=login,
    )  # fmt: skip
    assert answer.status == 201, answer
    body = answer.json()
    assert isinstance(body, dict)
    return str(body["csrf"])
