"""Channels per SSH connection (issue 15 item 9; SECURITY.md 19 and 21): variants of the flood
beyond the base test (tests/channels/test_password_guessing.py, four SFTP sessions on one
connection), with asyncssh as the client: sessions opened all at once, opened and closed in a
loop, and channels for what the gateway does not serve (a command, a shell, another subsystem,
port forwarding), none of which may hold a slot or leave one taken."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

import asyncssh
import pytest

from tests.channels.conftest import Env, StartGateway

pytestmark = pytest.mark.timeout(60)

CAP = 3


@pytest.fixture
async def capped(start_gateway: StartGateway) -> Env:
    """A gateway allowing three session channels per connection."""
    env = await start_gateway()
    gateway = env.gateway
    gateway.config = dataclasses.replace(gateway.config, max_sessions_per_connection=CAP)
    return env


async def _sftp_or_refusal(conn: asyncssh.SSHClientConnection) -> asyncssh.SFTPClient | str:
    try:
        return await conn.start_sftp_client()
    except asyncssh.ChannelOpenError as exc:
        return exc.reason


async def test_sessions_opened_at_once_stop_at_the_cap(capped: Env) -> None:
    """Ten SFTP sessions requested together on one connection: three open, seven are refused
    at their open with the cap in the reason."""
    async with await capped.connect() as conn:
        answers = await asyncio.gather(*(_sftp_or_refusal(conn) for _ in range(10)))
        opened = [a for a in answers if isinstance(a, asyncssh.SFTPClient)]
        refused = [a for a in answers if isinstance(a, str)]
        assert len(opened) == CAP
        assert refused == [f"at most {CAP} sessions per connection"] * (10 - CAP)
        for client in opened:
            client.exit()
    assert capped.gateway.channels_refused == 10 - CAP


async def test_sessions_opened_and_closed_in_a_loop_never_run_out(capped: Env) -> None:
    """Thirty sessions one after the other on one connection, each closed before the next:
    every one opens (a closed channel gives its slot back)."""
    async with await capped.connect() as conn:
        for _ in range(30):
            client = await conn.start_sftp_client()
            assert "IN" in await client.listdir("/")
            client.exit()
            await client.wait_closed()
    assert capped.gateway.channels_refused == 0


@pytest.mark.parametrize(
    "request_kind", ["exec", "shell", "other-subsystem", "tcp-forward", "unix-forward"]
)
async def test_channels_for_anything_but_sftp_hold_no_slot(capped: Env, request_kind: str) -> None:
    """Ten channels asking for a command, a shell, a subsystem other than sftp, or a TCP or
    UNIX-socket forward: each is refused, and afterwards all three SFTP sessions still open on
    the same connection."""
    async with await capped.connect() as conn:
        for _ in range(10):
            await _unserved(conn, request_kind)
        clients = [await conn.start_sftp_client() for _ in range(CAP)]
        for client in clients:
            assert "OUT" in await client.listdir("/")
            client.exit()


async def _unserved(conn: asyncssh.SSHClientConnection, request_kind: str) -> None:
    """Ask for ``request_kind``: the channel is refused (a session's request fails)."""
    requests: dict[str, Callable[[], Awaitable[object]]] = {
        "tcp-forward": lambda: conn.open_connection("127.0.0.1", 22),
        "unix-forward": lambda: conn.open_unix_connection("/run/sshd.sock"),
        "exec": lambda: conn.run("id", check=False, timeout=10),
        "shell": lambda: conn.run(check=False, timeout=10),
        "other-subsystem": lambda: conn.run(subsystem="netconf", check=False, timeout=10),
    }
    asked = requests[request_kind]()
    with pytest.raises(asyncssh.ChannelOpenError):
        await asked
