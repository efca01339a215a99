"""PROXY protocol v2 behind a load balancer (issue 15 item 6), with real clients.

A small relay (``proxy_relay.py``) stands in for the balancer: OpenSSH's ``sftp`` runs it as its
``ProxyCommand``, so the gateway sees loopback as the balancer and the header's address as the
client. What a sender sees is checked: which logins get through, which sources are penalised,
what the log names as the peer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.channels.penalties import PenaltyPolicy
from gateway.channels.proxy import ProxyPolicy
from gateway.core.proxy import Endpoint, build_header
from tests.channels.conftest import Env, Key, SftpRun, StartGateway
from tests.channels.proxy_relay import header_for
from tests.tools import require_tool

pytestmark = pytest.mark.timeout(120)

RELAY = Path(__file__).with_name("proxy_relay.py")
LOOPBACK = ProxyPolicy.of([ipaddress.ip_network("127.0.0.0/8")])
ELSEWHERE = ProxyPolicy.of([ipaddress.ip_network("192.0.2.0/24")])


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait for the gateway to reach ``condition`` (it charges a connection as it sees it go)."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110  (no event says "charged": a bounded poll)
            await asyncio.sleep(0.01)


async def sftp_via(
    env: Env, client: str, batch: str, *, key: Key | None = None, login: str | None = None
) -> SftpRun:
    """OpenSSH ``sftp`` through the relay, which claims ``client`` as the client's address."""
    tool = require_tool("sftp")
    args = [
        "-b", "-", "-i", str((key or env.key_a).private), "-P", str(env.port),
        "-o", f"ProxyCommand={sys.executable} {RELAY} %h %p {client}",
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
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate(batch.encode())
    return SftpRun(process.returncode or 0, out.decode(), err.decode())


async def raw(port: int, first: bytes) -> bytes:
    """Connect, send ``first``, and read what the gateway sends until it closes (a reset, when
    it closes with our bytes unread, is a close too)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(first)
    try:
        async with asyncio.timeout(10):
            return await reader.read()
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


def events(logs: list[dict[str, object]], name: str) -> list[dict[str, object]]:
    """The captured log events called ``name``."""
    return [entry for entry in logs if entry["event"] == name]


# -- SFTP ----------------------------------------------------------------------------------------


async def test_sftp_session_is_the_headers_client(start_gateway: StartGateway) -> None:
    """Through the balancer, a sender logs in; the session's peer is the header's client and
    ``via`` the balancer."""
    gw = await start_gateway(proxy=LOOPBACK)
    with capture_logs() as logs:
        result = await sftp_via(gw, "198.51.100.7", "ls -1 /\n")
        await until(lambda: not gw.gateway.connections)
    assert result.returncode == 0, result.stderr
    assert "OUT" in result.stdout
    [opened] = events(logs, "session.opened")
    assert opened["peer"] == "198.51.100.7:40000"
    assert str(opened["via"]).startswith("127.0.0.1:")


async def test_sftp_penalty_is_charged_to_the_proxied_network(start_gateway: StartGateway) -> None:
    """A failed login through the balancer penalises the client's /24, not the balancer's: the
    same network is refused next, a sender on another network still logs in."""
    policy = PenaltyPolicy(authfail_seconds=20.0, min_seconds=15.0)
    gw = await start_gateway(proxy=LOOPBACK, penalties=policy)
    failed = await sftp_via(gw, "198.51.100.7", "pwd\n", key=gw.key_b)
    assert failed.returncode != 0
    guard = gw.gateway.sources
    await until(lambda: guard.penalized("198.51.100.0/24", time.monotonic()))
    assert not guard.penalized("127.0.0.0/24", time.monotonic())
    with capture_logs() as logs:
        refused = await sftp_via(gw, "198.51.100.9", "pwd\n")
    assert refused.returncode != 0
    [line] = events(logs, "connection.refused")
    assert (line["reason"], line["source"]) == ("penalty", "198.51.100.0/24")
    other = await sftp_via(gw, "203.0.113.5", "pwd\n")
    assert other.returncode == 0, other.stderr


async def test_sftp_ipv6_client_is_counted_per_64(start_gateway: StartGateway) -> None:
    """An IPv6 client in a TCP6 header is the session's peer (its /64 the source)."""
    gw = await start_gateway(proxy=LOOPBACK)
    with capture_logs() as logs:
        result = await sftp_via(gw, "2001:db8:5::7", "pwd\n")
        await until(lambda: not gw.gateway.connections)
    assert result.returncode == 0, result.stderr
    [opened] = events(logs, "session.opened")
    assert opened["peer"] == "2001:db8:5::7:40000"


async def test_sftp_header_from_elsewhere_is_refused(start_gateway: StartGateway) -> None:
    """With balancers on 192.0.2.0/24, a header from loopback is refused before it is read."""
    gw = await start_gateway(proxy=ELSEWHERE)
    with capture_logs() as logs:
        result = await sftp_via(gw, "198.51.100.7", "pwd\n")
    assert result.returncode != 0
    [line] = events(logs, "connection.refused")
    assert line["reason"] == "proxy_not_balancer"
    assert events(logs, "session.opened") == []


async def test_sftp_without_header_is_refused(start_gateway: StartGateway) -> None:
    """With proxying on, a client that speaks SSH straight away (no header) is refused."""
    gw = await start_gateway(proxy=LOOPBACK)
    with capture_logs() as logs:
        result = await sftp_via(gw, "none", "pwd\n")
    assert result.returncode != 0
    [line] = events(logs, "connection.refused")
    assert (line["reason"], line["detail"]) == ("proxy_header", "signature")


async def test_sftp_local_header_closes_quietly(start_gateway: StartGateway) -> None:
    """A LOCAL header (the balancer's health check) gets no banner and no log line."""
    gw = await start_gateway(proxy=LOOPBACK)
    with capture_logs() as logs:
        assert await raw(gw.port, build_header(None)) == b""
        v1 = await raw(gw.port, b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 22\r\n")
    assert v1 == b""
    assert [(e["event"], e.get("detail")) for e in logs] == [("connection.refused", "v1")]


async def test_sftp_header_is_garbage_when_proxying_is_off(env: Env) -> None:
    """Off by default: a header is not SSH, the connection ends without a session."""
    header = build_header(Endpoint("198.51.100.7", 40000), Endpoint("127.0.0.1", 22))
    with capture_logs() as logs:
        answer = await raw(env.port, header + b"SSH-2.0-OpenSSH_9.6\r\n")
        await until(lambda: not env.gateway.connections)
    assert answer.startswith(b"SSH-2.0-BatchGateway")
    assert events(logs, "session.opened") == []


def test_relay_sends_the_header_first() -> None:
    """The test balancer's headers: PROXY for an address, LOCAL, or none."""
    assert header_for("none") == b""
    assert header_for("local") == build_header(None)
    assert socket.inet_aton("198.51.100.7") in header_for("198.51.100.7")
