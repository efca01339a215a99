"""The console's test rig: an admin listener in a thread of its own, and Chromium driven by
Playwright's sync API (one browser per module).

The listener runs on its own event loop in a background thread, so the browser (whose sync API
owns the test's thread) and the server never share a loop; :meth:`ConsoleRig.call` runs a
registry coroutine on the server's loop for the test (provisioning, reading the outbox's
effects). The registry starts with the enterprises of tests/admin/admin_env.py (HTBs ``htb0``
and ``htb1``, password :data:`PASSWORD`).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.admin.config import AdminConfig
from gateway.admin.routes import ROUTES
from gateway.admin.server import AdminGateway, AdminPlane
from gateway.ops.tls import DevIdentity, ensure_dev_server_identity
from gateway.pipeline.trace import SetTrace, TraceReport
from gateway.registry.migrate import migrate
from gateway.registry.service import Registry
from tests.admin.admin_env import PASSWORD, set_password
from tests.channels.provision import registry_on
from tests.pipeline.provision import Sender, provision
from tests.tools import require_tool

T = TypeVar("T")
CHROMIUM = "chromium"
VIEWPORT = {"width": 1100, "height": 800}

__all__ = ["PASSWORD", "ConsoleRig", "chromium_path", "ssh_line"]


def ssh_line() -> str:
    """A fresh OpenSSH public key line."""
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


def chromium_path() -> str:
    """Debian's chromium (a failure under CI when missing, a skip elsewhere)."""
    return require_tool(CHROMIUM)


@dataclass
class FakeTrace:
    """``Where is my file?`` answered from a fixed list of sets (the pipeline's own trace is
    tested with the pipeline)."""

    sets: list[SetTrace] = field(default_factory=list)

    async def __call__(self, query: str) -> TraceReport:
        found = [s for s in self.sets if query in (s.ticket, s.trigger_name)]
        return TraceReport(query=query, sets=found)


def set_trace(ticket: str, sender: str, name: str) -> SetTrace:
    """A finished set of ``sender`` for the fake trace."""
    return SetTrace(
        ticket=ticket, sender=sender, folder="IN", trigger="GO", trigger_name=name,
        state="routed", finished=True, code=0, reason=None,
        received_at="2026-01-15T10:00:00+00:00", routed_at="2026-01-15T10:00:02+00:00",
        destination="dmfa", duplicate_of=None, signer_subject=None, files=[], attempts=[],
        acknowledgement=[], archive=None,
    )  # fmt: skip


class ConsoleRig:
    """A running admin listener over a fresh registry, on a background loop."""

    def __init__(
        self, folder: Path, identity: DevIdentity, *, eid_trust_dir: Path | None = None
    ) -> None:
        self.folder = folder
        self.identity = identity
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.trace = FakeTrace()
        url = f"sqlite+aiosqlite:///{folder / 'registry.sqlite3'}"
        self.call(migrate(url))
        self.registry: Registry = registry_on(url, folder)
        self.senders: list[Sender] = self.call(self._provision())
        config = AdminConfig(
            tls_cert=identity.cert, tls_key=identity.key, port=0, eid_trust_dir=eid_trust_dir
        )
        plane = AdminPlane(registry=self.registry, config=config, trace=self.trace)
        self.gateway = AdminGateway(plane, ROUTES)
        self.call(self.gateway.start())

    async def _provision(self) -> list[Sender]:
        senders = [
            await provision(self.registry, index=i, ssh_public_key=ssh_line()) for i in (0, 1)
        ]
        for sender in senders:
            await set_password(self.registry, sender.htb)
        return senders

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run ``coroutine`` on the listener's loop and return its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    @property
    def url(self) -> str:
        """The console's base URL."""
        return f"https://127.0.0.1:{self.gateway.port}/admin/console"

    @property
    def outbox(self) -> Path:
        """The OutboxNotifier's folder (e-mails and SMS)."""
        return self.folder / "outbox"

    def sms(self) -> list[dict[str, str]]:
        """Every SMS written so far, oldest first."""
        return [json.loads(p.read_text()) for p in sorted(self.outbox.glob("*.sms.json"))]

    def emails(self) -> list[str]:
        """Every e-mail written so far, oldest first."""
        return [p.read_text() for p in sorted(self.outbox.glob("*.eml"))]

    def close(self) -> None:
        """Stop the listener and the loop."""
        try:
            self.call(self.gateway.stop())
            self.call(self.registry.engine.dispose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleRig]:
    """One listener per module."""
    identity = ensure_dev_server_identity(
        tmp_path_factory.mktemp("console-tls"), purpose="admin console"
    )
    made = ConsoleRig(tmp_path_factory.mktemp("console"), identity)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per module (Debian's, launched by its path)."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, headless=True)
        try:
            yield launched
        finally:
            launched.close()
