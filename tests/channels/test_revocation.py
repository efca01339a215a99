"""Revoking a credential while a session using it is open (issue 16): the session ends, the next
login is refused, and the audit trail holds the removal.

Each test opens a session with a real client (OpenSSH ``sftp`` kept reading commands, Python's
``ftplib`` over TLS, a TLS socket with the client certificate on a keep-alive connection),
revokes through the registry, and runs the daemon's own re-check loop
(``gateway.daemon._end_revoked_sessions``): a revocation on the node wakes it at once, so the
session must end well before the periodic interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import ftplib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.daemon import REVALIDATE_SECONDS, _end_revoked_sessions
from gateway.registry.credentials import parse_ssh_key
from gateway.registry.revocation import hex_fingerprint, ssh_fingerprint
from gateway.registry.service import Registry
from gateway.registry.types import (
    ChannelKind,
    EnterpriseNumber,
    Person,
    Principal,
    QualityRef,
    Refusal,
)
from tests.channels.conftest import Env, run_sftp
from tests.channels.ftp_env import PASSWORD, FtpEnv, StartFtp
from tests.channels.web_env import StartWeb, WebEnv
from tests.pipeline.provision import kbo
from tests.tools import require_tool

pytestmark = pytest.mark.timeout(120)

QUICKLY = REVALIDATE_SECONDS / 2  # well before the periodic check: the revocation woke it


def _quality(index: int) -> QualityRef:
    return QualityRef(EnterpriseNumber(kbo(index)), "employer")


@contextlib.asynccontextmanager
async def _rechecking(registry: Registry, channel: Any) -> AsyncIterator[None]:
    task = asyncio.create_task(_end_revoked_sessions(registry, [channel]))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _until(check: Callable[[], Awaitable[bool]] | Callable[[], bool], seconds: float) -> None:
    async with asyncio.timeout(seconds):
        while True:
            result = check()
            if result if isinstance(result, bool) else await result:
                return
            await asyncio.sleep(0.05)


async def _audited(registry: Registry, action: str) -> bool:
    return any(entry.action == action for entry in await registry.audit_entries(limit=20))


async def test_a_removed_ssh_key_ends_its_sftp_session(env: Env, tmp_path: Path) -> None:
    """OpenSSH sftp keeps a session open; the key is removed (by its SHA256: fingerprint): the
    session ends, the same key's next login is refused, the removal is audited."""
    sftp = require_tool("sftp")
    args = [
        "-b", "-", "-i", str(env.key_a.private), "-P", str(env.port),
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes",
        f"{env.a.login}@127.0.0.1",
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sftp, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdin is not None
    process.stdin.write(b"ls IN\n")
    await process.stdin.drain()
    await _until(lambda: bool(env.gateway.sessions), 30)
    parsed = parse_ssh_key(env.key_a.public_line)
    assert not isinstance(parsed, Refusal)
    fingerprint = ssh_fingerprint(parsed.sha256)
    assert hex_fingerprint(fingerprint) == parsed.sha256
    async with _rechecking(env.registry, env.gateway):
        removed = await env.registry.remove_ssh_key(
            actor=None, quality=_quality(0), fingerprint=fingerprint
        )
        assert removed is None
        await _until(lambda: not env.gateway.sessions, QUICKLY)
    with contextlib.suppress(ConnectionError):  # the client learns of it at its next command
        process.stdin.write(b"ls IN\n")
        await process.stdin.drain()
        process.stdin.close()
    async with asyncio.timeout(30):
        assert await process.wait() != 0
    again = await run_sftp(env, "ls IN\n")
    assert again.returncode != 0
    assert await _audited(env.registry, "structured.ssh_key_removed")


def _ftp_client(env: FtpEnv) -> ftplib.FTP_TLS:
    context = ssl.create_default_context(cafile=str(env.ca))
    client = ftplib.FTP_TLS(context=context, timeout=30)  # noqa: S321  (FTPS with PROT P)
    try:
        client.connect("127.0.0.1", env.port)
        client.login(env.a.login, PASSWORD)
        client.prot_p()
    except BaseException:
        client.close()
        raise
    return client


async def test_a_removed_ftp_channel_ends_its_session(start_ftp: StartFtp) -> None:
    """An FTPS session is open; the quality's FTP channel is removed: the control connection is
    closed, the next login is refused (530), the removal is audited."""
    env = await start_ftp()
    registry = env.registry
    assert registry is not None
    client = await asyncio.to_thread(_ftp_client, env)
    try:
        assert await asyncio.to_thread(client.pwd) == "/"
        async with _rechecking(registry, env.gateway):
            removed = await registry.remove_channel(
                actor=None, quality=_quality(0), kind=ChannelKind.ftp
            )
            assert removed is None
            await _until(lambda: not any(c.session for c in env.gateway.controls), QUICKLY)
        with pytest.raises((ftplib.Error, OSError, EOFError)):
            await asyncio.to_thread(client.pwd)
    finally:
        with contextlib.suppress(Exception):
            client.close()
    with pytest.raises(ftplib.error_perm, match="530"):
        await asyncio.to_thread(_ftp_client, env)
    assert await _audited(registry, "structured.channel_removed")


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"GET /v1/OUT/ HTTP/1.1\r\nHost: gateway\r\n\r\n")
    await writer.drain()
    async with asyncio.timeout(30):
        return await reader.read(65536)


