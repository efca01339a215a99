"""The FTP channel's boundaries: a fault inside a command, sessions per sender, the idle
timeout, stopping, and the configuration built from the settings."""

from __future__ import annotations

import asyncio
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from gateway.channels.ftp import FtpConfig
from gateway.core.codes import Rejection
from gateway.ops.settings import FtpListenerSettings, FtpSettings, GatewaySettings
from gateway.spool.folders import Folders, FolderSession, Listing
from tests.channels.ftp_env import PASSWORD, FtpEnv, StartFtp, ftps_client, reply_of

pytestmark = pytest.mark.timeout(60)


class ExplodingSession(FolderSession):
    """A folder session whose listing fails the way a broken disk or database would."""

    def listing(self, raw: str | bytes) -> Listing | Rejection:
        raise OSError("sqlite3.OperationalError: disk I/O error at /var/lib/gateway/spool")


class ExplodingFolders(Folders):
    """Folders whose sessions explode on LIST."""

    def open_session(self, **kwargs: Any) -> FolderSession:
        return ExplodingSession(folders=self, **kwargs)


async def test_a_fault_in_a_command_is_451_999_and_the_connection_goes_on(
    start_ftp: StartFtp,
) -> None:
    """An unexpected exception gets ``451 999`` without its text; the next command works."""
    env = await start_ftp(folders_type=ExplodingFolders)

    def list_then_noop() -> tuple[str, str]:
        client = ftps_client(env)
        try:
            client.makepasv()
            failed = reply_of(lambda: client.sendcmd("LIST /IN"))
            return failed, client.sendcmd("NOOP")
        finally:
            client.close()

    failed, noop = await asyncio.to_thread(list_then_noop)
    # The ticket is logged once with the traceback; the reply holds nothing else.
    assert re.fullmatch(r"451 999: internal error, ticket [0-9a-f]{12}", failed), failed
    assert noop == "200 OK"


async def test_sessions_per_sender_are_capped(start_ftp: StartFtp) -> None:
    """Beyond ``sender_max_sessions`` a login is answered 421 with code 921, and closed."""
    env = await start_ftp(max_sessions=1)
    first = await asyncio.to_thread(ftps_client, env)
    try:
        second = await asyncio.to_thread(ftps_client, env, login=False)
        reply = await asyncio.to_thread(reply_of, lambda: second.login(env.a.login, PASSWORD))
        second.close()
    finally:
        first.close()
    assert reply.startswith(f"421 921: sender {env.a.number} already has 1 sessions open")


async def test_an_idle_session_is_closed(start_ftp: StartFtp) -> None:
    """A logged-in session silent for ``idle_timeout_seconds`` gets 421 and is closed."""
    env = await start_ftp(idle=0.3)
    client = await asyncio.to_thread(ftps_client, env)
    try:
        line = await asyncio.to_thread(reply_of, client.getline)
    finally:
        client.close()
    assert line.startswith("421 Idle timeout")


async def test_drain_ends_idle_sessions_and_stops_listening(ftp: FtpEnv) -> None:
    """Stopping ends an idle session at once (421) and refuses new connections."""
    client = await asyncio.to_thread(ftps_client, ftp)
    try:
        assert await ftp.gateway.drain(5.0) == 0
        line = await asyncio.to_thread(reply_of, client.getline)
    finally:
        client.close()
    assert line.startswith("421 The gateway is stopping")
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", ftp.port)
    assert not ftp.gateway.controls


def test_config_from_settings_makes_the_development_identity_once(tmp_path: Path) -> None:
    """Without tls_cert/tls_key, a development CA and server certificate are made once under
    state_dir/ftps (key 0600) and used; the plain listeners come from the settings."""
    settings = GatewaySettings(
        state_dir=tmp_path,
        ftp=FtpSettings(
            enabled=True,
            port=0,
            plain_listeners={"lan": FtpListenerSettings(host="127.0.0.2", port=0)},
            passive_ports=(50000, 50099),
        ),
    )
    config = FtpConfig.from_settings(settings)
    folder = tmp_path / "ftps"
    ca = (folder / "ca.pem").read_bytes()
    assert stat.S_IMODE((folder / "server.key").stat().st_mode) == 0o600
    assert [(p.name, p.host) for p in config.plain_listeners] == [("lan", "127.0.0.2")]
    assert config.passive_ports == (50000, 50099)
    assert config.tls.num_tickets == 0
    FtpConfig.from_settings(settings)
    assert (folder / "ca.pem").read_bytes() == ca
