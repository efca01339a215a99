"""PROXY protocol v2 behind a load balancer (issue 15 item 6), with real clients.

A small relay (``proxy_relay.py``) stands in for the balancer: OpenSSH's ``sftp`` runs it as its
``ProxyCommand``, so the gateway sees loopback as the balancer and the header's address as the
client. What a sender sees is checked: which logins get through, which sources are penalised,
what the log names as the peer.
"""

from __future__ import annotations

import asyncio
import ftplib
import io
import ipaddress
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.channels.penalties import PenaltyPolicy
from gateway.channels.proxy import ProxyPolicy
from gateway.core.proxy import SIGNATURE, Endpoint, build_header
from tests.channels.conftest import Env, Key, SftpRun, StartGateway
from tests.channels.ftp_env import PASSWORD, FtpEnv, StartFtp, name, reply_of
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
    """Connect, send ``first`` and end our side, then read what the gateway sends until it
    closes (a reset, when it closes with our bytes unread, or a write that meets a socket it
    closed already, is a close too)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(first)
        writer.write_eof()  # fails when the gateway closed first (refused before reading)
        async with asyncio.timeout(10):
            return await reader.read()
    except OSError:  # a reset or a closed socket: the gateway hung up
        return b""
    finally:
        writer.close()


def events(logs: Sequence[Mapping[str, object]], name: str) -> list[Mapping[str, object]]:
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
    assert gw.gateway.origins == {}  # taken by the connection when it started


async def test_sftp_login_in_progress_behind_a_balancer_is_drained(
    start_gateway: StartGateway,
) -> None:
    """A connection from the balancer that has sent its header and SSH version but not logged
    in is one of the listener's connections: a drain ends it at once (nothing to wait for),
    and the listener then accepts nothing more."""
    gw = await start_gateway(proxy=LOOPBACK)
    port = gw.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(header_for("198.51.100.7") + b"SSH-2.0-OpenSSH_9.6\r\n")
        async with asyncio.timeout(10):
            assert (await reader.readline()).startswith(b"SSH-2.0-BatchGateway")
        await until(lambda: len(gw.gateway.connections) == 1)
        assert gw.gateway.origins == {}  # the connection took its client when it started
        async with asyncio.timeout(10):
            assert await gw.gateway.drain(5.0) == 0
            await reader.read()  # the gateway's KEXINIT, then its close
        assert not gw.gateway.connections
    finally:
        writer.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


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
    """A LOCAL header or a connection closed at once (the balancer's health checks) get no
    banner and no log line; a v1 header is refused."""
    gw = await start_gateway(proxy=LOOPBACK)
    with capture_logs() as logs:
        assert await raw(gw.port, build_header(None)) == b""
        assert await raw(gw.port, b"") == b""  # a plain TCP check: connect, close
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


# -- FTP -----------------------------------------------------------------------------------------

BALANCER = "127.0.0.3"


class Balancer:
    """A balancer on ``BALANCER`` in front of the gateway on 127.0.0.1: the control port and one
    passive data port, each connection relayed after a PROXY v2 header naming ``client``."""

    def __init__(self, client: str) -> None:
        self.client = client
        self.servers: list[asyncio.Server] = []
        self.relays: set[asyncio.Task[None]] = set()

    async def forward(self, listen_port: int, target_port: int) -> int:
        """Relay ``BALANCER:listen_port`` (0: any) to ``127.0.0.1:target_port``; the port."""

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
            up_writer.write(header_for(self.client))

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                try:
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                    dst.write_eof()
                except OSError:
                    dst.transport.abort()

            async with asyncio.TaskGroup() as group:
                group.create_task(pipe(reader, up_writer))
                group.create_task(pipe(up_reader, writer))
            writer.close()
            up_writer.close()

        server = await asyncio.start_server(relay, BALANCER, listen_port)
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop relaying."""
        for server in self.servers:
            server.close()
            await server.wait_closed()


def free_port() -> int:
    """A port free on both loopback addresses (the gateway's and the balancer's)."""
    for _ in range(20):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
            try:
                with socket.socket() as other:
                    other.bind((BALANCER, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


@pytest.fixture
async def balanced(start_ftp: StartFtp) -> AsyncIterator[MakeBalanced]:
    """An FTP gateway behind a :class:`Balancer` that claims a chosen client."""
    balancers: list[Balancer] = []

    async def make(client: str) -> Balanced:
        data_port = free_port()
        env = await start_ftp(
            proxy=LOOPBACK, passive_ports=(data_port, data_port), passive_address=BALANCER
        )
        balancer = Balancer(client)
        balancers.append(balancer)
        control = await balancer.forward(0, env.port)
        await balancer.forward(data_port, data_port)
        return Balanced(env, control, balancer)

    yield make
    for balancer in balancers:
        await balancer.close()


@dataclass(frozen=True)
class Balanced:
    """A gateway behind a balancer, and the balancer's control port."""

    env: FtpEnv
    port: int
    balancer: Balancer

    def client(self) -> ftplib.FTP_TLS:
        """An FTPS client of the balancer, not yet logged in (blocking)."""
        context = ssl.create_default_context(cafile=str(self.env.ca))
        context.check_hostname = False
        client = ftplib.FTP_TLS(context=context, timeout=30)  # noqa: S321 (FTP is under test)
        client.connect(BALANCER, self.port)
        return client


MakeBalanced = Callable[[str], Awaitable[Balanced]]


async def test_ftp_networks_use_the_proxied_address(balanced: MakeBalanced) -> None:
    """Sender B's channel admits only 192.0.2.0/24: through the balancer as 192.0.2.7 it logs
    in, lists and uploads over a passive data connection relayed with its own header; the log
    names the client as the peer."""
    gw = await balanced("192.0.2.7")

    def session() -> tuple[str, list[str], str]:
        client = gw.client()
        try:
            client.login(gw.env.b.login, PASSWORD)
            client.prot_p()
            pwd = client.pwd()
            listing = client.nlst("/")
            stored = client.storbinary(
                f"STOR IN/{name('FI', gw.env.b.number)}", io.BytesIO(b"hello")
            )
            return pwd, listing, stored
        finally:
            client.close()

    with capture_logs() as logs:
        pwd, listing, stored = await asyncio.to_thread(session)
    assert pwd == "/"
    assert "OUT" in " ".join(listing)
    assert stored.startswith("226"), stored
    [opened] = events(logs, "session.opened")
    assert opened["peer"] == "192.0.2.7:40000"
    assert str(opened["via"]).startswith("127.0.0.1:")
    assert events(logs, "data.refused") == []


async def test_ftp_login_outside_the_network_by_proxied_address(balanced: MakeBalanced) -> None:
    """As 198.51.100.7 through the same balancer, sender B's login is refused (530)."""
    gw = await balanced("198.51.100.7")

    def login() -> str:
        client = gw.client()
        try:
            client.auth()
            return reply_of(lambda: client.login(gw.env.b.login, PASSWORD))
        finally:
            client.close()

    with capture_logs() as logs:
        assert await asyncio.to_thread(login) == "530 Login incorrect."
    [failed] = events(logs, "auth.failed")
    assert failed["reason"] == "network_not_allowed"
    assert failed["peer"] == "198.51.100.7:40000"


async def test_ftp_passive_data_from_another_client_is_refused(balanced: MakeBalanced) -> None:
    """A data connection whose header names another client than the control connection's is
    closed unread, as one from another address is without proxying: no listing reaches it."""
    gw = await balanced("192.0.2.7")

    def listing() -> str:
        client = gw.client()
        try:
            client.login(gw.env.b.login, PASSWORD)
            client.prot_p()
            gw.balancer.client = "192.0.2.8"  # the next connection: the data connection
            return reply_of(lambda: client.nlst("/"))
        finally:
            client.close()

    with capture_logs() as logs:
        reply = await asyncio.to_thread(listing)
    assert "OUT" not in reply, reply  # the data connection was closed: no listing
    [refused] = events(logs, "data.refused")
    assert (refused["reason"], refused["client"]) == ("not_control_peer", "192.0.2.8")


async def test_ftp_without_header_is_refused(start_ftp: StartFtp) -> None:
    """With proxying on, a client connecting straight (no header) gets no greeting; from an
    address that is no balancer, it is refused before anything is read."""
    env = await start_ftp(proxy=LOOPBACK)
    with capture_logs() as logs:
        assert await raw(env.port, b"USER x\r\nPASS y\r\nQUIT\r\n") == b""
    [line] = events(logs, "connection.refused")
    assert (line["reason"], line["detail"]) == ("proxy_header", "signature")
    elsewhere = await start_ftp(proxy=ELSEWHERE)
    with capture_logs() as logs:
        assert await raw(elsewhere.port, header_for("192.0.2.7")) == b""
    [line] = events(logs, "connection.refused")
    assert line["reason"] == "proxy_not_balancer"


# -- SECURITY.md 19: variants of a header the gateway must not believe ----------------------------

_GOOD = header_for("198.51.100.7")
_MALFORMED = {
    # name: (the bytes a connection starts with, then closes; the refusal's detail)
    "v1-text": (b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 22\r\n", "v1"),
    "v1-tcp6": (b"PROXY TCP6 2001:db8::7 ::1 40000 22\r\n", "v1"),
    "v2-truncated-prefix": (_GOOD[:10], "closed"),
    "v2-truncated-addresses": (_GOOD[:20], "closed"),
    "v2-family-length-too-short": (SIGNATURE + b"\x21\x11\x00\x0b" + bytes(11), "too_short"),
    "v2-ipv6-length-for-ipv4": (SIGNATURE + b"\x21\x21\x00\x0c" + _GOOD[16:28], "too_short"),
    "v2-length-past-the-bound": (SIGNATURE + b"\x21\x11\xff\xff", "too_long"),
    "v2-unknown-family": (_GOOD[:13] + b"\x41" + _GOOD[14:], "family"),
    "v2-udp-no-client": (_GOOD[:13] + b"\x12" + _GOOD[14:], "no_client"),
    "v2-unspec-no-client": (SIGNATURE + b"\x21\x00\x00\x00", "no_client"),
}


async def _refused_detail(port: int, first: bytes) -> tuple[bytes, list[object]]:
    with capture_logs() as logs:
        answer = await raw(port, first)
    return answer, [(e["reason"], e.get("detail")) for e in events(logs, "connection.refused")]


@pytest.mark.parametrize("variant", list(_MALFORMED))
async def test_sftp_malformed_headers_are_refused_with_their_reason(
    start_gateway: StartGateway, variant: str
) -> None:
    """From a balancer, every malformed, truncated or client-less header: no SSH banner, one
    ``connection.refused`` naming the parser's reason, no session."""
    gw = await start_gateway(proxy=LOOPBACK)
    first, detail = _MALFORMED[variant]
    answer, refused = await _refused_detail(gw.port, first)
    assert answer == b""
    assert refused == [("proxy_header", detail)]


@pytest.mark.parametrize("variant", list(_MALFORMED))
async def test_ftp_malformed_headers_are_refused_with_their_reason(
    start_ftp: StartFtp, variant: str
) -> None:
    """The same headers on the FTP listener: no greeting, the same refusal."""
    env = await start_ftp(proxy=LOOPBACK)
    first, detail = _MALFORMED[variant]
    answer, refused = await _refused_detail(env.port, first)
    assert answer == b""
    assert refused == [("proxy_header", detail)]


@pytest.mark.parametrize(
    "first",
    [_GOOD, _GOOD + b"SSH-2.0-OpenSSH_9.6\r\n", b""],
    ids=["header", "header-then-ssh", "nothing"],
)
async def test_a_good_header_from_a_non_balancer_is_refused_unread(
    start_gateway: StartGateway, start_ftp: StartFtp, first: bytes
) -> None:
    """A well-formed header (alone, or followed by the client's first bytes), or nothing, from
    an address that is no balancer: refused on both listeners before a byte is read."""
    gw = await start_gateway(proxy=ELSEWHERE)
    ftp = await start_ftp(proxy=ELSEWHERE)
    for port in (gw.port, ftp.port):
        answer, refused = await _refused_detail(port, first)
        assert answer == b""
        assert refused == [("proxy_not_balancer", None)]