async def test_a_replaced_technical_user_ends_its_web_session(start_web: StartWeb) -> None:
    """A keep-alive HTTPS connection is authenticated; the technical user is replaced: the
    connection is closed; the certificate belongs to the quality's channel, so a new connection
    with it is the new technical user's session; the replacement is audited. (To stop the
    certificate itself, its channel is removed: see the FTP test.)"""
    web: WebEnv = await start_web()
    context = ssl.create_default_context(cafile=str(web.server_ca))
    context.load_cert_chain(web.pki.a.cert, web.pki.a.key)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", web.gateway.port, ssl=context, server_hostname="127.0.0.1"
    )
    try:
        assert (await _get(reader, writer)).startswith(b"HTTP/1.1 200")
        async with _rechecking(web.registry, web.gateway):
            replaced = await web.registry.replace_technical_user(
                actor=None,
                quality=_quality(0),
                person=Person(name="New Payroll", email="payroll@example.test"),
            )
            assert isinstance(replaced, str)
            await _until(lambda: len(web.gateway.sessions) == 0, QUICKLY)
        async with asyncio.timeout(30):
            assert await reader.read(65536) == b""  # closed by the gateway
    finally:
        writer.close()
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", web.gateway.port, ssl=context, server_hostname="127.0.0.1"
    )
    try:
        again = await _get(reader, writer)
        assert again.startswith(b"HTTP/1.1 200"), again
        sessions = web.gateway.sessions._by_connection.values()
        logins = [s.principal.login for s in sessions if isinstance(s.principal, Principal)]
        assert logins == [replaced]
    finally:
        writer.close()
    assert await _audited(web.registry, "structured.technical_user_replaced")


async def test_revocations_refuse_what_they_should(env: Env) -> None:
    """Unknown fingerprints are not_found, malformed ones invalid; a TB of another enterprise
    may not revoke (the rule table's configure_structured)."""
    registry = env.registry
    bogus = "SHA256:" + "A" * 43
    missing = await registry.remove_ssh_key(actor=None, quality=_quality(0), fingerprint=bogus)
    assert isinstance(missing, Refusal)
    assert missing.reason == "not_found"
    malformed = await registry.remove_ssh_key(actor=None, quality=_quality(0), fingerprint="x")
    assert isinstance(malformed, Refusal)
    assert malformed.reason == "invalid"
    foreign = await registry.remove_channel(
        actor="htb1", quality=_quality(0), kind=ChannelKind.sftp
    )
    assert isinstance(foreign, Refusal)
    assert foreign.reason == "forbidden"
    certificate = await registry.remove_signing_certificate(
        actor=None, quality=_quality(0), fingerprint="0" * 64
    )
    assert isinstance(certificate, Refusal)
    assert certificate.reason == "not_found"
